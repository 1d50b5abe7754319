//! Publishing to secured services: s3s-kafka over TLS and SASL (PLAIN, SCRAM, Amazon MSK IAM),
//! s3s-es with SigV4 and over TLS, and secrets that never show.
//!
//! No Apache Kafka, MSK or OpenSearch Service runs here, and tansu can do neither TLS nor SASL, so
//! each test starts stand-ins of its own (`scripts/receivers/kafka-secure`, `es-secure`) on free
//! ports: socat terminates TLS (OpenSSL, certificates made by openssl for the test), and two
//! proxies written for the tests check what the real services check: `scripts/kafka_sasl_proxy.py`
//! answers SaslHandshake/SaslAuthenticate itself (PLAIN, SCRAM-SHA-256/512 per RFC 5802, MSK IAM
//! tokens whose SigV4 signature it recomputes with botocore, session lifetimes per KIP-368) in
//! front of a tansu of the test's own, and `scripts/sigv4_proxy.py` recomputes the SigV4 signature
//! of every request with botocore and answers 403 on a mismatch, in front of the noida-db (or
//! osmem) that `scripts/services` started. What arrived is read back with an independent client
//! (confluent-kafka through the same stand-in; the search server's own `_count`).

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{bin, root};

/// The test access key the stand-ins know (the secret differs per test).
const AKID: &str = "AKIDS3STESTKEY";

fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    while ports.len() < n {
        let p = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("secure-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(path: &Path, content: &str) -> String {
    std::fs::write(path, content).unwrap();
    path.display().to_string()
}

/// A stand-in started from `scripts/receivers/`, stopped (SIGTERM: it stops its children) when dropped.
struct StandIn {
    child: Option<Child>,
    dir: PathBuf,
    front: u16,
}

impl StandIn {
    /// `scripts/receivers/kafka-secure` in `mode` (ssl, mtls, sasl_plaintext, sasl_ssl), with
    /// DIR/users and DIR/aws-keys as `files` writes them, and more proxy options.
    fn kafka(test: &str, mode: &str, files: &[(&str, &str)], proxy_args: &str) -> StandIn {
        let dir = scratch(test);
        for (name, content) in files {
            write(&dir.join(name), content);
        }
        let p = free_ports(3);
        let mut cmd = Command::new(root().join("scripts/receivers/kafka-secure"));
        cmd.arg(&dir).arg(mode).args(p.iter().map(u16::to_string)).env("S3S_SASL_PROXY_ARGS", proxy_args);
        StandIn::start(cmd, dir, p[0])
    }

    /// `scripts/receivers/es-secure` in `mode` (tls, mtls, sigv4, sigv4-tls) in front of `upstream`.
    fn es(test: &str, mode: &str, upstream: &str, keys: Option<&str>, service: &str) -> StandIn {
        let dir = scratch(test);
        if let Some(k) = keys {
            write(&dir.join("aws-keys"), k);
        }
        let p = free_ports(2);
        let mut cmd = Command::new(root().join("scripts/receivers/es-secure"));
        cmd.arg(&dir).arg(mode).arg(p[0].to_string()).arg(upstream).arg(p[1].to_string()).env("S3S_SIGV4_SERVICE", service);
        StandIn::start(cmd, dir, p[0])
    }

    fn start(mut cmd: Command, dir: PathBuf, front: u16) -> StandIn {
        // Certificates of the test's own, in DIR (not the shared ones of scripts/services).
        cmd.env_remove("S3S_CERTS");
        let out = std::fs::File::create(dir.join("launcher.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a stand-in: {e} (run scripts/services install)"));
        let mut s = StandIn { child: Some(child), dir, front };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if s.log("launcher.log").lines().any(|l| l == "ready") {
                return s;
            }
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the stand-in exited ({status}) during start; run scripts/services install:\n{}", s.log("launcher.log"));
            }
            assert!(Instant::now() < deadline, "the stand-in did not come up in 60 s:\n{}", s.log("launcher.log"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// The address clients are given (tansu advertises it; the certificate names localhost).
    fn brokers(&self) -> String {
        format!("localhost:{}", self.front)
    }

    fn url(&self, scheme: &str) -> String {
        format!("{scheme}://localhost:{}", self.front)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Set `env` on `cmd`; an empty value removes the variable.
fn set_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
}

/// Run a binary of ours with `stdin`, extra environment, and a watchdog (a test never hangs:
/// killed after 120 s, which the assertions then report).
fn run(tool: &str, args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(bin(tool));
    cmd.args(args).current_dir(root()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    set_env(&mut cmd, env);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("run {tool}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if flag.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, Ordering::Release);
    writer.join().unwrap();
    out
}

fn show(out: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// `objects` objects of `lines` lines each (line records, then each object's end record), and
/// the line texts.
fn input(tag: &str, objects: usize, lines: usize) -> (Vec<u8>, Vec<String>) {
    let mut out = Vec::new();
    let mut texts = Vec::new();
    for o in 0..objects {
        let key = format!("{tag}/{o}.gz");
        for n in 1..=lines {
            let t = format!("{tag} object {o} line {n}\tGET /index.html 200");
            let rec = serde_json::json!({"type": "line", "bucket": "logs", "key": key, "n": n, "line": t});
            writeln!(out, "{rec}").unwrap();
            texts.push(t);
        }
        writeln!(out, "{}", serde_json::json!({"type": "end", "bucket": "logs", "key": key, "lines": lines})).unwrap();
    }
    (out, texts)
}

/// The keys of the end records a stage forwarded, in order.
fn ends(stdout: &[u8]) -> Vec<String> {
    stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).unwrap_or_else(|e| panic!("bad record {}: {e}", text(l))))
        .filter(|v| v["type"] == "end")
        .map(|v| v["key"].as_str().unwrap().to_string())
        .collect()
}

fn topic(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("s3s-secure-{what}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Read `topic` back through the stand-in with confluent-kafka and `props`: the values, sorted.
fn consume(k: &StandIn, topic: &str, expect: usize, props: &[String]) -> Vec<String> {
    let mut cmd = Command::new(root().join("scripts/kafka-consume"));
    cmd.args(["--brokers", &k.brokers(), "--topic", topic, "--format", "value", "--timeout", "15", "--settle", "1"])
        .args(["--expect", &expect.to_string()]);
    for p in props {
        cmd.args(["-X", p]);
    }
    let out = cmd.current_dir(root()).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "kafka-consume {topic}: {}", text(&out.stderr));
    let mut got: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    got.sort();
    got
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Every line in the topic, every end record forwarded in order, exit 0.
fn assert_delivered(k: &StandIn, out: &Output, topic: &str, texts: &[String], objects: usize, props: &[String]) {
    assert!(out.status.success(), "{}", show(out));
    let want: Vec<String> = (0..objects).map(|o| format!("{topic}/{o}.gz")).collect();
    assert_eq!(ends(&out.stdout), want, "{}", show(out));
    assert_eq!(consume(k, topic, texts.len(), props), sorted(texts.to_vec()));
}

/// Failed for the reason `cause` names (on stderr), nothing acknowledged, exit 1.
fn assert_refused(out: &Output, cause: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", show(out));
    assert!(ends(&out.stdout).is_empty(), "an end record was forwarded: {}", show(out));
    let err = text(&out.stderr);
    assert!(err.contains(cause), "stderr does not name the cause {cause:?}:\n{err}");
}

fn ssl_props(k: &StandIn) -> Vec<String> {
    vec!["security.protocol=SSL".into(), format!("ssl.ca.location={}", k.file("ca.pem"))]
}

fn sasl_props(k: &StandIn, protocol: &str, mechanism: &str, user: &str, password: &str) -> Vec<String> {
    let mut p = vec![
        format!("security.protocol={protocol}"),
        format!("sasl.mechanisms={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ];
    if protocol == "SASL_SSL" {
        p.push(format!("ssl.ca.location={}", k.file("ca.pem")));
    }
    p
}

/// An empty AWS config file (so that no profile of the machine's is read).
fn no_profile() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("secure-empty-aws-config-{}", std::process::id()));
        write(&p, "")
    })
}

/// Environment with AWS credentials of the test's own (and no profile from the machine).
fn aws_env<'a>(secret: &'a str, token: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID", AKID),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", "us-east-1"),
        ("AWS_CONFIG_FILE", no_profile()),
        ("AWS_SHARED_CREDENTIALS_FILE", no_profile()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    env.push(("AWS_SESSION_TOKEN", token.unwrap_or("")));
    env
}

// ---------------------------------------------------------------------------------------------
// Kafka

#[test]
fn kafka_over_tls_every_line_arrives_and_ends_follow() {
    let k = StandIn::kafka("kafka-tls", "ssl", &[], "");
    let t = topic("tls");
    let (inp, texts) = input(&t, 3, 400);
    let out = run("s3s-kafka", &["-b", &k.brokers(), "-t", &t, "--tls-ca", &k.file("ca.pem")], &[], &inp);
    assert_delivered(&k, &out, &t, &texts, 3, &ssl_props(&k));
}

#[test]
fn kafka_sasl_plaintext_with_plain_password_from_a_properties_file() {
    let k = StandIn::kafka("kafka-plain", "sasl_plaintext", &[("users", "alice:pl41n-pw\n")], "");
    let t = topic("plain");
    let (inp, texts) = input(&t, 2, 300);
    let dir = scratch("kafka-plain-client");
    let props = write(&dir.join("client.properties"), "# the secret lives here, not in argv\nsasl.password=pl41n-pw\n");
    let args = ["-b", &k.brokers(), "-t", &t, "--sasl-mechanism", "PLAIN", "--sasl-username", "alice", "-F", &props];
    let args = [&args[..], &["-X", "security.protocol=SASL_PLAINTEXT"]].concat();
    let out = run("s3s-kafka", &args, &[], &inp);
    assert_delivered(&k, &out, &t, &texts, 2, &sasl_props(&k, "SASL_PLAINTEXT", "PLAIN", "alice", "pl41n-pw"));
    assert!(k.log("proxy.log").contains("auth ok PLAIN user=alice"), "{}", k.log("proxy.log"));
}

#[test]
fn kafka_sasl_ssl_with_scram_sha_512_and_256() {
    let k = StandIn::kafka("kafka-scram", "sasl_ssl", &[("users", "bob:scr4m-512-pw\ncarol:scr4m-256-pw\n")], "");
    let ca = k.file("ca.pem");
    // SCRAM-SHA-512, the password from the environment.
    let t = topic("scram512");
    let (inp, texts) = input(&t, 2, 300);
    let args = ["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "bob"];
    let out = run("s3s-kafka", &args, &[("S3S_KAFKA_SASL_PASSWORD", "scr4m-512-pw")], &inp);
    assert_delivered(&k, &out, &t, &texts, 2, &sasl_props(&k, "SASL_SSL", "SCRAM-SHA-512", "bob", "scr4m-512-pw"));
    // SCRAM-SHA-256, the password from a file.
    let t = topic("scram256");
    let (inp, texts) = input(&t, 2, 300);
    let pw = write(&k.dir.join("carol.password"), "scr4m-256-pw\n");
    let args = ["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "carol"];
    let out = run("s3s-kafka", &[&args[..], &["--sasl-password-file", &pw]].concat(), &[], &inp);
    assert_delivered(&k, &out, &t, &texts, 2, &sasl_props(&k, "SASL_SSL", "SCRAM-SHA-256", "carol", "scr4m-256-pw"));
    let log = k.log("proxy.log");
    assert!(log.contains("auth ok SCRAM-SHA-512 user=bob") && log.contains("auth ok SCRAM-SHA-256 user=carol"), "{log}");
}

fn msk_props(k: &StandIn, user: &str, password: &str) -> Vec<String> {
    // The test consumer authenticates with SCRAM through the same proxy (tansu behind it is one).
    sasl_props(k, "SASL_SSL", "SCRAM-SHA-512", user, password)
}

#[test]
fn kafka_msk_iam_with_credentials_from_the_environment_and_from_a_profile() {
    let keys = format!("{AKID}:msk-env-secret\nAKIDS3SPROFILE:msk-profile-secret:msk-session-token\n");
    let k = StandIn::kafka("kafka-msk", "sasl_ssl", &[("aws-keys", &keys), ("users", "reader:r34d\n")], "--msk-region us-east-1");
    let ca = k.file("ca.pem");
    // Environment variables.
    let t = topic("msk-env");
    let (inp, texts) = input(&t, 2, 300);
    let args = ["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "--aws-msk-iam", "--aws-region", "us-east-1"];
    let out = run("s3s-kafka", &args, &aws_env("msk-env-secret", None), &inp);
    assert_delivered(&k, &out, &t, &texts, 2, &msk_props(&k, "reader", "r34d"));
    // A profile in a shared credentials file, with a session token; the region from the profile.
    let dir = scratch("kafka-msk-profile");
    let creds = write(
        &dir.join("credentials"),
        "[pipeline]\naws_access_key_id = AKIDS3SPROFILE\naws_secret_access_key = msk-profile-secret\n\
         aws_session_token = msk-session-token\n",
    );
    let config = write(&dir.join("config"), "[profile pipeline]\nregion = us-east-1\n");
    let t = topic("msk-profile");
    let (inp, texts) = input(&t, 2, 300);
    let env = [
        ("AWS_PROFILE", "pipeline"),
        ("AWS_CONFIG_FILE", config.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", creds.as_str()),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_SESSION_TOKEN", ""),
        ("AWS_REGION", ""),
        ("AWS_DEFAULT_REGION", ""),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let out = run("s3s-kafka", &["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "--aws-msk-iam"], &env, &inp);
    assert_delivered(&k, &out, &t, &texts, 2, &msk_props(&k, "reader", "r34d"));
    let log = k.log("proxy.log");
    assert!(log.contains(&format!("auth ok OAUTHBEARER user={AKID}")), "{log}");
    assert!(log.contains("auth ok OAUTHBEARER user=AKIDS3SPROFILE"), "{log}");
    assert!(!log.contains("auth failed"), "{log}");
}

/// The whole loop, poll | cat | kafka | ack, into "MSK" with IAM: s3s-kafka signs its tokens
/// with the same credentials as the SQS and S3 calls (the local servers' test key); every
/// message is deleted once its lines are in the topic.
#[test]
fn kafka_whole_loop_over_sasl_ssl_with_msk_iam_deletes_every_message() {
    let key = std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID (scripts/services env)");
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY (scripts/services env)");
    let keys = format!("{key}:{secret}\n");
    let k =
        StandIn::kafka("kafka-loop", "sasl_ssl", &[("aws-keys", &keys), ("users", "reader:r34d\n")], "--msk-region us-east-1");
    let f = crate::aws::Fixture::new("secure-loop", true);
    let (a, b) = (crate::aws::lines("a", 300), crate::aws::lines("b", 9));
    f.put("cf/E2ABC.2026-11-28-17.a.gz", crate::aws::gzip(&a));
    f.put("cf/E2ABC.2026-11-28-17.b.gz", crate::aws::gzip(&b));
    let t0 = Instant::now();
    while f.total() != 3 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = topic("loop");
    let (code, _, err) = crate::support::sh(&format!(
        "s3s-poll --queue-url {} --once | s3s-cat | s3s-kafka -b {} -t {t} --tls-ca {} --aws-msk-iam --aws-region us-east-1 | s3s-ack",
        f.queue_url,
        k.brokers(),
        k.file("ca.pem")
    ));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("s3s-ack: 3 messages deleted, 0 failed"), "{err}");
    let want: Vec<String> = a.lines().chain(b.lines()).map(str::to_string).collect();
    assert_eq!(consume(&k, &t, want.len(), &msk_props(&k, "reader", "r34d")), sorted(want));
    let t0 = Instant::now();
    while f.total() != 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.total(), 0, "the queue must be empty");
    assert!(k.log("proxy.log").contains(&format!("auth ok OAUTHBEARER user={key}")), "{}", k.log("proxy.log"));
}

#[test]
fn kafka_wrong_password_wrong_ca_and_expired_token_fail_naming_the_cause() {
    let keys = format!("{AKID}:msk-secret\n");
    let k = StandIn::kafka("kafka-refused", "sasl_ssl", &[("users", "dave:right-pw\n"), ("aws-keys", &keys)], "");
    let ca = k.file("ca.pem");
    let t = topic("refused");
    let (inp, _) = input(&t, 2, 50);
    let scram = ["-b", &k.brokers(), "-t", &t, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "dave"];
    // A wrong password: the broker's own words.
    let out = run("s3s-kafka", &[&scram[..], &["--tls-ca", &ca]].concat(), &[("S3S_KAFKA_SASL_PASSWORD", "wrong-pw")], &inp);
    assert_refused(&out, "invalid credentials with SASL mechanism SCRAM-SHA-512");
    // A CA that did not sign the broker's certificate.
    let out = run(
        "s3s-kafka",
        &[&scram[..], &["--tls-ca", &k.file("wrong-ca.pem")]].concat(),
        &[("S3S_KAFKA_SASL_PASSWORD", "right-pw")],
        &inp,
    );
    assert_refused(&out, "certificate verify failed");
    // A wrong secret key, and then a token that has expired by the broker's clock.
    let msk = ["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "--aws-msk-iam", "--aws-region", "us-east-1"];
    let out = run("s3s-kafka", &msk, &aws_env("not-the-secret", None), &inp);
    assert_refused(&out, "signature does not match");
    drop(k);
    let k = StandIn::kafka("kafka-expired", "sasl_ssl", &[("aws-keys", &keys)], "--clock-skew 3600");
    let msk = ["-b", &k.brokers(), "-t", &t, "--tls-ca", &k.file("ca.pem"), "--aws-msk-iam", "--aws-region", "us-east-1"];
    let out = run("s3s-kafka", &msk, &aws_env("msk-secret", None), &inp);
    assert_refused(&out, "expired");
}

/// A run three times longer than the token's lifetime (8 s here, through the test-only
/// S3S_KAFKA_MSK_TOKEN_SECONDS; 900 s otherwise): the proxy ends each session when its token
/// expires, so the lines keep arriving only because s3s-kafka signs new tokens and
/// re-authenticates with them.
#[test]
fn kafka_msk_token_is_refreshed_during_a_run_longer_than_its_lifetime() {
    let keys = format!("{AKID}:refresh-secret\n");
    let k = StandIn::kafka("kafka-refresh", "sasl_ssl", &[("aws-keys", &keys), ("users", "reader:r34d\n")], "");
    let t = topic("refresh");
    let args = ["-b", &k.brokers(), "-t", &t, "--tls-ca", &k.file("ca.pem"), "--aws-msk-iam", "--aws-region", "us-east-1"];
    let mut cmd = Command::new(bin("s3s-kafka"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    set_env(&mut cmd, &aws_env("refresh-secret", None));
    let mut child = cmd.env("S3S_KAFKA_MSK_TOKEN_SECONDS", "8").spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let objects = 12;
    let mut texts = Vec::new();
    for o in 0..objects {
        let (inp, mut tx) = input(&format!("{t}-{o}"), 1, 50);
        stdin.write_all(&inp).unwrap();
        stdin.flush().unwrap();
        texts.append(&mut tx);
        std::thread::sleep(Duration::from_secs(2));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(ends(&out.stdout).len(), objects, "{}", show(&out));
    let got = consume(&k, &t, texts.len(), &msk_props(&k, "reader", "r34d"));
    assert_eq!(got, sorted(texts));
    let log = k.log("proxy.log");
    let tokens: std::collections::BTreeSet<&str> = log
        .lines()
        .filter(|l| l.contains(" OAUTHBEARER ") && (l.contains("auth ok") || l.contains("re-authenticated")))
        .filter_map(|l| l.split(" token=").nth(1)?.split_whitespace().next())
        .collect();
    assert!(tokens.len() >= 3, "expected a new token every few seconds over 24 s, saw {tokens:?}:\n{log}");
    assert!(log.contains("re-authenticated OAUTHBEARER"), "{log}");
    assert!(!log.contains("auth failed"), "{log}");
}

#[test]
fn kafka_tls_client_certificate_for_a_broker_that_requires_one() {
    let k = StandIn::kafka("kafka-mtls", "mtls", &[], "");
    let t = topic("mtls");
    let (inp, texts) = input(&t, 2, 200);
    let (ca, cert, key) = (k.file("ca.pem"), k.file("client.pem"), k.file("client.key"));
    let out =
        run("s3s-kafka", &["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key], &[], &inp);
    let mut props = ssl_props(&k);
    props.push(format!("ssl.certificate.location={cert}"));
    props.push(format!("ssl.key.location={key}"));
    assert_delivered(&k, &out, &t, &texts, 2, &props);
    // Without one the broker hangs up: nothing acknowledged.
    let out = run("s3s-kafka", &["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "-X", "message.timeout.ms=8000"], &[], &inp);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(ends(&out.stdout).is_empty(), "{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// Elasticsearch / OpenSearch

fn es_url() -> String {
    std::env::var("S3S_ES_URL").unwrap_or_else(|_| {
        panic!("S3S_ES_URL is not set: scripts/services start es && eval \"$(scripts/services env)\" (or scripts/test)")
    })
}

fn opensearch_url() -> String {
    std::env::var("S3S_OPENSEARCH_URL").expect("S3S_OPENSEARCH_URL (scripts/services env)")
}

/// Documents in `index` on the search server itself (not through the stand-in).
fn count(server: &str, index: &str) -> u64 {
    let _ = Command::new("curl").args(["-sf", "-X", "POST", &format!("{server}/{index}/_refresh")]).output();
    let out = Command::new("curl").args(["-sf", &format!("{server}/{index}/_count")]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["count"].as_u64().unwrap_or(0)
}

fn index(what: &str) -> String {
    format!("s3s-secure-{what}-{}", std::process::id())
}

#[test]
fn es_sigv4_signed_bulk_requests_are_accepted_gzip_bodies_too() {
    for (name, server) in [("noida", es_url()), ("osmem", opensearch_url())] {
        let keys = format!("{AKID}:es-env-secret:es-session-token\n");
        let s = StandIn::es(&format!("es-sigv4-{name}"), "sigv4-tls", &server, Some(&keys), "es");
        for gzip in [false, true] {
            let idx = index(&format!("sigv4-{name}-{gzip}"));
            let (inp, texts) = input(&idx, 2, 250);
            let mut args =
                vec!["--url".to_string(), s.url("https"), "-i".into(), idx.clone(), "--ca-cert".into(), s.file("ca.pem")];
            args.extend(["--aws-sigv4".into(), "--aws-region".into(), "us-east-1".into()]);
            if gzip {
                args.push("--gzip".into());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = run("s3s-es", &args, &aws_env("es-env-secret", Some("es-session-token")), &inp);
            assert!(out.status.success(), "{name} gzip={gzip}: {}", show(&out));
            assert_eq!(ends(&out.stdout).len(), 2, "{}", show(&out));
            assert_eq!(count(&server, &idx), texts.len() as u64, "{name} gzip={gzip}");
        }
        let log = s.log("proxy.log");
        assert!(log.contains("POST /_bulk -> 200") && !log.contains("-> 403"), "{log}");
    }
}

#[test]
fn es_sigv4_wrong_secret_gets_403_and_no_line_is_acknowledged() {
    let server = es_url();
    let s = StandIn::es("es-sigv4-wrong", "sigv4", &server, Some(&format!("{AKID}:the-right-secret\n")), "es");
    let idx = index("sigv4-wrong");
    let (inp, _) = input(&idx, 2, 50);
    let args = ["--url", &s.url("http"), "-i", &idx, "--aws-sigv4", "--aws-region", "us-east-1"];
    let out = run("s3s-es", &args, &aws_env("a-wrong-secret", None), &inp);
    assert_refused(&out, "403");
    assert!(text(&out.stderr).contains("signature"), "{}", show(&out));
    assert_eq!(count(&server, &idx), 0);
}

#[test]
fn es_sigv4_for_opensearch_serverless_with_credentials_from_a_profile() {
    let server = es_url();
    let s = StandIn::es("es-aoss", "sigv4-tls", &server, Some("AKIDS3SPROFILE:aoss-secret:aoss-token\n"), "aoss");
    let dir = scratch("es-aoss-profile");
    let creds = write(
        &dir.join("credentials"),
        "[search]\naws_access_key_id = AKIDS3SPROFILE\naws_secret_access_key = aoss-secret\naws_session_token = aoss-token\n",
    );
    let config = write(&dir.join("config"), "[profile search]\nregion = us-east-1\n");
    let idx = index("aoss");
    let (inp, texts) = input(&idx, 2, 200);
    let env = [
        ("AWS_PROFILE", "search"),
        ("AWS_CONFIG_FILE", config.as_str()),
        ("AWS_SHARED_CREDENTIALS_FILE", creds.as_str()),
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_SESSION_TOKEN", ""),
        ("AWS_REGION", ""),
        ("AWS_DEFAULT_REGION", ""),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let args = ["--url", &s.url("https"), "-i", &idx, "--ca-cert", &s.file("ca.pem"), "--aws-sigv4", "aoss", "--gzip"];
    let out = run("s3s-es", &args, &env, &inp);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&server, &idx), texts.len() as u64);
    assert!(!s.log("proxy.log").contains("-> 403"), "{}", s.log("proxy.log"));
}

#[test]
fn es_tls_system_roots_ca_cert_wrong_ca_insecure_and_client_certificates() {
    let server = es_url();
    let s = StandIn::es("es-tls", "tls", &server, None, "es");
    let url = s.url("https");
    let attempt = |what: &str, extra: &[&str], env: &[(&str, &str)]| {
        let idx = index(&format!("tls-{what}"));
        let (inp, texts) = input(&idx, 1, 100);
        let args = [&["--url", url.as_str(), "-i", idx.as_str(), "--max-retries", "1", "--backoff", "50ms"][..], extra].concat();
        (run("s3s-es", &args, env, &inp), idx, texts.len() as u64)
    };
    // The system's roots: the test CA through SSL_CERT_FILE, which the system store honours.
    let (out, idx, n) = attempt("roots", &[], &[("SSL_CERT_FILE", &s.file("ca.pem"))]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&server, &idx), n);
    // Without the CA among the roots: refused.
    let (out, _, _) = attempt("unknown", &[], &[]);
    assert_refused(&out, "UnknownIssuer");
    let (out, idx, n) = attempt("ca-cert", &["--ca-cert", &s.file("ca.pem")], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&server, &idx), n);
    let (out, _, _) = attempt("wrong-ca", &["--ca-cert", &s.file("wrong-ca.pem")], &[]);
    assert_refused(&out, "UnknownIssuer");
    let (out, idx, n) = attempt("insecure", &["--insecure"], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&server, &idx), n);
    drop(s);
    // A server that requires a client certificate.
    let s = StandIn::es("es-mtls", "mtls", &server, None, "es");
    let url = s.url("https");
    let (ca, cert, key) = (s.file("ca.pem"), s.file("client.pem"), s.file("client.key"));
    let idx = index("mtls");
    let (inp, texts) = input(&idx, 1, 100);
    let base = ["--url", url.as_str(), "-i", idx.as_str(), "--ca-cert", ca.as_str(), "--max-retries", "1", "--backoff", "50ms"];
    let out = run("s3s-es", &[&base[..], &["--tls-cert", &cert, "--tls-key", &key]].concat(), &[], &inp);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(count(&server, &idx), texts.len() as u64);
    let out = run("s3s-es", &base, &[], &inp);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(ends(&out.stdout).is_empty(), "{}", show(&out));
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// Every place a stage writes to, for one run: stderr, stdout, the runs log, the metrics file,
/// and the live files seen while it ran.
fn everything_written(out: &Output, state: &Path, live_seen: &str) -> String {
    let mut all = format!("{}\n{}\n{live_seen}\n", text(&out.stderr), text(&out.stdout));
    for f in ["runs.log", "metrics.prom"] {
        all.push_str(&std::fs::read_to_string(state.join(f)).unwrap_or_default());
    }
    all
}

/// A run of `tool` at -vv with state, metrics and live files in `state`; input is fed slowly so
/// that the live file is written (and read here) while it runs.
fn watched_run(tool: &str, args: &[&str], env: &[(&str, &str)], inp: &[u8], state: &Path) -> (Output, String) {
    let state_s = state.display().to_string();
    let metrics = state.join("metrics.prom").display().to_string();
    let mut cmd = Command::new(bin(tool));
    cmd.args(args)
        .args(["-vv", "--metrics-file", &metrics, "--metrics-interval", "0.1", "--metrics-addr", "127.0.0.1:0"])
        .env("S3S_STATE_DIR", &state_s)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    set_env(&mut cmd, env);
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let half = inp.len() / 2;
    let cut = half + inp[half..].iter().position(|&b| b == b'\n').unwrap() + 1;
    stdin.write_all(&inp[..cut]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut live = String::new();
    for e in std::fs::read_dir(state.join("live")).into_iter().flatten().flatten() {
        live.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    // The Prometheus endpoint too (its address is in the live file).
    if let Some(addr) = live.split("\"metrics_addr\":\"").nth(1).and_then(|s| s.split('"').next()) {
        let scraped = Command::new("curl").args(["-sf", &format!("http://{addr}/metrics")]).output().unwrap();
        live.push_str(&text(&scraped.stdout));
    }
    let _ = stdin.write_all(&inp[cut..]);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (out, live)
}

#[test]
fn secrets_never_show_on_stderr_in_runs_log_live_files_or_metrics() {
    // Each secret comes in by its own channel.
    let (env_pw, file_pw, x_pw, f_pw, wrong_pw) =
        ("S3CRET-env-7f3a", "S3CRET-file-91bc", "S3CRET-dashx-44d0", "S3CRET-propfile-c2e8", "S3CRET-wrong-0a9d");
    let (aws_secret, aws_token, es_secret) = ("S3CRET-aws-key-5d21", "S3CRET-aws-session-e7f0", "S3CRET-es-key-b3c4");
    let users = format!("erin:{env_pw}\nfrank:{file_pw}\ngrace:{x_pw}\nheidi:{f_pw}\n");
    let keys = format!("{AKID}:{aws_secret}:{aws_token}\n");
    let k = StandIn::kafka("secrets", "sasl_ssl", &[("users", &users), ("aws-keys", &keys)], "");
    let ca = k.file("ca.pem");
    let dir = scratch("secrets-client");
    let pw_file = write(&dir.join("pw"), &format!("{file_pw}\n"));
    let props = write(&dir.join("kafka.properties"), &format!("sasl.password={f_pw}\n"));
    let t = topic("secrets");
    let (inp, _) = input(&t, 4, 100);
    let scram = |user: &'static str| -> Vec<String> {
        ["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", user]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let with = |mut v: Vec<String>, extra: &[&str]| {
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let x_arg = format!("sasl.password={x_pw}");
    /// What a run is called, its arguments and environment, and whether it should succeed.
    type Run<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>, bool);
    let runs: Vec<Run> = vec![
        ("env", scram("erin"), vec![("S3S_KAFKA_SASL_PASSWORD", env_pw)], true),
        ("file", with(scram("frank"), &["--sasl-password-file", &pw_file]), vec![], true),
        ("-X", with(scram("grace"), &["-X", &x_arg]), vec![], true),
        ("-F", with(scram("heidi"), &["-F", &props]), vec![], true),
        ("wrong", scram("erin"), vec![("S3S_KAFKA_SASL_PASSWORD", wrong_pw)], false),
        (
            "msk",
            ["-b", &k.brokers(), "-t", &t, "--tls-ca", &ca, "--aws-msk-iam", "--aws-region", "us-east-1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            aws_env(aws_secret, Some(aws_token)),
            true,
        ),
    ];
    let secrets = [env_pw, file_pw, x_pw, f_pw, wrong_pw, aws_secret, aws_token, es_secret];
    let check = |what: &str, written: &str| {
        for s in secrets {
            assert!(!written.contains(s), "{what}: the secret {s:?} shows:\n{written}");
        }
    };
    for (what, args, env, ok) in runs {
        let state = scratch(&format!("secrets-state-{}", what.trim_start_matches('-')));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (out, live) = watched_run("s3s-kafka", &args, &env, &inp, &state);
        assert_eq!(out.status.success(), ok, "{what}: {}", show(&out));
        assert!(!ok || !live.is_empty(), "{what}: no live file seen while it ran");
        check(&format!("s3s-kafka ({what})"), &everything_written(&out, &state, &live));
    }
    // s3s-es signing with SigV4, accepted and refused.
    let server = es_url();
    let s = StandIn::es("secrets-es", "sigv4", &server, Some(&format!("{AKID}:{aws_secret}:{aws_token}\n")), "es");
    let idx = index("secrets");
    let (inp, _) = input(&idx, 2, 100);
    for (what, secret, ok) in [("es", aws_secret, true), ("es-wrong", es_secret, false)] {
        let state = scratch(&format!("secrets-state-{what}"));
        let args = ["--url", &s.url("http"), "-i", &idx, "--aws-sigv4", "--aws-region", "us-east-1", "--max-retries", "0"];
        let (out, live) = watched_run("s3s-es", &args, &aws_env(secret, Some(aws_token)), &inp, &state);
        assert_eq!(out.status.success(), ok, "{what}: {}", show(&out));
        check(what, &everything_written(&out, &state, &live));
    }
    // --help shows no value of the secret environment variables either.
    let out = run("s3s-kafka", &["--help"], &[("S3S_KAFKA_SASL_PASSWORD", env_pw)], b"");
    check("s3s-kafka --help", &text(&out.stdout));
}
