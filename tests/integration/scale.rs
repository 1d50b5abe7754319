//! Scaling out: more pipelines on the same queue, as `systemctl enable --now s3s@cdn-1 s3s@cdn-2
//! s3s@cdn-3` runs them (the unit's own ExecStart, one settings file for all, what differs per
//! instance from %i). SQS leases each message to one consumer at a time, so they share the work
//! without coordinating; the test checks that they did, and what it cost.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::aws::{Fixture, gzip, lines};
use crate::ops::unit_pipeline;
use crate::support::{bin, root};

/// One running instance of the unit's pipeline.
struct Instance {
    name: String,
    /// None once stopped; dropped while running (a failed assertion), the group is killed.
    child: Option<Child>,
    state: std::path::PathBuf,
    status: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Instance {
    /// Start instance `name` as systemd would: bash -c '<ExecStart>' in a process group of its
    /// own, with the shared settings in `env` and what the unit sets per instance (S3S_PIPELINE
    /// from %i; the state directory, StateDirectory=s3s/%i).
    fn start(name: &str, env: &[(&str, String)], tmp: &std::path::Path) -> Instance {
        let state = tmp.join("state").join(name);
        std::fs::create_dir_all(&state).unwrap();
        let status = tmp.join(format!("{name}.status"));
        let stderr = tmp.join(format!("{name}.stderr"));
        let path = format!("{}:{}", bin("s3s-cat").parent().unwrap().display(), std::env::var("PATH").unwrap());
        let child = Command::new("setsid")
            .arg("bash")
            .arg("-c")
            .arg(format!("{}; echo \"${{PIPESTATUS[*]}} $?\" > {}", unit_pipeline(name), status.display()))
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .env("S3S_PIPELINE", name)
            .env("S3S_STATE_DIR", &state)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Instance { name: name.to_string(), child: Some(child), state, status, stderr }
    }

    /// The poller is up once it keeps its live file (written at start).
    fn poller_started(&self) -> bool {
        std::fs::read_dir(self.state.join("live"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("s3s-poll-")))
            .unwrap_or(false)
    }

    /// `systemctl stop`: SIGTERM to the whole group; every stage drains and exits 0.
    fn stop(mut self) -> Work {
        let mut child = self.child.take().unwrap();
        let pgid = child.id();
        let rc = Command::new("kill").args(["-TERM", "--", &format!("-{pgid}")]).status().unwrap();
        assert!(rc.success(), "kill -TERM -{pgid}");
        let code = child.wait().unwrap();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        assert!(code.success(), "{}: the unit's shell exits 0: {code:?}\n{err}", self.name);
        let st = std::fs::read_to_string(&self.status).expect("status file");
        assert_eq!(st.trim(), "0 0 0 0 0 0", "{}: every stage exits 0 (PIPESTATUS, then the pipeline)\n{err}", self.name);
        Work::of(&self.name, &self.state)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
        }
    }
}

/// What one instance did, from the runs log in its state directory (one record per stage).
#[derive(Debug, Default)]
struct Work {
    received: u64,
    objects: u64,
    lines_read: u64,
    published: u64,
    deleted: u64,
}

impl Work {
    fn of(name: &str, state: &std::path::Path) -> Work {
        let log = std::fs::read_to_string(state.join("runs.log")).unwrap_or_default();
        let mut by_tool = BTreeMap::new();
        for l in log.lines() {
            let r: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: bad runs.log line {l:?}: {e}"));
            assert_eq!(r["pipeline"], name);
            by_tool.insert(r["tool"].as_str().unwrap().to_string(), r["counters"].clone());
        }
        assert_eq!(by_tool.len(), 4, "{name}: a record per stage in runs.log: {log}");
        let c = |tool: &str, metric: &str| by_tool.get(tool).and_then(|c| c[metric].as_u64()).unwrap_or(0);
        Work {
            received: c("s3s-poll", "s3s_sqs_messages_received_total"),
            objects: c("s3s-cat", "s3s_objects_read_total"),
            lines_read: c("s3s-cat", "s3s_lines_read_total"),
            published: c("s3s-kafka", "s3s_records_published_total"),
            deleted: c("s3s-ack", "s3s_sqs_messages_deleted_total"),
        }
    }
}

