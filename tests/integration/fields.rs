//! Parsed fields (the `fields` object and `@timestamp` that s3s-parse adds to line records)
//! through s3s-filter --where and the publishers, against the real local servers: the
//! Elasticsearch-compatible server of `scripts/services` (S3S_ES_URL), the tansu broker
//! (S3S_KAFKA_BROKERS, read back with scripts/kafka-consume), rsyslog and graygelf receivers of
//! the tests' own (scripts/receivers/). The records are written here as s3s-parse writes them
//! (s3s(7)), so that these tests check the consumers of the contract on their own.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{root, sh};
use crate::syslog::{Receiver, ends, run};

const STATUSES: [u64; 8] = [200, 304, 404, 500, 502, 503, 200, 504];

/// Parsed CloudFront records for one object: `n` lines, every fourth one without `line`
/// (s3s-parse --drop-line), line 2 one that s3s-parse could not parse (no fields).
fn parsed(bucket: &str, key: &str, n: usize) -> (String, Vec<Value>) {
    let mut s = json!({"type": "object", "bucket": bucket, "key": key}).to_string() + "\n";
    let mut lines = Vec::new();
    for i in 1..=n {
        let status = STATUSES[i % STATUSES.len()];
        let (sec, frac) = (i % 60, i * 1000 % 1_000_000);
        let fields = json!({
            "date": "2019-12-04", "time": format!("21:02:{sec:02}"), "x-edge-location": "LAX1-C1",
            "sc-bytes": 300 + i, "c-ip": format!("192.0.2.{}", i % 7), "cs-method": if i % 3 == 0 { "POST" } else { "GET" },
            "cs(User-Agent)": if i % 5 == 0 { "Googlebot/2.1 (+http://www.google.com/bot.html)" } else { "Mozilla/5.0 (X11)" },
            "sc-status": status, "cs-uri-query": Value::Null, "id": format!("req-{i}"), "message": "cf-field",
            "_extra": ["appended-by-aws"],
        });
        let text = format!("2019-12-04\t21:02:{sec:02}\tLAX1-C1\t{}\tline {i} of {key}\t{status}", 300 + i);
        let mut rec = json!({"type": "line", "bucket": bucket, "key": key, "n": i});
        if i == 2 {
            rec["line"] = json!("garbage that does not parse");
            rec["parse_error"] = json!("1 field, the header has 11");
        } else {
            if i % 4 != 0 {
                rec["line"] = json!(text);
            }
            rec["@timestamp"] = json!(format!("2019-12-04T21:02:{sec:02}.{frac:06}Z"));
            rec["fields"] = fields;
        }
        s += &(rec.to_string() + "\n");
        lines.push(rec);
    }
    s += &(json!({"type": "end", "bucket": bucket, "key": key, "lines": n}).to_string() + "\n");
    (s, lines)
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("s3s-fields-{name}-{}", std::process::id()))
}

fn env_or_explain(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need the local servers. Run `scripts/test`, or \
             `scripts/services start moto kafka es && eval \"$(scripts/services env)\"` first"
        ),
    }
}

