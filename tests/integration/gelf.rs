//! `s3s-gelf` against real receivers: npm graygelf's UDP server (reassembles chunks, inflates
//! gzip and zlib) and syslog-ng's NUL-framed TCP input (each frame parsed as JSON), both
//! started by the test from `scripts/receivers/`. Each test compares what arrived with what
//! was sent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::syslog::{Receiver, ends, restart_mid_stream, run};

/// `n` line records over two objects, sizes from a few bytes to ~`max` bytes of poorly
/// compressible text (so that compressed messages still need chunks); every third with an
/// event time, every fifth with parsed fields.
fn input(n: usize, tag: &str, max: usize) -> (String, Vec<Value>) {
    let mut s = String::new();
    let mut sent = Vec::new();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for obj in 0..2 {
        let key = format!("gelf/{tag}/{obj}.gz");
        for i in 0..n / 2 {
            let k = obj * (n / 2) + i;
            let len = if k.is_multiple_of(10) { max } else { 20 + (k * 37) % 400 };
            let mut line = format!("G{k} {tag}\t\"q\" é ");
            while line.len() < len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                line.push_str(&format!("{:x}", x));
            }
            let mut rec = json!({"type":"line","bucket":"cdn-logs","key":key,"n":i + 1,"line":line});
            if k.is_multiple_of(3) {
                rec["event_time"] = json!("2026-11-28T17:00:00.250Z");
            }
            if k.is_multiple_of(5) {
                rec["fields"] = json!({"status": 503, "path": "/a b", "id": "x1"});
            }
            s.push_str(&rec.to_string());
            s.push('\n');
            sent.push(rec);
        }
        s.push_str(&json!({"type":"end","bucket":"cdn-logs","key":key}).to_string());
        s.push('\n');
    }
    (s, sent)
}

/// Every sent line arrived once, as a GELF 1.1 message with its origin and fields.
fn compare(what: &str, got: &[Value], sent: &[Value]) {
    let mut by_msg: BTreeMap<&str, &Value> = BTreeMap::new();
    for g in got {
        let m = g["short_message"].as_str().unwrap_or_else(|| panic!("{what}: no short_message: {g}"));
        assert!(by_msg.insert(m, g).is_none(), "{what}: duplicate {m:?}");
    }
    let mut missing = 0;
    for s in sent {
        let line = s["line"].as_str().unwrap();
        let Some(g) = by_msg.get(line) else {
            missing += 1;
            continue;
        };
        let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
        assert_eq!(g["version"], "1.1", "{what}: {g}");
        assert_eq!(g["host"], "edge-9", "{what}: {g}");
        assert_eq!(num(&g["level"]), Some(6.0), "{what}: {g}");
        assert_eq!(g["_bucket"], "cdn-logs", "{what}: {g}");
        assert_eq!(g["_key"], s["key"], "{what}: {g}");
        assert_eq!(num(&g["_line"]), s["n"].as_f64(), "{what}: {g}");
        assert_eq!(g["_source"], "test", "{what}: {g}");
        let ts = num(&g["timestamp"]).unwrap_or_else(|| panic!("{what}: timestamp {g}"));
        if s.get("event_time").is_some() {
            assert!((ts - 1_795_885_200.25).abs() < 0.001, "{what}: event time -> {ts}: {g}");
        } else {
            assert!(ts > 1_700_000_000.0, "{what}: {g}");
        }
        if s.get("fields").is_some() {
            assert_eq!(num(&g["_status"]), Some(503.0), "{what}: {g}");
            assert_eq!(g["_path"], "/a b", "{what}: {g}");
            assert_eq!(g["_id_"], "x1", "{what}: {g}");
        }
    }
    assert_eq!(missing, 0, "{what}: {missing} of {} lines missing ({} received)", sent.len(), got.len());
    assert_eq!(got.len(), sent.len(), "{what}: messages that were never sent arrived");
}

