//! Running unattended: the systemd unit shipped in contrib/, and stopping a whole pipeline with
//! SIGTERM to every stage at once (systemd's default KillMode) without losing a line or deleting
//! an undelivered message.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::aws::{gzip, lines, Fixture};
use crate::support::{bin, root};

/// The shell pipeline of `ExecStart=` in contrib/systemd/s3s@.service, as bash would get it.
fn unit_pipeline(instance: &str) -> String {
    let unit = std::fs::read_to_string(root().join("contrib/systemd/s3s@.service")).unwrap();
    let line = unit.lines().find(|l| l.starts_with("ExecStart=")).expect("ExecStart");
    let script = line
        .strip_prefix("ExecStart=/bin/bash -c '")
        .and_then(|s| s.strip_suffix('\''))
        .expect("ExecStart=/bin/bash -c '...'");
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
    // SIGTERM to the whole group once the pipeline is well under way.
    let t0 = Instant::now();
    while f.total() > (n_objects as u64) * 2 / 3 && t0.elapsed() < Duration::from_secs(30) {
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
    let complete: Vec<bool> = texts
        .iter()
        .map(|t| t.lines().filter(|l| !l.ends_with("\t503")).all(|l| in_kafka.contains(l)))
        .collect();
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
