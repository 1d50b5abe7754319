//! `s3s-parse`: AWS log lines into named, typed `fields` and an `@timestamp`.

use std::collections::HashMap;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Common, Status};
use crate::formats::{self, Format, Line, Scratch};
use crate::io::{Input, Output, report_bad_line};
use crate::scan;
use crate::shutdown::{DrainArgs, Shutdown};

const TOOL: &str = "s3s-parse";

/// `--format`: one of the formats, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Per object, from its key and its first line (see DESCRIPTION).
    Auto,
    /// CloudFront standard logs (W3C, tabs; names from `#Fields:`, else the 33 standard ones).
    Cloudfront,
    /// W3C extended log files (IIS and others; tabs or spaces; names from `#Fields:`).
    W3c,
    /// Application Load Balancer access logs.
    Alb,
    /// Classic Load Balancer access logs.
    Elb,
    /// Network Load Balancer (TLS listener) access logs.
    Nlb,
    /// S3 server access logs.
    S3Access,
    /// VPC flow logs (names from the header line, else the version 2 default format).
    VpcFlow,
    /// CloudTrail events (one per line, as s3s-cat splits documents).
    Cloudtrail,
    /// JSON lines (the object is the fields).
    Json,
    /// Comma-separated values (header row, or --header).
    Csv,
    /// Tab-separated values (header row, or --header).
    Tsv,
}

impl FormatArg {
    fn format(self) -> Option<Format> {
        Some(match self {
            FormatArg::Auto => return None,
            FormatArg::Cloudfront => Format::Cloudfront,
            FormatArg::W3c => Format::W3c,
            FormatArg::Alb => Format::Alb,
            FormatArg::Elb => Format::Elb,
            FormatArg::Nlb => Format::Nlb,
            FormatArg::S3Access => Format::S3Access,
            FormatArg::VpcFlow => Format::VpcFlow,
            FormatArg::Cloudtrail => Format::Cloudtrail,
            FormatArg::Json => Format::Json,
            FormatArg::Csv => Format::Csv,
            FormatArg::Tsv => Format::Tsv,
        })
    }
}

/// Parse log lines into named, typed fields: CloudFront, W3C, ALB, ELB, NLB, S3 access, VPC
/// flow, CloudTrail, JSON, CSV, TSV.
///
/// Each `line` record gets two members after its own: `"@timestamp"` (RFC 3339, UTC, the line's
/// own time, left out when the line has none) and `"fields"` (a JSON object: numbers where the
/// format's documentation says numeric, `-` as null, strings otherwise). `--drop-line` removes
/// `line`. Header and comment lines (`#Version:`, `#Fields:`, a VPC or CSV header) are read and
/// not emitted, and the object's `end` record's `lines` then counts the records emitted. A line
/// that cannot be parsed passes through unchanged with `"parse_error":WHY` (counted in
/// s3s_parse_errors_total), never dropped. Every other record passes through unchanged, in order.
///
/// Names: W3C, CloudFront and VPC flow logs: exactly the names of the object's own header
/// (`sc-status`, `cs(User-Agent)`, `srcaddr`), by position (built-in orders only before a header:
/// CloudFront's 33 standard fields, VPC version 2). ALB, ELB, NLB and S3 access logs: the names of
/// AWS's documentation in snake_case, `client:port` split into `client_ip` and `client_port`
/// (`target`, `backend`, `destination` alike; IPv6 `[::1]:443` too), the quoted request into
/// `request_method`, `request_url`, `request_protocol`. Fields past the known ones (AWS appends
/// new ones) go to `fields._extra` (an array of strings); a line with fewer fields gets the ones it
/// has. CloudFront's `cs(User-Agent)` and `cs(Referer)` are URL-decoded once. CloudTrail: the
/// event object (s3s-cat splits `{"Records":[...]}` documents into one line per event). JSON: the
/// line's object. CSV (RFC 4180 quoting within a line) and TSV: names from the object's first
/// line, or --header; values are strings.
///
/// @timestamp: CloudFront/W3C `date`+`time`, ALB/ELB/NLB `time`, S3 `[06/Feb/2019:00:00:38
/// +0000]`, VPC `start` (epoch seconds), CloudTrail `eventTime`.
///
/// auto (the default) decides per object from its first line, then its key: a JSON object with
/// eventTime and eventName is cloudtrail, another JSON object json; `#Version:`/`#Fields:` is w3c,
/// cloudfront when the fields include `x-edge-*` or the key is CloudFront's
/// `<dist>.YYYY-MM-DD-HH.<id>.gz`; a header line naming VPC fields (`srcaddr`, `interface-id`...)
/// is vpc-flow; `http`/`https`/`h2`/`grpcs`/`ws`/`wss` and an ISO time is alb; `tls 2.0 TIME` nlb;
/// an ISO time then `name ip:port` elb; 64 hex digits, a bucket and a `[time]` s3-access; else
/// keys with `/vpcflowlogs/`, `.csv`, `.tsv`. An object no rule recognises: its lines get
/// parse_error. `-v` says which format each object got (at its end, with its counts).
///
/// A malformed input record is reported on stderr with its number and skipped (exit status 1),
/// and the `end` of the object it is charged to is not forwarded (see s3s(7)).
#[derive(Debug, Parser)]
#[command(
    name = "s3s-parse",
    version,
    after_long_help = "EXAMPLES:
    s3s-cat s3://logs/cf/E2ABC.2026-11-28-17.1a2b.gz | s3s-parse | jq -c .fields
    s3s-poll | s3s-cat | s3s-parse --drop-line | s3s-filter --where 'sc-status>=500' | s3s-es ...
    s3s-cat s3://trail/AWSLogs/123456789012/CloudTrail/eu-west-1/2026/11/28/x.json.gz | s3s-parse
    s3s-cat access.csv | s3s-parse --format csv --header time,user,status

