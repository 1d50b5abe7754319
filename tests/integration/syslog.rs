//! `s3s-syslog` against real receivers: rsyslog and syslog-ng instances of the test's own (own
//! ports, own config, output as JSON lines to a file), started from `scripts/receivers/` and
//! installed by `scripts/services install`. Each test compares what arrived with what was sent.
//! A receiver that cannot be started fails the test with its log; nothing passes silently.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{bin, root};

/// A free port on 127.0.0.1 for both TCP and UDP (as far as one can tell without holding it).
pub fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A receiver process of the test's own, stopped when dropped.
pub struct Receiver {
    kind: &'static str,
    child: Option<Child>,
    pub dir: PathBuf,
    pub ports: Vec<u16>,
}

impl Receiver {
    /// rsyslog: ports[0] UDP, ports[1] TCP (octet-counted and LF alike); output out.jsonl.
    pub fn rsyslog(test: &str) -> Receiver {
        Receiver::start("rsyslog", test, 2)
    }

    /// syslog-ng: ports 5424/tcp, 5424/udp, 3164/tcp (LF), 3164/udp, GELF/tcp (NUL), 5424/tls,
    /// 5424/tls requiring a client certificate (dir/client.pem, dir/client.key), GELF/tls (NUL);
    /// a unix datagram socket at dir/log.sock; output out.jsonl and gelf.jsonl; dir/ca.pem is
    /// the CA of the server and client certificates.
    pub fn syslog_ng(test: &str) -> Receiver {
        Receiver::start("syslog-ng", test, 8)
    }

    /// graygelf's GELF UDP server on ports[0]; output gelf.jsonl.
    pub fn gelf_udp(test: &str) -> Receiver {
        Receiver::start("gelf-udp", test, 1)
    }

