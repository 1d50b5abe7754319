//! Running unattended: the systemd unit shipped in contrib/, and stopping a whole pipeline with
//! SIGTERM to every stage at once (systemd's default KillMode) without losing a line or deleting
//! an undelivered message.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::aws::{Fixture, gzip, lines};
use crate::support::{bin, root};

/// The shell pipeline of `ExecStart=` in contrib/systemd/s3s@.service, as bash would get it.
pub(crate) fn unit_pipeline(instance: &str) -> String {
    let unit = std::fs::read_to_string(root().join("contrib/systemd/s3s@.service")).unwrap();
    let line = unit.lines().find(|l| l.starts_with("ExecStart=")).expect("ExecStart");
    let script =
        line.strip_prefix("ExecStart=/bin/bash -c '").and_then(|s| s.strip_suffix('\'')).expect("ExecStart=/bin/bash -c '...'");
    script.replace("$$", "$").replace("%i", instance)
}

#[test]
fn systemd_unit_verifies() {
    // The Documentation= man pages must resolve: lay ours out as a man tree for `man`.
    let tmp = std::env::temp_dir().join(format!("s3s-units-{}", std::process::id()));
    let units = tmp.join("units");
    let man = tmp.join("man");
    for d in [&units, &man.join("man1"), &man.join("man7")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::copy(root().join("contrib/systemd/s3s@.service"), units.join("s3s@.service")).unwrap();
    for e in std::fs::read_dir(root().join("man")).unwrap() {
        let p = e.unwrap().path();
        let sect = if p.extension().is_some_and(|x| x == "7") { "man7" } else { "man1" };
        std::fs::copy(&p, man.join(sect).join(p.file_name().unwrap())).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units.join("s3s@demo.service"))
        .env("MANPATH", &man)
        .output()
        .expect("systemd-analyze (apt-get install systemd; scripts/services install does it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
}

#[test]
fn sigterm_to_the_whole_group_loses_nothing_and_deletes_only_what_was_delivered() {
    let brokers = std::env::var("S3S_KAFKA_BROKERS").expect("S3S_KAFKA_BROKERS: run scripts/test");
    let f = Fixture::new("group", false);
    let n_objects = 30;
    let texts: Vec<String> = (0..n_objects).map(|i| lines(&format!("g{i}"), 8000)).collect();
    for (i, t) in texts.iter().enumerate() {
        f.put(&format!("o{i}.gz"), gzip(t));
        f.send(&f.s3_event(&format!("o{i}.gz")));
    }
    let topic = format!("group-{}", std::process::id());
    let status = std::env::temp_dir().join(format!("s3s-group-status-{}", std::process::id()));
    let pipeline = unit_pipeline("group-test");
    let path = format!("{}:{}", bin("s3s-cat").parent().unwrap().display(), std::env::var("PATH").unwrap());
    // As systemd runs it: bash -c '<ExecStart>' in a process group of its own.
    let mut child = Command::new("setsid")
        .arg("bash")
        .arg("-c")
        .arg(format!("{pipeline}; echo \"${{PIPESTATUS[*]}} $?\" > {}", status.display()))
        .env("PATH", path)
        .env("S3S_QUEUE_URL", &f.queue_url)
        .env("S3S_POLL_ARGS", "--visibility-timeout 5 --batch 1")
        .env("S3S_FILTER", "s3s-filter -v -e \\t503$")
        .env("S3S_PUBLISH", format!("s3s-kafka -b {brokers} -t {topic}"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // SIGTERM to the whole group once the pipeline is under way: right after the first message
    // is deleted (later, a fast pipeline on a quiet machine could finish first).
    let t0 = Instant::now();
    while f.total() >= n_objects as u64 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let pgid = child.id() as i32;
    let rc = unsafe_kill_group(pgid);
    assert_eq!(rc, 0, "kill -TERM -{pgid}");
    let code = child.wait().unwrap();
    assert!(code.success(), "the unit's shell exits 0: {code:?}");
    let st = std::fs::read_to_string(&status).expect("status file");
    assert_eq!(st.trim(), "0 0 0 0 0 0", "every stage exits 0 (PIPESTATUS, then the pipeline)");
    // What is in Kafka, read by an independent consumer.
    let out = Command::new(root().join("scripts/kafka-consume"))
        .args(["--brokers", &brokers, "--topic", &topic, "--timeout", "5"])
        .output()
        .unwrap();
    let in_kafka: BTreeSet<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let remaining = f.total();
    assert!(remaining > 0, "the SIGTERM landed after everything was done: make the input bigger");
    // Every deleted message's lines are all in Kafka.
    let complete: Vec<bool> =
        texts.iter().map(|t| t.lines().filter(|l| !l.ends_with("\t503")).all(|l| in_kafka.contains(l))).collect();
    let deleted = n_objects as u64 - remaining;
    let n_complete = complete.iter().filter(|c| **c).count() as u64;
    assert!(deleted <= n_complete, "{deleted} messages deleted, only {n_complete} objects fully in Kafka");
    // What was not deleted comes back after the visibility timeout, and a second run delivers it.
    std::thread::sleep(Duration::from_secs(6));
    let (code, _, err) = crate::support::sh(&format!(
        "s3s-poll --queue-url {} --once | s3s-cat | s3s-filter -v -e '\\t503$' | s3s-kafka -b {brokers} -t {topic} | s3s-ack",
        f.queue_url
    ));
    assert_eq!(code, 0, "{err}");
    let out = Command::new(root().join("scripts/kafka-consume"))
        .args(["--brokers", &brokers, "--topic", &topic, "--timeout", "5"])
        .output()
        .unwrap();
    let in_kafka: BTreeSet<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let want: BTreeSet<String> =
        texts.iter().flat_map(|t| t.lines().filter(|l| !l.ends_with("\t503")).map(str::to_string)).collect();
    assert_eq!(in_kafka.len(), want.len(), "every kept line in Kafka at least once");
    assert_eq!(in_kafka, want);
    assert_eq!(f.total(), 0, "queue empty");
}

fn unsafe_kill_group(pgid: i32) -> i32 {
    Command::new("kill").args(["-TERM", "--", &format!("-{pgid}")]).status().map(|s| s.code().unwrap_or(-1)).unwrap_or(-1)
}

#[test]
fn an_object_that_outlasts_the_visibility_timeout_is_delivered_once() {
    let f = Fixture::new("long", false);
    let text = lines("long", 80_000);
    f.put("long.gz", gzip(&text));
    f.send(&f.s3_event("long.gz"));
    let out = std::env::temp_dir().join(format!("s3s-long-{}.ndjson", std::process::id()));
    let rival = std::env::temp_dir().join(format!("s3s-long-rival-{}.ndjson", std::process::id()));
    // A slow sink (about 0.1 ms a line: 8 s, 2x the 4 s visibility timeout), and a rival consumer
    // polling the same queue all along: it would get the message if it became visible again.
    // The object (about 14 MB of records) is much larger than what the pipes hold (1 MiB each,
    // see src/io.rs), so s3s-cat streams, and holds the lease, for most of the 8 s; what is
    // left in the pipes when it lets go (about 1 s of this sink's work) is under the timeout.
    // The rival starts once the pipeline holds the message (started together, either could
    // receive it first).
    let script = format!(
        "s3s-poll --queue-url {q} --once --visibility-timeout 4 | s3s-cat \
           | perl -pe 'select(undef,undef,undef,0.001) unless $. % 10' | tee {out} | s3s-ack",
        q = f.queue_url,
        out = out.display(),
    );
    let pipeline = std::thread::spawn(move || crate::support::sh(&script));
    let t0 = Instant::now();
    while f.counts() != (0, 1) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the pipeline did not receive the message: {:?}", f.counts());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rival_poll = Command::new(crate::support::bin("s3s-poll"))
        .args(["--queue-url", &f.queue_url, "--wait-time", "1"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&rival).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (code, _, err) = pipeline.join().unwrap();
    let _ = rival_poll.kill();
    let _ = rival_poll.wait();
    assert_eq!(code, 0, "{err}");
    let got = std::fs::read_to_string(&out).unwrap();
    let n_lines = got.lines().filter(|l| l.contains(r#""type":"line""#)).count();
    assert_eq!(n_lines, 80_000, "every line exactly once");
    assert!(err.contains("s3s-ack: 1 messages deleted, 0 failed"), "{err}");
    let rival_got = std::fs::read_to_string(&rival).unwrap();
    assert_eq!(rival_got, "", "the message was redelivered to another consumer while in progress");
    assert_eq!(f.total(), 0);
}

#[test]
fn max_receives_dead_letters_a_message_that_keeps_coming_back() {
    let f = Fixture::new("maxrecv", false);
    f.send("a poison body that no consumer understands");
    let dl = std::env::temp_dir().join(format!("s3s-dead-{}.ndjson", std::process::id()));
    let poll = format!(
        "s3s-poll --queue-url {} --once --visibility-timeout 1 --max-receives 2 --dead-letter {} | s3s-cat | s3s-ack",
        f.queue_url,
        dl.display()
    );
    let mut all_err = String::new();
    for _ in 0..3 {
        let (code, _, err) = crate::support::sh(&poll);
        assert_eq!(code, 0, "{err}");
        all_err.push_str(&err);
        std::thread::sleep(Duration::from_millis(1300));
    }
    assert_eq!(all_err.matches("not understood").count(), 2, "{all_err}");
    assert!(
        all_err.contains("received 3 times, more than --max-receives 2; written to the dead-letter file and deleted"),
        "{all_err}"
    );
    let rec: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&dl).unwrap().trim()).unwrap();
    assert_eq!(rec["body"], "a poison body that no consumer understands");
    assert_eq!(rec["receive_count"], 3);
    assert_eq!(f.total(), 0);
}
