//! Log formats: one text line of an AWS (or W3C, JSON, CSV) log into a JSON `fields` object and
//! an RFC 3339 `@timestamp`, written straight into byte buffers (no `serde_json::Value`, no
//! allocation per line once the buffers have grown).
//!
//! A [`Parser`] holds what one object taught it (the `#Fields:` header, the VPC header, the CSV
//! header row) and turns each of that object's lines into [`Line::Data`] (with `fields` and maybe
//! a timestamp written) or [`Line::Consumed`] (a header or comment), or an error saying why the
//! line could not be parsed at all. `auto` ([`detect`]) picks the format per object from its key
//! and its first line.
//!
//! The rooms: `w3c` (W3C extended: CloudFront, IIS; VPC flow logs, CSV and TSV share its
//! header-named [`Columns`]), `fixed` (ALB, classic ELB, NLB and S3 server access logs: AWS's
//! documented field order, quoted and bracketed fields), `json` (JSON lines and CloudTrail
//! events), `time` (timestamps to RFC 3339).

use std::borrow::Cow;

pub mod fixed;
pub mod json;
pub mod time;
pub mod w3c;

use crate::scan::escape_into;

/// The formats `s3s-parse` knows (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// CloudFront standard logs (W3C, tab-separated, names from `#Fields:`).
    Cloudfront,
    /// W3C extended log files (IIS and others; tabs or spaces).
    W3c,
    /// Application Load Balancer access logs.
    Alb,
    /// Classic Load Balancer access logs.
    Elb,
    /// Network Load Balancer (TLS listener) access logs.
    Nlb,
    /// S3 server access logs.
    S3Access,
    /// VPC flow logs (names from the header line).
    VpcFlow,
    /// CloudTrail events (one JSON event per line, as s3s-cat splits documents).
    Cloudtrail,
    /// JSON lines.
    Json,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Cloudfront => "cloudfront",
            Format::W3c => "w3c",
            Format::Alb => "alb",
            Format::Elb => "elb",
            Format::Nlb => "nlb",
            Format::S3Access => "s3-access",
            Format::VpcFlow => "vpc-flow",
            Format::Cloudtrail => "cloudtrail",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
        }
    }
}

/// Why a line could not be parsed (it passes through with `"parse_error":WHY`).
pub type Why = Cow<'static, str>;

/// What one line became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A data line: `fields` holds the JSON object, `ts` the timestamp (empty: none).
    Data,
    /// A header or comment line (`#Version:`, `#Fields:`, a VPC or CSV header): read, not emitted.
    Consumed,
}

/// Buffers reused from line to line.
#[derive(Default)]
pub struct Scratch {
    pub tokens: Vec<(usize, usize, u8)>,
    pub text: Vec<u8>,
}

/// The parser of one object's lines.
pub enum Parser {
    /// W3C, CloudFront, VPC flow, CSV, TSV: names from a header.
    Columns(w3c::Columns),
    /// ALB, ELB, NLB, S3 access: AWS's documented field order.
    Fixed(fixed::Fixed),
    /// JSON lines, CloudTrail events.
    Json { cloudtrail: bool },
}

impl Parser {
    /// A parser for `format`; `header` (from `--header`) names the columns of a format that
    /// takes them from a header line, until the object gives one.
    pub fn new(format: Format, header: &[String]) -> Parser {
        match format {
            Format::Cloudfront | Format::W3c | Format::VpcFlow | Format::Csv | Format::Tsv => {
                Parser::Columns(w3c::Columns::new(format, header))
            }
            Format::Alb | Format::Elb | Format::Nlb | Format::S3Access => Parser::Fixed(fixed::Fixed::new(format)),
            Format::Cloudtrail => Parser::Json { cloudtrail: true },
            Format::Json => Parser::Json { cloudtrail: false },
        }
    }

    pub fn format(&self) -> Format {
        match self {
            Parser::Columns(c) => c.format(),
            Parser::Fixed(f) => f.format(),
            Parser::Json { cloudtrail: true } => Format::Cloudtrail,
            Parser::Json { cloudtrail: false } => Format::Json,
        }
    }