    fn start(kind: &'static str, test: &str, nports: usize) -> Receiver {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{kind}-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut ports = Vec::new();
        while ports.len() < nports {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let mut r = Receiver { kind, child: None, dir, ports };
        r.launch();
        r
    }

    fn launch(&mut self) {
        let script = root().join("scripts/receivers").join(self.kind);
        let mut cmd = Command::new(&script);
        match self.kind {
            "gelf-udp" => cmd.arg(self.ports[0].to_string()).arg(self.dir.join("gelf.jsonl")),
            _ => cmd.arg(&self.dir).args(self.ports.iter().map(u16::to_string)),
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("receiver.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (run scripts/services install)", script.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ready() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited ({status}) during start; run scripts/services install. Its log:\n{}", self.kind, self.log());
            }
            if Instant::now() > deadline {
                panic!("{} did not come up within 20 s on ports {:?}. Its log:\n{}", self.kind, self.ports, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ready(&self) -> bool {
        match self.kind {
            "rsyslog" => TcpStream::connect(("127.0.0.1", self.ports[1])).is_ok(),
            "syslog-ng" => TcpStream::connect(("127.0.0.1", self.ports[4])).is_ok() && self.dir.join("log.sock").exists(),
            _ => self.log().contains("listening"),
        }
    }

    /// The receiver's own output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("receiver.log")).unwrap_or_default()
    }

    /// Stop it (SIGTERM, then wait).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_kill(c.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stop and start again on the same ports, appending to the same output files.
    pub fn restart(&mut self, pause: Duration) {
        self.stop();
        std::thread::sleep(pause);
        self.launch();
    }

    /// The JSON records of one of its output files.
    pub fn records(&self, file: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{} {file}: bad JSON {l:?}: {e}", self.kind)))
            .collect()
    }

    /// The number of lines in one of its output files so far.
    pub fn count(&self, file: &str) -> usize {
        std::fs::read(self.dir.join(file)).map(|b| memchr::memchr_iter(b'\n', &b).count()).unwrap_or(0)
    }

    /// Wait until `file` holds at least `n` records (and then a little for stragglers).
    pub fn wait_for(&self, file: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        while self.count(file) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        self.records(file)
    }

    /// Wait until `file` holds at least `n` records and `done` holds for them (or `timeout`).
    /// With duplicates (after a restart) the count alone can be reached before the last lines
    /// are written out: the receiver's own buffering.
    pub fn wait_until(&self, file: &str, n: usize, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut got = self.wait_for(file, n, timeout);
        while !done(&got) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            got = self.records(file);
        }
        got
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// NDJSON of `n` lines over two objects (and their end records), with tabs, quotes, `]`,
/// backslashes and non-ASCII text; line i's text starts with "L<i> ".
pub fn input(n: usize, tag: &str) -> String {
    let mut s = String::new();
    for obj in 0..2 {
        let key = format!("logs/{tag}/part {obj}.gz");
        for i in 0..n / 2 {
            let k = obj * (n / 2) + i;
            let line = format!("L{k} {tag}\tGET /a?x=\"{k}\" ] \\ é ✓ {}", "x".repeat(k % 50));
            let rec = serde_json::json!({"type":"line","bucket":"cdn-logs","key":key,"n":i + 1,"line":line});
            s.push_str(&rec.to_string());
            s.push('\n');
        }
        s.push_str(&serde_json::json!({"type":"end","bucket":"cdn-logs","key":key,"lines":n / 2}).to_string());
        s.push('\n');
    }
    s
}

/// The text of every line record in `input`, with its key and number.
pub fn sent(input: &str) -> Vec<(String, String, u64)> {
    input
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "line")
        .map(|v| (v["line"].as_str().unwrap().to_string(), v["key"].as_str().unwrap().to_string(), v["n"].as_u64().unwrap()))
        .collect()
}

/// Start a stage with piped stdin, stdout and stderr and the given drain timeout.
fn spawn(tool: &str, args: &[&str], drain_timeout: &str) -> Child {
    Command::new(bin(tool))
        .args(args)
        .env("S3S_DRAIN_TIMEOUT", drain_timeout)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Run a stage with `stdin` as input.
pub fn run(tool: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = spawn(tool, args, "20s");
    let mut w = child.stdin.take().unwrap();
    let data = stdin.to_string();
    let feeder = std::thread::spawn(move || {
        let _ = w.write_all(data.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

/// The end records a stage forwarded.
pub fn ends(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "end")
        .collect()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "exit {:?}; stderr:\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(ends(out).len(), 2, "both end records forwarded");
}

/// The (bucket, key, line) of a 5424 message's structured data, from rsyslog's raw SD text.
fn sd_params(sd: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| regex::Regex::new(r#"(\w+)="((?:[^"\\]|\\.)*)""#).unwrap());
    for c in re.captures_iter(sd) {
        let v = c[2].replace("\\\"", "\"").replace("\\]", "]").replace("\\\\", "\\");
        m.insert(c[1].to_string(), v);
    }
    m
}

/// Check that every sent line arrived exactly once (or at least once with `dups`), with its
/// origin in the structured data when `sd` is set.
fn compare(what: &str, got: &[Value], sent: &[(String, String, u64)], sd: bool, dups: bool) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let want: BTreeMap<&str, (&str, u64)> = sent.iter().map(|(l, k, n)| (l.as_str(), (k.as_str(), *n))).collect();
    for r in got {
        let msg = r["msg"].as_str().unwrap_or_else(|| panic!("{what}: no msg in {r}"));
        let Some(&(key, n)) = want.get(msg) else {
            panic!("{what}: received a message that was never sent: {msg:?} ({r})");
        };
        *seen.entry(msg).or_default() += 1;
        if sd {
            let p = sd_params(r["sd"].as_str().unwrap_or(""));
            assert_eq!(p.get("bucket").map(String::as_str), Some("cdn-logs"), "{what}: {r}");
            assert_eq!(p.get("key").map(String::as_str), Some(key), "{what}: {r}");
            assert_eq!(p.get("line").map(String::as_str), Some(n.to_string().as_str()), "{what}: {r}");
        }
    }
    let missing: Vec<_> = want.keys().filter(|l| !seen.contains_key(*l)).take(5).collect();
    assert!(missing.is_empty(), "{what}: {} of {} lines missing, e.g. {missing:?}", want.len() - seen.len(), want.len());
    if !dups {
        let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(5).collect();
        assert!(twice.is_empty(), "{what}: duplicates {twice:?}");
    }
}

#[test]
fn rsyslog_tcp_octet_counted_5424() {
    let r = Receiver::rsyslog("tcp5424");
    let inp = input(4000, "octet");
    let server = format!("tcp://127.0.0.1:{}", r.ports[1]);
    let out = run(
        "s3s-syslog",
        &[
            "--server",
            &server,
            "--facility",
            "local3",
            "--severity",
            "notice",
            "--app-name",
            "cdn",
            "--hostname",
            "edge-1",
            "--msgid",
            "CF",
        ],
        &inp,
    );
    ok(&out);
    let got = r.wait_for("out.jsonl", 4000, Duration::from_secs(20));
    compare("rsyslog tcp octet-counted 5424", &got, &sent(&inp), true, false);
    for g in &got {
        assert_eq!(
            (&g["facility"], &g["severity"], &g["app"], &g["hostname"], &g["msgid"], &g["version"]),
            (&"19".into(), &"5".into(), &"cdn".into(), &"edge-1".into(), &"CF".into(), &"1".into()),
            "{g}"
        );
    }
}

#[test]
fn rsyslog_tcp_lf_3164() {
    let r = Receiver::rsyslog("tcp3164");
    let inp = input(4000, "lf");
    let server = format!("tcp://127.0.0.1:{}", r.ports[1]);
    let out = run(
        "s3s-syslog",
        &["--server", &server, "--rfc", "3164", "--framing", "lf", "--app-name", "cdn", "--hostname", "edge-2"],
        &inp,
    );
    ok(&out);
    let got = r.wait_for("out.jsonl", 4000, Duration::from_secs(20));
    compare("rsyslog tcp lf 3164", &got, &sent(&inp), false, false);
    assert!(got.iter().all(|g| g["app"] == "cdn" && g["hostname"] == "edge-2" && g["version"] == "0"), "{}", got[0]);
}

#[test]
fn rsyslog_udp_paced_5424_and_3164() {
    let r = Receiver::rsyslog("udp");
    let server = format!("udp://127.0.0.1:{}", r.ports[0]);
    let inp = input(1000, "udp5424");
    ok(&run("s3s-syslog", &["--server", &server, "--max-rate", "5000"], &inp));
    let got = r.wait_for("out.jsonl", 1000, Duration::from_secs(20));
    compare("rsyslog udp 5424", &got, &sent(&inp), true, false);
    let inp2 = input(1000, "udp3164");
    ok(&run("s3s-syslog", &["--server", &server, "--rfc", "3164", "--max-rate", "5000"], &inp2));
    let got = r.wait_for("out.jsonl", 2000, Duration::from_secs(20));
    let got: Vec<_> = got.into_iter().filter(|g| g["version"] == "0").collect();
    compare("rsyslog udp 3164", &got, &sent(&inp2), false, false);
}

#[test]
fn syslog_ng_every_transport_and_format() {
    let r = Receiver::syslog_ng("all");
    let p = |i: usize| r.ports[i].to_string();
    let sock = format!("unix://{}", r.dir.join("log.sock").display());
    let ca = r.dir.join("ca.pem").display().to_string();
    let cases: Vec<(&str, Vec<String>, &str, bool)> = vec![
        ("tcp-5424-octet", vec!["--server".into(), format!("tcp://127.0.0.1:{}", p(0))], "s5424tcp", true),
        (
            "udp-5424",
            vec!["--server".into(), format!("udp://127.0.0.1:{}", p(1)), "--max-rate".into(), "5000".into()],
            "s5424udp",
            true,
        ),
        (
            "tcp-3164-lf",
            vec![
                "--server".into(),
                format!("tcp://127.0.0.1:{}", p(2)),
                "--rfc".into(),
                "3164".into(),
                "--framing".into(),
                "lf".into(),
            ],
            "s3164tcp",
            false,
        ),
        (
            "udp-3164",
            vec![
                "--server".into(),
                format!("udp://127.0.0.1:{}", p(3)),
                "--rfc".into(),
                "3164".into(),
                "--max-rate".into(),
                "5000".into(),
            ],
            "s3164udp",
            false,
        ),
        (
            "unix-3164",
            vec!["--server".into(), sock, "--rfc".into(), "3164".into(), "--max-rate".into(), "5000".into()],
            "sunix",
            false,
        ),
        ("tls-5424", vec!["--server".into(), format!("tls://localhost:{}", p(5)), "--tls-ca".into(), ca], "s5424tls", true),
    ];
    let mut total = 0;
    for (name, args, src, sd) in cases {
        let inp = input(1000, name);
        let args: Vec<&str> = args.iter().map(String::as_str).chain(["--app-name", "cdn", "--hostname", "edge-3"]).collect();
        ok(&run("s3s-syslog", &args, &inp));
        total += 1000;
        let got = r.wait_for("out.jsonl", total, Duration::from_secs(20));
        let got: Vec<Value> = got.into_iter().filter(|g| g["src"] == src).collect();
        let sent = sent(&inp);
        // syslog-ng parses the SD itself: check its view too.
        if sd {
            for g in &got {
                let e = &g["_SDATA"]["s3s@32473"];
                assert_eq!(e["bucket"], "cdn-logs", "{name}: {g}");
            }
        }
        compare(&format!("syslog-ng {name}"), &got, &sent, sd, false);
        // On a unix socket RFC 3164 carries no HOSTNAME (as syslog(3)): the receiver puts its own.
        let host_ok = |g: &Value| name.starts_with("unix") || g["hostname"] == "edge-3";
        assert!(
            got.iter().all(|g| g["app"] == "cdn" && host_ok(g) && g["facility"] == 1 && g["severity"] == 6),
            "{name}: {}",
            got[0]
        );
    }
}

#[test]
fn long_lines_are_truncated_by_the_rule_and_marked() {
    let r = Receiver::rsyslog("trunc");
    let long = format!("BEGIN {} END", "é".repeat(3000));
    let rec = serde_json::json!({"type":"line","bucket":"b","key":"k","n":1,"line":long});
    let inp = format!("{rec}\n{}\n", serde_json::json!({"type":"end","bucket":"b","key":"k"}));
    let server = format!("tcp://127.0.0.1:{}", r.ports[1]);
    let out = run("s3s-syslog", &["--server", &server, "--max-message", "1000"], &inp);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 line truncated to --max-message 1000 bytes"));
    let got = r.wait_for("out.jsonl", 1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    let msg = got[0]["msg"].as_str().unwrap();
    assert!(long.starts_with(msg) && msg.len() < 1000 && msg.len() > 800, "{} bytes", msg.len());
    assert_eq!(
        sd_params(got[0]["sd"].as_str().unwrap()).get("truncated").map(String::as_str),
        Some(long.len().to_string().as_str())
    );
}

#[test]
fn severity_from_a_field() {
    let r = Receiver::rsyslog("sevfield");
    let mut inp = String::new();
    for (i, lvl) in ["err", "warning", "7", "nonsense"].iter().enumerate() {
        inp.push_str(&serde_json::json!({"type":"line","file":"/x","n":i + 1,"level":lvl,"line":format!("m{i}")}).to_string());
        inp.push('\n');
    }
    let server = format!("tcp://127.0.0.1:{}", r.ports[1]);
    let out = run("s3s-syslog", &["--server", &server, "--severity-field", "level", "--severity", "notice"], &inp);
    assert!(out.status.success());
    let got = r.wait_for("out.jsonl", 4, Duration::from_secs(10));
    let sev: BTreeMap<String, String> =
        got.iter().map(|g| (g["msg"].as_str().unwrap().into(), g["severity"].as_str().unwrap().into())).collect();
    assert_eq!(sev, [("m0", "3"), ("m1", "4"), ("m2", "7"), ("m3", "5")].map(|(a, b)| (a.to_string(), b.to_string())).into());
}

/// Feed `input` (records of `n` lines) to `tool args...` at ~100k lines/s, stop `r` once a
/// quarter of the lines are in its `file` and start it again half a second later; check that
/// the tool noticed, exited 0 and forwarded both end records, and that it counted retries.
/// Returns its `s3s_publish_retries_total` (from its --metrics-file, written at exit).
pub fn restart_mid_stream(r: &mut Receiver, file: &str, tool: &str, args: &[&str], input: &str, n: usize) -> f64 {
    let before = r.count(file);
    let prom = r.dir.join(format!("{tool}.prom"));
    let prom_arg = prom.display().to_string();
    let args: Vec<&str> = args.iter().copied().chain(["--metrics-file", &prom_arg]).collect();
    let mut child = spawn(tool, &args, "60s");
    let mut w = child.stdin.take().unwrap();
    let lines: Vec<String> = input.lines().map(str::to_string).collect();
    let feeder = std::thread::spawn(move || {
        // Paced so that the restart falls in the middle.
        for chunk in lines.chunks(1000) {
            let mut buf = chunk.join("\n");
            buf.push('\n');
            w.write_all(buf.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while r.count(file) < before + n / 4 {
        assert!(Instant::now() < deadline, "{}: only {} lines in 30 s", r.kind, r.count(file));
        std::thread::sleep(Duration::from_millis(20));
    }
    r.restart(Duration::from_millis(500));
    feeder.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
    assert!(stderr.contains("reconnect"), "the restart was noticed: {stderr}");
    assert_eq!(ends(&out).len(), 2, "{stderr}");
    let text = std::fs::read_to_string(&prom).unwrap_or_else(|e| panic!("{}: {e}", prom.display()));
    let retries = text
        .lines()
        .find(|l| l.starts_with("s3s_publish_retries_total{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no s3s_publish_retries_total in {text}"));
    assert!(retries > 0.0, "{tool} counted no retry across the restart:\n{text}");
    retries
}

/// The receiver is stopped in the middle of the stream and started again a second later:
/// every line arrives (some twice: the resend window), every end record is forwarded.
#[test]
fn tcp_receiver_restarted_mid_stream_loses_nothing() {
    let mut r = Receiver::rsyslog("restart");
    let n = 200_000;
    let inp = input(n, "restart");
    let server = format!("tcp://127.0.0.1:{}", r.ports[1]);
    let retries = restart_mid_stream(&mut r, "out.jsonl", "s3s-syslog", &["--server", &server], &inp, n);
    let sent = sent(&inp);
    let got = r.wait_until("out.jsonl", n, Duration::from_secs(30), |got| {
        let seen: BTreeSet<&str> = got.iter().filter_map(|g| g["msg"].as_str()).collect();
        sent.iter().all(|(line, _, _)| seen.contains(line.as_str()))
    });
    compare("rsyslog restarted mid-stream", &got, &sent, true, true);
    let distinct: BTreeSet<&str> = got.iter().map(|g| g["msg"].as_str().unwrap()).collect();
    eprintln!(
        "restart: {} messages received for {n} lines ({} duplicates), {} retries",
        got.len(),
        got.len() - distinct.len(),
        retries
    );
}

/// A receiver that requires a client certificate (syslog-ng, peer-verify(required-trusted)):
/// with --tls-cert/--tls-key every line arrives; without, the refusal is named on stderr and
/// the end records are withheld (exit 1); a key of another certificate is a usage error.
#[test]
fn tls_client_certificate_for_a_receiver_that_requires_one() {
    let r = Receiver::syslog_ng("mtls");
    let server = format!("tls://localhost:{}", r.ports[6]);
    let file = |f: &str| r.dir.join(f).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let inp = input(1000, "mtls");
    ok(&run("s3s-syslog", &["--server", &server, "--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key], &inp));
    let got = r.wait_for("out.jsonl", 1000, Duration::from_secs(20));
    assert!(got.iter().all(|g| g["src"] == "s5424mtls"), "{}", got[0]);
    compare("syslog-ng tls with a client certificate", &got, &sent(&inp), true, false);

    let mut child = spawn("s3s-syslog", &["--server", &server, "--tls-ca", &ca], "2s");
    child.stdin.take().unwrap().write_all(input(10, "nocert").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CertificateRequired"), "the refusal is named: {stderr}");
    assert!(ends(&out).is_empty(), "{stderr}");

    let out = run("s3s-syslog", &["--server", &server, "--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &file("key.pem")], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key does not belong to --tls-cert"), "{stderr}");
    let out = run("s3s-syslog", &["--server", &server, "--tls-cert", &cert], "");
    assert_eq!(out.status.code(), Some(2), "--tls-cert without --tls-key");
    let out = run("s3s-syslog", &["--server", &server, "--tls-ca", &ca, "--tls-cert", &ca, "--tls-key", &ca], "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && stderr.contains("no private key in it"), "{stderr}");
}

#[test]
fn dry_run_contacts_nothing_and_describes() {
    let inp = input(4, "dry");
    let out = run("s3s-syslog", &["--server", "tcp://127.0.0.1:1", "--dry-run", "--hostname", "h"], &inp);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let d: Vec<Value> = stderr.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(d.len(), 4);
    assert_eq!(d[0]["server"], "tcp://127.0.0.1:1");
    assert!(d[0]["message"].as_str().unwrap().starts_with("<14>1 "));
}
