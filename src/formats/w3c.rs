//! Formats whose names come from a header: W3C extended logs (CloudFront, IIS: `#Fields:`),
//! VPC flow logs (a header line of names), CSV and TSV (a header row, or `--header`).
//!
//! Values are mapped to names by position from the object's own header, never from a built-in
//! column order (CloudFront standard logging v2 and VPC custom formats let users choose the
//! fields). Built-in orders are used only before an object gives a header: CloudFront's 33
//! standard fields, VPC's version 2 default format.

use super::{Format, Line, Scratch, Why, key, number_or_null, quoted_key, raw_key, string, string_or_null, time};

/// CloudFront's standard log fields, in AWS's documented order (used when a CloudFront object
/// has no `#Fields:` header).
pub const CLOUDFRONT_FIELDS: &str = "date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status \
     cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol \
     cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version \
     fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type \
     sc-content-len sc-range-start sc-range-end";

/// VPC flow logs' default format (version 2), used when an object has no header line.
pub const VPC_V2_FIELDS: &str =
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";

/// W3C fields that are numbers (CloudFront's and IIS's documentation).
const W3C_NUMERIC: &[&str] = &[
    "sc-bytes",
    "sc-status",
    "cs-bytes",
    "time-taken",
    "c-port",
    "s-port",
    "time-to-first-byte",
    "sc-content-len",
    "sc-range-start",
    "sc-range-end",
    "sc-substatus",
    "sc-win32-status",
];

/// VPC flow log fields that are numbers (AWS's "Available fields").
const VPC_NUMERIC: &[&str] =
    &["version", "srcport", "dstport", "protocol", "packets", "bytes", "start", "end", "tcp-flags", "traffic-path"];

/// Names that make a line a VPC flow log header.
const VPC_MARKERS: &[&[u8]] = &[b"srcaddr", b"dstaddr", b"interface-id", b"log-status", b"pkt-srcaddr", b"flow-direction"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `-` is null, else a string.
    Str,
    /// `-` is null, a number when it is one, else a string.
    Num,
    /// URL-encoded (CloudFront's `cs(User-Agent)`, `cs(Referer)`): decoded once.
    Url,
    /// Always a string (CSV, TSV: no types known).
    Raw,
}

struct Col {
    /// `"name":`, escaped.
    key: Vec<u8>,
    kind: Kind,
}

/// Header-named columns, and how lines split into them.
pub struct Columns {
    format: Format,
    cols: Vec<Col>,
    /// Positions of the fields the timestamp comes from.
    date: Option<usize>,
    time: Option<usize>,
    epoch: Option<usize>,
    /// CSV/TSV: the next line is the header row.
    header_row: bool,
}

impl Columns {
    pub fn new(format: Format, header: &[String]) -> Columns {
        let mut c = Columns { format, cols: Vec::new(), date: None, time: None, epoch: None, header_row: false };
        if !header.is_empty() {
            c.set(header.iter().map(|s| s.as_bytes()));
        } else {
            match format {
                Format::Cloudfront => c.set(CLOUDFRONT_FIELDS.split(' ').map(str::as_bytes)),
                Format::VpcFlow => c.set(VPC_V2_FIELDS.split(' ').map(str::as_bytes)),
                Format::Csv | Format::Tsv => c.header_row = true,
                _ => {}
            }
        }
        c
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Name the columns (a header line, or `--header`).
    fn set<'a>(&mut self, names: impl Iterator<Item = &'a [u8]>) {
        self.cols.clear();
        (self.date, self.time, self.epoch) = (None, None, None);
        for (i, name) in names.enumerate() {
            let named = |list: &[&str]| list.iter().any(|n| n.as_bytes() == name);
            let kind = match self.format {
                Format::Cloudfront if name == b"cs(User-Agent)" || name == b"cs(Referer)" => Kind::Url,
                Format::Cloudfront | Format::W3c if named(W3C_NUMERIC) => Kind::Num,
                Format::VpcFlow if named(VPC_NUMERIC) => Kind::Num,
                Format::Csv | Format::Tsv => Kind::Raw,
                _ => Kind::Str,
            };
            match (self.format, name) {
                (Format::Cloudfront | Format::W3c, b"date") => self.date = Some(i),
                (Format::Cloudfront | Format::W3c, b"time") => self.time = Some(i),
                (Format::VpcFlow, b"start") => self.epoch = Some(i),
                _ => {}
            }
            // A name given twice would make a JSON object with a duplicate member: suffixed.
            let mut key = quoted_key(name);
            let mut n = 2;
            while self.cols.iter().any(|c| c.key == key) {
                key = quoted_key(format!("{}_{n}", String::from_utf8_lossy(name)).as_bytes());
                n += 1;
            }
            self.cols.push(Col { key, kind });
        }
    }