FIELDS (ALB, ELB, NLB, S3 access; AWS's documented order, snake_case):
    alb: type time elb client_ip client_port target_ip target_port request_processing_time
      target_processing_time response_processing_time elb_status_code target_status_code
      received_bytes sent_bytes request_method request_url request_protocol user_agent ssl_cipher
      ssl_protocol target_group_arn trace_id domain_name chosen_cert_arn matched_rule_priority
      request_creation_time actions_executed redirect_url error_reason target_port_list
      target_status_code_list classification classification_reason conn_trace_id transformed_host
      transformed_uri request_transform_status
    elb: time elb client_ip client_port backend_ip backend_port request_processing_time
      backend_processing_time response_processing_time elb_status_code backend_status_code
      received_bytes sent_bytes request_method request_url request_protocol user_agent ssl_cipher
      ssl_protocol
    nlb: type version time elb listener client_ip client_port destination_ip destination_port
      connection_time tls_handshake_time received_bytes sent_bytes incoming_tls_alert
      chosen_cert_arn chosen_cert_serial tls_cipher tls_protocol_version tls_named_group
      domain_name alpn_fe_protocol alpn_be_protocol alpn_client_preference_list
      tls_connection_creation_time
    s3-access: bucket_owner bucket time remote_ip requester (may hold spaces) request_id
      operation key request_method request_url request_protocol http_status error_code
      bytes_sent object_size total_time turn_around_time referer user_agent version_id host_id
      signature_version cipher_suite authentication_type host_header tls_version
      access_point_arn acl_required
    Numbers: the times, status codes, byte counts, ports and matched_rule_priority; W3C:
    sc-status sc-bytes cs-bytes time-taken c-port s-port time-to-first-byte sc-content-len
    sc-range-start sc-range-end sc-substatus sc-win32-status; VPC: version srcport dstport
    protocol packets bytes start end tcp-flags traffic-path.

ENVIRONMENT:
    S3S_LOG sets the log filter.

EXIT STATUS:
    0 success (also when lines could not be parsed: they carry parse_error, and when stdout was
    closed early), 1 malformed input records were skipped, 2 usage error."
)]
pub struct Args {
    /// The log format, or auto (per object).
    #[arg(long, value_enum, default_value = "auto", value_name = "FORMAT")]
    pub format: FormatArg,

