//! The fuzz targets' properties (fuzz/checks.rs) over the committed seeds (fuzz/seeds/<target>/)
//! on the stable toolchain, so that `cargo test` and CI catch a parser that breaks one without
//! cargo-fuzz; `scripts/fuzz` runs the same checks under libFuzzer on nightly. A crash that
//! fuzzing finds is added to the seeds and so becomes a regression test here.

#[path = "../../fuzz/checks.rs"]
mod checks;

fn each_seed(target: &str, check: fn(&[u8])) {
    let dir = crate::support::root().join("fuzz/seeds").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
            panic!("fuzz property of {target} broken by seed {}: {e:?}", path.display());
        }
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn fuzz_seeds_scan() {
    each_seed("scan", checks::check_scan);
}

#[test]
fn fuzz_seeds_records() {
    each_seed("records", checks::check_records);
}

#[test]
fn fuzz_seeds_notify() {
    each_seed("notify", checks::check_notify);
}

#[test]
fn fuzz_seeds_decode() {
    each_seed("decode", checks::check_decode);
}

#[test]
fn fuzz_seeds_runs() {
    each_seed("runs", checks::check_runs);
}
