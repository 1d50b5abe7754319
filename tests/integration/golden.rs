//! Golden stdin/stdout files per stage: `TRYCMD=overwrite cargo test` refreshes them.

#[test]
fn cat() {
    trycmd::TestCases::new().register_bin("s3s-cat", trycmd::cargo::cargo_bin!("s3s-cat")).case("tests/cmd/cat/*.toml");
}

#[test]
fn filter() {
    trycmd::TestCases::new().register_bin("s3s-filter", trycmd::cargo::cargo_bin!("s3s-filter")).case("tests/cmd/filter/*.toml");
}

#[cfg(feature = "kafka")]
#[test]
fn kafka() {
    // Dry runs, malformed input and configuration errors: none of them needs a broker.
    trycmd::TestCases::new().register_bin("s3s-kafka", trycmd::cargo::cargo_bin!("s3s-kafka")).case("tests/cmd/kafka/*.toml");
}

#[test]
fn syslog() {
    trycmd::TestCases::new().register_bin("s3s-syslog", trycmd::cargo::cargo_bin!("s3s-syslog")).case("tests/cmd/syslog/*.toml");
}

#[test]
fn gelf() {
    trycmd::TestCases::new().register_bin("s3s-gelf", trycmd::cargo::cargo_bin!("s3s-gelf")).case("tests/cmd/gelf/*.toml");
}

#[test]
fn status() {
    trycmd::TestCases::new().register_bin("s3s-status", trycmd::cargo::cargo_bin!("s3s-status")).case("tests/cmd/status/*.toml");
}

#[test]
fn ack() {
    // Dry runs only: nothing here needs SQS.
    trycmd::TestCases::new().register_bin("s3s-ack", trycmd::cargo::cargo_bin!("s3s-ack")).case("tests/cmd/ack/*.toml");
}