    /// Remove the `line` member from parsed records (the fields hold everything).
    #[arg(long)]
    pub drop_line: bool,

    /// Column names (comma-separated) for csv and tsv objects without a header row; for w3c and
    /// vpc-flow, the names used until an object's own header.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub header: Vec<String>,

    #[command(flatten)]
    pub drain: DrainArgs,

    #[command(flatten)]
    pub common: Common,
}

/// What one object taught the stage.
struct ObjState {
    /// `None` until the first line decided it (auto), or no rule matched (`decided`).
    parser: Option<formats::Parser>,
    decided: bool,
    /// Lines read and not emitted (headers, comments, blank lines).
    consumed: u64,
    errors: u64,
    parsed: u64,
}

/// Objects by their raw bucket/key/file bytes, the current one outside the map.
struct Objects {
    cur_id: Vec<u8>,
    cur: Option<ObjState>,
    others: HashMap<Vec<u8>, ObjState>,
    fixed: Option<Format>,
}

fn object_id(parts: [&[u8]; 3], id: &mut Vec<u8>) {
    id.clear();
    for p in parts {
        id.extend_from_slice(p);
        id.push(0);
    }
}

/// `id` is the id of `parts` (compared 8 bytes at a time: a slice comparison is a call to
/// memcmp, which cost 10% of the stage's time here, twice per line).
#[inline]
fn id_is(id: &[u8], parts: [&[u8]; 3]) -> bool {
    let mut i = 0;
    for p in parts {
        if id.len() < i + p.len() + 1 || !same(&id[i..i + p.len()], p) || id[i + p.len()] != 0 {
            return false;
        }
        i += p.len() + 1;
    }
    i == id.len()
}

#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i + 8 <= a.len() {
        let x = u64::from_ne_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_ne_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return false;
        }
        i += 8;
    }
    let mut diff = 0u8;
    while i < a.len() {
        diff |= a[i] ^ b[i];
        i += 1;
    }
    diff == 0
}

impl Objects {
    /// The state of this object (made current), and whether it was current already.
    fn get(&mut self, parts: [&[u8]; 3]) -> (&mut ObjState, bool) {
        let same = self.cur.is_some() && id_is(&self.cur_id, parts);
        if !same {
            if let Some(old) = self.cur.take() {
                self.others.insert(std::mem::take(&mut self.cur_id), old);
            }
            object_id(parts, &mut self.cur_id);
            let fixed = self.fixed;
            self.cur = Some(self.others.remove(&self.cur_id).unwrap_or(ObjState {
                parser: None,
                decided: fixed.is_some(),
                consumed: 0,
                errors: 0,
                parsed: 0,
            }));
        }
        (self.cur.as_mut().expect("set above"), same)
    }

    /// The state of this object, removed (its `end` passed).
    fn take(&mut self, parts: [&[u8]; 3]) -> Option<ObjState> {
        if self.cur.is_some() && id_is(&self.cur_id, parts) {
            return self.cur.take();
        }
        let mut id = Vec::new();
        object_id(parts, &mut id);
        self.others.remove(&id)
    }
}

/// Which objects malformed records are charged to (the rule of s3s(7), "Malformed records", as
/// s3s-filter applies it).
#[derive(Default)]
struct Charges {
    cur: Vec<u8>,
    open: bool,
    pending: Option<u64>,
    tainted: HashMap<Vec<u8>, u64>,
}

impl Charges {
    /// A line record of this object; `same`: of the same object as the line record before.
    #[inline]
    fn line_of(&mut self, parts: [&[u8]; 3], same: bool) {
        if self.open && same {
            return;
        }
        object_id(parts, &mut self.cur);
        self.open = true;
        if let Some(n) = self.pending.take() {
            self.tainted.entry(self.cur.clone()).or_insert(n);
        }
    }

