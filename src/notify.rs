//! What an SQS message body announces: S3 event notifications in every shape users meet.
//!
//! - S3 direct: `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name"},"object":{"key"}}}]}`
//! - SNS-wrapped: `{"Type":"Notification","Message":"<one of these shapes, as a JSON string>"}`
//! - EventBridge: `{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name"},"object":{"key"}}}`
//! - `s3:TestEvent` (sent when a notification configuration is put): announces nothing.
//!
//! Keys in notifications are URL-encoded (`+` is a space, `%2F` a slash): they are decoded here.
//!
//! What is not understood is an error, never "nothing to read": a `Nothing` notice is deleted by
//! s3s-ack, so it is given only for shapes known to announce no new object (a test event, an
//! `ObjectRemoved:*` record, an EventBridge S3 event of a known non-creation type). An
//! EventBridge body without a string `detail-type`, with a type S3 does not send, or a
//! `Records` list that is empty stays in the queue (its redrive policy decides), and so does a key
//! whose percent-decoding is not UTF-8 (`%FF`): an S3 key is UTF-8, and a U+FFFD in its place would
//! name another object.

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// One object a message announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Announced {
    pub bucket: String,
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
    /// ISO-8601 time S3 gives for the event.
    pub event_time: Option<String>,
    /// `ObjectCreated:Put`, `Object Created`...
    pub event_name: Option<String>,
}

/// What one message body means.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Objects to read (one or more).
    Objects(Vec<Announced>),
    /// Nothing to read, with the reason (`s3:TestEvent`, `ObjectRemoved:Delete`...):
    /// acknowledged without fetching anything.
    Nothing(String),
}

/// Decode a key as S3 notifications encode it: `+` is a space, then percent-decoding; an error
/// when the decoded bytes are not UTF-8 (no S3 key is).
pub fn decode_key(raw: &str) -> Result<String, String> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| format!("key {raw:?} does not decode to UTF-8 (an S3 key is UTF-8)"))
}

/// The `detail-type`s S3 sends to EventBridge that announce no new object.
const EVENTBRIDGE_NOT_CREATED: &[&str] = &[
    "Object Deleted",
    "Object Restore Initiated",
    "Object Restore Completed",
    "Object Restore Expired",
    "Object Tags Added",
    "Object Tags Deleted",
    "Object ACL Updated",
    "Object Storage Class Changed",
    "Object Access Tier Changed",
];

/// Understand a message body, or say why not.
pub fn parse(body: &str) -> Result<Notice, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("body is not JSON: {e}"))?;
    parse_value(&v, 0)
}

fn parse_value(v: &Value, depth: u8) -> Result<Notice, String> {
    let Some(obj) = v.as_object() else {
        return Err("body is not a JSON object".into());
    };
    // SNS envelope: the S3 event is a JSON string inside "Message".
    if obj.get("Type").and_then(Value::as_str) == Some("Notification") {
        if depth > 2 {
            return Err("SNS envelopes nested too deep".into());
        }
        let msg = obj.get("Message").and_then(Value::as_str).ok_or("SNS notification without a Message string")?;
        let inner: Value = serde_json::from_str(msg).map_err(|e| format!("SNS Message is not JSON: {e}"))?;
        return parse_value(&inner, depth + 1);
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notice::Nothing("s3:TestEvent".into()));
    }
    if let Some(records) = obj.get("Records") {
        return parse_records(records);
    }
    if obj.get("source").and_then(Value::as_str) == Some("aws.s3") && obj.contains_key("detail") {
        return parse_eventbridge(obj);
    }
    Err("not an S3 event notification (no Records, no SNS Message, no EventBridge detail)".into())
}

fn parse_records(records: &Value) -> Result<Notice, String> {
    let list = records.as_array().ok_or("Records is not an array")?;
    if list.is_empty() {
        return Err("Records is empty".into());
    }
    let mut objects = Vec::new();
    let mut skipped = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let event_name = r.get("eventName").and_then(Value::as_str);
        let s3 = r.get("s3").ok_or_else(|| format!("Records[{i}] has no s3 field"))?;
        let bucket = s3.pointer("/bucket/name").and_then(Value::as_str);
        let key = s3.pointer("/object/key").and_then(Value::as_str);
        let (Some(bucket), Some(key)) = (bucket.filter(|b| !b.is_empty()), key.filter(|k| !k.is_empty())) else {
            return Err(format!("Records[{i}] has no (or an empty) s3.bucket.name or s3.object.key"));
        };
        if let Some(name) = event_name
            && !name.starts_with("ObjectCreated:")
            && !name.starts_with("s3:ObjectCreated:")
        {
            skipped.push(name.to_string());
            continue;
        }
        objects.push(Announced {
            bucket: bucket.to_string(),
            key: decode_key(key).map_err(|e| format!("Records[{i}]: {e}"))?,
            size: s3.pointer("/object/size").and_then(Value::as_u64),
            etag: s3.pointer("/object/eTag").and_then(Value::as_str).map(str::to_string),
            event_time: r.get("eventTime").and_then(Value::as_str).map(str::to_string),
            event_name: event_name.map(str::to_string),
        });
    }
    if objects.is_empty() {
        return Ok(Notice::Nothing(skipped.join(",")));
    }
    Ok(Notice::Objects(objects))
}

