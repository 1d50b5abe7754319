//! The NDJSON envelope every stage reads and writes (the contract is `man/s3s.7`).
//!
//! - `{"type":"object","bucket":B,"key":K,...}`: an S3 object to read (or `"file":PATH` for a
//!   local file), maybe with an opaque `ack` token and `dry_run`.
//! - `{"type":"line","bucket":B,"key":K,"n":N,"line":"..."}`: line N (1-based), no newline.
//! - `{"type":"end","bucket":B,"key":K,"lines":COUNT,...}`: all lines of the object were emitted;
//!   carries every other field of the `object` record (its `ack` token among them).
//!
//! - `ack`: the token of the SQS message an object came from ([`Ack`]), written by s3s-poll and
//!   read by the stages that keep the message invisible and by s3s-ack, which deletes it.
//!
//! Line records are written by hand from a per-object prefix (no allocation per line); the
//! low-volume records (`object`, `end`) go through `serde_json` with field order preserved.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::scan::{escape_into, quote_into};

/// Record type names (fixed by the contract).
pub const OBJECT: &str = "object";
pub const LINE: &str = "line";
pub const END: &str = "end";

/// The ack token: which SQS message an `object` (and so its `end`) or a `message` record came
/// from, how many objects it announced, and its visibility. One type for the writer (s3s-poll)
/// and every reader (s3s-cat, the publishers, s3s-ack); members it does not know are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub queue_url: String,
    pub receipt_handle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// How many `end` records delete the message (0 for a `message` record).
    pub objects: u64,
    /// ApproximateReceiveCount when received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_count: Option<u64>,
    /// SentTimestamp (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_ms: Option<u64>,
    /// The message's visibility timeout (seconds), for the stages that extend it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout: Option<i64>,
    /// When the visibility runs out (ms since the epoch); each extension writes the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Members added by other versions or other tools, passed on as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Ack {
    /// The message id for messages ("?" when the token has none).
    pub fn message_id(&self) -> &str {
        self.message_id.as_deref().unwrap_or("?")
    }

    /// The `ack` member of a record, when it has one; an error when it is there but malformed.
    pub fn of_record(record: &Map<String, Value>) -> Result<Option<Ack>, String> {
        match record.get("ack") {
            None => Ok(None),
            Some(v) => Ack::deserialize(v).map(Some).map_err(|e| format!("ack token: {e}")),
        }
    }
}

/// Where an object's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 { bucket: String, key: String },
    File(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // For messages: a key from upstream never reaches a terminal raw.
            Location::S3 { bucket, key } => {
                write!(f, "s3://{}/{}", crate::io::printable(bucket.as_bytes()), crate::io::printable(key.as_bytes()))
            }
            Location::File(p) => f.write_str(&crate::io::printable(p.as_bytes())),
        }
    }
}

impl Location {
    /// `s3://bucket/key`, or a local path.
    pub fn parse(s: &str) -> Result<Location, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            match rest.split_once('/') {
                Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok(Location::S3 { bucket: b.to_string(), key: k.to_string() }),
                _ => Err(format!("{s:?} is not s3://BUCKET/KEY")),
            }
        } else if s.is_empty() {
            Err("empty path".into())
        } else {
            Ok(Location::File(s.to_string()))
        }
    }
}

/// An `object` record: where to read, plus every other field it carried (ack token, dry_run,
/// event time...), which go on to the object's `end` record unchanged.
#[derive(Debug, Clone)]
pub struct ObjectRecord {
    pub location: Location,
    pub extra: Map<String, Value>,
}

impl ObjectRecord {
    pub fn new(location: Location) -> Self {
        ObjectRecord { location, extra: Map::new() }
    }

    /// From a parsed `{"type":"object",...}` record.
    pub fn from_json(mut m: Map<String, Value>) -> Result<Self, String> {
        m.shift_remove("type");
        let bucket = m.shift_remove("bucket");
        let key = m.shift_remove("key");
        let file = m.shift_remove("file");
        let location = match (bucket, key, file) {
            (Some(Value::String(b)), Some(Value::String(k)), _) if !b.is_empty() && !k.is_empty() => {
                Location::S3 { bucket: b, key: k }
            }
            (None, None, Some(Value::String(f))) if !f.is_empty() => Location::File(f),
            _ => return Err("object record needs string \"bucket\" and \"key\" (or \"file\")".into()),
        };
        Ok(ObjectRecord { location, extra: m })
    }

    /// Marked dry-run by the poller: nothing downstream may publish or delete for it.
    pub fn dry_run(&self) -> bool {
        matches!(self.extra.get("dry_run"), Some(Value::Bool(true)))
    }

    /// The `object` record as one JSON line (with `\n`).
    pub fn to_object_line(&self) -> Vec<u8> {
        self.record(OBJECT, |_| {})
    }

    /// The `end` record for this object, with its counters first and then every extra field.
    pub fn end_line(&self, counters: &[(&str, u64)]) -> Vec<u8> {
        self.record(END, |m| {
            for (k, v) in counters {
                m.insert((*k).to_string(), Value::from(*v));
            }
        })
    }