    fn bad(&mut self, n: u64) {
        if self.open {
            self.tainted.entry(self.cur.clone()).or_insert(n);
        } else {
            self.pending.get_or_insert(n);
        }
    }

    fn end_of(&mut self, parts: [&[u8]; 3]) -> Option<u64> {
        if self.open && id_is(&self.cur, parts) {
            self.open = false;
        }
        let mut id = Vec::new();
        object_id(parts, &mut id);
        if let Some(n) = self.pending.take() {
            self.tainted.entry(id.clone()).or_insert(n);
        }
        if self.tainted.is_empty() { None } else { self.tainted.remove(&id) }
    }
}

/// Reused buffers.
#[derive(Default)]
struct Bufs {
    text: Vec<u8>,
    ty: Vec<u8>,
    fields: Vec<u8>,
    ts: Vec<u8>,
    scratch: Scratch,
}

enum Outcome {
    Passed,
    Parsed,
    Consumed,
    ParseError,
    Bad(String),
    Withheld(u64),
}

struct Stage {
    header: Vec<String>,
    drop_line: bool,
    objects: Objects,
    charges: Charges,
    b: Bufs,
}

impl Stage {
    fn record(&mut self, rec: &[u8], out: &mut Vec<u8>) -> Outcome {
        let b = &mut self.b;
        let f = match fields(rec) {
            Ok(f) => f,
            Err(e) => return Outcome::Bad(e.to_string()),
        };
        let raw_of = |v: Option<scan::Raw>| v.map_or(&[][..], |v| &rec[v.start..v.end]);
        let parts = [raw_of(f.bucket), raw_of(f.key), raw_of(f.file)];
        let ty = scan::type_name(rec, f.ty.expect("fields() checks type"), &mut b.ty);
        if ty != b"line" {
            if ty == b"end" {
                if let Some(n) = self.charges.end_of(parts) {
                    self.objects.take(parts);
                    return Outcome::Withheld(n);
                }
                if let Some(st) = self.objects.take(parts) {
                    tracing::info!(
                        "{}: format {}: {} records parsed, {} with parse_error, {} header/comment lines",
                        crate::sink::location(rec),
                        st.parser.as_ref().map_or("not recognised", |p| p.format().name()),
                        st.parsed,
                        st.errors,
                        st.consumed
                    );
                    if st.consumed > 0 && rewrite_lines(rec, st.consumed, out) {
                        return Outcome::Passed;
                    }
                }
            }
            out.extend_from_slice(rec);
            out.push(b'\n');
            return Outcome::Passed;
        }
        // One comparison of the object's id per line: Objects' current object is the last line
        // record's (every line record goes through `get`), which is Charges' too while it is open.
        let fixed = self.objects.fixed;
        let (st, same) = self.objects.get(parts);
        self.charges.line_of(parts, same);
        let Some(raw) = f.line.filter(|l| l.is_string) else {
            return Outcome::Bad("line record without a string \"line\"".into());
        };
        if st.parser.is_none() && !st.decided {
            st.decided = true;
            let key = f.key.map(|k| k.content(rec)).or(f.file.map(|k| k.content(rec))).unwrap_or_default();
            let loc = crate::io::printable(if key.is_empty() { &b"?"[..] } else { key }).into_owned();
            b.text.clear();
            scan::unescape_into(raw.content(rec), &mut b.text);
            match formats::detect(key, &b.text) {
                Some(format) => {
                    tracing::debug!("{loc}: format {} (from its first line and key)", format.name());
                    st.parser = Some(formats::Parser::new(format, &self.header));
                }
                None => tracing::warn!("{loc}: format not recognised (its lines pass with parse_error; see --format)"),
            }
        }
        if st.parser.is_none()
            && let Some(format) = fixed
        {
            st.parser = Some(formats::Parser::new(format, &self.header));
        }
        let close = rec.iter().rposition(|&c| c == b'}').expect("a scanned record ends with }");
        // The record goes out with its members first; the parser appends `@timestamp` and
        // `fields` after them (straight into the output buffer), or the record is taken back.
        let mark = out.len();
        match self.drop_line.then(|| line_member(rec, raw)).flatten() {
            Some((a, z)) => {
                out.extend_from_slice(&rec[..a]);
                out.extend_from_slice(&rec[z..close]);
            }
            None => out.extend_from_slice(&rec[..close]),
        }
        let result = match st.parser.as_mut() {
            Some(p) => p.line_json(raw.content(rec), raw.escaped, out, &mut b.fields, &mut b.ts, &mut b.scratch, &mut b.text),
            None => Err("log format not recognised (see --format)".into()),
        };
        if !matches!(result, Ok(Line::Data)) {
            out.truncate(mark);
        }
        match result {
            Ok(Line::Consumed) => {
                st.consumed += 1;
                Outcome::Consumed
            }
            Ok(Line::Data) => {
                out.extend_from_slice(b"}\n");
                st.parsed += 1;
                Outcome::Parsed
            }
            Err(why) => {
                st.errors += 1;
                if st.errors == 1 {
                    let n = f.n.map_or(&b"?"[..], |n| &rec[n.start..n.end]);
                    tracing::warn!(
                        "{}: line {}: {why} (passed on with parse_error; later errors of this object are only counted)",
                        crate::sink::location(rec),
                        String::from_utf8_lossy(n)
                    );
                }
                out.extend_from_slice(&rec[..close]);
                out.extend_from_slice(b",\"parse_error\":");
                scan::quote_into(why.as_bytes(), out);
                out.extend_from_slice(b"}\n");
                Outcome::ParseError
            }
        }
    }
}

