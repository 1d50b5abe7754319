//! JSON lines and CloudTrail events: the line's object is the `fields` (checked as JSON by the
//! record scanner, copied as it is); a CloudTrail event's `eventTime` is its `@timestamp`.

use super::{Line, Why, time, trim};
use crate::scan;

/// A JSON object with CloudTrail's `eventTime` and `eventName` (or `eventVersion`), or a whole
/// CloudTrail document (`Records`: read with `s3s-cat --whole-documents`, it gets a parse_error
/// that says so).
pub fn looks_like_cloudtrail(line: &[u8]) -> bool {
    let (mut time, mut name, mut records) = (false, false, false);
    let ok = scan::members(line, |k, _| {
        match k {
            b"eventTime" => time = true,
            b"eventName" | b"eventVersion" => name = true,
            b"Records" => records = true,
            _ => {}
        }
        true
    });
    ok.is_ok() && ((time && name) || records)
}

pub fn line(cloudtrail: bool, line: &[u8], out: &mut Vec<u8>, ts: &mut Vec<u8>) -> Result<Line, Why> {
    let t = trim(line);
    if t.is_empty() {
        return Ok(Line::Consumed);
    }
    let mut event_time = None;
    let mut records = false;
    scan::members(t, |k, v| {
        match k {
            b"eventTime" if v.is_string && !v.escaped => event_time = Some(v),
            b"Records" => records = true,
            _ => {}
        }
        true
    })
    .map_err(|e| match e {
        scan::ScanError::NotObject => Why::Borrowed("not a JSON object"),
        e => Why::Owned(format!("not a JSON object: {e}")),
    })?;
    if cloudtrail {
        if records && event_time.is_none() {
            return Err("a whole CloudTrail document (s3s-cat splits them into events unless --whole-documents)".into());
        }
        if let Some(v) = event_time {
            time::iso(v.content(t), ts);
        }
    }
    out.extend_from_slice(t);
    Ok(Line::Data)
}
