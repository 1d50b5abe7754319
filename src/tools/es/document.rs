//! How a `line` record becomes a bulk action line and a document line (s3s-es's encoder): one
//! scan of the record, raw JSON slices copied, no tree.

use base64::Engine as _;
use sha2::Digest;

use super::index::IndexPattern;
use super::{Args, OpType};
use crate::cli::UsageError;
use crate::scan::Raw;
use crate::scan::{self, quote_into};
use crate::sink::{self, Line};

/// Top-level record fields that the document shapes itself (never copied as extra fields).
const CONSUMED: &[&[u8]] =
    &[b"type", b"bucket", b"key", b"file", b"n", b"line", b"dry_run", b"etag", b"message", b"s3", b"fields"];

/// How a line becomes a bulk action + document: everything but the transport (the encoder).
pub(super) struct Encoder {
    index: IndexPattern,
    pipeline: Option<String>,
    op_type: OpType,
    id_from_source: bool,
    /// Time fields in the order they are tried.
    time_fields: Vec<Vec<u8>>,
    /// Reused per line: the record's members (key range, value).
    members: Vec<(usize, usize, Raw)>,
    scratch: Vec<u8>,
    key_buf: Vec<u8>,
    /// `now` formatted, cached per millisecond.
    now_cache: (i64, Vec<u8>),
}

impl Encoder {
    pub(super) fn new(args: &Args) -> Result<Encoder, UsageError> {
        let time_fields = match &args.time_field {
            Some(f) if f.is_empty() => return Err(UsageError("--time-field: empty name".into())),
            Some(f) => vec![f.clone().into_bytes()],
            None => vec![b"@timestamp".to_vec(), b"event_time".to_vec()],
        };
        if args.pipeline.as_deref() == Some("") {
            return Err(UsageError("--pipeline: empty name".into()));
        }
        Ok(Encoder {
            index: IndexPattern::parse(&args.index)?,
            pipeline: args.pipeline.clone(),
            op_type: args.op_type,
            id_from_source: args.id_from_source,
            time_fields,
            members: Vec::with_capacity(16),
            scratch: Vec::with_capacity(256),
            key_buf: Vec::new(),
            now_cache: (i64::MIN, Vec::new()),
        })
    }

