//! The one scan of a record's top level that the driver makes per line: the members it needs,
//! and the line's text unescaped into a reused buffer on the way.

use crate::scan::{self, Raw, ScanError};

/// The fields the driver reads from a record.
#[derive(Default)]
pub(super) struct Scanned {
    pub(super) ty: Option<Raw>,
    pub(super) line: Option<Raw>,
    pub(super) bucket: Option<Raw>,
    pub(super) key: Option<Raw>,
    pub(super) file: Option<Raw>,
    pub(super) n: Option<Raw>,
    pub(super) dry_run: bool,
    pub(super) field: Option<Raw>,
    /// The parsed fields (an object) and the line's own time, from s3s-parse.
    pub(super) fields: Option<Raw>,
    pub(super) timestamp: Option<Raw>,
}

#[derive(PartialEq, Eq)]
pub(super) enum Kind {
    Line,
    End,
    Other,
}

pub(super) fn scan_record(rec: &[u8], field: Option<&[u8]>, text: &mut Vec<u8>) -> Result<Scanned, ScanError> {
    let mut s = Scanned::default();
    // Which members were seen (a bit each), to refuse a duplicate of one the driver reads.
    let mut seen = 0u16;
    let mut dup = None;
    text.clear();
    scan::members_decoding(
        rec,
        |k| k == b"line",
        text,
        |k, v| {
            // By length first, then as a fixed-size array: one integer compare, no memcmp call.
            let (bit, name) = match *k {
                [b'n'] => {
                    s.n = Some(v);
                    (1, "n")
                }
                [b'k', b'e', b'y'] => {
                    s.key = Some(v);
                    (2, "key")
                }
                [a, b, c, d] => match &[a, b, c, d] {
                    b"type" => {
                        s.ty = Some(v);
                        (4, "type")
                    }
                    b"line" => {
                        s.line = Some(v);
                        (8, "line")
                    }
                    b"file" => {
                        s.file = Some(v);
                        (16, "file")
                    }
                    _ => (0, ""),
                },
                [a, b, c, d, e, f] => match &[a, b, c, d, e, f] {
                    b"bucket" => {
                        s.bucket = Some(v);
                        (32, "bucket")
                    }
                    b"fields" => {
                        s.fields = Some(v);
                        (128, "fields")
                    }
                    _ => (0, ""),
                },
                [a, b, c, d, e, f, g] if &[a, b, c, d, e, f, g] == b"dry_run" => {
                    s.dry_run = !v.is_string && &rec[v.start..v.end] == b"true";
                    (64, "dry_run")
                }
                [b'@', b't', b'i', b'm', b'e', b's', b't', b'a', b'm', b'p'] => {
                    s.timestamp = Some(v);
                    (256, "@timestamp")
                }
                _ => (0, ""),
            };
            if field.is_some_and(|f| f == k) {
                if s.field.is_some() {
                    dup = Some("field");
                    return false;
                }
                s.field = Some(v);
            }
            if seen & bit != 0 {
                dup = Some(name);
                return false;
            }
            seen |= bit;
            true
        },
    )?;
    if let Some(name) = dup {
        return Err(ScanError::Duplicate(name));
    }
    match s.ty {
        Some(t) if t.is_string => {
            if scan::is_envelope_type(rec, t) {
                scan::check_envelope_types(rec, s.bucket, s.key, s.file, s.n)?;
                scan::check_fields_type(rec, s.fields)?;
            }
            Ok(s)
        }
        _ => Err(ScanError::NoType),
    }
}

pub(super) fn kind(rec: &[u8], ty: Raw, scratch: &mut Vec<u8>) -> Kind {
    match scan::type_name(rec, ty, scratch) {
        b"line" => Kind::Line,
        b"end" => Kind::End,
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::Value;

    #[test]
    fn scans_what_publishers_need() {
        let rec = br#"{"type":"line","bucket":"b","key":"a\/k","dry_run":true,"n":7,"line":"x\ty","id":"q\"1"}"#;
        let mut text = Vec::new();
        let s = scan_record(rec, Some(b"id"), &mut text).unwrap();
        assert_eq!(text, b"x\ty");
        assert!(s.dry_run);
        let mut scratch = Vec::new();
        let key = Value { rec, raw: s.key.unwrap() };
        assert_eq!(key.bytes(&mut scratch), b"a/k");
        let id = Value { rec, raw: s.field.unwrap() };
        assert_eq!(id.bytes(&mut scratch), b"q\"1");
        assert_eq!(Value { rec, raw: s.n.unwrap() }.bytes(&mut scratch), b"7");
        assert!(!scan_record(br#"{"type":"line","dry_run":"true"}"#, None, &mut text).unwrap().dry_run);
        let rec = br#"{"type":"line","n":1,"@timestamp":"2019-12-04T21:02:31Z","fields":{"a":1}}"#;
        let s = scan_record(rec, None, &mut text).unwrap();
        assert_eq!(Value { rec, raw: s.fields.unwrap() }.json(), br#"{"a":1}"#);
        assert_eq!(Value { rec, raw: s.timestamp.unwrap() }.bytes(&mut scratch), b"2019-12-04T21:02:31Z");
        for bad in [
            &br#"{"type":"line","fields":{},"fields":{}}"#[..],
            br#"{"type":"line","@timestamp":"x","@timestamp":"y"}"#,
            br#"{"type":"line","fields":[1]}"#,
        ] {
            assert!(scan_record(bad, None, &mut text).is_err());
        }
    }
}