fn parse_eventbridge(obj: &serde_json::Map<String, Value>) -> Result<Notice, String> {
    let detail_type = match obj.get("detail-type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err("EventBridge detail-type is not a string".into()),
        None => return Err("EventBridge event without a detail-type".into()),
    };
    if EVENTBRIDGE_NOT_CREATED.contains(&detail_type) {
        return Ok(Notice::Nothing(format!("EventBridge {detail_type:?}")));
    }
    if detail_type != "Object Created" {
        return Err(format!("EventBridge detail-type {detail_type:?} is not one S3 sends"));
    }
    let detail = &obj["detail"];
    let bucket = detail.pointer("/bucket/name").and_then(Value::as_str);
    let key = detail.pointer("/object/key").and_then(Value::as_str);
    let (Some(bucket), Some(key)) = (bucket.filter(|b| !b.is_empty()), key.filter(|k| !k.is_empty())) else {
        return Err("EventBridge detail has no (or an empty) bucket.name or object.key".into());
    };
    Ok(Notice::Objects(vec![Announced {
        bucket: bucket.to_string(),
        key: decode_key(key)?,
        size: detail.pointer("/object/size").and_then(Value::as_u64),
        etag: detail.pointer("/object/etag").and_then(Value::as_str).map(str::to_string),
        event_time: obj.get("time").and_then(Value::as_str).map(str::to_string),
        event_name: Some(detail_type.to_string()),
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_event(key: &str) -> String {
        serde_json::json!({"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-28T17:00:00.000Z",
            "eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"logs"},"object":{"key":key,"size":42,"eTag":"abc"}}}]})
        .to_string()
    }

    fn one(n: Notice) -> Announced {
        match n {
            Notice::Objects(mut v) if v.len() == 1 => v.remove(0),
            other => panic!("expected one object, got {other:?}"),
        }
    }

    #[test]
    fn direct_sns_eventbridge_and_test_events() {
        let a = one(parse(&s3_event("cf/a+b%3D1%2Fc.gz")).unwrap());
        assert_eq!((a.bucket.as_str(), a.key.as_str(), a.size), ("logs", "cf/a b=1/c.gz", Some(42)));
        assert_eq!(a.event_time.as_deref(), Some("2026-11-28T17:00:00.000Z"));
        let sns = serde_json::json!({"Type":"Notification","MessageId":"x","Message":s3_event("k%2B1")}).to_string();
        assert_eq!(one(parse(&sns).unwrap()).key, "k+1");
        let eb = r#"{"version":"0","detail-type":"Object Created","source":"aws.s3","time":"2026-11-28T17:00:00Z",
            "detail":{"bucket":{"name":"b"},"object":{"key":"x%20y","size":5,"etag":"e"}}}"#;
        let a = one(parse(eb).unwrap());
        assert_eq!((a.bucket.as_str(), a.key.as_str(), a.etag.as_deref()), ("b", "x y", Some("e")));
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-28T17:00:00Z","Bucket":"logs"}"#;
        assert_eq!(parse(test).unwrap(), Notice::Nothing("s3:TestEvent".into()));
        let sns_test = serde_json::json!({"Type":"Notification","Message":test}).to_string();
        assert_eq!(parse(&sns_test).unwrap(), Notice::Nothing("s3:TestEvent".into()));
        let removed = s3_event("k").replace("ObjectCreated:Put", "ObjectRemoved:Delete");
        assert_eq!(parse(&removed).unwrap(), Notice::Nothing("ObjectRemoved:Delete".into()));
    }

    #[test]
    fn several_records_and_poison() {
        let two = serde_json::json!({"Records":[
            {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"1"}}},
            {"eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"b"},"object":{"key":"2"}}}]})
        .to_string();
        match parse(&two).unwrap() {
            Notice::Objects(v) => assert_eq!(v.iter().map(|a| a.key.as_str()).collect::<Vec<_>>(), ["1", "2"]),
            other => panic!("{other:?}"),
        }
        for bad in ["", "not json", "[]", "{}", r#"{"Records":[{"s3":{}}]}"#, r#"{"Type":"Notification","Message":"{"}"#] {
            assert!(parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn what_is_not_understood_is_never_nothing_to_read() {
        let eb = |dt: &str| {
            format!(r#"{{"version":"0",{dt}"source":"aws.s3","detail":{{"bucket":{{"name":"b"}},"object":{{"key":"k"}}}}}}"#)
        };
        for bad in [eb(""), eb(r#""detail-type":42,"#), eb(r#""detail-type":"Object Createdd","#), eb(r#""detail-type":null,"#)] {
            let r = parse(&bad);
            assert!(r.is_err(), "{bad} gave {r:?}");
        }
        assert_eq!(
            parse(&eb(r#""detail-type":"Object Deleted","#)).unwrap(),
            Notice::Nothing("EventBridge \"Object Deleted\"".into())
        );
        assert!(parse(r#"{"Records":[]}"#).unwrap_err().contains("empty"));
        let sns_empty = serde_json::json!({"Type":"Notification","Message":r#"{"Records":[]}"#}).to_string();
        assert!(parse(&sns_empty).is_err());
    }

    #[test]
    fn a_key_that_does_not_decode_to_utf8_is_refused_not_replaced() {
        let e = parse(&s3_event("logs/%FF.gz")).unwrap_err();
        assert!(e.contains("logs/%FF.gz") && e.contains("UTF-8"), "{e}");
        assert!(parse(&s3_event("ok/%C3%A9.gz")).is_ok());
        assert_eq!(decode_key("a%2Bb+c%E2%82%AC").unwrap(), "a+b c€");
    }
}
