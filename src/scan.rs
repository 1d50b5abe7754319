//! A small, fast scanner for the top level of one JSON object, and JSON string (un)escaping.
//!
//! The per-line stages (filter, publishers) need two or three top-level fields of each record
//! (`type`, `line`, `n`...) and otherwise pass the record's bytes through untouched. Building a
//! full `serde_json::Value` per line would allocate a tree per record; this scanner finds the
//! byte ranges of top-level values without allocating, and checks the structure (balanced
//! brackets, terminated strings, `key: value` pairs, nothing after the closing brace). Values it
//! skips are not validated in depth (a malformed number inside `ack` passes), which is the point:
//! stages pass through what they do not act on.

use crate::simd;

/// Why a line is not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("not a JSON object")]
    NotObject,
    #[error("malformed JSON at byte {0}")]
    Malformed(usize),
    #[error("no \"type\" string field")]
    NoType,
}

/// The raw bytes of one top-level value: for strings, the content between the quotes
/// (still escaped) plus whether it contains escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw {
    /// Byte range of the whole value in the record (quotes included for strings).
    pub start: usize,
    pub end: usize,
    /// The value is a JSON string.
    pub is_string: bool,
    /// A string value containing at least one backslash escape.
    pub escaped: bool,
}

impl Raw {
    /// String content without quotes (still escaped), or the raw value text.
    #[inline]
    pub fn content<'a>(&self, rec: &'a [u8]) -> &'a [u8] {
        if self.is_string { &rec[self.start + 1..self.end - 1] } else { &rec[self.start..self.end] }
    }
}

/// Scan the top level of `rec` and call `f(key_content, key_escaped, value)` for every member.
/// `f` returns false to stop early (the rest of the record is then not checked).
pub fn members(rec: &[u8], f: impl FnMut(&[u8], Raw) -> bool) -> Result<(), ScanError> {
    members_decoding(rec, |_| false, &mut Vec::new(), f)
}

/// Like [`members`], and the string value of every key for which `decode(key)` holds is
/// unescaped into `text` in the same pass that scans it (appended; the caller clears `text`).
pub fn members_decoding(
    rec: &[u8],
    decode: impl Fn(&[u8]) -> bool,
    text: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], Raw) -> bool,
) -> Result<(), ScanError> {
    let mut i = skip_ws(rec, 0);
    if rec.get(i) != Some(&b'{') {
        return Err(ScanError::NotObject);
    }
    i = skip_ws(rec, i + 1);
    if rec.get(i) == Some(&b'}') {
        return end_of_record(rec, i + 1);
    }
    loop {
        if rec.get(i) != Some(&b'"') {
            return Err(ScanError::Malformed(i));
        }
        let (kend, _) = skip_string(rec, i)?;
        let key = &rec[i + 1..kend - 1];
        i = skip_ws(rec, kend);
        if rec.get(i) != Some(&b':') {
            return Err(ScanError::Malformed(i));
        }
        i = skip_ws(rec, i + 1);
        let raw = if rec.get(i) == Some(&b'"') && decode(key) {
            let (end, escaped) = decode_string(rec, i, text)?;
            Raw { start: i, end, is_string: true, escaped }
        } else {
            skip_value(rec, i)?
        };
        if !f(key, raw) {
            return Ok(());
        }
        i = skip_ws(rec, raw.end);
        match rec.get(i) {
            Some(b',') => i = skip_ws(rec, i + 1),
            Some(b'}') => return end_of_record(rec, i + 1),
            _ => return Err(ScanError::Malformed(i)),
        }
    }
}

fn end_of_record(rec: &[u8], i: usize) -> Result<(), ScanError> {
    let j = skip_ws(rec, i);
    if j == rec.len() { Ok(()) } else { Err(ScanError::Malformed(j)) }
}

/// The fields most stages need from a record.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fields {
    pub ty: Option<Raw>,
    pub line: Option<Raw>,
}

/// Find `type` and `line` at the top level of `rec`, checking the whole record's structure.
pub fn fields(rec: &[u8]) -> Result<Fields, ScanError> {
    fields_decoding_line(rec, &mut Vec::new())
}

/// Like [`fields`], and a string `line` value is unescaped into `text` (cleared first) while it
/// is scanned: one pass over the line instead of two.
pub fn fields_decoding_line(rec: &[u8], text: &mut Vec<u8>) -> Result<Fields, ScanError> {
    let mut out = Fields::default();
    text.clear();
    members_decoding(
        rec,
        |k| k == b"line",
        text,
        |k, v| {
            match k {
                b"type" => out.ty = Some(v),
                b"line" => out.line = Some(v),
                _ => {}
            }
            true
        },
    )?;
    match out.ty {
        Some(t) if t.is_string => Ok(out),
        _ => Err(ScanError::NoType),
    }
}