/// The members of a record the stage reads, checked as [`scan::fields`] does, without
/// decoding `line` (the parsers decode it only when they need to).
fn fields(rec: &[u8]) -> Result<scan::Fields, scan::ScanError> {
    let mut out = scan::Fields::default();
    let mut dup = None;
    scan::members(rec, |k, v| {
        let (slot, name) = match k {
            b"type" => (&mut out.ty, "type"),
            b"line" => (&mut out.line, "line"),
            b"bucket" => (&mut out.bucket, "bucket"),
            b"key" => (&mut out.key, "key"),
            b"file" => (&mut out.file, "file"),
            b"n" => (&mut out.n, "n"),
            _ => return true,
        };
        if slot.is_some() {
            dup = Some(name);
            return false;
        }
        *slot = Some(v);
        true
    })?;
    if let Some(name) = dup {
        return Err(scan::ScanError::Duplicate(name));
    }
    match out.ty {
        Some(t) if t.is_string => {
            if scan::is_envelope_type(rec, t) {
                scan::check_envelope_types(rec, out.bucket, out.key, out.file, out.n)?;
            }
            Ok(out)
        }
        _ => Err(scan::ScanError::NoType),
    }
}

/// The byte range to cut to remove the `"line":...` member whose value is `raw` (its key and
/// the comma before it, or after it when it comes first); `None` when the key is not written
/// plainly (then the line stays).
fn line_member(rec: &[u8], raw: scan::Raw) -> Option<(usize, usize)> {
    let mut i = raw.start;
    let back_ws = |mut i: usize| {
        while i > 0 && rec[i - 1].is_ascii_whitespace() {
            i -= 1;
        }
        i
    };
    i = back_ws(i);
    if i == 0 || rec[i - 1] != b':' {
        return None;
    }
    i = back_ws(i - 1);
    let key_start = i.checked_sub(6)?;
    if &rec[key_start..i] != b"\"line\"" {
        return None;
    }
    let before = back_ws(key_start);
    if before > 0 && rec[before - 1] == b',' {
        return Some((before - 1, raw.end));
    }
    // The first member: cut through the comma after it.
    let mut j = raw.end;
    while j < rec.len() && rec[j].is_ascii_whitespace() {
        j += 1;
    }
    if rec.get(j) == Some(&b',') {
        return Some((key_start, j + 1));
    }
    Some((key_start, raw.end))
}