fn curl(method: &str, url: &str, body: Option<&Value>) -> Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-H", "Content-Type: application/json", url]);
    if let Some(b) = body {
        cmd.args(["--data-binary", &b.to_string()]);
    }
    let out = cmd.output().expect("run curl");
    assert!(out.status.success(), "curl {method} {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{method} {url}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// s3s-filter --where then s3s-es: only the 5xx lines are indexed; each document has the fields
/// at its top level (sc-status mapped and searchable as a number), @timestamp from the line,
/// the "message" field under fields.message when the line takes that name; both end records
/// come out.
#[test]
fn where_then_es_indexes_fields_as_numbers_with_the_lines_time() {
    let url = env_or_explain("S3S_ES_URL");
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 100_000_000;
    let index = format!("s3s-test-fields-{}-{ms}", std::process::id());
    let (a, lines_a) = parsed("cdn", "cf/E1.2019-12-04-21.a.gz", 40);
    let (b, lines_b) = parsed("cdn", "cf/E1.2019-12-04-21.b.gz", 16);
    let file = tmp("es.ndjson");
    std::fs::write(&file, a + &b).unwrap();
    let (code, out, err) = sh(&format!(
        "s3s-filter --where 'sc-status>=500' --where 'cs-method=GET' < {} | s3s-es --url {url} -i '{index}-%Y.%m'",
        file.display()
    ));
    assert_eq!(code, 0, "{err}");
    let types: Vec<Value> = out.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["type"].clone()).collect();
    assert_eq!(types, ["object", "end", "object", "end"], "{out}");
    let want: Vec<&Value> = lines_a
        .iter()
        .chain(&lines_b)
        .filter(|r| r["fields"]["sc-status"].as_u64().is_some_and(|s| s >= 500) && r["fields"]["cs-method"] == "GET")
        .collect();
    assert!(want.len() > 10);
    let pattern = format!("{index}-2019.12");
    curl("POST", &format!("{url}/{pattern}/_refresh"), None);
    let hits = curl("POST", &format!("{url}/{pattern}/_search"), Some(&json!({"size": 1000, "query": {"match_all": {}}})));
    let hits = hits["hits"]["hits"].as_array().unwrap_or_else(|| panic!("{hits}")).clone();
    assert_eq!(hits.len(), want.len(), "{hits:?}");
    for rec in &want {
        let key = rec["key"].as_str().unwrap();
        let doc = hits
            .iter()
            .map(|h| &h["_source"])
            .find(|d| d["s3"]["key"] == key && d["s3"]["line"] == rec["n"])
            .unwrap_or_else(|| panic!("no document for {rec}"));
        let f = &rec["fields"];
        assert_eq!(doc["@timestamp"], rec["@timestamp"], "{doc}");
        assert_eq!(doc["sc-status"], f["sc-status"], "{doc}");
        assert!(doc["sc-status"].is_u64(), "a number, not a string: {doc}");
        assert_eq!(doc["cs(User-Agent)"], f["cs(User-Agent)"], "{doc}");
        assert_eq!(doc["c-ip"], f["c-ip"], "{doc}");
        assert_eq!(doc["_extra"], f["_extra"], "{doc}");
        assert!(doc.get("fields").is_none(), "not nested: {doc}");
        match rec.get("line") {
            // The field "message" would collide with the line: it goes in as fields.message.
            Some(l) => assert_eq!((&doc["message"], &doc["fields.message"]), (l, &json!("cf-field")), "{doc}"),
            // No line, no message member of the document's own: the field takes the name.
            None => assert_eq!((&doc["message"], doc.get("fields.message")), (&json!("cf-field"), None), "{doc}"),
        }
    }
    // Indexed as a number: a range query finds exactly the 503s and 504s.
    let mapping = curl("GET", &format!("{url}/{pattern}/_mapping"), None);
    let mapping = mapping.as_object().unwrap().values().next().unwrap().clone();
    assert_eq!(mapping["mappings"]["properties"]["sc-status"]["type"], "long", "{mapping}");
    let q = json!({"size": 1000, "query": {"range": {"sc-status": {"gte": 503}}}});
    let ranged = curl("POST", &format!("{url}/{pattern}/_search"), Some(&q));
    let n503 = want.iter().filter(|r| r["fields"]["sc-status"].as_u64() >= Some(503)).count();
    assert_eq!(ranged["hits"]["hits"].as_array().map(Vec::len), Some(n503), "{ranged}");
    // And by time: the documents of one second of the log.
    let q = json!({"size": 1000, "query": {"range": {"@timestamp": {"gte": "2019-12-04T21:02:10Z", "lt": "2019-12-04T21:02:11Z"}}}});
    let at = curl("POST", &format!("{url}/{pattern}/_search"), Some(&q));
    let n_at = want.iter().filter(|r| r["@timestamp"].as_str().unwrap().starts_with("2019-12-04T21:02:10")).count();
    assert_eq!(at["hits"]["hits"].as_array().map(Vec::len), Some(n_at), "{at}");
    curl("DELETE", &format!("{url}/{pattern}"), None);
    let _ = std::fs::remove_file(&file);
}