/// The `type` of a record as bytes (unescaped only when it has escapes, which it never has
/// when written by s3s).
pub fn type_name<'a>(rec: &'a [u8], ty: Raw, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if ty.escaped {
        scratch.clear();
        unescape_into(ty.content(rec), scratch);
        scratch
    } else {
        ty.content(rec)
    }
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `b[i]` is a quote; returns the index after the closing quote and whether it had escapes.
#[inline]
fn skip_string(b: &[u8], i: usize) -> Result<(usize, bool), ScanError> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        match simd::find_quote_or_backslash(b, j) {
            None => return Err(ScanError::Malformed(b.len())),
            Some(p) => {
                if b[p] == b'"' {
                    return Ok((p + 1, escaped));
                }
                escaped = true;
                j = p + 2;
                if j > b.len() {
                    return Err(ScanError::Malformed(b.len()));
                }
            }
        }
    }
}

/// `b[i]` is a quote: unescape the string into `out`; returns the index after the closing
/// quote and whether it had escapes.
#[inline]
fn decode_string(b: &[u8], i: usize, out: &mut Vec<u8>) -> Result<(usize, bool), ScanError> {
    let mut j = i + 1;
    let mut escaped = false;
    // Unescaping never makes a string longer (`\uXXXX` is 6 bytes for at most 3 of UTF-8, a
    // surrogate pair 12 for 4): room for the rest of the record is room for the whole string.
    out.reserve(b.len() - j + 16);
    loop {
        // SAFETY: the room reserved above, less what was written since, is at least what the
        // rest of `b` from `j` can write, plus 16: each step writes no more than it consumes.
        let Some(p) = (unsafe { simd::copy_until_quote_or_backslash_reserved(b, j, out) }) else {
            return Err(ScanError::Malformed(b.len()));
        };
        if b[p] == b'"' {
            return Ok((p + 1, escaped));
        }
        escaped = true;
        let Some(&c) = b.get(p + 1) else {
            return Err(ScanError::Malformed(b.len()));
        };
        // The common escapes (\t, \n, \", \\...) inline: CloudFront lines have one per field.
        let simple = SIMPLE_ESCAPE[c as usize];
        if simple != 0 {
            out.push(simple);
            j = p + 2;
            continue;
        }
        // \uXXXX (a surrogate pair takes two), or an invalid escape kept literally.
        let len = match (c, hex4(b, p + 2)) {
            (b'u', Some(hi)) => {
                if (0xD800..0xDC00).contains(&hi) && b.get(p + 6..p + 8) == Some(b"\\u") && hex4(b, p + 8).is_some() {
                    12
                } else {
                    6
                }
            }
            _ => 2,
        };
        unescape_into(&b[p..p + len], out);
        j = p + len;
    }
}

/// The byte a two-character escape `\c` stands for, by `c` (0: not a simple escape).
static SIMPLE_ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[b'/' as usize] = b'/';
    t[b'b' as usize] = 0x08;
    t[b'f' as usize] = 0x0c;
    t[b'n' as usize] = b'\n';
    t[b'r' as usize] = b'\r';
    t[b't' as usize] = b'\t';
    t
};