    /// Parse a line given as the content of its JSON string (`content`, still escaped when
    /// `escaped`): on [`Line::Data`], `,"@timestamp":"..."` (when the line has a time) and
    /// `,"fields":{...}` are appended to `out` (on anything else `out` may hold part of them:
    /// the caller truncates it). `fields`, `ts` and `text` are scratch buffers.
    ///
    /// A tab-separated W3C/CloudFront line is split and written from its escaped form as it is
    /// (its values are JSON string content already): no decoding, no re-escaping, no copy.
    #[allow(clippy::too_many_arguments)]
    pub fn line_json(
        &mut self,
        content: &[u8],
        escaped: bool,
        out: &mut Vec<u8>,
        fields: &mut Vec<u8>,
        ts: &mut Vec<u8>,
        s: &mut Scratch,
        text: &mut Vec<u8>,
    ) -> Result<Line, Why> {
        if escaped
            && let Parser::Columns(c) = self
            && c.line_raw(content, out, ts, s, text)
        {
            return Ok(Line::Data);
        }
        let line = if escaped {
            text.clear();
            crate::scan::unescape_into(content, text);
            &text[..]
        } else {
            content
        };
        let r = self.line(line, fields, ts, s)?;
        if r == Line::Data {
            timestamp_member(out, ts);
            out.extend_from_slice(b",\"fields\":");
            out.extend_from_slice(fields);
        }
        Ok(r)
    }

    /// Parse `line`: on [`Line::Data`], `fields` (cleared first) holds the `{...}` object and
    /// `ts` (cleared first) the timestamp's text, or nothing.
    pub fn line(&mut self, line: &[u8], fields: &mut Vec<u8>, ts: &mut Vec<u8>, s: &mut Scratch) -> Result<Line, Why> {
        fields.clear();
        ts.clear();
        match self {
            Parser::Columns(c) => c.line(line, fields, ts, s),
            Parser::Fixed(f) => f.line(line, fields, ts, s),
            Parser::Json { cloudtrail } => json::line(*cloudtrail, line, fields, ts),
        }
    }
}