/// GELF: each field as _NAME (GELF-legal), id as _id_, a taken name as _fields.NAME, nested
/// values as JSON text; the timestamp from @timestamp; the fields' JSON as short_message of a
/// record without line.
#[test]
fn gelf_sends_fields_as_additional_fields_with_the_lines_time() {
    let r = Receiver::gelf_udp("fields");
    let server = format!("udp://127.0.0.1:{}", r.ports[0]);
    let (mut inp, lines) = parsed("cdn", "cf/gelf.gz", 24);
    // A CloudTrail event: nested members; and an S3 access log line: "key" and "bucket" taken.
    let extra = [
        json!({"type":"line","bucket":"ct","key":"AWSLogs/1/CloudTrail/x.json.gz","n":1,"@timestamp":"2019-12-04T21:02:31Z",
            "line":"{\"eventName\":\"GetObject\"}",
            "fields":{"eventName":"GetObject","userIdentity":{"type":"IAMUser","userName":"alice"},"resources":[{"ARN":"arn:aws:s3:::b/k"}],"readOnly":true}}),
        json!({"type":"line","bucket":"logs","key":"s3/2019-02-06-00-00-38-X","n":1,"@timestamp":"2019-02-06T00:00:38Z",
            "line":"79a5 awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] ...",
            "fields":{"bucket":"awsexamplebucket1","key":"photos/a b.jpg","http_status":200,"remote_ip":null}}),
    ];
    for e in &extra {
        inp += &(e.to_string() + "\n");
    }
    let out = run("s3s-gelf", &["--server", &server, "--host", "edge-9", "--max-rate", "2000"], &inp);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ends(&out).len(), 1);
    let got = r.wait_for("gelf.jsonl", lines.len() + 2, Duration::from_secs(20));
    assert_eq!(got.len(), lines.len() + 2, "{got:?}");
    let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
    for rec in &lines {
        let g = got.iter().find(|g| num(&g["_line"]) == rec["n"].as_f64() && g["_key"] == "cf/gelf.gz").unwrap();
        let Some(f) = rec.get("fields") else {
            assert_eq!(g["short_message"], rec["line"], "{g}");
            assert!(g.get("_sc-status").is_none(), "{g}");
            continue;
        };
        match rec.get("line") {
            Some(l) => assert_eq!(&g["short_message"], l, "{g}"),
            None => assert_eq!(serde_json::from_str::<Value>(g["short_message"].as_str().unwrap()).unwrap(), *f, "{g}"),
        }
        assert_eq!(num(&g["_sc-status"]), f["sc-status"].as_f64(), "{g}");
        assert_eq!(num(&g["_sc-bytes"]), f["sc-bytes"].as_f64(), "{g}");
        assert_eq!(g["_cs_User-Agent_"], f["cs(User-Agent)"], "{g}");
        assert_eq!(g["_c-ip"], f["c-ip"], "{g}");
        assert_eq!(g["_id_"], f["id"], "{g}");
        assert_eq!(g["_message"], "cf-field", "{g}");
        assert_eq!(g["__extra"], "[\"appended-by-aws\"]", "{g}");
        assert!(g.get("_cs-uri-query").is_none(), "null left out: {g}");
        // The line's own time, to the millisecond.
        let t = rec["@timestamp"].as_str().unwrap();
        let (sec, frac): (f64, f64) = (t[17..19].parse().unwrap(), t[20..23].parse::<f64>().unwrap() / 1000.0);
        let want = 1_575_493_320.0 + sec + frac;
        assert!((num(&g["timestamp"]).unwrap() - want).abs() < 0.0005, "{t} -> {g}");
    }
    let ct = got.iter().find(|g| g["_key"] == "AWSLogs/1/CloudTrail/x.json.gz").unwrap();
    assert_eq!(ct["_eventName"], "GetObject");
    assert_eq!(serde_json::from_str::<Value>(ct["_userIdentity"].as_str().unwrap()).unwrap()["userName"], "alice", "{ct}");
    assert_eq!(ct["_readOnly"], "true", "{ct}");
    assert_eq!(num(&ct["timestamp"]), Some(1_575_493_351.0), "{ct}");
    let s3 = got.iter().find(|g| g["_key"] == "s3/2019-02-06-00-00-38-X").unwrap();
    assert_eq!((&s3["_bucket"], &s3["_fields.bucket"], &s3["_fields.key"]), (&json!("logs"), &json!("awsexamplebucket1"), &json!("photos/a b.jpg")), "{s3}");
    assert_eq!(num(&s3["timestamp"]), Some(1_549_411_238.0), "{s3}");
}

