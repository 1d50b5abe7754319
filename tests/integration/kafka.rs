//! s3s-kafka against a real Kafka-protocol broker: tansu, started by `scripts/services` (the
//! address comes from `S3S_KAFKA_BROKERS`), read back with an independent client
//! (`scripts/kafka-consume`, confluent-kafka). The restart test starts a tansu of its own on a
//! free port (`S3S_TANSU`, from `scripts/services env`), stored in a bucket on the local S3
//! server, to kill and restart it. Every test uses
//! topics of its own and deletes them afterwards (tansu keeps them in memory).
//!
//! Dry runs, malformed input and configuration errors need no broker: they are golden files
//! (`tests/cmd/kafka/`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{bin, root, sh};

fn env_or_explain(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the Kafka tests need the local tansu broker. Start it and load its \
             environment with `scripts/services start kafka && eval \"$(scripts/services env)\"`, \
             or run everything with scripts/test"
        )
    })
}

/// The broker started by scripts/services.
fn brokers() -> String {
    env_or_explain("S3S_KAFKA_BROKERS")
}

/// A topic name no other test (or earlier run) uses; deleted when dropped.
struct Topic {
    name: String,
    brokers: String,
}

impl Topic {
    fn new(what: &str, brokers: &str) -> Topic {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("s3s-test-{what}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        Topic { name, brokers: brokers.to_string() }
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        if let Ok(tansu) = std::env::var("S3S_TANSU") {
            let broker = self.brokers.split(',').next().unwrap_or_default();
            let _ = Command::new(tansu)
                .args(["topic", "delete", "--broker", &format!("tcp://{broker}"), &self.name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Read a topic back with scripts/kafka-consume: exactly `expect` messages (it waits up to 10 s
/// for them, then 1 s more to see that no more come). Panics if the count differs.
fn consume(brokers: &str, topic: &str, expect: usize, format: &str) -> Vec<u8> {
    let out = Command::new(root().join("scripts/kafka-consume"))
        .args(["--brokers", brokers, "--topic", topic, "--format", format, "--timeout", "10", "--settle", "1"])
        .args(["--expect", &expect.to_string()])
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/kafka-consume");
    assert!(
        out.status.success(),
        "kafka-consume {topic}: {}\n(read {} bytes)",
        String::from_utf8_lossy(&out.stderr),
        out.stdout.len()
    );
    out.stdout
}

/// Run s3s-kafka to the end with `stdin` as its input.
fn kafka(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn_kafka(args);
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for s3s-kafka");
    writer.join().unwrap();
    out
}

/// s3s-kafka started with piped stdin, stdout and stderr.
fn spawn_kafka(args: &[&str]) -> Child {
    Command::new(bin("s3s-kafka"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run s3s-kafka")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("s3s-kafka-test-{}-{name}", std::process::id()))
}

/// Parse NDJSON records.
fn records(ndjson: &[u8]) -> Vec<Value> {
    ndjson
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("bad record {:?}: {e}", text(l))))
        .collect()
}

/// The records of `ndjson` that are not lines, as their lines of text, in order.
fn non_lines(ndjson: &[u8]) -> Vec<String> {
    ndjson
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter(|l| serde_json::from_slice::<Value>(l).unwrap()["type"] != "line")
        .map(text)
        .collect()
}

fn line_record(loc: &str, n: usize, line: &str) -> String {
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(loc).unwrap();
    let mut rec = serde_json::Map::new();
    rec.insert("type".into(), "line".into());
    rec.append(&mut v);
    rec.insert("n".into(), n.into());
    rec.insert("line".into(), line.into());
    Value::Object(rec).to_string()
}

fn end_record(loc: &str, lines: usize) -> String {
    let mut v: serde_json::Map<String, Value> = serde_json::from_str(loc).unwrap();
    let mut rec = serde_json::Map::new();
    rec.insert("type".into(), "end".into());
    rec.append(&mut v);
    rec.insert("lines".into(), lines.into());
    Value::Object(rec).to_string()
}

/// An object's lines and end record, and the line texts.
fn object(loc: &str, texts: &[String]) -> (String, Vec<String>) {
    let mut s = String::new();
    for (i, t) in texts.iter().enumerate() {
        s.push_str(&line_record(loc, i + 1, t));
        s.push('\n');
    }
    s.push_str(&end_record(loc, texts.len()));
    s.push('\n');
    (s, texts.to_vec())
}

fn texts(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix} line {i}\twith a tab \"and quotes\" é")).collect()
}

/// A TCP port nothing listens on (bound and released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_line_arrives_byte_for_byte_and_ends_follow_in_order() {
    let b = brokers();
    let topic = Topic::new("bytes", &b);
    // A generated CloudFront log, plus the awkward fixtures (CRLF, invalid UTF-8, escapes).
    let cf = tmp("cf.log");
    let (code, _, err) = sh(&format!("scripts/gen-cloudfront --lines 3000 --seed 7 -o {}", cf.display()));
    assert_eq!(code, 0, "{err}");
    let (code, cat, err) =
        sh(&format!("s3s-cat {} tests/data/plain.log tests/data/crlf.log tests/data/invalid-utf8.log", cf.display()));
    assert_eq!(code, 0, "{err}");
    // Records of other kinds between the objects: passed through in order.
    let mut input = String::new();
    for (i, rec) in cat.lines().enumerate() {
        input.push_str(rec);
        input.push('\n');
        if rec.contains(r#""type":"end""#) {
            input.push_str(&format!("{{\"type\":\"message\",\"ack\":{{\"message_id\":\"m{i}\",\"objects\":0}}}}\n"));
            input.push_str(&format!("{{\"type\":\"from-the-future\",\"i\":{i}}}\n"));
        }
    }
    // One partition: the topic then holds the lines in input order.
    let out = kafka(&["-b", &b, "-t", &topic.name, "-p", "0"], input.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert_eq!(text(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>(), non_lines(input.as_bytes()));

    let mut want = Vec::new();
    let mut n = 0;
    for r in records(cat.as_bytes()) {
        if r["type"] == "line" {
            want.extend_from_slice(r["line"].as_str().unwrap().as_bytes());
            want.push(b'\n');
            n += 1;
        }
    }
    let got = consume(&b, &topic.name, n, "value");
    assert!(got == want, "the topic differs from the lines: {} bytes vs {}", got.len(), want.len());
    // The CloudFront part is the source file itself, byte for byte.
    let source = std::fs::read(&cf).unwrap();
    assert!(got.starts_with(&source), "the first {} bytes are not the source file", source.len());
    let _ = std::fs::remove_file(cf);
}

#[test]
fn json_payload_keys_and_headers() {
    let b = brokers();
    let topic = Topic::new("json", &b);
    let (a, _) = object(r#"{"bucket":"logs","key":"cf/a b+c.gz"}"#, &texts("a", 3));
    let (f, _) = object(r#"{"file":"/var/log/x.log"}"#, &texts("f", 2));
    let input = format!("{a}{f}");
    let out = kafka(
        &[
            "-b",
            &b,
            "-t",
            &topic.name,
            "-p",
            "0",
            "--payload",
            "json",
            "--key-field",
            "n",
            "--source-headers",
            "-H",
            "origin=test",
        ],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got = records(&consume(&b, &topic.name, 5, "json"));
    let lines: Vec<&str> = input.lines().filter(|l| l.contains(r#""type":"line""#)).collect();
    for (m, rec) in got.iter().zip(&lines) {
        assert_eq!(m["value"].as_str().unwrap(), *rec, "the value is the record, byte for byte");
        let r: Value = serde_json::from_str(rec).unwrap();
        assert_eq!(m["key"], r["n"].to_string());
        let mut want = vec![serde_json::json!(["origin", "test"])];
        if let Some(bucket) = r.get("bucket") {
            want.push(serde_json::json!(["s3s.bucket", bucket]));
            want.push(serde_json::json!(["s3s.key", r["key"]]));
        } else {
            want.push(serde_json::json!(["s3s.file", r["file"]]));
        }
        want.push(serde_json::json!(["s3s.line", r["n"].to_string()]));
        assert_eq!(m["headers"], Value::Array(want), "{m}");
    }
}

#[test]
fn nothing_is_forwarded_while_the_broker_is_down() {
    let port = free_port();
    let (a, _) = object(r#"{"bucket":"b","key":"a"}"#, &texts("a", 5));
    let (c, _) = object(r#"{"bucket":"b","key":"c"}"#, &texts("c", 5));
    let message = r#"{"type":"message","ack":{"message_id":"m","objects":0},"reason":"s3:TestEvent"}"#;
    let input = format!("{a}{message}\n{c}");
    let t0 = Instant::now();
    let out = kafka(&["-b", &format!("127.0.0.1:{port}"), "-t", "t", "-X", "message.timeout.ms=3000"], input.as_bytes());
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // The lines failed for good only after message.timeout.ms: the ends of their objects are
    // withheld; the message record (no object) is forwarded, but not before that.
    assert_eq!(text(&out.stdout), format!("{message}\n"));
    assert!(took >= Duration::from_millis(2900), "forwarded after {took:?}");
    let err = text(&out.stderr);
    assert!(err.contains("s3://b/a: 5 lines not delivered") && err.contains("end record withheld"), "{err}");
    assert!(err.contains("s3://b/c: 5 lines not delivered"), "{err}");
}

#[test]
fn a_line_that_cannot_be_delivered_withholds_only_its_objects_end() {
    let b = brokers();
    let topic = Topic::new("toolarge", &b);
    // message.max.bytes 10000: a 20000-byte line is refused for good; its neighbours go.
    let mut at = texts("a", 4);
    at[2] = "x".repeat(20_000);
    let (a, _) = object(r#"{"bucket":"b","key":"a"}"#, &at);
    let (c, ct) = object(r#"{"bucket":"b","key":"c"}"#, &texts("c", 4));
    let input = format!("{a}{c}");
    let out = kafka(&["-b", &b, "-t", &topic.name, "-X", "message.max.bytes=10000"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n", end_record(r#"{"bucket":"b","key":"c"}"#, 4)));
    let err = text(&out.stderr);
    assert!(err.contains("s3://b/a: 1 line not delivered") && err.contains("end record withheld"), "{err}");
    // Every other line is in the topic.
    let got: BTreeSet<String> = text(&consume(&b, &topic.name, 7, "value")).lines().map(str::to_string).collect();
    let want: BTreeSet<String> = at.iter().filter(|t| t.len() < 100).chain(&ct).cloned().collect();
    assert_eq!(got, want);
}

#[test]
fn an_invalid_topic_fails_every_line_and_forwards_no_end() {
    let b = brokers();
    let (a, _) = object(r#"{"file":"a.log"}"#, &texts("a", 3));
    let out = kafka(&["-b", &b, "-t", "not a valid topic!"], a.as_bytes());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains("a.log: 3 lines not delivered") && err.contains("withheld"), "{err}");
    assert!(err.to_lowercase().contains("topic"), "the broker's reason is shown: {err}");
}

#[test]
fn records_marked_dry_run_are_described_not_sent() {
    let b = brokers();
    let topic = Topic::new("dry", &b);
    let dry = format!(
        "{}\n{}\n",
        r#"{"type":"line","bucket":"b","key":"k","dry_run":true,"n":1,"line":"not sent"}"#,
        r#"{"type":"end","bucket":"b","key":"k","lines":1,"dry_run":true}"#
    );
    let (real, _) = object(r#"{"bucket":"b","key":"real"}"#, &["sent".to_string()]);
    let out = kafka(&["-b", &b, "-t", &topic.name], format!("{dry}{real}").as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(non_lines(&out.stdout), non_lines(format!("{dry}{real}").as_bytes()));
    assert!(text(&out.stderr).contains(r#""value":"not sent""#), "{}", text(&out.stderr));
    assert_eq!(text(&consume(&b, &topic.name, 1, "value")), "sent\n");
}

#[test]
fn a_small_window_still_delivers_everything() {
    let b = brokers();
    let topic = Topic::new("window", &b);
    let mut input = String::new();
    let mut want = BTreeSet::new();
    for o in 0..20 {
        let (s, t) = object(&format!(r#"{{"bucket":"b","key":"o{o}"}}"#), &texts(&format!("o{o}"), 250));
        input.push_str(&s);
        want.extend(t);
    }
    let out = kafka(&["-b", &b, "-t", &topic.name, "--max-in-flight", "7"], input.as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>(), non_lines(input.as_bytes()));
    let got: BTreeSet<String> = text(&consume(&b, &topic.name, 5000, "value")).lines().map(str::to_string).collect();
    assert_eq!(got, want);
}

#[test]
fn a_closed_stdout_ends_quietly_with_status_0() {
    let b = brokers();
    let topic = Topic::new("epipe", &b);
    let (code, out, err) = sh(&format!(
        "(for i in $(seq 1 20000); do echo '{{\"type\":\"line\",\"file\":\"f\",\"n\":1,\"line\":\"x\"}}'; echo '{{\"type\":\"other\"}}'; done) \
         | s3s-kafka -b {b} -t {} | head -1; echo \"kafka=${{PIPESTATUS[1]}}\"",
        topic.name
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "{\"type\":\"other\"}\nkafka=0\n");
    assert_eq!(err, "", "a closed pipe must end quietly");
}

// ---------------------------------------------------------------------------------------------
// Tests that watch records come out while the input is still open.

/// A running s3s-kafka fed through a pipe, its stdout collected as it comes.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = spawn_kafka(args);
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(String::new()));
        let (o, stdout) = (out.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                o.lock().unwrap().push(line.unwrap());
            }
        });
        let (e, stderr) = (err.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let mut e = e.lock().unwrap();
                e.push_str(&line.unwrap_or_default());
                e.push('\n');
            }
        });
        Running { stdin: child.stdin.take(), child, out, err }
    }

    fn send(&mut self, s: &str) {
        let w = self.stdin.as_mut().expect("stdin open");
        w.write_all(s.as_bytes()).unwrap();
        w.flush().unwrap();
    }

    fn out(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// Wait until stdout holds `line`; false after `limit`.
    fn wait_for(&self, line: &str, limit: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.out.lock().unwrap().iter().any(|l| l == line) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Wait for the exit (at most `limit`, then kill it and fail).
    fn wait(mut self, limit: Duration) -> (ExitStatus, Vec<String>, String) {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50)); // let the readers finish
                return (status, self.out(), self.err.lock().unwrap().clone());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("s3s-kafka still running after {limit:?}; stderr: {}", self.err.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tansu broker of the test's own, so it can be stopped and restarted. Its storage is a
/// bucket on the local S3 server (moto, `AWS_ENDPOINT_URL`): what it acknowledged survives a
/// restart, as on a real Kafka broker (its memory storage would lose it all).
struct Tansu {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Tansu {
    /// A fresh bucket for a tansu's storage.
    fn bucket() -> String {
        let endpoint = env_or_explain("AWS_ENDPOINT_URL");
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let bucket = format!("s3s-test-tansu-{}-{nanos}", std::process::id());
        let (code, _, err) = sh(&format!("curl -sfS -X PUT {endpoint}/{bucket}"));
        assert_eq!(code, 0, "creating bucket {bucket} on {endpoint}: {err}");
        bucket
    }

    fn start(port: u16, bucket: &str) -> Tansu {
        Tansu::start_advertised(port, port, bucket)
    }

    /// Listening on `port`, telling clients to connect to `advertised` (a proxy in front of it).
    fn start_advertised(port: u16, advertised: u16, bucket: &str) -> Tansu {
        let exe = env_or_explain("S3S_TANSU");
        let log = tmp(&format!("tansu-{port}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(exe)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", &format!("s3://{bucket}/")])
            // tansu's object store reads AWS_ENDPOINT (not _URL) and refuses plain http unless told.
            .env("AWS_ENDPOINT", env_or_explain("AWS_ENDPOINT_URL"))
            .env("AWS_ALLOW_HTTP", "true")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start tansu");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "tansu not ready on {port}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Tansu { child: Some(child), port, log }
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL: tansu takes seconds to honour SIGTERM) and wait until it is gone.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[test]
fn broker_stopped_mid_stream_and_restarted_loses_no_line_and_forwards_no_end_early() {
    let port = free_port();
    let bucket = Tansu::bucket();
    let mut tansu = Tansu::start(port, &bucket);
    let b = tansu.brokers();
    let topic = Topic::new("restart", &b);
    let mut k = Running::start(&["-b", &b, "-t", &topic.name, "-X", "reconnect.backoff.max.ms=500"]);

    // Object A goes while the broker is up: its end comes out.
    let (a, at) = object(r#"{"bucket":"b","key":"a"}"#, &texts("a", 200));
    k.send(&a);
    let end_a = end_record(r#"{"bucket":"b","key":"a"}"#, 200);
    assert!(k.wait_for(&end_a, Duration::from_secs(20)), "end of A not forwarded: {:?}", k.out());
    let got: BTreeSet<String> = text(&consume(&b, &topic.name, 200, "value")).lines().map(str::to_string).collect();
    assert_eq!(got, at.iter().cloned().collect::<BTreeSet<_>>());

    // The broker dies; object B is read meanwhile: its end must wait.
    tansu.kill();
    let (c, ct) = object(r#"{"bucket":"b","key":"c"}"#, &texts("c", 300));
    k.send(&c);
    let end_c = end_record(r#"{"bucket":"b","key":"c"}"#, 300);
    assert!(!k.wait_for(&end_c, Duration::from_secs(3)), "end of C forwarded while the broker was down");
    assert_eq!(k.out(), vec![end_a.clone()]);

    // The broker comes back with its storage: C's lines are delivered, then its end.
    let tansu2 = Tansu::start(port, &bucket);
    assert!(k.wait_for(&end_c, Duration::from_secs(60)), "end of C not forwarded after the restart: {}", k.err.lock().unwrap());
    k.stdin = None;
    let (status, out, err) = k.wait(Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert_eq!(out, vec![end_a, end_c]);
    // No line lost: A's and C's, exactly once each (the idempotent producer's retries across
    // the restart make no duplicates; kafka-consume fails on more than 500).
    let got: BTreeSet<String> = text(&consume(&b, &topic.name, 500, "value")).lines().map(str::to_string).collect();
    assert_eq!(got, at.iter().chain(&ct).cloned().collect::<BTreeSet<_>>());
    drop(tansu2);
}

#[test]
fn sigterm_stops_reading_and_drains_what_is_in_flight() {
    let b = brokers();
    let topic = Topic::new("sigterm", &b);
    let mut k = Running::start(&["-b", &b, "-t", &topic.name]);
    let (a, at) = object(r#"{"file":"a.log"}"#, &texts("a", 1000));
    k.send(&a);
    k.signal("TERM");
    // stdin stays open: the signal alone ends it, after the drain.
    let (status, out, err) = k.wait(Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert_eq!(out, vec![end_record(r#"{"file":"a.log"}"#, 1000)], "{err}");
    let got: BTreeSet<String> = text(&consume(&b, &topic.name, 1000, "value")).lines().map(str::to_string).collect();
    assert_eq!(got, at.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn sigterm_with_the_broker_down_gives_up_at_the_drain_timeout() {
    let port = free_port();
    let mut k = Running::start(&["-b", &format!("127.0.0.1:{port}"), "-t", "t", "--drain-timeout", "1s"]);
    let (a, _) = object(r#"{"file":"a.log"}"#, &texts("a", 10));
    k.send(&a);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    k.signal("INT");
    let (status, out, err) = k.wait(Duration::from_secs(20));
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(out.is_empty(), "{out:?}");
    assert!(err.contains("10 lines unconfirmed") && err.contains("1 record behind them withheld"), "{err}");
}

/// A TCP proxy in front of a broker that can cut a connection right after forwarding a Produce
/// request, before its response comes back: the producer sees the connection drop with the
/// request in flight, as when a broker or the network fails. It reads the Kafka framing
/// (4-byte size, then the request header's api_key) only to know where requests end; every
/// byte goes through unchanged.
struct CutProxy {
    port: u16,
    /// Cut the connection after the next Produce request.
    arm: Arc<std::sync::atomic::AtomicBool>,
    cuts: Arc<AtomicUsize>,
}

impl CutProxy {
    fn start(upstream: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let arm = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cuts = Arc::new(AtomicUsize::new(0));
        let (a, c) = (arm.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (a, c) = (a.clone(), c.clone());
                let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || CutProxy::requests(client, server, &a, &c));
            }
        });
        CutProxy { port, arm, cuts }
    }

    fn requests(mut client: TcpStream, mut server: TcpStream, arm: &std::sync::atomic::AtomicBool, cuts: &AtomicUsize) {
        use std::io::Read;
        loop {
            let mut size = [0u8; 4];
            if client.read_exact(&mut size).is_err() {
                break;
            }
            let mut req = vec![0u8; u32::from_be_bytes(size) as usize];
            if client.read_exact(&mut req).is_err() || server.write_all(&size).is_err() || server.write_all(&req).is_err() {
                break;
            }
            let produce = req.len() >= 2 && i16::from_be_bytes([req[0], req[1]]) == 0;
            if produce && arm.swap(false, Ordering::SeqCst) {
                let _ = server.flush();
                cuts.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = server.shutdown(std::net::Shutdown::Both);
    }
}

/// The value of `name{tool="s3s-kafka"}` in a --metrics-file, 0 when absent.
fn metric(prom: &std::path::Path, name: &str) -> f64 {
    std::fs::read_to_string(prom)
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_produce_request_cut_off_in_flight_is_retried_and_counted() {
    let port = free_port();
    let proxy = CutProxy::start(port);
    let bucket = Tansu::bucket();
    // Clients are told to connect to the proxy: every request goes through it.
    let tansu = Tansu::start_advertised(port, proxy.port, &bucket);
    let b = format!("127.0.0.1:{}", proxy.port);
    let topic = Topic::new("retry", &tansu.brokers());
    let prom = tmp("retry.prom");
    let _ = std::fs::remove_file(&prom);
    let mut k = Running::start(&[
        "-b",
        &b,
        "-t",
        &topic.name,
        "-p",
        "0",
        "-X",
        "statistics.interval.ms=200",
        "-X",
        "reconnect.backoff.max.ms=200",
        "--metrics-file",
        prom.to_str().unwrap(),
        "--metrics-interval",
        "0.2",
    ]);
    proxy.arm.store(true, Ordering::SeqCst);
    let (a, at) = object(r#"{"file":"a.log"}"#, &texts("a", 500));
    k.send(&a);
    let end_a = end_record(r#"{"file":"a.log"}"#, 500);
    assert!(k.wait_for(&end_a, Duration::from_secs(60)), "end not forwarded: {}", k.err.lock().unwrap());
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 1, "the proxy cut one produce request off");
    // The retry shows in the next statistics snapshot once partition 0 is idle.
    let t0 = Instant::now();
    while metric(&prom, "s3s_publish_retries_total") < 1.0 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let retries = metric(&prom, "s3s_publish_retries_total");
    assert!(
        retries >= 1.0,
        "no retry counted: {}\n{}",
        std::fs::read_to_string(&prom).unwrap_or_default(),
        k.err.lock().unwrap()
    );
    assert!(retries <= 500.0, "more retries than messages: {retries}");
    k.stdin = None;
    let (status, out, err) = k.wait(Duration::from_secs(30));
    assert!(status.success(), "{err}");
    assert_eq!(out, vec![end_a]);
    // Every line is there (the retried request may have been stored before the cut: a
    // duplicate is allowed, a loss is not).
    let got = Command::new(root().join("scripts/kafka-consume"))
        .args(["--brokers", &tansu.brokers(), "--topic", &topic.name, "--timeout", "10", "--settle", "1"])
        .output()
        .unwrap();
    let got: BTreeSet<String> = text(&got.stdout).lines().map(str::to_string).collect();
    assert_eq!(got, at.into_iter().collect::<BTreeSet<_>>());
}

#[test]
fn an_end_waiting_for_the_broker_keeps_its_message_invisible() {
    use crate::aws::{Fixture, gzip, lines};
    let f = Fixture::new("kwait", false);
    let text_a = lines("kwait", 300);
    f.put("a.gz", gzip(&text_a));
    f.send(&f.s3_event("a.gz"));
    // The broker is down at first, for more than 3x the 2 s visibility timeout.
    let port = free_port();
    let bucket = Tansu::bucket();
    let b = format!("127.0.0.1:{port}");
    let topic = Topic::new("kwait", &b);
    let out = tmp("kwait.ndjson");
    let rival_out = tmp("kwait-rival.ndjson");
    let script = format!(
        "s3s-poll --queue-url {q} --once --visibility-timeout 2 | s3s-cat \
           | s3s-kafka -b {b} -t {t} -X reconnect.backoff.max.ms=500 --drain-timeout 120s | tee {out} | s3s-ack",
        q = f.queue_url,
        t = topic.name,
        out = out.display()
    );
    let pipeline = std::thread::spawn(move || sh(&script));
    // Once the pipeline holds the message, a rival consumer polls the same queue all along: it
    // would get the message if it became visible again.
    let t0 = Instant::now();
    while f.counts() != (0, 1) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the pipeline did not receive the message: {:?}", f.counts());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rival = Command::new(bin("s3s-poll"))
        .args(["--queue-url", &f.queue_url, "--wait-time", "1"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&rival_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(7));
    let before_broker = s3s::clock::now_ms();
    assert!(!pipeline.is_finished(), "the pipeline ended with the broker down");
    let early = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(!early.contains(r#""type":"end""#), "end forwarded before delivery: {early}");
    let tansu = Tansu::start(port, &bucket);
    let (code, _, err) = pipeline.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("s3s-ack: 1 messages deleted, 0 failed"), "{err}");
    let _ = rival.kill();
    let _ = rival.wait();
    let rival_got = std::fs::read_to_string(&rival_out).unwrap();
    assert_eq!(rival_got, "", "the message was handed to another consumer while its end waited");
    assert_eq!(f.total(), 0, "deleted");
    // The end record carries the extended deadline on (later than when the broker came back,
    // so past the poller's 2 s by far).
    let got = std::fs::read_to_string(&out).unwrap();
    let end: Value = serde_json::from_str(got.lines().find(|l| l.contains(r#""type":"end""#)).expect("end record")).unwrap();
    let deadline = end["ack"]["deadline_ms"].as_u64().expect("deadline_ms");
    assert!(deadline > before_broker, "deadline {deadline} not extended past {before_broker}: {end}");
    let want: BTreeSet<String> = text_a.lines().map(str::to_string).collect();
    let got: BTreeSet<String> = text(&consume(&b, &topic.name, 300, "value")).lines().map(str::to_string).collect();
    assert_eq!(got, want);
    drop(tansu);
}