    pub fn line(&mut self, line: &[u8], out: &mut Vec<u8>, ts: &mut Vec<u8>, s: &mut Scratch) -> Result<Line, Why> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(Line::Consumed);
        }
        let Scratch { tokens, text } = s;
        tokens.clear();
        match self.format {
            Format::Cloudfront | Format::W3c => {
                if line[0] == b'#' {
                    if let Some(names) = line.strip_prefix(b"#Fields:") {
                        if self.format == Format::W3c && names_cloudfront(names) {
                            self.format = Format::Cloudfront;
                        }
                        self.set(names.split(u8::is_ascii_whitespace).filter(|n| !n.is_empty()));
                    }
                    return Ok(Line::Consumed);
                }
                if self.cols.is_empty() {
                    return Err("no #Fields: header before this line".into());
                }
                // CloudFront separates fields with tabs; IIS and older streaming logs with spaces.
                let sep = if memchr::memchr(b'\t', line).is_some() { b'\t' } else { b' ' };
                split(line, sep, sep == b' ', tokens);
            }
            Format::VpcFlow => {
                if is_vpc_header(line) {
                    self.set(line.split(|&b| b == b' ').filter(|n| !n.is_empty()));
                    return Ok(Line::Consumed);
                }
                split(line, b' ', true, tokens);
            }
            Format::Tsv => split(line, b'\t', false, tokens),
            _ => csv(line, tokens)?,
        }
        if self.header_row {
            self.header_row = false;
            let names: Vec<Vec<u8>> =
                tokens.iter().map(|&(a, b, esc)| if esc == 1 { unquote_csv(&line[a..b]) } else { line[a..b].to_vec() }).collect();
            self.set(names.iter().map(Vec::as_slice));
            return Ok(Line::Consumed);
        }
        out.push(b'{');
        let ncols = self.cols.len();
        for (i, &(a, b, esc)) in tokens.iter().enumerate() {
            let v = &line[a..b];
            if let Some(col) = self.cols.get(i) {
                raw_key(out, &col.key);
                match col.kind {
                    Kind::Str => string_or_null(out, v),
                    Kind::Num => number_or_null(out, v),
                    Kind::Raw if esc == 1 => {
                        text.clear();
                        text.extend_from_slice(&unquote_csv(v));
                        string(out, text);
                    }
                    Kind::Raw => string(out, v),
                    Kind::Url => url_decoded(out, v, text),
                }
            } else {
                if i == ncols {
                    key(out, b"_extra");
                    out.push(b'[');
                } else {
                    out.push(b',');
                }
                string(out, v);
            }
        }
        if tokens.len() > ncols {
            out.push(b']');
        }
        out.push(b'}');
        let at = |i: Option<usize>| i.and_then(|i| tokens.get(i)).map(|&(a, b, _)| &line[a..b]);
        if let (Some(d), Some(t)) = (at(self.date), at(self.time)) {
            time::date_time(d, t, ts);
        } else if let Some(e) = at(self.epoch) {
            time::epoch(e, ts);
        }
        Ok(Line::Data)
    }
}

impl Columns {
    /// A W3C/CloudFront data line given escaped (the content of its JSON string), split on its
    /// `\t` escapes and written into `out` as `,"@timestamp":"...","fields":{...}`: each value
    /// between the escapes is JSON string content already, copied as it is. False (nothing written) when this does not apply: another format, no header
    /// yet, a comment line, or no tab in the line (then the decoded line goes the usual way).
    pub fn line_raw(&mut self, raw: &[u8], out: &mut Vec<u8>, ts: &mut Vec<u8>, s: &mut Scratch, text: &mut Vec<u8>) -> bool {
        if !matches!(self.format, Format::Cloudfront | Format::W3c)
            || self.cols.is_empty()
            || raw.first().is_none_or(|&c| c == b'#')
        {
            return false;
        }
        let Scratch { tokens, text: scratch } = s;
        tokens.clear();
        let (mut start, mut i, mut esc, mut tabs) = (0, 0, 0u8, 0);
        // The content of a JSON string holds no bare quote: every hit is a backslash.
        while let Some(p) = crate::simd::find_quote_or_backslash(raw, i) {
            match raw.get(p + 1) {
                _ if raw[p] == b'"' => i = p + 1,
                Some(b't') => {
                    tokens.push((start, p, esc));
                    (start, i, esc) = (p + 2, p + 2, 0);
                    tabs += 1;
                }
                Some(b'u') if raw.get(p + 2..p + 6) == Some(b"0009") => {
                    tokens.push((start, p, esc));
                    (start, i, esc) = (p + 6, p + 6, 0);
                    tabs += 1;
                }
                Some(b'u') => (esc, i) = (1, (p + 6).min(raw.len())),
                Some(_) => (esc, i) = (1, p + 2),
                None => i = raw.len(),
            }
        }
        if tabs == 0 {
            return false;
        }
        tokens.push((start, raw.len(), esc));
        ts.clear();
        let at = |i: Option<usize>| i.and_then(|i| tokens.get(i)).map(|&(a, b, _)| &raw[a..b]);
        if let (Some(d), Some(t)) = (at(self.date), at(self.time)) {
            time::date_time(d, t, ts);
        }
        super::timestamp_member(out, ts);
        out.extend_from_slice(b",\"fields\":{");
        let ncols = self.cols.len();
        for (i, &(a, b, esc)) in tokens.iter().enumerate() {
            let v = &raw[a..b];
            let Some(col) = self.cols.get(i) else {
                if i == ncols {
                    key(out, b"_extra");
                    out.push(b'[');
                } else {
                    out.push(b',');
                }
                quoted_raw(out, v);
                continue;
            };
            raw_key(out, &col.key);
            match col.kind {
                Kind::Str if super::is_null(v) => out.extend_from_slice(b"null"),
                Kind::Str | Kind::Raw => quoted_raw(out, v),
                Kind::Num if esc == 0 => number_or_null(out, v),
                Kind::Num | Kind::Url => {
                    let v = if esc == 1 {
                        text.clear();
                        crate::scan::unescape_into(v, text);
                        &text[..]
                    } else {
                        v
                    };
                    if col.kind == Kind::Num { number_or_null(out, v) } else { url_decoded(out, v, scratch) }
                }
            }
        }
        if tokens.len() > ncols {
            out.push(b']');
        }
        out.push(b'}');
        true
    }
}

