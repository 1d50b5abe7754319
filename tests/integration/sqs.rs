//! s3s-poll and s3s-ack end to end against the local S3/SQS server, with real bucket
//! notifications: receive → get → filter → deliver → delete, and what goes wrong on the way.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::aws::{Fixture, gzip, lines};
use crate::support::sh;

/// The `line` texts in an NDJSON file, as a set, and the number of end records.
fn delivered(path: &std::path::Path) -> (BTreeSet<String>, usize) {
    read_delivered(path, true)
}

/// Like `delivered`, but the last record may be cut by a kill: unparsable lines are skipped.
fn delivered_lossy(path: &std::path::Path) -> (BTreeSet<String>, usize) {
    read_delivered(path, false)
}

fn read_delivered(path: &std::path::Path, strict: bool) -> (BTreeSet<String>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut set = BTreeSet::new();
    let mut ends = 0;
    for l in text.lines() {
        let v: serde_json::Value = match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) if strict => panic!("bad record {l:?}: {e}"),
            Err(_) => continue,
        };
        match v["type"].as_str() {
            Some("line") => {
                set.insert(v["line"].as_str().unwrap().to_string());
            }
            Some("end") => ends += 1,
            _ => {}
        }
    }
    (set, ends)
}

fn expected(texts: &[&str]) -> BTreeSet<String> {
    texts.iter().flat_map(|t| t.lines().map(str::to_string)).collect()
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("s3s-{name}-{}.ndjson", std::process::id()))
}

/// Wait until the queue holds `want` messages (visible + in flight): moto's counts lag a little.
fn wait_total(f: &Fixture, want: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let n = f.total();
        if n == want || t0.elapsed() > Duration::from_secs(5) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn whole_loop_with_real_notifications() {
    let f = Fixture::new("loop", true);
    let a = lines("a", 300);
    let b = lines("b", 5);
    let c = lines("c", 1);
    f.put("cf/E2ABC.2026-11-28-17.a.gz", gzip(&a));
    f.put("cf/dt=2026-11-28/with space+plus=eq.gz", gzip(&b));
    f.put("cf/no-extension", zstd::encode_all(c.as_bytes(), 3).unwrap());
    assert_eq!(wait_total(&f, 4), 4, "3 object events + the s3:TestEvent");
    let out = tmp("loop");
    let (code, _, err) = sh(&format!(
        "s3s-poll --queue-url {} --once | s3s-cat | s3s-filter -v -e '\\t503$' | tee {} | s3s-ack",
        f.queue_url,
        out.display()
    ));
    assert_eq!(code, 0, "{err}");
    let (got, ends) = delivered(&out);
    let want: BTreeSet<String> = expected(&[&a, &b, &c]).into_iter().filter(|l| !l.ends_with("\t503")).collect();
    assert_eq!(got, want);
    assert_eq!(ends, 3);
    assert!(err.contains("s3s-ack: 4 messages deleted, 0 failed"), "{err}");
    assert_eq!(wait_total(&f, 0), 0, "queue must be empty");
}

#[test]
fn every_notification_shape() {
    let f = Fixture::new("shapes", false);
    let texts: Vec<String> = (0..5).map(|i| lines(&format!("s{i}"), 3)).collect();
    for (i, t) in texts.iter().enumerate() {
        f.put(&format!("k/{i} x.gz"), gzip(t));
    }
    let direct = f.s3_event("k/0 x.gz");
    let sns = serde_json::json!({"Type":"Notification","MessageId":"sns-1","TopicArn":"arn:aws:sns:us-east-1:1:t",
        "Message": f.s3_event("k/1 x.gz")})
    .to_string();
    let eventbridge = serde_json::json!({"version":"0","id":"e-1","detail-type":"Object Created","source":"aws.s3",
        "time":"2026-11-28T17:00:00Z","detail":{"bucket":{"name":f.bucket},"object":{"key":"k/2+x.gz","size":3}}})
    .to_string();
    let mut two: serde_json::Value = serde_json::from_str(&f.s3_event("k/3 x.gz")).unwrap();
    let second: serde_json::Value = serde_json::from_str(&f.s3_event("k/4 x.gz")).unwrap();
    two["Records"].as_array_mut().unwrap().push(second["Records"][0].clone());
    let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-28T17:00:00.000Z","Bucket":"b"}"#;
    for body in [direct, sns, eventbridge, two.to_string(), test_event.to_string()] {
        f.send(&body);
    }
    let out = tmp("shapes");
    let (code, _, err) = sh(&format!("s3s-poll --queue-url {} --once | s3s-cat | tee {} | s3s-ack", f.queue_url, out.display()));
    assert_eq!(code, 0, "{err}");
    let (got, ends) = delivered(&out);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(got, expected(&refs));
    assert_eq!(ends, 5);
    assert!(err.contains("s3s-ack: 5 messages deleted, 0 failed"), "{err}");
    assert_eq!(wait_total(&f, 0), 0);
}

#[test]
fn poison_message_is_reported_and_left_for_redrive() {
    let f = Fixture::new("poison", false);
    let t = lines("ok", 2);
    f.put("ok.gz", gzip(&t));
    f.send("this is not an S3 event");
    f.send(&f.s3_event("ok.gz"));
    let out = tmp("poison");
    let (code, _, err) = sh(&format!(
        "s3s-poll --queue-url {} --once --visibility-timeout 1 | s3s-cat | tee {} | s3s-ack",
        f.queue_url,
        out.display()
    ));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("not understood (body is not JSON"), "{err}");
    assert!(err.contains("left in the queue"), "{err}");
    assert_eq!(delivered(&out).0, expected(&[&t]));
    assert_eq!(wait_total(&f, 1), 1, "the poison message stays in the queue");
}