#[test]
fn three_pipelines_on_one_queue_share_the_work_and_delete_each_message_once() {
    let brokers = std::env::var("S3S_KAFKA_BROKERS").expect("S3S_KAFKA_BROKERS: run scripts/test");
    let f = Fixture::new("scale", false);
    let (n_objects, per_object) = (60usize, 2000usize);
    let texts: Vec<String> = (0..n_objects).map(|i| lines(&format!("s{i}"), per_object)).collect();
    for (i, t) in texts.iter().enumerate() {
        f.put(&format!("o{i}.gz"), gzip(t));
    }
    let tmp = std::env::temp_dir().join(format!("s3s-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let topic = format!("scale-{}", std::process::id());
    // One settings file for every instance (/etc/s3s/s3s.env). The visibility timeout is far
    // above the time the test takes: no message should come back to a second pipeline.
    let shared = [
        ("S3S_QUEUE_URL", f.queue_url.clone()),
        ("S3S_POLL_ARGS", "--wait-time 1 --visibility-timeout 120".to_string()),
        ("S3S_PUBLISH", format!("s3s-kafka -b {brokers} -t {topic}")),
    ];
    let instances: Vec<Instance> = ["cdn-1", "cdn-2", "cdn-3"].iter().map(|n| Instance::start(n, &shared, &tmp)).collect();
    let t0 = Instant::now();
    while !instances.iter().all(Instance::poller_started) {
        assert!(t0.elapsed() < Duration::from_secs(30), "the pollers did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Objects arrive while all three are polling, as on a live queue.
    let t_sent = Instant::now();
    for i in 0..n_objects {
        f.send(&f.s3_event(&format!("o{i}.gz")));
    }
    while f.total() > 0 {
        assert!(t_sent.elapsed() < Duration::from_secs(90), "the queue was not drained: {:?}", f.counts());
        std::thread::sleep(Duration::from_millis(200));
    }
    let work: Vec<(String, Work)> = instances.into_iter().map(|i| (i.name.clone(), i.stop())).collect();
    for (name, w) in &work {
        println!("{name}: {w:?}");
    }

    // Every line delivered, read back by an independent consumer.
    let want: BTreeSet<String> = texts.iter().flat_map(|t| t.lines().map(str::to_string)).collect();
    let published: u64 = work.iter().map(|(_, w)| w.published).sum();
    let out = Command::new(root().join("scripts/kafka-consume"))
        .args(["--brokers", &brokers, "--topic", &topic, "--timeout", "30", "--expect", &published.to_string()])
        .output()
        .unwrap();
    let in_kafka: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    let unique: BTreeSet<String> = in_kafka.iter().cloned().collect();
    assert_eq!(unique.len(), want.len(), "every line in Kafka: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(unique, want);

    // Deliveries beyond one per message ("came back"): a message whose visibility ran out, or one
    // the queue handed out twice. The first cannot happen here: the run is far shorter than the
    // 120 s visibility timeout. The second is allowed by SQS standard queues, and moto does it now
    // and then under concurrent receives (its ReceiveMessage takes no lock; scripts/bench-scale's
    // tight loops see it at 3-4 pollers). Either way every copy is a whole object read again.
    let elapsed = t_sent.elapsed();
    assert!(elapsed < Duration::from_secs(100), "the run took {elapsed:?}, near the visibility timeout");
    let received: u64 = work.iter().map(|(_, w)| w.received).sum();
    let read: u64 = work.iter().map(|(_, w)| w.objects).sum();
    let came_back = received - n_objects as u64;
    let duplicates = (in_kafka.len() - unique.len()) as u64;
    println!(
        "{received} deliveries of {n_objects} messages ({came_back} came back), {read} objects read, {duplicates} duplicate lines"
    );

    // Each delivery ended in exactly one delete by the pipeline that held it (so each message was
    // deleted once, unless the queue handed it out twice); the queue is empty.
    let deleted: u64 = work.iter().map(|(_, w)| w.deleted).sum();
    assert_eq!(deleted, received, "each received message deleted once: {work:?}");
    assert_eq!(read, received, "each received message's object read once: {work:?}");
    assert_eq!(f.total(), 0);

    // Each pipeline did some of the work.
    for (name, w) in &work {
        assert!(w.objects > 0 && w.deleted > 0, "{name} did none of the work: {work:?}");
    }

    // Duplicates are exactly the lines of the objects read again: none when nothing came back,
    // which is what this run should see.
    assert_eq!(duplicates, came_back * per_object as u64, "duplicate lines not explained by deliveries: {work:?}");
    let lines_read: u64 = work.iter().map(|(_, w)| w.lines_read).sum();
    assert_eq!(lines_read, received * per_object as u64);
    if came_back > 0 {
        println!("note: the queue delivered {came_back} message(s) twice within the visibility timeout");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