/// `"` + JSON string content as it is + `"`.
#[inline]
fn quoted_raw(out: &mut Vec<u8>, v: &[u8]) {
    out.reserve(v.len() + 2);
    out.push(b'"');
    out.extend_from_slice(v);
    out.push(b'"');
}

/// Split on `sep` (runs of it count as one when `runs`).
#[inline]
fn split(line: &[u8], sep: u8, runs: bool, tokens: &mut Vec<(usize, usize, u8)>) {
    let mut start = 0;
    for i in memchr::memchr_iter(sep, line) {
        if !(runs && i == start) {
            tokens.push((start, i, 0));
        }
        start = i + 1;
    }
    if !(runs && start == line.len()) {
        tokens.push((start, line.len(), 0));
    }
}

/// RFC 4180 fields of one line: `(start, end, 1 if it holds doubled quotes)`, quotes excluded.
fn csv(line: &[u8], tokens: &mut Vec<(usize, usize, u8)>) -> Result<(), Why> {
    let mut i = 0;
    loop {
        if line.get(i) == Some(&b'"') {
            let start = i + 1;
            let mut j = start;
            let mut doubled = 0;
            loop {
                match memchr::memchr(b'"', &line[j..]) {
                    None => return Err("unterminated quoted CSV field".into()),
                    Some(k) if line.get(j + k + 1) == Some(&b'"') => {
                        doubled = 1;
                        j += k + 2;
                    }
                    Some(k) => {
                        tokens.push((start, j + k, doubled));
                        i = j + k + 1;
                        break;
                    }
                }
            }
            match line.get(i) {
                None => return Ok(()),
                Some(b',') => i += 1,
                Some(_) => return Err("text after a closing quote in a CSV field".into()),
            }
        } else {
            let end = memchr::memchr(b',', &line[i..]).map_or(line.len(), |k| i + k);
            tokens.push((i, end, 0));
            if end == line.len() {
                return Ok(());
            }
            i = end + 1;
        }
    }
}

fn unquote_csv(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        v.push(s[i]);
        i += if s[i] == b'"' && s.get(i + 1) == Some(&b'"') { 2 } else { 1 };
    }
    v
}

/// A URL-encoded value decoded once (`%2520` becomes `%20`); `-` is null.
#[inline]
fn url_decoded(out: &mut Vec<u8>, v: &[u8], text: &mut Vec<u8>) {
    if memchr::memchr(b'%', v).is_none() {
        return string_or_null(out, v);
    }
    // A value of `-` has no `%`: it was handled above.
    percent_decode_into(v, text);
    match std::str::from_utf8(text) {
        Ok(_) => string(out, text),
        Err(_) => {
            let lossy = String::from_utf8_lossy(text).into_owned();
            string(out, lossy.as_bytes());
        }
    }
}

/// `%XX` decoded (once); a `%` not followed by two hex digits stays.
fn percent_decode_into(v: &[u8], text: &mut Vec<u8>) {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    text.clear();
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'%', &v[i..]) {
        let p = i + k;
        text.extend_from_slice(&v[i..p]);
        match (v.get(p + 1).copied().and_then(hex), v.get(p + 2).copied().and_then(hex)) {
            (Some(h), Some(l)) => {
                text.push(h << 4 | l);
                i = p + 3;
            }
            _ => {
                text.push(b'%');
                i = p + 1;
            }
        }
    }
    text.extend_from_slice(&v[i..]);
}