/// `rec` (an `end` record) with its `lines` lowered by `consumed`, into `out` (with `\n`);
/// false (nothing written) when it has no whole-number `lines`.
fn rewrite_lines(rec: &[u8], consumed: u64, out: &mut Vec<u8>) -> bool {
    let mut found = None;
    let _ = scan::members(rec, |k, v| {
        if k == b"lines" && !v.is_string {
            found = Some(v);
        }
        true
    });
    let Some(v) = found else { return false };
    let Some(lines) = std::str::from_utf8(&rec[v.start..v.end]).ok().and_then(|s| s.parse::<u64>().ok()) else {
        return false;
    };
    out.extend_from_slice(&rec[..v.start]);
    out.extend_from_slice(itoa::Buffer::new().format(lines.saturating_sub(consumed)).as_bytes());
    out.extend_from_slice(&rec[v.end..]);
    out.push(b'\n');
    true
}

/// Run `s3s-parse`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let shutdown = Shutdown::install(TOOL, args.drain.drain_timeout)?;
    let mut out = Output::stdout();
    let mut input = Input::stdin();
    input.stop_when(shutdown.expiry_flag());
    let mut stage = Stage {
        header: args.header.clone(),
        drop_line: args.drop_line,
        objects: Objects { cur_id: Vec::new(), cur: None, others: HashMap::new(), fixed: args.format.format() },
        charges: Charges::default(),
        b: Bufs::default(),
    };
    let mut counted = crate::metrics::events::LinesParsed::new();
    let (mut parsed, mut errors, mut bad) = (0u64, 0u64, 0u64);
    loop {
        if input.is_dry() {
            out.flush()?;
            counted.emit(parsed, errors);
        }
        let Some((number, rec)) = input.next_line().context("reading stdin")? else { break };
        if rec.is_empty() {
            continue;
        }
        match stage.record(rec, out.buf()) {
            Outcome::Passed => out.record_done()?,
            Outcome::Parsed => {
                parsed += 1;
                if parsed.is_multiple_of(65536) {
                    counted.emit(parsed, errors);
                }
                out.record_done()?;
            }
            Outcome::ParseError => {
                errors += 1;
                out.record_done()?;
            }
            Outcome::Consumed => {}
            Outcome::Bad(why) => {
                bad += 1;
                report_bad_line(TOOL, number, &why, rec);
                stage.charges.bad(number);
            }
            Outcome::Withheld(n) => eprintln!(
                "{TOOL}: {}: end record withheld (malformed input line {n} was charged to this object)",
                crate::sink::location(rec)
            ),
        }
    }
    counted.emit(parsed, errors);
    out.flush()?;
    tracing::info!("{parsed} lines parsed, {errors} with parse_error, {bad} malformed input records");
    Ok(if bad > 0 { Status::Failed } else { Status::Ok })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_line_cuts_the_member() {
        let cut = |rec: &str| {
            let text = rec.as_bytes();
            let f = scan::fields(text).unwrap();
            let (a, z) = line_member(text, f.line.unwrap()).unwrap();
            format!("{}{}", &rec[..a], &rec[z..])
        };
        assert_eq!(cut(r#"{"type":"line","n":1,"line":"x"}"#), r#"{"type":"line","n":1}"#);
        assert_eq!(cut(r#"{"line":"x", "type":"line"}"#), r#"{ "type":"line"}"#);
        assert_eq!(cut(r#"{"type":"line","line" : "x","n":1}"#), r#"{"type":"line","n":1}"#);
    }

    #[test]
    fn end_lines_rewritten() {
        let mut out = Vec::new();
        assert!(rewrite_lines(br#"{"type":"end","key":"k","lines":5,"bytes":9}"#, 2, &mut out));
        assert_eq!(out, b"{\"type\":\"end\",\"key\":\"k\",\"lines\":3,\"bytes\":9}\n");
        assert!(!rewrite_lines(br#"{"type":"end"}"#, 2, &mut Vec::new()));
    }
}