/// syslog: each message stamped with its line's @timestamp (to the microsecond, RFC 5424),
/// the time of sending for a line without one; a record without line sends its fields' JSON.
#[test]
fn syslog_messages_carry_the_lines_time() {
    let r = Receiver::rsyslog("fields");
    let server = format!("tcp://127.0.0.1:{}", r.ports[1]);
    let (inp, lines) = parsed("cdn", "cf/syslog.gz", 24);
    let out = run("s3s-syslog", &["--server", &server, "--app-name", "cdn", "--hostname", "edge-1"], &inp);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ends(&out).len(), 1);
    let got = r.wait_for("out.jsonl", lines.len(), Duration::from_secs(20));
    assert_eq!(got.len(), lines.len(), "{got:?}");
    let this_year = format!("{}", 1970 + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 31_556_952);
    for rec in &lines {
        let msg = match (rec.get("line"), rec.get("fields")) {
            (Some(l), _) => l.as_str().unwrap().to_string(),
            (None, Some(f)) => f.to_string(),
            _ => unreachable!(),
        };
        let g = got
            .iter()
            .find(|g| match rec.get("line") {
                Some(_) => g["msg"] == msg.as_str(),
                None => serde_json::from_str::<Value>(g["msg"].as_str().unwrap()).ok().as_ref() == rec.get("fields"),
            })
            .unwrap_or_else(|| panic!("{msg} not received: {got:?}"));
        let time = g["time"].as_str().unwrap();
        match rec.get("@timestamp") {
            // rsyslog writes the TIMESTAMP as it came (2019-12-04T21:02:05.005000Z) or with +00:00.
            Some(t) => {
                let t = t.as_str().unwrap();
                assert!(time.starts_with(&t[..t.len() - 1]), "{t} -> {time}: {g}");
            }
            None => assert!(time.starts_with(&this_year) || time.starts_with(&(this_year.parse::<u32>().unwrap() + 1).to_string()), "{g}"),
        }
    }
}

/// Kafka: --payload fields sends the fields object as it came (the whole record for a line
/// without fields), --key-field c-ip keys each message with the client address from the fields.
#[cfg(feature = "kafka")]
#[test]
fn kafka_payload_fields_keyed_by_a_field() {
    let brokers = env_or_explain("S3S_KAFKA_BROKERS");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let topic = format!("s3s-test-fields-{}-{nanos}", std::process::id());
    let (inp, lines) = parsed("cdn", "cf/kafka.gz", 30);
    let mut child = Command::new(crate::support::bin("s3s-kafka"))
        .args(["-b", &brokers, "-t", &topic, "-p", "0", "--payload", "fields", "--key-field", "c-ip"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(inp.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ends(&out).len(), 1);
    let consumed = Command::new(root().join("scripts/kafka-consume"))
        .args(["--brokers", &brokers, "--topic", &topic, "--format", "json", "--timeout", "10", "--settle", "1"])
        .args(["--expect", &lines.len().to_string()])
        .current_dir(root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(consumed.status.success(), "{}", String::from_utf8_lossy(&consumed.stderr));
    let got: Vec<Value> = String::from_utf8_lossy(&consumed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), lines.len());
    let raw_lines: Vec<&str> = inp.lines().filter(|l| l.contains(r#""type":"line""#)).collect();
    for ((m, rec), raw) in got.iter().zip(&lines).zip(&raw_lines) {
        let value = m["value"].as_str().unwrap();
        match rec.get("fields") {
            Some(f) => {
                // Byte for byte as the record had it.
                let start = raw.find(r#""fields":"#).unwrap() + 9;
                assert_eq!(value, &raw[start..raw.len() - 1], "{m}");
                assert_eq!(serde_json::from_str::<Value>(value).unwrap(), *f);
                assert_eq!(m["key"], f["c-ip"], "{m}");
            }
            None => {
                assert_eq!(value, *raw, "a line without fields goes as the whole record: {m}");
                assert_eq!(m["key"], Value::Null, "{m}");
            }
        }
    }
    if let Ok(tansu) = std::env::var("S3S_TANSU") {
        let broker = brokers.split(',').next().unwrap_or_default();
        let _ = Command::new(tansu)
            .args(["topic", "delete", "--broker", &format!("tcp://{broker}"), &topic])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