#[test]
fn udp_chunked_gzip_zlib_and_plain_via_graygelf() {
    let r = Receiver::gelf_udp("udp");
    let server = format!("udp://127.0.0.1:{}", r.ports[0]);
    let mut total = 0;
    for (compress, chunk) in [("gzip", "1420"), ("zlib", "600"), ("none", "1420")] {
        let (inp, sent) = input(400, compress, 20_000);
        let out = run(
            "s3s-gelf",
            &[
                "--server",
                &server,
                "--compress",
                compress,
                "--chunk-size",
                chunk,
                "--host",
                "edge-9",
                "--field",
                "source=test",
                "--max-rate",
                "500",
            ],
            &inp,
        );
        assert!(out.status.success(), "{compress}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(ends(&out).len(), 2);
        total += sent.len();
        let got = r.wait_for("gelf.jsonl", total, Duration::from_secs(20));
        let got: Vec<Value> = got
            .into_iter()
            .filter(|g| g["short_message"].as_str().is_some_and(|m| m.contains(&format!(" {compress}\t"))))
            .collect();
        compare(&format!("graygelf udp {compress}"), &got, &sent);
    }
}

#[test]
fn udp_message_over_128_chunks_is_dead_lettered_not_sent_broken() {
    let r = Receiver::gelf_udp("toobig");
    let server = format!("udp://127.0.0.1:{}", r.ports[0]);
    let big = "z".repeat(40_000);
    let inp = format!(
        "{}\n{}\n{}\n",
        json!({"type":"line","bucket":"b","key":"k","n":1,"line":big}),
        json!({"type":"line","bucket":"b","key":"k","n":2,"line":"small"}),
        json!({"type":"end","bucket":"b","key":"k"})
    );
    // 40 kB plain in 200-byte datagrams: 214 chunks > 128.
    let args = ["--server", server.as_str(), "--compress", "none", "--chunk-size", "200"];
    let out = run("s3s-gelf", &args, &inp);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("would need 214 UDP chunks (at most 128)"), "{stderr}");
    assert!(ends(&out).is_empty(), "end withheld: {stderr}");
    let dl = r.dir.join("dead.ndjson");
    let dls = dl.display().to_string();
    let mut with_dl = args.to_vec();
    with_dl.extend(["--dead-letter", &dls]);
    let out = run("s3s-gelf", &with_dl, &inp);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ends(&out).len(), 1);
    let dead: Value = serde_json::from_str(std::fs::read_to_string(&dl).unwrap().trim()).unwrap();
    assert_eq!(dead["short_message"].as_str().map(str::len), Some(40_000));
    let got = r.wait_for("gelf.jsonl", 2, Duration::from_secs(5));
    assert_eq!(got.len(), 2, "only the small line, twice: {got:?}");
    assert!(got.iter().all(|g| g["short_message"] == "small"));
}

#[test]
fn tcp_nul_framed_via_syslog_ng() {
    let r = Receiver::syslog_ng("gelftcp");
    let server = format!("tcp://127.0.0.1:{}", r.ports[4]);
    let (inp, sent) = input(3000, "tcp", 30_000);
    let out = run("s3s-gelf", &["--server", &server, "--host", "edge-9", "--field", "source=test"], &inp);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ends(&out).len(), 2);
    let got = r.wait_for("gelf.jsonl", sent.len(), Duration::from_secs(20));
    assert!(r.records("bad.jsonl").is_empty(), "frames that were not JSON: {:?}", r.records("bad.jsonl"));
    compare("syslog-ng gelf tcp", &got, &sent);
}

#[test]
fn compression_over_tcp_is_a_usage_error() {
    let out = run("s3s-gelf", &["--server", "tcp://127.0.0.1:1", "--compress", "gzip"], "");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The GELF receiver (syslog-ng, NUL-framed over TCP, then over TLS) is stopped in the middle
/// of 200k lines and started again: every line arrives (duplicates allowed: the resend window),
/// both end records are forwarded, and the retries are counted.
#[test]
fn tcp_and_tls_receiver_restarted_mid_stream_loses_nothing() {
    let mut r = Receiver::syslog_ng("gelfrestart");
    let ca = r.dir.join("ca.pem").display().to_string();
    let n = 200_000;
    let mut total = 0;
    for (scheme, port) in [("tcp", r.ports[4]), ("tls", r.ports[7])] {
        let (inp, sent) = input(n, &format!("restart-{scheme}"), 300);
        let server = format!("{scheme}://localhost:{port}");
        let retries = restart_mid_stream(
            &mut r,
            "gelf.jsonl",
            "s3s-gelf",
            &["--server", &server, "--tls-ca", &ca, "--host", "edge-9"],
            &inp,
            n,
        );
        total += n;
        let tag = format!(" restart-{scheme}\t");
        let want: BTreeSet<&str> = sent.iter().map(|s| s["line"].as_str().unwrap()).collect();
        let got = r.wait_until("gelf.jsonl", total, Duration::from_secs(60), |got| {
            let seen: BTreeSet<&str> = got.iter().filter_map(|g| g["short_message"].as_str()).collect();
            want.iter().all(|l| seen.contains(l))
        });
        assert!(r.records("bad.jsonl").is_empty(), "{scheme}: frames that were not JSON: {:?}", r.records("bad.jsonl"));
        let got: Vec<&str> = got.iter().filter_map(|g| g["short_message"].as_str()).filter(|m| m.contains(&tag)).collect();
        let distinct: BTreeSet<&str> = got.iter().copied().collect();
        let missing: Vec<_> = want.difference(&distinct).take(3).collect();
        assert!(
            missing.is_empty(),
            "gelf {scheme}: {} of {n} lines missing, e.g. {missing:?}",
            want.difference(&distinct).count()
        );
        assert!(distinct.is_subset(&want), "gelf {scheme}: messages that were never sent arrived");
        eprintln!(
            "gelf {scheme} restart: {} messages for {n} lines ({} duplicates), {} retries",
            got.len(),
            got.len() - distinct.len(),
            retries
        );
    }
}
