//! Hostile input and hostile timing (issue 12): decompression bombs, huge lines, signals in the
//! middle of a record, and the stage's memory while it copes. Each test is a finding of the
//! probe that must stay fixed.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{bin, root, sh};

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("s3s-reliability-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `cmd` to its end; (status, stdout, stderr, peak RSS in MiB) from wait4(2).
// The child is reaped by wait4(2), which std's Child does not offer.
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut Command) -> (i32, Vec<u8>, String, u64) {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id() as i32;
    let (mut so, mut se) = (child.stdout.unwrap(), child.stderr.unwrap());
    let t = std::thread::spawn(move || {
        let mut v = Vec::new();
        so.read_to_end(&mut v).unwrap();
        v
    });
    let mut err = String::new();
    se.read_to_string(&mut err).unwrap();
    let out = t.join().unwrap();
    let mut status = 0;
    // SAFETY: a plain wait4 on our own child, with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
    (code, out, err, usage.ru_maxrss as u64 / 1024)
}

fn lines(out: &[u8]) -> Vec<serde_json::Value> {
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(l))))
        .collect()
}

#[test]
fn gzip_and_zstd_bombs_are_refused_with_no_end_and_status_1_in_bounded_memory() {
    let d = scratch("bomb");
    let (code, _, err) = sh(&format!(
        "head -c 300M /dev/zero | gzip -1 > {d}/bomb.gz && head -c 2G /dev/zero | zstd -q -1 -c > {d}/bomb.zst",
        d = d.display()
    ));
    assert_eq!(code, 0, "making the bombs: {err}");
    let (code, out, err, rss) = run_measured(Command::new(bin("s3s-cat")).current_dir(root()).env("S3S_STATE_DIR", &d).args([
        d.join("bomb.gz").to_str().unwrap(),
        "tests/data/plain.log",
        d.join("bomb.zst").to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{err}");
    let recs = lines(&out);
    let ends: Vec<_> = recs.iter().filter(|r| r["type"] == "end").map(|r| r["file"].as_str().unwrap().to_string()).collect();
    assert_eq!(ends, ["tests/data/plain.log"], "only the plain file ends: {err}");
    for bomb in ["bomb.gz", "bomb.zst"] {
        let msg = err.lines().find(|l| l.contains(bomb)).unwrap_or_else(|| panic!("no message names {bomb}: {err}"));
        assert!(msg.contains("--max-ratio") && msg.contains("no end record"), "{msg}");
    }
    assert!(rss < 400, "peak RSS {rss} MiB");
    // The run is recorded, as failed.
    let log = std::fs::read_to_string(d.join("runs.log")).unwrap();
    assert!(log.lines().last().unwrap().contains("\"failed\""), "{log}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_huge_line_is_cut_at_max_line_bytes_and_memory_stays_flat() {
    let d = scratch("longline");
    // 300 MB without a newline, then a short line: plain and zstd.
    let (code, _, err) = sh(&format!(
        "{{ head -c 300M /dev/zero | tr '\\0' x; printf '\\nafter\\n'; }} > {d}/long.log && zstd -q -1 -c {d}/long.log > {d}/long.zst",
        d = d.display()
    ));
    assert_eq!(code, 0, "{err}");
    for (name, extra) in [("long.log", vec![]), ("long.zst", vec!["--max-ratio", "0"])] {
        let (code, out, err, rss) = run_measured(
            Command::new(bin("s3s-cat"))
                .args(extra)
                .arg(d.join(name))
                .env("S3S_STATE_DIR", &d)
                .args(["--max-line-bytes", "4MiB"]),
        );
        assert_eq!(code, 0, "{name}: {err}");
        let recs = lines(&out);
        assert_eq!(recs.len(), 3, "{name}");
        assert_eq!(recs[0]["line"].as_str().unwrap().len(), 4 << 20);
        assert_eq!(recs[0]["truncated"], 300u64 << 20);
        assert_eq!(recs[1]["line"], "after");
        assert_eq!(recs[1].get("truncated"), None);
        assert_eq!(
            (recs[2]["type"].as_str(), recs[2]["lines"].as_u64(), recs[2]["truncated"].as_u64()),
            (Some("end"), Some(2), Some(1))
        );
        assert!(err.contains("1 line(s) longer than --max-line-bytes"), "{err}");
        assert!(rss < 150, "{name}: peak RSS {rss} MiB for a 300 MB line cut to 4 MiB");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Spawn `tool args` with stdin from `stdin` and stdout to a pipe; return the child.
fn spawn(tool: &str, args: &[&str], stdin: Stdio, dir: &std::path::Path) -> std::process::Child {
    let mut c = Command::new(bin(tool));
    c.args(args).current_dir(root()).env("S3S_STATE_DIR", dir).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so that the signals of the test harness do not reach it.
    c.process_group(0);
    c.spawn().unwrap()
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn sighup_is_taken_as_sigterm_by_every_stage_kind() {
    let d = scratch("sighup");
    // s3s-filter and a publisher (dry run) reading from an open pipe, then SIGHUP: they drain
    // (the input ends when the writer closes it) and exit 0 with a runs-log record.
    for (tool, args) in [("s3s-filter", vec!["-e", "x"]), ("s3s-cat", vec![]), ("s3s-es", vec!["-i", "x", "--dry-run"])] {
        let mut c = spawn(tool, &args, Stdio::piped(), &d);
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(b"{\"type\":\"line\",\"file\":\"f\",\"n\":1,\"line\":\"x\"}\n").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        signal(&c, libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
        drop(stdin);
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{tool} after SIGHUP: {:?} {err}", out.status);
    }
    let log = std::fs::read_to_string(d.join("runs.log")).unwrap();
    assert_eq!(log.lines().count(), 3, "a runs-log record per stage: {log}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn an_idle_s3s_cat_ends_at_once_on_sigterm() {
    let d = scratch("idle");
    let mut c = spawn("s3s-cat", &[], Stdio::piped(), &d);
    let stdin = c.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    signal(&c, libc::SIGTERM);
    let out = c.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?} (the drain timeout is 30 s)", t.elapsed());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_stage_stopped_by_force_mid_write_exits_1_and_its_reader_withholds_the_end() {
    // s3s-cat writes records of 1 MiB lines into a pipe nobody reads; SIGTERM with a 1 s drain:
    // the write is stuck, so the hard stop (10 s after expiry) ends it, with status 1.
    let d = scratch("midwrite");
    let (code, _, err) =
        sh(&format!("for i in $(seq 1 64); do head -c 1M /dev/zero | tr '\\0' y; echo; done > {}/big.log", d.display()));
    assert_eq!(code, 0, "{err}");
    let big = d.join("big.log");
    let mut cat = spawn("s3s-cat", &["--drain-timeout", "1s", big.to_str().unwrap()], Stdio::null(), &d);
    std::thread::sleep(Duration::from_millis(500));
    signal(&cat, libc::SIGTERM);
    let t = Instant::now();
    let status = cat.wait().unwrap();
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    let mut err = String::new();
    cat.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("cut in the middle of a write"), "{err}");
    // What reached the pipe, read now: whole records, then a partial one.
    let mut got = Vec::new();
    cat.stdout.take().unwrap().read_to_end(&mut got).unwrap();
    assert!(!got.ends_with(b"\n"), "the pipe holds a partial last record");
    // A downstream stage reading it: the partial record is malformed, the file's end (had it
    // come) would be withheld: here, an end record appended by hand after it.
    let mut fed = got.clone();
    fed.extend_from_slice(format!("\n{{\"type\":\"end\",\"file\":\"{}\",\"lines\":64}}\n", big.display()).as_bytes());
    let mut f = spawn("s3s-filter", &["-e", "y"], Stdio::piped(), &d);
    let mut stdin = f.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&fed));
    let out = f.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"type\":\"end\""), "the end is withheld");
    assert!(err.contains("end record withheld"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_malformed_line_inside_an_object_withholds_its_end_in_a_publisher() {
    // s3s-syslog to a UDP port on loopback (delivered = sent), the truncated line of the probe.
    let input = concat!(
        "{\"type\":\"line\",\"bucket\":\"b\",\"key\":\"k\",\"n\":1,\"line\":\"one\"}\n",
        "{\"type\":\"line\",\"bucket\":\"b\",\"key\":\"k\",\"n\":2,\"li\n",
        "{\"type\":\"line\",\"bucket\":\"b\",\"key\":\"k\",\"n\":3,\"line\":\"three\"}\n",
        "{\"type\":\"end\",\"bucket\":\"b\",\"key\":\"k\",\"lines\":3}\n",
        "{\"type\":\"line\",\"bucket\":\"b\",\"key\":\"ok\",\"n\":1,\"line\":\"fine\"}\n",
        "{\"type\":\"end\",\"bucket\":\"b\",\"key\":\"ok\",\"lines\":1}\n",
    );
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let d = scratch("publisher");
    let mut c = spawn("s3s-syslog", &["--server", &format!("udp://127.0.0.1:{port}")], Stdio::piped(), &d);
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["{\"type\":\"end\",\"bucket\":\"b\",\"key\":\"ok\",\"lines\":1}"], "{err}");
    assert!(err.contains("s3://b/k") && err.contains("end record withheld") && err.contains("stdin line 2"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_record_longer_than_the_limit_is_refused_in_bounded_memory_and_withholds_its_objects_end() {
    // 200 MB in one record (the probe's), between two good lines of the same object, into
    // s3s-filter: reported as malformed with its line number, the rest goes on, the object's end
    // is withheld, and memory stays near the 128 MiB limit rather than a multiple of 200 MB.
    let d = scratch("hugerecord");
    let input = d.join("in.ndjson");
    let (code, _, err) = sh(&format!(
        "{{ echo '{{\"type\":\"line\",\"bucket\":\"b\",\"key\":\"k\",\"n\":1,\"line\":\"GET one\"}}'; \
           printf '{{\"type\":\"line\",\"bucket\":\"b\",\"key\":\"k\",\"n\":2,\"line\":\"'; head -c 200M /dev/zero | tr '\\0' x; echo '\"}}'; \
           echo '{{\"type\":\"line\",\"bucket\":\"b\",\"key\":\"k\",\"n\":3,\"line\":\"GET three\"}}'; \
           echo '{{\"type\":\"end\",\"bucket\":\"b\",\"key\":\"k\",\"lines\":3}}'; }} > {}",
        input.display()
    ));
    assert_eq!(code, 0, "{err}");
    let (code, out, err, rss) = run_measured(
        Command::new(bin("s3s-filter")).args(["-e", "GET"]).env("S3S_STATE_DIR", &d).stdin(std::fs::File::open(&input).unwrap()),
    );
    assert_eq!(code, 1, "{err}");
    let recs = lines(&out);
    assert_eq!(recs.iter().map(|r| r["n"].as_u64()).collect::<Vec<_>>(), [Some(1), Some(3)], "{err}");
    assert!(err.contains("stdin line 2") && err.contains("a record of 209715254 bytes"), "{err}");
    assert!(err.contains("s3://b/k: end record withheld"), "{err}");
    assert!(rss < 450, "peak RSS {rss} MiB for a 200 MB record");
    let _ = std::fs::remove_dir_all(&d);
}

/// A runs log far larger than rotation makes (S3S_RUNS_LOG_MAX_BYTES raised, or logs joined by
/// hand), with a long junk line: s3s-status shows the last runs, warns about the junk, and its
/// memory is that of the runs it shows (a 1 GB log took 11 GB when every record was read whole).
#[test]
fn a_huge_runs_log_is_read_in_bounded_memory() {
    let d = scratch("runslog");
    let runs = 250_000u64;
    {
        let mut log = std::io::BufWriter::new(std::fs::File::create(d.join("runs.log")).unwrap());
        // Junk first: 8 MiB without a newline inside, then the records.
        log.write_all(&vec![b'x'; 8 << 20]).unwrap();
        log.write_all(b"\n").unwrap();
        for i in 0..runs {
            let (h, m, s) = (i / 3600 % 24, i / 60 % 60, i % 60);
            let day = 1 + i / 86_400;
            for (k, tool) in ["s3s-poll", "s3s-cat", "s3s-ack"].iter().enumerate() {
                writeln!(
                    log,
                    r#"{{"tool":"{tool}","host":"h","pid":{},"ppid":1,"pipeline":"p-{i}","start":"2026-10-{day:02}T{h:02}:{m:02}:{s:02}.{k:03}Z","end":"2026-10-{day:02}T{h:02}:{m:02}:{s:02}.5{k:02}Z","seconds":0.5,"exit":0,"outcome":"ok","counters":{{"s3s_lines_read_total":{i},"s3s_objects_read_total":1,"s3s_read_bytes_total":123456,"s3s_sqs_messages_received_total":1}}}}"#,
                    10 + k
                )
                .unwrap();
            }
        }
    }
    let size = std::fs::metadata(d.join("runs.log")).unwrap().len() >> 20;
    let (code, out, err, rss) = run_measured(Command::new(bin("s3s-status")).args(["--json", "-n", "2", "--state-dir"]).arg(&d));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 line(s) of the runs log"), "{err}");
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let shown: Vec<_> =
        doc["pipelines"].as_array().unwrap().iter().map(|p| p["pipeline"].as_str().unwrap().to_string()).collect();
    assert_eq!(shown, [format!("p-{}", runs - 2), format!("p-{}", runs - 1)]);
    assert_eq!(doc["pipelines"][1]["stages"].as_array().unwrap().len(), 3);
    assert_eq!(doc["pipelines"][1]["totals"]["lines_in"], 3 * (runs - 1));
    assert!(rss < 64, "peak RSS {rss} MiB for a {size} MiB runs log");
    let _ = std::fs::remove_dir_all(&d);
}

/// `s3s-cat --root DIR` on records from elsewhere: a file inside DIR is read; `..`, an absolute
/// path and a symbolic link out of DIR are refused (error naming the record's path, no `end`),
/// and the rest goes on.
#[test]
fn root_confines_file_records_to_a_directory() {
    let d = scratch("root");
    let inside = d.join("logs");
    std::fs::create_dir_all(inside.join("sub")).unwrap();
    std::fs::write(inside.join("sub/a.log"), "one\ntwo\n").unwrap();
    std::fs::write(d.join("secret.txt"), "do not read\n").unwrap();
    std::os::unix::fs::symlink(d.join("secret.txt"), inside.join("link.log")).unwrap();
    let recs = [
        format!("{}/sub/../sub/a.log", inside.display()),
        format!("{}/../secret.txt", inside.display()),
        d.join("secret.txt").display().to_string(),
        inside.join("link.log").display().to_string(),
    ];
    let stdin: String = recs.iter().map(|p| format!("{{\"type\":\"object\",\"file\":{}}}\n", serde_json::json!(p))).collect();
    let mut child = Command::new(bin("s3s-cat"))
        .args(["--root"])
        .arg(&inside)
        .env("S3S_STATE_DIR", &d)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let recs_out = lines(&out.stdout);
    let texts: Vec<_> = recs_out.iter().filter_map(|r| r["line"].as_str()).collect();
    assert_eq!(texts, ["one", "two"], "{err}");
    let ends: Vec<_> = recs_out.iter().filter(|r| r["type"] == "end").collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(err.matches("outside --root").count(), 3, "{err}");
    for p in &recs[1..] {
        assert!(err.contains(p.as_str()), "no message names {p}: {err}");
    }
    // Without --root the same records are read (the operator's own files).
    let (code, out, err) = sh(&format!("printf '%s\\n' '{}' | {} ", recs[2], bin("s3s-cat").display()));
    assert_eq!((code, out.contains("do not read")), (0, true), "{err}");
    // A --root that does not exist is a usage error.
    let (code, _, err) = sh(&format!("{} --root {}/nope < /dev/null", bin("s3s-cat").display(), d.display()));
    assert_eq!(code, 2, "{err}");
    let _ = std::fs::remove_dir_all(&d);
}