#[test]
fn bodies_not_understood_are_never_deleted() {
    // The probe's four deleted bodies, an empty bucket name and a key that decodes to no UTF-8:
    // each is reported and stays in the queue; the one good message beside them is deleted.
    let f = Fixture::new("hostile", false);
    let t = lines("good", 2);
    f.put("good.gz", gzip(&t));
    let eb = |detail_type: &str| {
        format!(
            r#"{{"version":"0",{detail_type}"source":"aws.s3","detail":{{"bucket":{{"name":"{}"}},"object":{{"key":"good.gz"}}}}}}"#,
            f.bucket
        )
    };
    let hostile = [
        eb(""),
        eb(r#""detail-type":42,"#),
        eb(r#""detail-type":"Object Createdd","#),
        r#"{"Records":[]}"#.to_string(),
        f.s3_event("good.gz").replace(&format!("\"name\":\"{}\"", f.bucket), "\"name\":\"\""),
        f.s3_event("logs/xffx.gz").replace("xffx", "%FF"),
    ];
    for body in &hostile {
        f.send(body);
    }
    f.send(&f.s3_event("good.gz"));
    let out = tmp("hostile");
    let (code, _, err) = sh(&format!(
        "s3s-poll --queue-url {} --once --visibility-timeout 1 | s3s-cat | tee {} | s3s-ack",
        f.queue_url,
        out.display()
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches("not understood").count(), hostile.len(), "{err}");
    assert!(err.contains("s3s-ack: 1 messages deleted"), "{err}");
    assert_eq!(delivered(&out).0, expected(&[&t]));
    assert_eq!(wait_total(&f, hostile.len() as u64), hostile.len() as u64, "every body not understood stays in the queue");
}

#[test]
fn key_filters_acknowledge_without_fetching() {
    let f = Fixture::new("keys", true);
    let t = lines("kept", 2);
    f.put("logs/a.gz", gzip(&t));
    f.put("logs/skip.txt", b"not fetched\n".to_vec());
    f.put("other/b.gz", gzip(&lines("other", 2)));
    assert_eq!(wait_total(&f, 4), 4);
    let objects = tmp("keys-objects");
    let out = tmp("keys");
    let (code, _, err) = sh(&format!(
        "s3s-poll --queue-url {} --once --key-regex '\\.gz$' --exclude-key-regex '^other/' | tee {} | s3s-cat | tee {} | s3s-ack",
        f.queue_url,
        objects.display(),
        out.display()
    ));
    assert_eq!(code, 0, "{err}");
    let polled = std::fs::read_to_string(&objects).unwrap();
    assert_eq!(polled.matches(r#""type":"object""#).count(), 1, "{polled}");
    assert!(polled.contains(r#""key":"logs/a.gz""#), "{polled}");
    assert_eq!(delivered(&out).0, expected(&[&t]));
    assert!(err.contains("s3s-ack: 4 messages deleted"), "{err}");
    assert_eq!(wait_total(&f, 0), 0);
}

#[test]
fn dry_run_leaves_the_queue_as_it_was() {
    let f = Fixture::new("dry", true);
    f.put("a.gz", gzip(&lines("a", 3)));
    f.put("b.gz", gzip(&lines("b", 3)));
    assert_eq!(wait_total(&f, 3), 3);
    let out = tmp("dry");
    let (code, _, err) =
        sh(&format!("s3s-poll --queue-url {} --once --dry-run | s3s-cat | tee {} | s3s-ack", f.queue_url, out.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(delivered(&out).1, 2);
    assert_eq!(err.matches("dry run: would delete message").count(), 3, "{err}");
    assert!(err.contains("0 messages deleted"), "{err}");
    assert_eq!(f.counts(), (3, 0), "all visible again, none deleted");
}

#[test]
fn killed_pipeline_deletes_nothing_undelivered_and_the_rest_comes_back() {
    let f = Fixture::new("kill", false);
    let texts: Vec<String> = (0..6).map(|i| lines(&format!("k{i}"), 1500)).collect();
    for (i, t) in texts.iter().enumerate() {
        f.put(&format!("o{i}.gz"), gzip(t));
        f.send(&f.s3_event(&format!("o{i}.gz")));
    }
    let out = tmp("kill");
    // A slow sink (about 2000 lines/s) so the kill lands mid-stream.
    let script = format!(
        "s3s-poll --queue-url {} --visibility-timeout 3 | s3s-cat | perl -pe 'select(undef,undef,undef,0.0005)' | tee {} | s3s-ack & \
         sleep 1.5; kill -9 0",
        f.queue_url,
        out.display()
    );
    let (code, _, _) = crate::support::sh_group(&script);
    assert_ne!(code, 0, "the group was killed");
    let (_, ends) = delivered_lossy(&out);
    assert!(ends < 6, "the kill must land mid-stream ({ends} objects ended)");
    // No message was deleted whose object has no end record in the output (a delivered object's
    // message may still be there: its delete had not gone out yet; that is a duplicate, not a loss).
    std::thread::sleep(Duration::from_millis(500));
    let deleted = 6 - f.total();
    assert!(deleted <= ends as u64, "{deleted} messages deleted but only {ends} objects delivered");
    // After the visibility timeout the rest is processed. A long poll of the killed s3s-poll may
    // still be open at the server and take the messages when they come back (real SQS may do the
    // same with a receive whose client went away), which hides them for one more timeout: so run
    // the pipeline until the queue is empty, as a restarted daemon would, for at most 20 s.
    std::thread::sleep(Duration::from_secs(4));
    let t0 = Instant::now();
    loop {
        let (code, _, err) =
            sh(&format!("s3s-poll --queue-url {} --once | s3s-cat | tee -a {} | s3s-ack", f.queue_url, out.display()));
        assert_eq!(code, 0, "{err}");
        if wait_total(&f, 0) == 0 || t0.elapsed() > Duration::from_secs(20) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (got, _) = delivered_lossy(&out);
    assert_eq!(got, expected(&refs), "every line delivered at least once");
    assert_eq!(wait_total(&f, 0), 0);
}

#[test]
fn two_pipelines_share_a_queue() {
    let f = Fixture::new("share", false);
    let texts: Vec<String> = (0..12).map(|i| lines(&format!("p{i}"), 200)).collect();
    for (i, t) in texts.iter().enumerate() {
        f.put(&format!("o{i}.gz"), gzip(t));
        f.send(&f.s3_event(&format!("o{i}.gz")));
    }
    let (o1, o2) = (tmp("share1"), tmp("share2"));
    let p = |o: &std::path::Path| {
        format!("s3s-poll --queue-url {} --once --batch 2 | s3s-cat | tee {} | s3s-ack", f.queue_url, o.display())
    };
    let (code, _, err) =
        sh(&format!("({}) & a=$!; ({}) & b=$!; wait $a; ra=$?; wait $b; rb=$?; exit $((ra | rb))", p(&o1), p(&o2)));
    assert_eq!(code, 0, "{err}");
    let (mut got, e1) = delivered(&o1);
    let (got2, e2) = delivered(&o2);
    got.extend(got2);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(got, expected(&refs));
    assert!(e1 + e2 >= 12, "{e1} + {e2}");
    assert_eq!(wait_total(&f, 0), 0);
}

#[test]
fn lock_makes_a_second_instance_exit_at_once() {
    let f = Fixture::new("lock", false);
    let lock = std::env::temp_dir().join(format!("s3s-lock-{}", std::process::id()));
    let (code, out, err) = sh(&format!(
        "flock {0} sleep 3 & sleep 0.3; t0=$(date +%s); s3s-poll --queue-url {1} --lock {0}; echo \"rc=$? took=$(( $(date +%s) - t0 ))\"",
        lock.display(),
        f.queue_url
    ));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("rc=0 took=0"), "{out}");
    assert!(err.contains("another instance holds the lock"), "{err}");
}

#[test]
fn sigterm_stops_the_poller_cleanly() {
    let f = Fixture::new("term", false);
    let (code, out, err) = sh(&format!(
        "s3s-poll --queue-url {} > /dev/null & pid=$!; sleep 1; kill -TERM $pid; wait $pid; echo rc=$?",
        f.queue_url
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "rc=0", "{err}");
}

#[test]
fn missing_queue_is_a_clear_error() {
    crate::aws::require_services();
    let (code, out, err) = sh("s3s-poll --queue-url http://127.0.0.1:45000/123456789012/no-such-queue --once; echo rc=$?");
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "rc=1");
    assert!(err.contains("s3s-poll: error: receiving from http://127.0.0.1:45000/123456789012/no-such-queue"), "{err}");
}

#[test]
fn s3s_cat_reads_s3_urls_and_reports_failed_objects_by_name() {
    let f = Fixture::new("cat", false);
    let ok = lines("ok", 50);
    f.put("ok.gz", gzip(&ok));
    let mut corrupt = gzip(&lines("bad", 500));
    corrupt.truncate(corrupt.len() / 2);
    f.put("dir/corrupt.gz", corrupt);
    // Stored with Content-Encoding: gzip, as many log shippers upload: the bytes decide.
    f.rt.block_on(async {
        f.s3.put_object()
            .bucket(&f.bucket)
            .key("encoded.log")
            .content_encoding("gzip")
            .body(gzip(&lines("enc", 3)).into())
            .send()
            .await
            .unwrap();
    });
    let b = &f.bucket;
    let (code, out, err) = sh(&format!(
        "s3s-cat s3://{b}/missing.gz s3://{b}/dir/corrupt.gz s3://{b}/ok.gz s3://{b}/encoded.log s3://no-such-bucket-{b}/x; echo rc=$?"
    ));
    assert_eq!(code, 0);
    assert!(out.ends_with("rc=1\n"), "{out}");
    assert!(err.contains(&format!("s3s-cat: error: s3://{b}/missing.gz: NoSuchKey")), "{err}");
    assert!(err.contains(&format!("s3s-cat: error: s3://{b}/dir/corrupt.gz: ")), "{err}");
    assert!(err.contains(&format!("s3s-cat: error: s3://no-such-bucket-{b}/x: NoSuchBucket")), "{err}");
    let records: Vec<serde_json::Value> =
        out.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let ends: Vec<&str> = records.iter().filter(|r| r["type"] == "end").map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(ends, ["ok.gz", "encoded.log"], "no end record for a failed object");
    let ok_lines: Vec<&str> =
        records.iter().filter(|r| r["type"] == "line" && r["key"] == "ok.gz").map(|r| r["line"].as_str().unwrap()).collect();
    assert_eq!(ok_lines, ok.lines().collect::<Vec<_>>());
    assert_eq!(records.iter().filter(|r| r["key"] == "encoded.log" && r["type"] == "line").count(), 3);
}

#[test]
fn ack_pass_incomplete_failed_deletes_and_max_messages() {
    let f = Fixture::new("ackmisc", false);
    for i in 0..5 {
        f.put(&format!("m{i}.gz"), gzip(&lines(&format!("m{i}"), 2)));
        f.send(&f.s3_event(&format!("m{i}.gz")));
    }
    // --max-messages: 3 of the 5 messages; --pass echoes every record to stdout.
    let (code, out, err) = sh(&format!(
        "s3s-poll --queue-url {} --max-messages 3 --wait-time 1 | s3s-cat | s3s-ack --pass | grep -c '\"type\":\"end\"'",
        f.queue_url
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "3");
    assert!(err.contains("s3s-ack: 3 messages deleted, 0 failed"), "{err}");
    assert_eq!(wait_total(&f, 2), 2);
    // A message with 2 objects of which only 1 ended: reported, left for redelivery; and an
    // end whose receipt handle is stale: the delete fails, is reported and counted, not fatal.
    let token = |rh: &str, objects: u32| serde_json::json!({"queue_url": f.queue_url, "receipt_handle": rh, "message_id": format!("id-{rh}"), "objects": objects});
    let input = format!(
        "{}\n{}\n",
        serde_json::json!({"type":"end","bucket":"b","key":"k1","lines":1,"ack": token("two-objects", 2)}),
        serde_json::json!({"type":"end","bucket":"b","key":"k2","lines":1,"ack": token("stale-handle", 1)}),
    );
    let path = std::env::temp_dir().join(format!("s3s-ackmisc-{}.ndjson", std::process::id()));
    std::fs::write(&path, input).unwrap();
    let (code, out, err) = sh(&format!("s3s-ack < {}; echo rc=$?", path.display()));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "rc=0", "{err}");
    assert!(err.contains("message id-two-objects incomplete (1 of 2 objects ended); left for redelivery"), "{err}");
    assert!(err.contains("deleting message id-stale-handle failed"), "{err}");
    assert!(err.contains("s3s-ack: 0 messages deleted, 1 failed, 0 dry-run, 1 incomplete"), "{err}");
}