    fn record(&self, ty: &str, add: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("type".into(), ty.into());
        match &self.location {
            Location::S3 { bucket, key } => {
                m.insert("bucket".into(), bucket.as_str().into());
                m.insert("key".into(), key.as_str().into());
            }
            Location::File(p) => {
                m.insert("file".into(), p.as_str().into());
            }
        }
        add(&mut m);
        for (k, v) in &self.extra {
            m.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut out = serde_json::to_vec(&Value::Object(m)).expect("a JSON map always serializes");
        out.push(b'\n');
        out
    }

    /// The writer for this object's `line` records.
    pub fn line_writer(&self) -> LineWriter {
        self.line_writer_carrying(&[])
    }

    /// Like [`ObjectRecord::line_writer`], and every field named in `carry` that the object
    /// record has (e.g. `etag`, `event_time`) is copied onto each line record.
    pub fn line_writer_carrying(&self, carry: &[String]) -> LineWriter {
        let mut prefix = Vec::with_capacity(128);
        prefix.extend_from_slice(br#"{"type":"line","#);
        match &self.location {
            Location::S3 { bucket, key } => {
                prefix.extend_from_slice(br#""bucket":"#);
                quote_into(bucket.as_bytes(), &mut prefix);
                prefix.extend_from_slice(br#","key":"#);
                quote_into(key.as_bytes(), &mut prefix);
            }
            Location::File(p) => {
                prefix.extend_from_slice(br#""file":"#);
                quote_into(p.as_bytes(), &mut prefix);
            }
        }
        if self.dry_run() {
            prefix.extend_from_slice(br#","dry_run":true"#);
        }
        for name in carry {
            if let Some(v) = self.extra.get(name.as_str()).filter(|_| !matches!(name.as_str(), "type" | "n" | "line" | "dry_run"))
            {
                prefix.push(b',');
                quote_into(name.as_bytes(), &mut prefix);
                prefix.push(b':');
                serde_json::to_writer(&mut prefix, v).expect("a JSON value serializes");
            }
        }
        prefix.extend_from_slice(br#","n":"#);
        LineWriter { prefix }
    }
}

/// Writes `line` records for one object without allocating per line.
pub struct LineWriter {
    prefix: Vec<u8>,
}

impl LineWriter {
    /// Append `{"type":"line",...,"n":N,"line":"<text>"}\n` to `out`; `text` must be valid UTF-8.
    #[inline]
    pub fn write(&self, n: u64, text: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(&self.prefix);
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(num.format(n).as_bytes());
        out.extend_from_slice(br#","line":""#);
        escape_into(text, out);
        out.extend_from_slice(b"\"}\n");
    }

    /// Like [`LineWriter::write`] for a line cut to `text` from `whole` bytes: the record ends
    /// with `"truncated":WHOLE`.
    pub fn write_truncated(&self, n: u64, text: &[u8], whole: u64, out: &mut Vec<u8>) {
        self.write(n, text, out);
        out.truncate(out.len() - 2);
        let mut num = itoa::Buffer::new();
        out.extend_from_slice(b",\"truncated\":");
        out.extend_from_slice(num.format(whole).as_bytes());
        out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_records_are_valid_json() {
        let mut o = ObjectRecord::new(Location::S3 { bucket: "b".into(), key: "a \"k\"".into() });
        o.extra.insert("dry_run".into(), true.into());
        let mut out = Vec::new();
        o.line_writer().write(7, "x\ty".as_bytes(), &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], "line");
        assert_eq!(v["key"], "a \"k\"");
        assert_eq!(v["n"], 7);
        assert_eq!(v["line"], "x\ty");
        assert_eq!(v["dry_run"], true);
        o.extra.insert("event_time".into(), "2026-11-28T17:00:00Z".into());
        o.extra.insert("etag".into(), "\"abc\"".into());
        let mut out = Vec::new();
        let carry = ["etag".to_string(), "event_time".to_string(), "missing".to_string(), "line".to_string()];
        o.line_writer_carrying(&carry).write(1, b"x", &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!((v["etag"].as_str(), v["event_time"].as_str()), (Some("\"abc\""), Some("2026-11-28T17:00:00Z")));
        assert_eq!((v["line"].as_str(), v.get("missing")), (Some("x"), None));
        let end: Value = serde_json::from_slice(&o.end_line(&[("lines", 7)])).unwrap();
        assert_eq!(end["type"], "end");
        assert_eq!(end["lines"], 7);
        assert_eq!(end["dry_run"], true);
    }

    #[test]
    fn ack_tokens_round_trip_with_members_of_other_versions() {
        let text = r#"{"queue_url":"q","receipt_handle":"r","message_id":"m","objects":2,"sent_ms":5,"visibility_timeout":30,"deadline_ms":99,"region":"eu-west-1"}"#;
        let ack: Ack = serde_json::from_str(text).unwrap();
        assert_eq!((ack.objects, ack.visibility_timeout, ack.deadline_ms, ack.receive_count), (2, Some(30), Some(99), None));
        assert_eq!(ack.extra.get("region").and_then(Value::as_str), Some("eu-west-1"));
        assert_eq!(serde_json::to_string(&ack).unwrap(), text);
        let rec: Map<String, Value> = serde_json::from_str(r#"{"type":"end","ack":{"queue_url":"q"}}"#).unwrap();
        assert!(Ack::of_record(&rec).unwrap_err().contains("receipt_handle"));
        assert_eq!(Ack::of_record(&Map::new()), Ok(None));
    }
}