    /// Append the line's action line and document line, each ended by a newline.
    pub(super) fn write(&mut self, line: &Line<'_>, out: &mut Vec<u8>) {
        let rec = line.record;
        self.members.clear();
        let members = &mut self.members;
        // The driver checked the record's structure; this finds the members again.
        let _ = scan::members(rec, |k, v| {
            let ks = k.as_ptr() as usize - rec.as_ptr() as usize;
            members.push((ks, ks + k.len(), v));
            true
        });
        let get = |name: &[u8]| self.members.iter().find(|(s, e, _)| &rec[*s..*e] == name).map(|m| m.2);
        let line_raw = get(b"line");
        let etag = get(b"etag");

        // The event time: the first time field that parses; else now.
        let mut time: Option<(usize, i64)> = None; // (index in time_fields, seconds)
        for (i, name) in self.time_fields.iter().enumerate() {
            let Some(v) = get(name) else { continue };
            let secs = if v.is_string {
                if v.escaped { None } else { crate::clock::parse_ms(v.content(rec)).map(|ms| ms.div_euclid(1000)) }
            } else {
                std::str::from_utf8(&rec[v.start..v.end]).ok().and_then(|t| t.parse::<i64>().ok()).map(|ms| ms.div_euclid(1000))
            };
            if let Some(secs) = secs {
                time = Some((i, secs));
                break;
            }
        }
        let secs = match time {
            Some((_, s)) => s,
            None => {
                let ms = crate::clock::now_ms() as i64;
                if self.now_cache.0 != ms {
                    self.now_cache.1.clear();
                    crate::clock::write_rfc3339_ms(ms, &mut self.now_cache.1);
                    self.now_cache.0 = ms;
                }
                ms.div_euclid(1000)
            }
        };

        // The action line.
        let action = match self.op_type {
            OpType::Index => &br#"{"index":{"_index":"#[..],
            OpType::Create => &br#"{"create":{"_index":"#[..],
        };
        out.extend_from_slice(action);
        quote_into(self.index.name(secs).as_bytes(), out);
        if self.id_from_source {
            out.extend_from_slice(br#","_id":""#);
            let mut h = sha2::Sha256::new();
            let mut feed = |v: Option<sink::Value<'_>>| {
                if let Some(v) = v {
                    h.update(v.bytes(&mut self.scratch));
                }
                h.update([0u8]);
            };
            match (line.bucket, line.key) {
                (Some(_), Some(_)) => {
                    feed(line.bucket);
                    feed(line.key);
                }
                _ => {
                    feed(None);
                    feed(line.file);
                }
            }
            if let Some(e) = etag.filter(|e| e.is_string) {
                self.scratch.clear();
                scan::unescape_into(e.content(rec), &mut self.scratch);
                h.update(&self.scratch);
            }
            h.update([0u8]);
            if let Some(n) = line.n {
                h.update(n.json());
            }
            let digest = h.finalize();
            let mut id = [0u8; 22];
            let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode_slice(&digest[..16], &mut id)
                .expect("22 bytes hold 16 in base64");
            out.extend_from_slice(&id[..len]);
            out.push(b'"');
        }
        if let Some(p) = &self.pipeline {
            out.extend_from_slice(br#","pipeline":"#);
            quote_into(p.as_bytes(), out);
        }
        out.extend_from_slice(b"}}\n");

        // The document.
        out.extend_from_slice(br#"{"@timestamp":"#);
        let used_time = time.map(|(i, _)| &self.time_fields[i][..]);
        match used_time.and_then(&get) {
            Some(v) if v.is_string => {
                // Verbatim (its precision and offset kept), with a `T` for a space between date
                // and time: Elasticsearch's default date format wants the T.
                let at = out.len();
                out.extend_from_slice(&rec[v.start..v.end]);
                if out[at + 11] == b' ' {
                    out[at + 11] = b'T';
                }
            }
            Some(_) => {
                out.push(b'"');
                crate::clock::write_rfc3339_ms(secs * 1000, out);
                out.push(b'"');
            }
            None => match get(b"@timestamp") {
                // An @timestamp that is no date: the server decides (a dead letter, probably).
                Some(v) => out.extend_from_slice(&rec[v.start..v.end]),
                None => {
                    out.push(b'"');
                    out.extend_from_slice(&self.now_cache.1);
                    out.push(b'"');
                }
            },
        }
        // A record without `line` (s3s-parse --drop-line) has its fields, and no message.
        if line.has_line {
            out.extend_from_slice(br#","message":"#);
            match line_raw {
                Some(v) => out.extend_from_slice(&rec[v.start..v.end]),
                None => quote_into(line.text, out),
            }
        }
        match (line.bucket, line.key, line.file) {
            (Some(b), Some(k), _) => {
                out.extend_from_slice(br#","s3":{"bucket":"#);
                out.extend_from_slice(b.json());
                out.extend_from_slice(br#","key":"#);
                out.extend_from_slice(k.json());
                if let Some(n) = line.n {
                    out.extend_from_slice(br#","line":"#);
                    out.extend_from_slice(n.json());
                }
                if let Some(e) = etag {
                    out.extend_from_slice(br#","etag":"#);
                    out.extend_from_slice(&rec[e.start..e.end]);
                }
                out.push(b'}');
            }
            (_, _, Some(f)) => {
                out.extend_from_slice(br#","file":{"path":"#);
                out.extend_from_slice(f.json());
                if let Some(n) = line.n {
                    out.extend_from_slice(br#","line":"#);
                    out.extend_from_slice(n.json());
                }
                out.push(b'}');
            }
            _ => {}
        }
        for &(ks, ke, v) in &self.members {
            let k = &rec[ks..ke];
            if CONSUMED.contains(&k) || k == b"@timestamp" || used_time == Some(k) {
                continue;
            }
            out.push(b',');
            out.extend_from_slice(&rec[ks - 1..ke + 1]);
            out.push(b':');
            out.extend_from_slice(&rec[v.start..v.end]);
        }
        // The parsed fields at the top level; one whose name the document already has (message,
        // s3, a copied member...) goes under "fields." instead (Elasticsearch reads the dotted
        // name as the member of a "fields" object).
        if let Some(f) = line.fields {
            let obj = f.json();
            let s3 = line.bucket.is_some() && line.key.is_some();
            let written = |k: &[u8]| {
                k == b"@timestamp"
                    || (k == b"message" && line.has_line)
                    || (k == b"s3" && s3)
                    || (k == b"file" && !s3 && line.file.is_some())
                    || self.members.iter().any(|&(ks, ke, _)| {
                        let m = &rec[ks..ke];
                        m == k && !CONSUMED.contains(&m) && used_time != Some(m)
                    })
            };
            let _ = scan::object_members(obj, &mut self.key_buf, |k, v| {
                out.extend_from_slice(b",\"");
                if written(k) {
                    out.extend_from_slice(b"fields.");
                }
                scan::escape_into(k, out);
                out.extend_from_slice(b"\":");
                out.extend_from_slice(&obj[v.start..v.end]);
                true
            });
        }
        out.extend_from_slice(b"}\n");
    }
}
