//! s3s-parse on real objects in the local S3 (moto, started by `scripts/services`), read by
//! s3s-cat: CloudFront, ALB and S3 access logs under AWS's key layouts, CloudTrail documents
//! split into events (gzip'd, large, empty), digests acknowledged with 0 lines.

use serde_json::Value;

use crate::aws::{Fixture, gzip};
use crate::support::sh;

fn records(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn of_type<'a>(recs: &'a [Value], ty: &str, key: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["type"] == ty && r["key"].as_str().is_some_and(|k| k.contains(key))).collect()
}

#[test]
fn aws_logs_from_s3_get_fields_and_timestamps() {
    let f = Fixture::new("parse-logs", false);
    let cf_key = "cf/E2EXAMPLE.2019-12-04-21.a1b2c3d4.gz";
    let cf = std::fs::read_to_string("tests/data/parse/cloudfront-full.log").unwrap();
    f.put(cf_key, gzip(&cf));
    let alb_key = "AWSLogs/123456789012/elasticloadbalancing/us-east-2/2018/07/02/123456789012_elasticloadbalancing_us-east-2_app.my-loadbalancer.50dc6c495c0c9188_20180702T2220Z_10.0.0.1_x.log.gz";
    f.put(alb_key, gzip(&std::fs::read_to_string("tests/data/parse/alb.log").unwrap()));
    let s3_key = "s3-logs/2019-02-06-00-00-38-5A7E3B1C0EXAMPLE";
    f.put(s3_key, std::fs::read("tests/data/parse/s3-access.log").unwrap());
    let (code, out, err) =
        sh(&format!("s3s-cat s3://{b}/{cf_key} s3://{b}/{alb_key} s3://{b}/{s3_key} | s3s-parse -v", b = f.bucket));
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("format cloudfront") && err.contains("format alb") && err.contains("format s3-access"), "{err}");
    let recs = records(&out);
    let cf_lines = of_type(&recs, "line", "cf/");
    assert_eq!(cf_lines.len(), 3, "the two header lines are consumed");
    assert_eq!(cf_lines[0]["fields"]["sc-status"], 200);
    assert_eq!(cf_lines[0]["fields"]["time-taken"], 0.001);
    assert_eq!(cf_lines[0]["@timestamp"], "2019-12-04T21:02:31Z");
    assert_eq!(cf_lines[1]["fields"]["cs(Referer)"], "http://www.example.com/");
    assert_eq!(cf_lines[2]["fields"]["cs(User-Agent)"], "curl/7.68.0%20(x86_64)", "decoded once");
    assert_eq!(cf_lines[0]["n"], 3, "n stays the line's number in the object");
    let cf_end = of_type(&recs, "end", "cf/");
    assert_eq!(cf_end[0]["lines"], 3, "end.lines counts the records emitted");
    let alb = of_type(&recs, "line", "elasticloadbalancing");
    assert_eq!(alb.len(), 4);
    assert_eq!(alb[1]["fields"]["client_ip"], "2001:db8::1");
    assert_eq!(alb[1]["fields"]["client_port"], 54321);
    assert_eq!(alb[1]["fields"]["transformed_host"], "internal.example.com");
    assert_eq!(alb[2]["fields"]["request_method"], Value::Null);
    assert_eq!(alb[3]["fields"]["_extra"], serde_json::json!(["a-field-from-2026", "42"]));
    assert_eq!(of_type(&recs, "end", "elasticloadbalancing")[0]["lines"], 4);
    let s3 = of_type(&recs, "line", "s3-logs/");
    assert_eq!(s3[1]["fields"]["requester"], "arn:aws:iam::cloudfront:user/CloudFront Origin Access Identity E2EXAMPLEID");
    assert_eq!(s3[2]["fields"]["remote_ip"], Value::Null);
    assert_eq!(s3[3]["fields"]["operation"], "S3.COMPUTE.OBJECT.CHECKSUM");
    assert_eq!(s3[0]["@timestamp"], "2019-02-06T00:00:38Z");
    assert!(recs.iter().all(|r| r.get("parse_error").is_none()), "{out}");
}

/// A CloudTrail document of `n` events, on one line as CloudTrail writes it.
fn trail(n: usize, pad: usize) -> String {
    let events: Vec<String> = (1..=n)
        .map(|i| {
            serde_json::json!({"eventVersion":"1.08","eventTime":format!("2026-11-28T17:{:02}:{:02}Z", i / 60 % 60, i % 60),
                "eventSource":"s3.amazonaws.com","eventName":"GetObject","requestParameters":{"key":format!("k{i}"),"pad":"x".repeat(pad)}})
            .to_string()
        })
        .collect();
    format!("{{\"Records\":[{}]}}", events.join(","))
}