fn skip_value(b: &[u8], i: usize) -> Result<Raw, ScanError> {
    match b.get(i) {
        None => Err(ScanError::Malformed(i)),
        Some(b'"') => {
            let (end, escaped) = skip_string(b, i)?;
            Ok(Raw { start: i, end, is_string: true, escaped })
        }
        Some(b'{') | Some(b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = skip_string(b, j)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(Raw { start: i, end: j + 1, is_string: false, escaped: false });
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(ScanError::Malformed(b.len()))
        }
        Some(_) => {
            // number, true, false, null
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            let v = &b[i..j];
            let ok = matches!(v, b"true" | b"false" | b"null")
                || (!v.is_empty()
                    && (v[0] == b'-' || v[0].is_ascii_digit())
                    && v.iter().all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')));
            if ok { Ok(Raw { start: i, end: j, is_string: false, escaped: false }) } else { Err(ScanError::Malformed(i)) }
        }
    }
}

/// Decode the content of a JSON string (between the quotes) into `out` as UTF-8 bytes.
/// Invalid escapes are kept literally; lone surrogates become U+FFFD.
pub fn unescape_into(s: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < s.len() {
        match memchr::memchr(b'\\', &s[i..]) {
            None => {
                out.extend_from_slice(&s[i..]);
                return;
            }
            Some(k) => {
                out.extend_from_slice(&s[i..i + k]);
                i += k;
            }
        }
        // s[i] == '\\'
        let Some(&c) = s.get(i + 1) else {
            out.push(b'\\');
            return;
        };
        i += 2;
        match c {
            b'"' => out.push(b'"'),
            b'\\' => out.push(b'\\'),
            b'/' => out.push(b'/'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let Some(hi) = hex4(s, i) else {
                    out.extend_from_slice(b"\\u");
                    continue;
                };
                i += 4;
                let mut cp = hi;
                if (0xD800..0xDC00).contains(&hi)
                    && s.get(i) == Some(&b'\\')
                    && s.get(i + 1) == Some(&b'u')
                    && let Some(lo) = hex4(s, i + 2)
                    && (0xDC00..0xE000).contains(&lo)
                {
                    cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
}

fn hex4(s: &[u8], i: usize) -> Option<u32> {
    let h = s.get(i..i + 4)?;
    let mut v = 0u32;
    for &c in h {
        v = v * 16 + (c as char).to_digit(16)?;
    }
    Some(v)
}

/// 0: byte needs no escape; otherwise the escape letter (`u` for `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[b'\t' as usize] = b't';
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Append `s` (valid UTF-8) escaped as JSON string content (no quotes) to `out`.
#[inline(always)]
pub fn escape_into(s: &[u8], out: &mut Vec<u8>) {
    simd::escape_json(s, out, &ESCAPE);
}

/// Append `s` as a quoted JSON string.
pub fn quote_into(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    escape_into(s, out);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_and_checks_structure() {
        let r = br#"{"type":"line","ack":{"a":[1,"}"]},"n":3,"line":"a\tb\"c"}"#;
        let f = fields(r).unwrap();
        assert_eq!(f.ty.unwrap().content(r), b"line");
        let l = f.line.unwrap();
        assert!(l.escaped);
        let mut out = Vec::new();
        unescape_into(l.content(r), &mut out);
        assert_eq!(out, b"a\tb\"c");
        assert_eq!(fields(b"[1]").unwrap_err(), ScanError::NotObject);
        assert_eq!(fields(br#"{"a":1}"#).unwrap_err(), ScanError::NoType);
        assert!(fields(br#"{"type":"x""#).is_err());
        assert!(fields(br#"{"type":"x"} trailing"#).is_err());
        assert!(fields(br#"{"type":nope}"#).is_err());
        assert!(fields(br#" { "type" : "x" , "b" : [ ] } "#).is_ok());
    }

    #[test]
    fn decodes_line_while_scanning() {
        let cases = ["plain", "tab\there", "q\"uote\\back", "\u{1}ctl é 😀", "", "\\\"", "end\\"];
        for c in cases {
            let rec = serde_json::json!({"type": "line", "n": 1, "line": c, "after": [1, "x"]}).to_string();
            let mut text = vec![b'?'];
            let f = fields_decoding_line(rec.as_bytes(), &mut text).unwrap();
            assert_eq!(text, c.as_bytes(), "{rec}");
            assert_eq!(f.line.unwrap().escaped, rec.contains("\\"), "{rec}");
        }
        let mut text = Vec::new();
        fields_decoding_line(br#"{"type":"line","line":"\ud83d\ude00 \u00e9 \uzz \ud800x"}"#, &mut text).unwrap();
        assert_eq!(String::from_utf8(text).unwrap(), "😀 é \\uzz \u{FFFD}x");
        assert!(fields_decoding_line(br#"{"type":"line","line":"abc\"}"#, &mut Vec::new()).is_err());
    }

    #[test]
    fn escape_agrees_with_serde_json_on_every_byte_position() {
        // Each special byte at every offset of a 20-byte window, among ASCII and UTF-8 text.
        for special in [0u8, 1, 8, 9, 10, 13, 0x1f, b'"', b'\\', b' ', 0x7f] {
            for (pos, base) in (0..20).flat_map(|p| [(p, "abcdefghijklmnopqrst"), (p, "éééééééééé")]) {
                let mut v = base.as_bytes().to_vec();
                v[pos] = special;
                let Ok(text) = std::str::from_utf8(&v) else { continue };
                let mut mine = Vec::new();
                quote_into(text.as_bytes(), &mut mine);
                let back: String = serde_json::from_slice(&mine).unwrap();
                assert_eq!(back, text);
            }
        }
    }

    #[test]
    fn escape_round_trips() {
        let s = "tab\there \"q\" back\\slash \u{1} é 😀\n";
        let mut e = Vec::new();
        quote_into(s.as_bytes(), &mut e);
        let back: String = serde_json::from_slice(&e).unwrap();
        assert_eq!(back, s);
        let mut u = Vec::new();
        unescape_into(&e[1..e.len() - 1], &mut u);
        assert_eq!(u, s.as_bytes());
        let mut u = Vec::new();
        unescape_into(br"\ud83d\ude00 \u00e9 \ud800", &mut u);
        assert_eq!(String::from_utf8(u).unwrap(), "😀 é \u{FFFD}");
    }
}