/// Pick the format of an object from its key and its first line (`None`: not recognised).
///
/// The rules, in order (man/s3s-parse.1 lists them): a JSON object line is `cloudtrail` when it
/// has `eventTime` and `eventName` (or `eventVersion`), else `json`; a `#Version:`/`#Fields:`
/// header is `w3c` (`cloudfront` once its `#Fields:` names `x-edge-*` fields, or when the key
/// is CloudFront's `<dist>.YYYY-MM-DD-HH.<id>[.gz]`); a VPC header line (names such as
/// `srcaddr`, `interface-id`) is `vpc-flow`; a first field `http`/`https`/`h2`/`grpcs`/`ws`/`wss`
/// followed by an ISO 8601 time is `alb`; `tls 2.0 <time>` is `nlb`; an ISO 8601 time first and
/// a load balancer key (`/elasticloadbalancing/`) is `elb`; 64 hex digits, a bucket and a
/// `[time]` is `s3-access`; else the key decides (`/elasticloadbalancing/` with the shapes
/// above, `/vpcflowlogs/`, `/CloudTrail/`, `.csv`, `.tsv`).
pub fn detect(key: &[u8], first: &[u8]) -> Option<Format> {
    let first_trim = trim(first);
    if first_trim.first() == Some(&b'{') {
        return Some(if json::looks_like_cloudtrail(first_trim) { Format::Cloudtrail } else { Format::Json });
    }
    if first.starts_with(b"#Version:") || first.starts_with(b"#Fields:") || first.starts_with(b"#Software:") {
        if (first.starts_with(b"#Fields:") && w3c::names_cloudfront(&first[8..])) || is_cloudfront_key(key) {
            return Some(Format::Cloudfront);
        }
        return Some(Format::W3c);
    }
    if w3c::is_vpc_header(first) {
        return Some(Format::VpcFlow);
    }
    let mut words = first.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let (w1, w2, w3) = (words.next().unwrap_or(b""), words.next().unwrap_or(b""), words.next().unwrap_or(b""));
    if matches!(w1, b"http" | b"https" | b"h2" | b"grpcs" | b"ws" | b"wss") && time::is_iso(w2) {
        return Some(Format::Alb);
    }
    if w1 == b"tls" && time::is_iso(w3) {
        return Some(Format::Nlb);
    }
    if time::is_iso(w1) && (contains(key, b"/elasticloadbalancing/") || w3.contains(&b':')) {
        return Some(Format::Elb);
    }
    if w1.len() == 64 && w1.iter().all(u8::is_ascii_hexdigit) && w3.first() == Some(&b'[') {
        return Some(Format::S3Access);
    }
    if is_cloudfront_key(key) {
        return Some(Format::Cloudfront);
    }
    if contains(key, b"/vpcflowlogs/") {
        return Some(Format::VpcFlow);
    }
    let lower = |suffix: &[u8]| {
        let k = key.strip_suffix(b".gz").or_else(|| key.strip_suffix(b".zst")).unwrap_or(key);
        k.len() >= suffix.len() && k[k.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    if lower(b".csv") {
        return Some(Format::Csv);
    }
    if lower(b".tsv") {
        return Some(Format::Tsv);
    }
    None
}

/// CloudFront's standard log names: `[prefix/]<distribution id>.YYYY-MM-DD-HH.<unique id>[.gz]`.
pub fn is_cloudfront_key(key: &[u8]) -> bool {
    let name = key.rsplit(|&b| b == b'/').next().unwrap_or(key);
    let name = name.strip_suffix(b".gz").unwrap_or(name);
    let mut parts = name.split(|&b| b == b'.');
    let (Some(dist), Some(date), Some(id), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    !dist.is_empty()
        && dist.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && date.len() == 13
        && digits(&date[0..4])
        && date[4] == b'-'
        && digits(&date[5..7])
        && date[7] == b'-'
        && digits(&date[8..10])
        && date[10] == b'-'
        && digits(&date[11..13])
        && !id.is_empty()
        && id.iter().all(u8::is_ascii_alphanumeric)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let s = match s.iter().position(|b| !b.is_ascii_whitespace()) {
        Some(i) => &s[i..],
        None => return &[],
    };
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    &s[..end]
}

// ---- writing JSON members straight into the buffer ----

/// `,"@timestamp":"TS"`, when `ts` is not empty.
#[inline]
pub(crate) fn timestamp_member(out: &mut Vec<u8>, ts: &[u8]) {
    if !ts.is_empty() {
        out.extend_from_slice(b",\"@timestamp\":\"");
        out.extend_from_slice(ts);
        out.push(b'"');
    }
}

/// `"name":` after a comma unless it is the object's first member.
#[inline]
pub(crate) fn key(out: &mut Vec<u8>, name: &[u8]) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name);
    out.extend_from_slice(b"\":");
}

/// A JSON-escaped, pre-quoted key (`"name":`, from [`quoted_key`]).
#[inline]
pub(crate) fn raw_key(out: &mut Vec<u8>, quoted: &[u8]) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.extend_from_slice(quoted);
}

/// `"name":` for any name (escaped).
pub(crate) fn quoted_key(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 3);
    crate::scan::quote_into(name, &mut k);
    k.push(b':');
    k
}

/// A string value (`s` is UTF-8).
#[inline]
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    escape_into(s, out);
    out.push(b'"');
}

/// `-` or nothing (compared by hand: a slice comparison is a call to memcmp).
#[inline(always)]
pub(crate) fn is_null(s: &[u8]) -> bool {
    s.is_empty() || (s.len() == 1 && s[0] == b'-')
}

/// `-` (and nothing) as null, else a string.
#[inline]
pub(crate) fn string_or_null(out: &mut Vec<u8>, s: &[u8]) {
    if is_null(s) {
        out.extend_from_slice(b"null");
    } else {
        string(out, s);
    }
}

/// `-` as null; a number as a JSON number (leading zeros dropped: `000` is `0`); anything
/// else as a string (lenient: never an error).
#[inline]
pub(crate) fn number_or_null(out: &mut Vec<u8>, s: &[u8]) {
    if is_null(s) {
        out.extend_from_slice(b"null");
    } else if !number(out, s) {
        string(out, s);
    }
}