/// A `#Fields:` list naming CloudFront's own fields (`x-edge-*`).
pub fn names_cloudfront(names: &[u8]) -> bool {
    names.split(u8::is_ascii_whitespace).any(|n| n.starts_with(b"x-edge-"))
}

/// A VPC flow log header line: space-separated lower-case names, one of them a VPC field.
pub fn is_vpc_header(line: &[u8]) -> bool {
    let mut marked = false;
    for name in line.split(|&b| b == b' ').filter(|n| !n.is_empty()) {
        if !name.iter().all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return false;
        }
        marked |= VPC_MARKERS.contains(&name);
    }
    marked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &mut Columns, line: &str) -> (String, String) {
        let (mut out, mut ts, mut s) = (Vec::new(), Vec::new(), Scratch::default());
        match c.line(line.as_bytes(), &mut out, &mut ts, &mut s) {
            Ok(Line::Data) => (String::from_utf8(out).unwrap(), String::from_utf8(ts).unwrap()),
            Ok(Line::Consumed) => ("consumed".into(), String::new()),
            Err(e) => (format!("error: {e}"), String::new()),
        }
    }

    #[test]
    fn w3c_and_cloudfront() {
        let mut c = Columns::new(Format::W3c, &[]);
        assert_eq!(run(&mut c, "x y").0, "error: no #Fields: header before this line");
        assert_eq!(run(&mut c, "#Fields: date time cs(User-Agent) sc-status x-edge-location").0, "consumed");
        assert_eq!(c.format(), Format::Cloudfront);
        let (f, ts) = run(&mut c, "2019-12-04\t21:02:31\tMozilla/5.0%2520(X)\t000\t-\tmore");
        assert_eq!(
            f,
            r#"{"date":"2019-12-04","time":"21:02:31","cs(User-Agent)":"Mozilla/5.0%20(X)","sc-status":0,"x-edge-location":null,"_extra":["more"]}"#
        );
        assert_eq!(ts, "2019-12-04T21:02:31Z");
        let mut iis = Columns::new(Format::W3c, &[]);
        run(&mut iis, "#Fields: date time s-ip cs-method sc-status time-taken");
        assert_eq!(
            run(&mut iis, "2024-01-02 03:04:05 10.0.0.1 GET 404").0,
            r#"{"date":"2024-01-02","time":"03:04:05","s-ip":"10.0.0.1","cs-method":"GET","sc-status":404}"#
        );
    }

    #[test]
    fn escaped_lines_split_as_decoded_ones() {
        let line = r#"2019-12-04\t21:02:31\tMozilla/5.0%2520(X)\t000\t-\ta \"q\" \\ b\tmore\u0009last"#;
        let mut text = Vec::new();
        crate::scan::unescape_into(line.as_bytes(), &mut text);
        let mut c = Columns::new(Format::W3c, &[]);
        run(&mut c, "#Fields: date time cs(User-Agent) sc-status x-edge-location cs-uri-stem");
        let decoded = run(&mut c, std::str::from_utf8(&text).unwrap());
        let (mut out, mut ts, mut s, mut t) = (b"{\"n\":1".to_vec(), Vec::new(), Scratch::default(), Vec::new());
        assert!(c.line_raw(line.as_bytes(), &mut out, &mut ts, &mut s, &mut t));
        out.push(b'}');
        let raw: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let fields: serde_json::Value = serde_json::from_str(&decoded.0).unwrap();
        assert_eq!(raw["fields"], fields, "{raw} {decoded:?}");
        assert_eq!(raw["@timestamp"], decoded.1.as_str());
        assert!(!c.line_raw(b"no tabs here", &mut Vec::new(), &mut Vec::new(), &mut s, &mut t));
    }

    #[test]
    fn percent_decoding_once() {
        let mut t = Vec::new();
        for (from, to) in [("a%20b", "a b"), ("%2520", "%20"), ("%zz%4", "%zz%4"), ("100%", "100%"), ("%C3%A9", "\u{e9}")] {
            percent_decode_into(from.as_bytes(), &mut t);
            assert_eq!(t, to.as_bytes(), "{from}");
        }
    }

    #[test]
    fn csv_rows() {
        let mut c = Columns::new(Format::Csv, &[]);
        assert_eq!(run(&mut c, "a,\"b \"\"q\"\"\",c").0, "consumed");
        assert_eq!(run(&mut c, "1,\"x, y\",").0, r#"{"a":"1","b \"q\"":"x, y","c":""}"#);
        assert_eq!(run(&mut c, "1,\"x").0, "error: unterminated quoted CSV field");
    }
}
