//! s3s-es against the local Elasticsearch-compatible server (noida-db, started by
//! `scripts/services`; its URL in S3S_ES_URL): indexing, counts and documents, dead letters on a
//! mapping conflict, 429/5xx injected by a small proxy this test controls, the whole loop with
//! s3s-poll and s3s-ack on moto, the dry-run golden files (no server needed), and a cross-check
//! on the OpenSearch flavour (osmem-server, S3S_OPENSEARCH_URL).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::aws::{Fixture, gzip, lines};
use crate::support::sh;

#[test]
fn golden() {
    // Dry runs, malformed input and usage errors: none of them needs a server.
    trycmd::TestCases::new().register_bin("s3s-es", trycmd::cargo::cargo_bin!("s3s-es")).case("tests/cmd/es/*.toml");
}

/// The server's URL; panics with instructions when it is not set (never a silent pass).
fn es_url() -> String {
    match std::env::var("S3S_ES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "S3S_ES_URL is not set: these tests need the local Elasticsearch-compatible server. Run \
             `scripts/test`, or `scripts/services install && scripts/services start && eval \"$(scripts/services env)\"` first"
        ),
    }
}

/// A request to the server with curl; the response as JSON.
fn es(method: &str, path: &str, body: Option<&Value>) -> Value {
    es_at(&es_url(), method, path, body)
}

fn es_at(base: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let url = format!("{base}{path}");
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "-X", method, "-H", "Content-Type: application/json", &url]);
    if let Some(b) = body {
        cmd.args(["--data-binary", &b.to_string()]);
    }
    let out = cmd.output().expect("run curl");
    assert!(out.status.success(), "curl {method} {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{method} {url}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn count(index: &str) -> u64 {
    count_at(&es_url(), index)
}

fn count_at(base: &str, index: &str) -> u64 {
    es_at(base, "POST", &format!("/{index}/_refresh"), None);
    let v = es_at(base, "GET", &format!("/{index}/_count"), None);
    v["count"].as_u64().unwrap_or_else(|| panic!("_count of {index}: {v}"))
}

/// The documents matching a term query.
fn find(index: &str, field: &str, value: Value) -> Vec<Value> {
    let v = es("POST", &format!("/{index}/_search"), Some(&json!({"query": {"term": {field: value}}, "size": 100})));
    v["hits"]["hits"].as_array().unwrap_or_else(|| panic!("_search {index}: {v}")).clone()
}

/// An index name of this test's own (lowercase, unique per run).
fn unique(name: &str) -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 100_000_000;
    format!("s3s-test-{name}-{}-{ms}", std::process::id())
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("s3s-es-{name}-{}", std::process::id()))
}

/// Records for one object: an object record, `n` line records, an end record.
fn object(bucket: &str, key: &str, n: usize, extra: impl Fn(usize) -> Value) -> String {
    let mut s = json!({"type": "object", "bucket": bucket, "key": key}).to_string() + "\n";
    for i in 1..=n {
        let mut rec =
            json!({"type": "line", "bucket": bucket, "key": key, "n": i, "line": format!("{key}\tline {i}\t\"quoted\"\t\u{e9}")});
        if let Value::Object(m) = extra(i) {
            rec.as_object_mut().unwrap().extend(m);
        }
        s += &(rec.to_string() + "\n");
    }
    s + &json!({"type": "end", "bucket": bucket, "key": key, "lines": n, "ack": {"message_id": key}}).to_string() + "\n"
}

fn write(name: &str, text: &str) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The `type` of each record on stdout.
fn types(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("bad record {l:?}: {e}"))["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn indexes_a_stream_and_forwards_ends_after_it() {
    let url = es_url();
    let index = unique("stream");
    let none = |_| Value::Null;
    let input = object("logs", "cf/a.gz", 2500, none)
        + &object(
            "logs",
            "cf/b.gz",
            3,
            |i| json!({"event_time": format!("2026-01-0{i}T10:00:00Z"), "etag": "\"e1\"", "status": 200 + i}),
        )
        + "{\"type\":\"message\",\"reason\":\"s3:TestEvent\"}\n";
    let file = write("stream.ndjson", &input);
    let run = || sh(&format!("s3s-es --url {url} -i '{index}-%Y.%m' --id-from-source --batch-docs 700 < {}", file.display()));
    let (code, out, err) = run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(types(&out), ["object", "end", "object", "end", "message"], "{out}");
    assert_eq!(count(&format!("{index}-*")), 2503);

    // A document as indexed: message, source, event time as @timestamp and index date, extras.
    let hits = find(&format!("{index}-*"), "s3.key.keyword", json!("cf/b.gz"));
    assert_eq!(hits.len(), 3, "{hits:?}");
    let two = hits.iter().find(|h| h["_source"]["s3"]["line"] == 2).expect("line 2");
    assert_eq!(two["_index"], format!("{index}-2026.01"));
    assert_eq!(
        two["_source"],
        json!({"@timestamp": "2026-01-02T10:00:00Z", "message": "cf/b.gz\tline 2\t\"quoted\"\t\u{e9}",
               "s3": {"bucket": "logs", "key": "cf/b.gz", "line": 2, "etag": "\"e1\""}, "status": 202})
    );
    // Without an event time: now, in this month's index.
    let hits = find(&format!("{index}-*"), "s3.line", json!(2500));
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(hits[0]["_source"]["@timestamp"].as_str().unwrap().ends_with('Z'), "{hits:?}");

    // Redelivered: the same _ids, so no duplicates.
    let (code, _, err) = run();
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(&format!("{index}-*")), 2503);
}