/// Write `s` as a JSON number when it is one (`-?digits(.digits)?([eE][+-]?digits)?`, leading
/// zeros allowed and dropped); false (nothing written) otherwise.
#[inline]
pub(crate) fn number(out: &mut Vec<u8>, s: &[u8]) -> bool {
    let (neg, body) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let int_len = body.iter().position(|b| !b.is_ascii_digit()).unwrap_or(body.len());
    if int_len == 0 {
        return false;
    }
    let mut i = int_len;
    if body.get(i) == Some(&b'.') {
        let frac = body[i + 1..].iter().position(|b| !b.is_ascii_digit()).unwrap_or(body.len() - i - 1);
        if frac == 0 {
            return false;
        }
        i += 1 + frac;
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(body.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = body[i..].iter().position(|b| !b.is_ascii_digit()).unwrap_or(body.len() - i);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    if i != body.len() {
        return false;
    }
    let zeros = body[..int_len - 1].iter().take_while(|&&b| b == b'0').count();
    if neg {
        out.push(b'-');
    }
    out.extend_from_slice(&body[zeros..]);
    true
}

/// Decode `\"` and `\\` inside a quoted field (the escapes AWS writes) into `text`.
pub(crate) fn unquote_into(s: &[u8], text: &mut Vec<u8>) {
    text.clear();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() && matches!(s[i + 1], b'"' | b'\\') {
            text.push(s[i + 1]);
            i += 2;
        } else {
            text.push(s[i]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> Option<String> {
        let mut out = Vec::new();
        number(&mut out, s.as_bytes()).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn numbers() {
        assert_eq!(num("200").as_deref(), Some("200"));
        assert_eq!(num("000").as_deref(), Some("0"));
        assert_eq!(num("0042").as_deref(), Some("42"));
        assert_eq!(num("-1").as_deref(), Some("-1"));
        assert_eq!(num("0.002").as_deref(), Some("0.002"));
        assert_eq!(num("1e5").as_deref(), Some("1e5"));
        for bad in ["", "-", "1.", ".5", "1a", "0x10", "1e", "--1", "1.2.3"] {
            assert_eq!(num(bad), None, "{bad}");
        }
    }

    #[test]
    fn detection() {
        assert_eq!(detect(b"x/E2ABC.2026-11-28-17.1a2b3c4d.gz", b"#Version: 1.0"), Some(Format::Cloudfront));
        assert_eq!(detect(b"logs/u_ex.log", b"#Software: Microsoft Internet Information Services 10.0"), Some(Format::W3c));
        assert_eq!(detect(b"a", b"#Fields: date time x-edge-location sc-bytes"), Some(Format::Cloudfront));
        assert_eq!(
            detect(b"a", b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status"),
            Some(Format::VpcFlow)
        );
        assert_eq!(
            detect(b"a", b"https 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 1.2.3.4:2817"),
            Some(Format::Alb)
        );
        assert_eq!(
            detect(b"a", b"tls 2.0 2018-12-20T02:59:40 net/my-network-loadbalancer/c6e77e28c25b2234 g3d4b5e8bb8464cd"),
            Some(Format::Nlb)
        );
        assert_eq!(
            detect(b"a", b"2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 0.000086"),
            Some(Format::Elb)
        );
        assert_eq!(
            detect(b"a", b"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be awsexamplebucket1 [06/Feb/2019:00:00:38 +0000] 192.0.2.3"),
            Some(Format::S3Access)
        );
        assert_eq!(
            detect(b"a", br#"{"eventVersion":"1.08","eventTime":"2014-03-06T21:22:54Z","eventName":"X"}"#),
            Some(Format::Cloudtrail)
        );
        assert_eq!(detect(b"a", br#"{"a":1}"#), Some(Format::Json));
        assert_eq!(detect(b"d/x.csv.gz", b"a,b,c"), Some(Format::Csv));
        assert_eq!(detect(b"d/x.txt", b"hello world"), None);
    }
}