#[test]
fn cloudtrail_documents_become_one_record_per_event() {
    let f = Fixture::new("parse-trail", false);
    let dir = "AWSLogs/123456789012/CloudTrail/eu-west-1/2026/11/28";
    let big = format!("{dir}/123456789012_CloudTrail_eu-west-1_20261128T1700Z_big.json.gz");
    // 20000 events, ~10 MB decompressed: one "line" of the old s3s-cat, now 20000 records.
    f.put(&big, gzip(&trail(20000, 400)));
    let empty = format!("{dir}/123456789012_CloudTrail_eu-west-1_20261128T1705Z_empty.json.gz");
    f.put(&empty, gzip(r#"{"Records":[]}"#));
    let digest = "AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2026/11/28/123456789012_CloudTrail-Digest_eu-west-1_t_eu-west-1_20261128T170000Z.json.gz";
    f.put(digest, gzip(r#"{"awsAccountId":"123456789012","logFiles":[]}"#));
    let insight = "AWSLogs/123456789012/CloudTrail-Insight/eu-west-1/2026/11/28/x.json.gz";
    f.put(
        insight,
        gzip(r#"{"Records":[{"eventVersion":"1.08","eventTime":"2026-11-28T17:00:00Z","awsRegion":"eu-west-1","eventID":"e1","eventType":"AwsCloudTrailInsight","eventCategory":"Insight","insightDetails":{"state":"Start","eventName":"PutObject"},"eventName":"PutObject"}]}"#),
    );
    let (code, out, err) = sh(&format!(
        "s3s-cat s3://{b}/{big} s3://{b}/{empty} s3://{b}/{digest} s3://{b}/{insight} | s3s-parse --drop-line",
        b = f.bucket
    ));
    assert_eq!(code, 0, "{err}");
    let recs = records(&out);
    let events = of_type(&recs, "line", "_big");
    assert_eq!(events.len(), 20000);
    assert_eq!(events[0]["n"], 1);
    assert_eq!(events[19999]["n"], 20000);
    assert_eq!(events[1]["fields"]["requestParameters"]["key"], "k2");
    assert_eq!(events[1]["@timestamp"], "2026-11-28T17:00:02Z");
    assert!(events[0].get("line").is_none(), "--drop-line");
    assert_eq!(of_type(&recs, "end", "_big")[0]["lines"], 20000);
    assert_eq!(of_type(&recs, "line", "_empty").len(), 0);
    assert_eq!(of_type(&recs, "end", "_empty")[0]["lines"], 0);
    assert_eq!(of_type(&recs, "line", "Digest").len(), 0);
    assert_eq!(of_type(&recs, "end", "CloudTrail-Digest")[0]["lines"], 0, "a digest is acknowledged with 0 lines");
    let ins = of_type(&recs, "line", "Insight");
    assert_eq!(ins[0]["fields"]["insightDetails"]["state"], "Start");
    assert!(recs.iter().all(|r| r.get("parse_error").is_none()));

    // --whole-documents: the old behaviour, one line per document (s3s-parse says so).
    let (code, out, _) = sh(&format!("s3s-cat --whole-documents s3://{b}/{empty} | s3s-parse", b = f.bucket));
    assert_eq!(code, 0);
    let recs = records(&out);
    assert!(recs[0]["parse_error"].as_str().unwrap().contains("whole CloudTrail document"), "{out}");

    // A cut document: the events before the fault go out, the object gets no end (it comes back).
    let cut = format!("{dir}/cut.json.gz");
    let doc = trail(3, 10);
    f.put(&cut, gzip(&doc[..doc.len() - 40]));
    let (code, out, err) = sh(&format!("s3s-cat s3://{b}/{cut} | s3s-parse", b = f.bucket));
    assert_eq!(code, 1);
    assert!(err.contains("not a well-formed CloudTrail document"), "{err}");
    let recs = records(&out);
    assert_eq!(recs.iter().filter(|r| r["type"] == "end").count(), 0);
    assert_eq!(recs.len(), 2);
}

#[test]
fn malformed_records_withhold_the_end_and_unparsable_lines_pass() {
    // Local files (no server): s3s-cat's records, with a malformed record in the middle.
    let (code, out, err) = sh("{ s3s-cat tests/data/parse/vpc-default.log | head -3; echo '{\"type\":\"line\",broken'; \
         s3s-cat tests/data/parse/vpc-default.log | tail -n +4; s3s-cat tests/data/parse/events.jsonl; } | s3s-parse");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("end record withheld"), "{err}");
    let recs = records(&out);
    assert_eq!(of_type_file(&recs, "end", "vpc-default").len(), 0);
    let jl = of_type_file(&recs, "line", "events.jsonl");
    assert_eq!(jl.len(), 3);
    assert_eq!(jl[1]["fields"]["err"]["code"], 5);
    assert!(jl[2]["parse_error"].as_str().unwrap().contains("not a JSON object"));
    assert_eq!(jl[2]["line"], "not json");
    assert_eq!(of_type_file(&recs, "end", "events.jsonl")[0]["lines"], 3);
}

fn of_type_file<'a>(recs: &'a [Value], ty: &str, file: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["type"] == ty && r["file"].as_str().is_some_and(|k| k.contains(file))).collect()
}

/// Golden files: `tests/cmd/parse/*.toml` (s3s-parse on s3s-cat's records of the files in
/// tests/data/parse/, and s3s-cat splitting CloudTrail documents). `TRYCMD=overwrite` refreshes.
#[test]
fn golden() {
    trycmd::TestCases::new()
        .register_bin("s3s-parse", trycmd::cargo::cargo_bin!("s3s-parse"))
        .register_bin("s3s-cat", trycmd::cargo::cargo_bin!("s3s-cat"))
        .case("tests/cmd/parse/*.toml");
}