#[test]
fn gzip_bodies_and_create_op_type() {
    let url = es_url();
    let index = unique("gzip");
    let file = write("gzip.ndjson", &object("b", "k", 50, |_| Value::Null));
    let cmd = format!("s3s-es --url {url} -i {index} --gzip --op-type create --id-from-source < {}", file.display());
    let (code, out, err) = sh(&cmd);
    assert_eq!(code, 0, "{err}");
    assert_eq!(types(&out), ["object", "end"]);
    assert_eq!(count(&index), 50);
    // Again: every create answers 409 (already there), which counts as indexed.
    let (code, out, err) = sh(&cmd);
    assert_eq!(code, 0, "{err}");
    assert_eq!(types(&out), ["object", "end"]);
    assert_eq!(count(&index), 50);
}

#[test]
fn mapping_conflicts_go_to_the_dead_letter_file() {
    let url = es_url();
    let index = unique("conflict");
    // `status` becomes a long with the first document; strings that are no number conflict.
    let input = object("b", "good", 10, |i| json!({"status": i}))
        + &object("b", "bad", 10, |i| json!({"status": if i % 4 == 0 { json!(format!("oops{i}")) } else { json!(i) }}));
    let file = write("conflict.ndjson", &input);

    // Without --dead-letter: the bad object's end is withheld, exit status 1.
    let (code, out, err) = sh(&format!("s3s-es --url {url} -i {index} --batch-docs 1 < {}", file.display()));
    assert_eq!(code, 1, "{err}");
    assert_eq!(types(&out), ["object", "end", "object"], "{out}");
    assert!(err.contains("s3://b/bad: 2 lines not delivered (HTTP 400: "), "{err}");
    assert!(err.contains("failed to parse field [status]"), "{err}");

    // With it: both ends forwarded, each rejected document in the file with its reason.
    let dead = tmp("dead.ndjson");
    let _ = std::fs::remove_file(&dead);
    let (code, out, err) = sh(&format!("s3s-es --url {url} -i {index} --dead-letter {} < {}", dead.display(), file.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(types(&out), ["object", "end", "object", "end"], "{out}");
    let text = std::fs::read_to_string(&dead).unwrap();
    let entries: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(entries.len(), 2, "{text}");
    for (e, n) in entries.iter().zip([4, 8]) {
        assert_eq!(e["status"], 400, "{e}");
        assert!(e["reason"].as_str().unwrap().contains("failed to parse field [status]"), "{e}");
        assert_eq!(e["action"]["index"]["_index"], index.as_str(), "{e}");
        assert_eq!(e["document"]["s3"], json!({"bucket": "b", "key": "bad", "line": n}), "{e}");
        assert_eq!(e["document"]["status"], format!("oops{n}"), "{e}");
    }
    assert_eq!(count(&index), 2 * (20 - 2));
}

// ---------------------------------------------------------------------------------------------
// Faults from a proxy

/// What the proxy does with the next request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answer with this status (and an ES-style error body), without forwarding.
    Status(u16),
    /// Answer 200 with every item rejected with this status, without forwarding.
    Items(u16),
}

/// A tiny HTTP/1.1 proxy in front of the server: each request either gets the next scripted
/// fault or is forwarded (with `Connection: close`, so every request is one exchange).
struct Proxy {
    addr: SocketAddr,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    requests: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(faults: &[Fault]) -> Proxy {
        let upstream: SocketAddr =
            es_url().trim_start_matches("http://").trim_end_matches('/').parse().expect("S3S_ES_URL as http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Mutex::new(faults.iter().copied().collect::<VecDeque<_>>()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (f, r) = (faults.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (f, r) = (f.clone(), r.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &f, &r);
                });
            }
        });
        Proxy { addr, faults, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve(conn: TcpStream, upstream: SocketAddr, faults: &Mutex<VecDeque<Fault>>, requests: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    // The request head, then its body (Content-Length: hyper sends bodies of known size).
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l)? == 0 {
            return Ok(());
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if l == "\r\n" {
            break;
        }
        if !l.to_ascii_lowercase().starts_with("connection:") {
            head.extend_from_slice(l.as_bytes());
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    requests.fetch_add(1, Ordering::SeqCst);
    let fault = faults.lock().unwrap().pop_front();
    let answer = |status: u16, text: String| {
        format!(
            "HTTP/1.1 {status} Injected\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        )
    };
    match fault {
        Some(Fault::Status(s)) => {
            let err = json!({"error": {"type": "injected", "reason": format!("injected {s}")}, "status": s});
            conn.write_all(answer(s, err.to_string()).as_bytes())
        }
        Some(Fault::Items(s)) => {
            // Gzip'd bodies are not used with the proxy: the body is NDJSON, two lines a document.
            let docs = body.iter().filter(|&&b| b == b'\n').count() / 2;
            let item =
                json!({"index": {"status": s, "error": {"type": "es_rejected_execution_exception", "reason": "injected"}}});
            let resp = json!({"took": 1, "errors": true, "items": vec![item; docs]});
            conn.write_all(answer(200, resp.to_string()).as_bytes())
        }
        None => {
            let mut up = TcpStream::connect(upstream)?;
            up.write_all(&head)?;
            up.write_all(b"Connection: close\r\n\r\n")?;
            up.write_all(&body)?;
            let mut resp = Vec::new();
            up.read_to_end(&mut resp)?;
            conn.write_all(&resp)
        }
    }
}

#[test]
fn retries_429_5xx_and_rejected_items_then_indexes() {
    let index = unique("retry");
    let proxy = Proxy::start(&[Fault::Status(429), Fault::Status(503), Fault::Items(429), Fault::Status(502), Fault::Items(503)]);
    let file = write("retry.ndjson", &object("b", "k", 300, |_| Value::Null));
    let t0 = Instant::now();
    let (code, out, err) = sh(&format!(
        "s3s-es --url {} -i {index} --backoff 20ms --concurrency 1 --batch-docs 1000 < {}",
        proxy.url(),
        file.display()
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(types(&out), ["object", "end"]);
    assert_eq!(count(&index), 300);
    assert_eq!(proxy.requests.load(Ordering::SeqCst), 6, "5 faults, then one that went through");
    assert!(proxy.faults.lock().unwrap().is_empty());
    for what in ["HTTP 429 Too Many Requests: injected: injected 429", "HTTP 503", "HTTP 502", "HTTP 429 for some documents"] {
        assert!(err.contains(what), "{what} in {err}");
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn gives_up_after_max_retries_and_withholds_the_end() {
    let index = unique("giveup");
    let proxy = Proxy::start(&[Fault::Status(503); 10]);
    let file = write("giveup.ndjson", &(object("b", "k", 20, |_| Value::Null) + "{\"type\":\"message\"}\n"));
    let (code, out, err) =
        sh(&format!("s3s-es --url {} -i {index} --backoff 10ms --max-retries 2 < {}", proxy.url(), file.display()));
    assert_eq!(code, 1, "{err}");
    assert_eq!(types(&out), ["object", "message"], "the end is withheld, the rest goes on: {out}");
    assert!(err.contains("(gave up after 3 attempts)"), "{err}");
    assert!(err.contains("s3://b/k: 20 lines not delivered"), "{err}");
    assert_eq!(proxy.requests.load(Ordering::SeqCst), 3);
}

#[test]
fn a_dead_node_is_skipped_on_retry() {
    let url = es_url();
    let index = unique("nodes");
    // Nothing listens on port 1: the first request fails to connect, its retry goes to the next node.
    let file = write("nodes.ndjson", &object("b", "k", 10, |_| Value::Null));
    let (code, out, err) =
        sh(&format!("s3s-es --url http://127.0.0.1:1 --url {url} -i {index} --backoff 10ms < {}", file.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(types(&out), ["object", "end"]);
    assert!(err.contains("http://127.0.0.1:1/_bulk: "), "{err}");
    assert_eq!(count(&index), 10);
}

#[test]
fn credentials_and_tls_settings_are_checked_before_anything_starts() {
    let url = es_url();
    let (code, _, err) = sh(&format!("s3s-es --url {url} -i x --user elastic < /dev/null"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--user needs a password: set S3S_ES_PASSWORD or give --password-file"), "{err}");
    let (code, _, err) = sh("s3s-es --url http://elastic:secret@127.0.0.1:9 -i x < /dev/null");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no credentials in URLs"), "{err}");
    let (code, _, err) = sh(&format!("s3s-es --url {url} -i x --ca-cert /dev/null < /dev/null"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--ca-cert /dev/null: no certificate in it"), "{err}");
    // Basic auth with a password from the environment: the local server accepts any.
    let index = unique("auth");
    let file = write("auth.ndjson", &object("b", "k", 3, |_| Value::Null));
    let (code, _, err) = sh(&format!("S3S_ES_PASSWORD=pw s3s-es --url {url} -i {index} --user u < {}", file.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(count(&index), 3);
}

#[test]
fn whole_loop_with_poll_and_ack() {
    let url = es_url();
    let index = unique("loop");
    let f = Fixture::new("es-loop", true);
    let a = lines("a", 400);
    let b = lines("b", 7);
    f.put("cf/E2ABC.2026-11-28-17.a.gz", gzip(&a));
    f.put("cf/E2ABC.2026-11-28-17.b.gz", gzip(&b));
    let t0 = Instant::now();
    while f.total() != 3 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, err) = sh(&format!(
        "s3s-poll --queue-url {} --once | s3s-cat | s3s-es --url {url} -i {index} --id-from-source | s3s-ack",
        f.queue_url
    ));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("s3s-ack: 3 messages deleted, 0 failed"), "{err}");
    assert_eq!(count(&index), 407);
    let hits = find(&index, "s3.line", json!(7));
    assert_eq!(hits.len(), 2, "{hits:?}");
    for h in &hits {
        assert_eq!(h["_source"]["s3"]["bucket"], f.bucket.as_str());
        assert!(h["_source"]["message"].as_str().unwrap().contains("\t7\tGET\t/p/7\t"), "{h}");
    }
    let t0 = Instant::now();
    while f.total() != 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.total(), 0, "queue must be empty");
}

#[test]
fn server_down_deletes_nothing() {
    let index = unique("down");
    let f = Fixture::new("es-down", true);
    f.put("cf/a.gz", gzip(&lines("a", 5)));
    let t0 = Instant::now();
    while f.total() != 2 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, err) = sh(&format!(
        "s3s-poll --queue-url {} --once --visibility-timeout 2 | s3s-cat | s3s-es --url http://127.0.0.1:1 -i {index} --backoff 10ms --max-retries 1 | s3s-ack",
        f.queue_url
    ));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1 line") || err.contains("5 lines not delivered"), "{err}");
    assert!(err.contains("s3s-ack: 1 message"), "only the s3:TestEvent: {err}");
    let t0 = Instant::now();
    while f.total() != 1 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.total(), 1, "the object's message stays in the queue");
}

#[test]
fn opensearch_cross_check() {
    let url = match std::env::var("S3S_OPENSEARCH_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "S3S_OPENSEARCH_URL is not set: this test needs the local OpenSearch-compatible server. Run \
             `scripts/test`, or `scripts/services start opensearch && eval \"$(scripts/services env)\"` first"
        ),
    };
    let index = unique("opensearch");
    let input = object("b", "k", 200, |i| json!({"status": if i == 100 { json!("oops") } else { json!(i) }}));
    let file = write("opensearch.ndjson", &input);
    let dead = tmp("opensearch-dead.ndjson");
    let _ = std::fs::remove_file(&dead);
    let (code, out, err) = sh(&format!(
        "s3s-es --url {url} -i '{index}-%Y' --gzip --batch-docs 64 --dead-letter {} < {}",
        dead.display(),
        file.display()
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(types(&out), ["object", "end"]);
    let year = &es_at(&url, "GET", &format!("/{index}-*/_search?size=1"), None)["hits"]["hits"][0]["_index"];
    assert!(year.as_str().is_some_and(|i| i.starts_with(&format!("{index}-20"))), "{year}");
    assert_eq!(count_at(&url, &format!("{index}-*")), 199);
    let text = std::fs::read_to_string(&dead).unwrap();
    let e: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(e["document"]["s3"]["line"], 100, "{e}");
    assert!(e["reason"].as_str().unwrap().contains("[status]"), "{e}");
}

#[test]
fn closed_stdout_ends_quietly() {
    let url = es_url();
    let index = unique("pipe");
    let file = write("pipe.ndjson", &(object("b", "k1", 500, |_| Value::Null) + &object("b", "k2", 500, |_| Value::Null)));
    let (code, out, err) = sh(&format!(
        "s3s-es --url {url} -i {index} --batch-docs 100 < {} | head -n 1; echo \"status=${{PIPESTATUS[0]}}\"",
        file.display()
    ));
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("status=0\n"), "{out}");
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn sigterm_drains_what_was_read_and_forwards_its_end() {
    let url = es_url();
    let index = unique("sigterm");
    let file = write("sigterm.ndjson", &object("b", "k", 300, |_| Value::Null));
    // Input stays open (sleep): the end record is read, then SIGTERM asks for a drain.
    let t0 = Instant::now();
    let (code, out, err) = sh(&format!(
        "fifo={fifo}; rm -f $fifo; mkfifo $fifo; (cat {}; sleep 20) >$fifo 2>/dev/null & \
         s3s-es --url {url} -i {index} --flush-interval 30s <$fifo & pid=$!; \
         sleep 1.5; kill -TERM $pid; wait $pid; echo \"status=$?\"; rm -f $fifo",
        file.display(),
        fifo = tmp("sigterm.fifo").display()
    ));
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("status=0\n"), "{out} {err}");
    assert_eq!(types(out.trim_end().rsplit_once('\n').map_or("", |(a, _)| a)), ["object", "end"], "{out}");
    assert!(t0.elapsed() < Duration::from_secs(15), "the drain does not wait for the input");
    assert_eq!(count(&index), 300);
}

/// Issue 14 through the whole loop: CloudFront objects announced on SQS, parsed by s3s-parse,
/// filtered on a parsed field, indexed: `sc-status` is a number in the index (a range query
/// finds them), `@timestamp` is the line's own date and time, URL-encoded agents are decoded.
#[test]
fn parsed_fields_through_the_whole_loop() {
    let url = es_url();
    let index = unique("parsed");
    let f = Fixture::new("es-parsed", true);
    let header = "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent)\n";
    let mut want = 0u64;
    for o in 0..3usize {
        let mut text = header.to_string();
        for i in 0..50usize {
            let status = [200, 304, 404, 500, 503][(i + o) % 5];
            if status >= 500 {
                want += 1;
            }
            text.push_str(&format!(
                "2026-11-{:02}\t17:{:02}:{:02}\tIAD89-C1\t{}\t192.0.2.{i}\tGET\td111.cloudfront.net\t/o{o}/p{i}\t{status}\t-\tMozilla/5.0%20(X11)\n",
                20 + o,
                i % 60,
                (i * 7) % 60,
                100 + i
            ));
        }
        f.put(&format!("cf/E2ABC.2026-11-{:02}-17.o{o}.gz", 20 + o), gzip(&text));
    }
    let t0 = Instant::now();
    while f.total() != 3 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, err) = sh(&format!(
        "s3s-poll --queue-url {} --once | s3s-cat | s3s-parse | s3s-filter --where 'sc-status>=500' | s3s-es --url {url} -i {index} | s3s-ack",
        f.queue_url
    ));
    assert_eq!(code, 0, "{err}");
    // 3 object messages and the bucket's s3:TestEvent, when it is still queued.
    assert!(err.contains(" messages deleted, 0 failed, 0 dry-run, 0 incomplete"), "{err}");
    assert_eq!(count(&index), want, "{err}");
    // Numbers in the index: a range query on sc-status finds exactly the kept documents.
    let v = es(
        "POST",
        &format!("/{index}/_search"),
        Some(&json!({"query": {"range": {"sc-status": {"gte": 500}}}, "size": 200, "track_total_hits": true})),
    );
    let hits = v["hits"]["hits"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(hits.len() as u64, want, "{v}");
    for h in hits {
        let s = &h["_source"];
        assert!(s["sc-status"].as_u64().is_some_and(|n| n >= 500), "{h}");
        assert!(s["sc-bytes"].is_u64(), "{h}");
        let ts = format!("{}T{}Z", s["date"].as_str().unwrap(), s["time"].as_str().unwrap());
        assert_eq!(s["@timestamp"].as_str(), Some(ts.as_str()), "{h}");
        assert_eq!(s["cs(User-Agent)"], "Mozilla/5.0 (X11)", "{h}");
    }
    let t0 = Instant::now();
    while f.total() != 0 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(f.total(), 0, "queue must be empty");
}
