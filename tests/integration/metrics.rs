//! Metrics, runs log and s3s-status: scrape a running stage, read --metrics-file, check the runs
//! log a small pipeline leaves, concurrent appends and rotation, and what s3s-status makes of it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{bin, root, sh};

/// A fresh, empty state directory for one test.
fn state_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("s3s-test-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn runs(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("runs.log")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// The value of the series `name{tool="TOOL"...}` in a Prometheus exposition.
fn sample(text: &str, name: &str, tool: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("tool=\"{tool}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The live-state record of the one stage running with state directory `dir`.
fn wait_live(dir: &Path, tool: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(entries) = std::fs::read_dir(dir.join("live")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&format!("{tool}-"))
                    && let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(e.path()).unwrap_or_default())
                {
                    return v;
                }
            }
        }
        assert!(Instant::now() < deadline, "no live-state file for {tool} in {}", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lines_in(path: &str) -> u64 {
    let (code, out, err) = sh(&format!("s3s-cat {path} | grep -c '\"type\":\"line\"'"));
    assert_eq!(code, 0, "{err}");
    out.trim().parse().unwrap()
}

#[test]
fn scrape_a_running_filter_and_cat() {
    let dir = state_dir("scrape");
    // s3s-filter on a pipe we keep open: its counters are published when its input runs dry.
    let mut filter = Command::new(bin("s3s-filter"))
        .args(["-e", "GET", "--metrics-addr", "127.0.0.1:0"])
        .env("S3S_STATE_DIR", &dir)
        .env("S3S_PIPELINE", "scrape")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = filter.stdin.take().unwrap();
    let mut stdout = BufReader::new(filter.stdout.take().unwrap());
    for (i, text) in ["GET /a", "POST /b", "GET /c", "PUT /d"].iter().enumerate() {
        writeln!(stdin, r#"{{"type":"line","file":"x","n":{},"line":"{text}"}}"#, i + 1).unwrap();
    }
    writeln!(stdin, "not json").unwrap();
    stdin.flush().unwrap();
    let mut got = String::new();
    for _ in 0..2 {
        stdout.read_line(&mut got).unwrap();
    }
    assert!(got.contains("GET /a") && got.contains("GET /c"), "{got}");
    let live = wait_live(&dir, "s3s-filter");
    assert_eq!(live["pipeline"], "scrape");
    let addr = live["metrics_addr"].as_str().expect("the live state names the bound address").to_string();
    // The counters of what it has processed so far, once its input ran dry.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let resp = http_get(&addr, "/metrics");
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(resp.contains("Content-Type: text/plain; version=0.0.4"), "{resp}");
        if sample(&resp, "s3s_lines_dropped_total", "s3s-filter") == Some(2.0) || Instant::now() > deadline {
            break resp;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(sample(&body, "s3s_lines_kept_total", "s3s-filter"), Some(2.0), "{body}");
    assert_eq!(sample(&body, "s3s_lines_dropped_total", "s3s-filter"), Some(2.0), "{body}");
    assert_eq!(sample(&body, "s3s_invalid_input_lines_total", "s3s-filter"), Some(1.0), "{body}");
    assert!(body.contains("# HELP s3s_lines_kept_total"), "{body}");
    assert!(http_get(&addr, "/nope").starts_with("HTTP/1.1 404"));

    // s3s-status sees it running, with its counters so far.
    let out = Command::new(bin("s3s-status")).args(["--json"]).env("S3S_STATE_DIR", &dir).output().unwrap();
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    let running = st["running"].as_array().unwrap();
    assert_eq!(running.len(), 1, "{st}");
    assert_eq!(running[0]["alive"], true);
    assert_eq!(running[0]["tool"], "s3s-filter");

    drop(stdin);
    let status = filter.wait().unwrap();
    assert_eq!(status.code(), Some(1), "a malformed line makes the exit status 1");
    assert!(!dir.join("live").read_dir().unwrap().any(|_| true), "the live-state file is removed at exit");
    let r = runs(&dir);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["tool"], "s3s-filter");
    assert_eq!(r[0]["exit"], 1);
    assert_eq!(r[0]["outcome"], "failed");
    assert_eq!(r[0]["counters"]["s3s_lines_kept_total"], 2);
    assert_eq!(r[0]["counters"]["s3s_invalid_input_lines_total"], 1);

    // s3s-cat fed a path on stdin: once its end record is out, the object's counters are there.
    let mut cat = Command::new(bin("s3s-cat"))
        .args(["--metrics-addr", "127.0.0.1:0"])
        .current_dir(root())
        .env("S3S_STATE_DIR", &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = cat.stdin.take().unwrap();
    let mut stdout = BufReader::new(cat.stdout.take().unwrap());
    writeln!(stdin, "tests/data/multi.gz").unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    while !line.contains(r#""type":"end""#) {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "s3s-cat ended early");
    }
    let end: Value = serde_json::from_str(&line).unwrap();
    let addr = wait_live(&dir, "s3s-cat")["metrics_addr"].as_str().unwrap().to_string();
    let body = http_get(&addr, "/metrics");
    assert_eq!(sample(&body, "s3s_objects_read_total", "s3s-cat"), Some(1.0), "{body}");
    assert_eq!(sample(&body, "s3s_lines_read_total", "s3s-cat"), end["lines"].as_f64(), "{body}");
    assert_eq!(sample(&body, "s3s_read_bytes_total", "s3s-cat"), end["bytes"].as_f64(), "{body}");
    assert_eq!(sample(&body, "s3s_decompressed_bytes_total", "s3s-cat"), end["decompressed_bytes"].as_f64(), "{body}");
    drop(stdin);
    assert!(cat.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metrics_file_runs_log_and_status_of_a_pipeline() {
    let dir = state_dir("pipeline");
    let d = dir.display();
    let (code, out, err) = sh(&format!(
        "export S3S_STATE_DIR={d} S3S_PIPELINE=cdn-test; \
         s3s-cat tests/data/plain.log tests/data/multi.gz --metrics-file {d}/cat.prom \
         | s3s-filter -e GET --metrics-file {d}/filter.prom | grep -c '\"type\":\"line\"'"
    ));
    assert_eq!(code, 0, "{err}");
    let kept: u64 = out.trim().parse().unwrap();
    let read = lines_in("tests/data/plain.log") + lines_in("tests/data/multi.gz");

    let prom = std::fs::read_to_string(dir.join("cat.prom")).unwrap();
    assert_eq!(sample(&prom, "s3s_objects_read_total", "s3s-cat"), Some(2.0), "{prom}");
    assert_eq!(sample(&prom, "s3s_lines_read_total", "s3s-cat"), Some(read as f64), "{prom}");
    assert_eq!(sample(&prom, "s3s_object_errors_total", "s3s-cat"), Some(0.0), "{prom}");
    assert!(prom.contains("# TYPE s3s_lines_read_total counter"), "{prom}");
    let prom = std::fs::read_to_string(dir.join("filter.prom")).unwrap();
    assert_eq!(sample(&prom, "s3s_lines_kept_total", "s3s-filter"), Some(kept as f64), "{prom}");
    assert_eq!(sample(&prom, "s3s_lines_dropped_total", "s3s-filter"), Some((read - kept) as f64), "{prom}");
    // Written atomically: no temporary file left beside it.
    let leftovers: Vec<_> =
        std::fs::read_dir(&dir).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let r = runs(&dir);
    assert_eq!(r.len(), 2, "{r:?}");
    for rec in &r {
        assert_eq!(rec["pipeline"], "cdn-test");
        assert_eq!(rec["exit"], 0);
        assert_eq!(rec["outcome"], "ok");
        assert!(rec["pid"].as_u64().is_some() && rec["host"].as_str().is_some());
        assert!(rec["start"].as_str().unwrap() <= rec["end"].as_str().unwrap());
    }
    let cat = r.iter().find(|x| x["tool"] == "s3s-cat").unwrap();
    assert_eq!(cat["counters"]["s3s_lines_read_total"], read);
    assert_eq!(cat["counters"]["s3s_objects_read_total"], 2);

    let (code, out, err) = sh(&format!("s3s-status --state-dir {d} --json"));
    assert_eq!(code, 0, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    let p = st["pipelines"].as_array().unwrap();
    assert_eq!(p.len(), 1, "one pipeline run: {st}");
    assert_eq!(p[0]["pipeline"], "cdn-test");
    assert_eq!(p[0]["stages"].as_array().unwrap().len(), 2);
    let t = &p[0]["totals"];
    assert_eq!(t["objects"], 2);
    assert_eq!(t["lines_in"], read);
    assert_eq!(t["lines_out"], kept);
    assert_eq!(t["errors"], 0);
    assert_eq!(t["exit"], 0);

    let (code, out, err) = sh(&format!("s3s-status --state-dir {d} --stages"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("STARTED (UTC)") && out.contains("LINES OUT"), "{out}");
    let row = out.lines().find(|l| l.contains("cdn-test")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("cat|filter"), "{out}");
    assert!(out.contains("  s3s-cat ") && out.contains("  s3s-filter "), "{out}");

    // A second, failing run of the same pipeline: a row of its own, its exit status and stage.
    let (code, _, _) = sh(&format!("S3S_STATE_DIR={d} S3S_PIPELINE=cdn-test s3s-cat tests/data/missing.log > /dev/null"));
    assert_eq!(code, 1);
    let (_, out, _) = sh(&format!("s3s-status --state-dir {d} -n 1"));
    let row = out.lines().find(|l| l.contains("cdn-test")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.ends_with("1 (cat failed)"), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("cdn-test")).count(), 1, "-n 1: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_exit_path_leaves_a_record() {
    let dir = state_dir("exits");
    let d = dir.display();
    let (code, _, err) = sh(&format!(
        "export S3S_STATE_DIR={d}; \
         seq 1 300000 | sed 's/^/GET /' > {d}/big.log; \
         s3s-cat {d}/big.log | head -1 > /dev/null; \
         s3s-filter -e '(' < /dev/null; \
         echo '{{' | s3s-filter -e x; \
         true"
    ));
    assert_eq!(code, 0, "{err}");
    let r = runs(&dir);
    let outcomes: Vec<(&str, &str, u64)> =
        r.iter().map(|x| (x["tool"].as_str().unwrap(), x["outcome"].as_str().unwrap(), x["exit"].as_u64().unwrap())).collect();
    assert_eq!(outcomes, [("s3s-cat", "broken-pipe", 0), ("s3s-filter", "usage", 2), ("s3s-filter", "failed", 1)], "{r:?}");
    assert!(r[1]["error"].as_str().unwrap().contains("invalid regex"), "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_appends_are_whole_lines() {
    let dir = state_dir("concurrent");
    let d = dir.display();
    // 48 stages at once, each appending its record as it exits.
    let (code, _, err) = sh(&format!(
        "export S3S_STATE_DIR={d}; for i in $(seq 1 48); do S3S_PIPELINE=p$i s3s-filter -e x < /dev/null & done; wait"
    ));
    assert_eq!(code, 0, "{err}");
    let r = runs(&dir);
    assert_eq!(r.len(), 48);
    let mut ids: Vec<&str> = r.iter().map(|x| x["pipeline"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 48);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn runs_log_is_rotated_by_size() {
    let dir = state_dir("rotate");
    let d = dir.display();
    // Records are ~400 bytes: a 2000-byte limit rotates every few records, also concurrently.
    let (code, _, err) = sh(&format!(
        "export S3S_STATE_DIR={d} S3S_RUNS_LOG_MAX_BYTES=2000; \
         for j in 1 2 3; do for i in $(seq 1 12); do s3s-filter -e x < /dev/null & done; wait; done"
    ));
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(dir.join("runs.log")).unwrap();
    let old = std::fs::read_to_string(dir.join("runs.log.1")).expect("rotated to runs.log.1");
    for line in log.lines().chain(old.lines()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("torn line ({e}): {line}"));
        assert_eq!(v["tool"], "s3s-filter");
    }
    assert!(old.len() > 2000, "runs.log.1 holds what went over the limit");
    // Rotation happens before an append that finds the file too big: at most a burst of
    // concurrent records beyond the limit.
    assert!(log.len() < 2000 + 13 * 600, "runs.log is {} bytes", log.len());
    // s3s-status reads both parts.
    let (code, out, err) = sh(&format!("s3s-status --state-dir {d} --json -n 1000"));
    assert_eq!(code, 0, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    let n: usize = st["pipelines"].as_array().unwrap().iter().map(|p| p["stages"].as_array().unwrap().len()).sum();
    assert_eq!(n, log.lines().count() + old.lines().count());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn progress_line_only_on_a_terminal() {
    let dir = state_dir("progress");
    let d = dir.display();
    // Not a terminal: nothing on stderr, even when asked.
    let (code, _, err) = sh(&format!("S3S_STATE_DIR={d} s3s-cat --progress on tests/data/plain.log > /dev/null"));
    assert_eq!((code, err.as_str()), (0, ""));
    // A terminal (script(1) gives stderr a pty): the progress line shows while s3s-cat waits.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("script(1) not installed: the terminal half of this test is skipped");
        return;
    }
    let (code, out, err) =
        sh(&format!("S3S_STATE_DIR={d} script -qec \"(echo tests/data/plain.log; sleep 1.5) | s3s-cat > /dev/null\" /dev/null"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("s3s-cat: 1 objects, ") && out.contains("lines/s"), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The whole loop on the local S3/SQS: SQS counters of s3s-poll and s3s-ack, the notification
/// lag histogram, and s3s-status's pipeline totals.
#[test]
fn sqs_counters_of_a_whole_loop() {
    use crate::aws::{Fixture, gzip, lines};
    let f = Fixture::new("metrics", true);
    f.put("cf/a.gz", gzip(&lines("a", 50)));
    f.put("cf/b.gz", gzip(&lines("b", 7)));
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.total() < 3 {
        assert!(Instant::now() < deadline, "3 notifications (2 objects + s3:TestEvent) expected");
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = state_dir("sqs");
    let d = dir.display();
    let (code, _, err) = sh(&format!(
        "export S3S_STATE_DIR={d} S3S_PIPELINE=sqs-metrics; \
         s3s-poll --queue-url {} --once --metrics-file {d}/poll.prom | s3s-cat | s3s-ack",
        f.queue_url
    ));
    assert_eq!(code, 0, "{err}");
    let prom = std::fs::read_to_string(dir.join("poll.prom")).unwrap();
    assert_eq!(sample(&prom, "s3s_sqs_messages_received_total", "s3s-poll"), Some(3.0), "{prom}");
    assert_eq!(sample(&prom, "s3s_objects_announced_total", "s3s-poll"), Some(2.0), "{prom}");
    assert_eq!(sample(&prom, "s3s_notification_lag_seconds_count", "s3s-poll"), Some(2.0), "{prom}");
    assert!(prom.contains("# TYPE s3s_notification_lag_seconds histogram"), "{prom}");
    let r = runs(&dir);
    let ack = r.iter().find(|x| x["tool"] == "s3s-ack").expect("s3s-ack's record");
    assert_eq!(ack["counters"]["s3s_sqs_messages_deleted_total"], 3);
    assert_eq!(ack["counters"]["s3s_sqs_messages_in_flight"], 0);
    let (code, out, err) = sh(&format!("s3s-status --state-dir {d} --json"));
    assert_eq!(code, 0, "{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    let t = &st["pipelines"][0]["totals"];
    assert_eq!((t["messages_received"].as_u64(), t["messages_deleted"].as_u64()), (Some(3), Some(3)), "{st}");
    assert_eq!(t["objects"], 2);
    assert_eq!(t["lines_in"], 57);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The count and sum of `s3s_delivery_latency_seconds` and the published count in a publisher's
/// --metrics-file.
fn latency_of(prom: &Path, tool: &str) -> (f64, f64, f64) {
    let text = std::fs::read_to_string(prom).unwrap_or_else(|e| panic!("{}: {e}", prom.display()));
    let get = |name: &str| sample(&text, name, tool).unwrap_or_else(|| panic!("no {name} for {tool} in:\n{text}"));
    (get("s3s_delivery_latency_seconds_count"), get("s3s_delivery_latency_seconds_sum"), get("s3s_records_published_total"))
}

#[test]
fn publishers_record_delivery_latency() {
    let d = state_dir("latency");
    let mut input = String::new();
    for n in 1..=500 {
        input.push_str(&format!("{{\"type\":\"line\",\"file\":\"lat.log\",\"n\":{n},\"line\":\"GET /{n}\"}}\n"));
    }
    input.push_str("{\"type\":\"end\",\"file\":\"lat.log\",\"lines\":500}\n");
    std::fs::write(d.join("in.ndjson"), &input).unwrap();
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 100_000_000;
    let name = format!("s3s-test-latency-{}-{ms}", std::process::id());

    // s3s-es into the local Elasticsearch-compatible server.
    let es = std::env::var("S3S_ES_URL").expect("S3S_ES_URL: run scripts/test (or scripts/services start; eval env)");
    let (code, out, err) =
        sh(&format!("S3S_STATE_DIR={d} s3s-es --url {es} -i {name} --metrics-file {d}/es.prom < {d}/in.ndjson", d = d.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "{\"type\":\"end\",\"file\":\"lat.log\",\"lines\":500}");
    let (count, sum, published) = latency_of(&d.join("es.prom"), "s3s-es");
    assert_eq!(published, 500.0);
    assert!((1.0..=500.0).contains(&count), "one observation per group of lines handed over, not more: {count}");
    assert!(sum > 0.0, "{sum}");
    let _ = sh(&format!("curl -s -X DELETE {es}/{name} > /dev/null"));

    // s3s-kafka into the local tansu broker.
    #[cfg(feature = "kafka")]
    {
        let brokers = std::env::var("S3S_KAFKA_BROKERS").expect("S3S_KAFKA_BROKERS: run scripts/test");
        let (code, out, err) = sh(&format!(
            "S3S_STATE_DIR={d} s3s-kafka -b {brokers} -t {name} --metrics-file {d}/kafka.prom < {d}/in.ndjson",
            d = d.display()
        ));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "{\"type\":\"end\",\"file\":\"lat.log\",\"lines\":500}");
        let (count, sum, published) = latency_of(&d.join("kafka.prom"), "s3s-kafka");
        assert_eq!(published, 500.0);
        assert!((1.0..=500.0).contains(&count), "one observation per group of lines handed over, not more: {count}");
        assert!(sum > 0.0, "{sum}");
        // The runs log has it too (s3s-status reads it from there).
        let run = runs(&d).into_iter().find(|r| r["tool"] == "s3s-kafka").expect("a runs-log line of s3s-kafka");
        assert_eq!(run["counters"]["s3s_delivery_latency_seconds"]["count"].as_f64(), Some(count), "{run}");
        if let Ok(tansu) = std::env::var("S3S_TANSU") {
            let _ = sh(&format!("{tansu} topic delete --broker tcp://{brokers} {name} >/dev/null 2>&1"));
        }
    }

    // s3s-syslog into rsyslog and s3s-gelf into syslog-ng, over TCP (the same driver: a line
    // is confirmed once written and flushed).
    let rsyslog = crate::syslog::Receiver::rsyslog("latency");
    let syslog_ng = crate::syslog::Receiver::syslog_ng("latency");
    let runs = [
        ("s3s-syslog", format!("tcp://127.0.0.1:{}", rsyslog.ports[1]), &rsyslog, "out.jsonl"),
        ("s3s-gelf", format!("tcp://127.0.0.1:{}", syslog_ng.ports[4]), &syslog_ng, "gelf.jsonl"),
    ];
    for (tool, server, receiver, file) in runs {
        let (code, out, err) = sh(&format!(
            "S3S_STATE_DIR={d} {tool} --server {server} --metrics-file {d}/{tool}.prom < {d}/in.ndjson",
            d = d.display()
        ));
        assert_eq!(code, 0, "{tool}: {err}");
        assert_eq!(out.trim(), "{\"type\":\"end\",\"file\":\"lat.log\",\"lines\":500}", "{tool}");
        assert_eq!(receiver.wait_for(file, 500, Duration::from_secs(20)).len(), 500, "{tool}");
        let (count, sum, published) = latency_of(&d.join(format!("{tool}.prom")), tool);
        assert_eq!(published, 500.0, "{tool}");
        assert!((1.0..=500.0).contains(&count), "{tool}: one observation per group of lines handed over, not more: {count}");
        assert!(sum > 0.0, "{tool}: {sum}");
    }
}
