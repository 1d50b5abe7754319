//! A small, fast scanner for the top level of one JSON object, and JSON string (un)escaping.
//!
//! The per-line stages (filter, publishers) need two or three top-level fields of each record
//! (`type`, `line`, `n`...) and otherwise pass the record's bytes through untouched. Building a
//! full `serde_json::Value` per line would allocate a tree per record; this scanner finds the
//! byte ranges of top-level values without allocating, and checks the structure (balanced
//! brackets, terminated strings, `key: value` pairs, nothing after the closing brace). Values it
//! skips are checked as JSON (numbers, escapes, nesting) but not built: a record that the scanner
//! accepts is one that serde_json and jq accept (the `scan` fuzz target checks this).
//!
//! Where a record could be read two ways, the scanner refuses it rather than guess (so that it
//! never disagrees with a JSON parser such as jq or serde_json): bytes that are not UTF-8 and raw
//! control characters inside strings are errors, keys written with escapes (`"\u0074ype"`) are
//! compared decoded, and the stages refuse a duplicate member they act on (see
//! [`ScanError::Duplicate`]).

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
    #[error("bytes that are not UTF-8 at byte {0}")]
    NotUtf8(usize),
    #[error("raw control character in a string at byte {0}")]
    Control(usize),
    /// A member that the stage reads appears twice: JSON parsers disagree on which one counts
    /// (jq and serde_json take the last, some the first), so the record is refused.
    #[error("duplicate \"{0}\" member")]
    Duplicate(&'static str),
    /// A member of `fields` that the stage reads appears twice in that object (same reason).
    #[error("duplicate member in \"fields\"")]
    DuplicateField,
    /// A member that the stage reads has the wrong JSON type (e.g. `"n":"2"`).
    #[error("\"{0}\" is not {1}")]
    WrongType(&'static str, &'static str),
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
    f: impl FnMut(&[u8], Raw) -> bool,
) -> Result<(), ScanError> {
    members_impl(rec, decode, text, None::<&mut fn(&[u8], Raw)>, f)
}

/// The one walk behind [`members_decoding`] and [`fields_scan_each`]: with `each_field`, the
/// members of a `fields` object are handed over while that object is checked (no second pass).
#[inline(always)]
fn members_impl<N: FnMut(&[u8], Raw)>(
    rec: &[u8],
    decode: impl Fn(&[u8]) -> bool,
    text: &mut Vec<u8>,
    mut each_field: Option<&mut N>,
    mut f: impl FnMut(&[u8], Raw) -> bool,
) -> Result<(), ScanError> {
    check_bytes(rec)?;
    let mut key_buf = Vec::new();
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
        let (kend, key_escaped) = skip_string(rec, i)?;
        let key = if key_escaped {
            // Rare: a key written with escapes is compared as JSON reads it.
            key_buf.clear();
            unescape_into(&rec[i + 1..kend - 1], &mut key_buf);
            &key_buf[..]
        } else {
            &rec[i + 1..kend - 1]
        };
        i = skip_ws(rec, kend);
        if rec.get(i) != Some(&b':') {
            return Err(ScanError::Malformed(i));
        }
        i = skip_ws(rec, i + 1);
        let raw = if rec.get(i) == Some(&b'"') && decode(key) {
            let (end, escaped) = decode_string(rec, i, text)?;
            Raw { start: i, end, is_string: true, escaped }
        } else if let Some(n) = each_field.as_mut().filter(|_| key == b"fields" && rec.get(i) == Some(&b'{')) {
            let mut nested_keys = Vec::new();
            let end = walk_object(rec, i, &mut nested_keys, |k, v| {
                n(k, v);
                true
            })?
            .expect("never stopped");
            Raw { start: i, end, is_string: false, escaped: false }
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

/// The whole record is UTF-8 and has no raw control characters inside strings (one pass each,
/// both vectorised; the precise walk runs only for a record that holds a control byte at all).
#[inline]
fn check_bytes(rec: &[u8]) -> Result<(), ScanError> {
    // One vectorised pass for the common record (printable ASCII only: no byte below 0x20 or
    // from 0x80); the exact checks run only for a record that has such a byte at all.
    if !rec.iter().fold(false, |acc, &b| acc | (b.wrapping_sub(0x20) >= 0x60)) {
        return Ok(());
    }
    if rec.iter().fold(false, |acc, &b| acc | (b < 0x20)) {
        check_controls(rec)?;
    }
    if rec.is_ascii() {
        return Ok(());
    }
    std::str::from_utf8(rec).map(|_| ()).map_err(|e| ScanError::NotUtf8(e.valid_up_to()))
}

/// A control byte inside a string is an error; outside strings only JSON whitespace is allowed
/// (anything else is malformed and the structural scan says so).
#[cold]
fn check_controls(rec: &[u8]) -> Result<(), ScanError> {
    let mut in_string = false;
    let mut i = 0;
    while i < rec.len() {
        let b = rec[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                0..0x20 => return Err(ScanError::Control(i)),
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b < 0x20 && !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return Err(ScanError::Malformed(i));
        }
        i += 1;
    }
    Ok(())
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
    pub bucket: Option<Raw>,
    pub key: Option<Raw>,
    pub file: Option<Raw>,
    pub n: Option<Raw>,
    /// The parsed fields of a line (`s3s-parse`): a JSON object, kept raw.
    pub fields: Option<Raw>,
    /// The line's own time (`s3s-parse`), as it came (a string by the contract, not checked).
    pub timestamp: Option<Raw>,
}

/// Find `type` and `line` (and the object's `bucket`, `key`, `file`, `n`, `fields` and
/// `@timestamp`) at the top level of `rec`, checking the whole record's structure.
pub fn fields(rec: &[u8]) -> Result<Fields, ScanError> {
    fields_scan(rec, false, &mut Vec::new())
}

/// Like [`fields`], and a string `line` value is unescaped into `text` (cleared first) while it
/// is scanned: one pass over the line instead of two.
pub fn fields_decoding_line(rec: &[u8], text: &mut Vec<u8>) -> Result<Fields, ScanError> {
    fields_scan(rec, true, text)
}

/// [`fields`] or [`fields_decoding_line`], as `decode_line` says (`text` is cleared either way).
pub fn fields_scan(rec: &[u8], decode_line: bool, text: &mut Vec<u8>) -> Result<Fields, ScanError> {
    fields_impl(rec, decode_line, text, None::<&mut fn(&[u8], Raw)>)
}

/// Like [`fields_scan`], and every member of the record's `fields` object is handed to
/// `each_field(name, value)` (value positions in `rec`) while that object is checked: one pass.
/// A record with two `fields` members hands over both (and is refused: `Duplicate`).
pub fn fields_scan_each(
    rec: &[u8],
    decode_line: bool,
    text: &mut Vec<u8>,
    mut each_field: impl FnMut(&[u8], Raw),
) -> Result<Fields, ScanError> {
    fields_impl(rec, decode_line, text, Some(&mut each_field))
}

#[inline(always)]
fn fields_impl<N: FnMut(&[u8], Raw)>(
    rec: &[u8],
    decode_line: bool,
    text: &mut Vec<u8>,
    each_field: Option<&mut N>,
) -> Result<Fields, ScanError> {
    let mut out = Fields::default();
    let mut dup = None;
    text.clear();
    members_impl(
        rec,
        |k| decode_line && k == b"line",
        text,
        each_field,
        |k, v| {
            let (slot, name) = match k {
                b"type" => (&mut out.ty, "type"),
                b"line" => (&mut out.line, "line"),
                b"bucket" => (&mut out.bucket, "bucket"),
                b"key" => (&mut out.key, "key"),
                b"file" => (&mut out.file, "file"),
                b"n" => (&mut out.n, "n"),
                b"fields" => (&mut out.fields, "fields"),
                b"@timestamp" => (&mut out.timestamp, "@timestamp"),
                _ => return true,
            };
            if slot.is_some() {
                dup = Some(name);
                return false;
            }
            *slot = Some(v);
            true
        },
    )?;
    if let Some(name) = dup {
        return Err(ScanError::Duplicate(name));
    }
    match out.ty {
        Some(t) if t.is_string => {
            if is_envelope_type(rec, t) {
                check_envelope_types(rec, out.bucket, out.key, out.file, out.n)?;
                check_fields_type(rec, out.fields)?;
            }
            Ok(out)
        }
        _ => Err(ScanError::NoType),
    }
}

/// The record is one of the types whose members s3s(7) defines (`line`, `end`, `object`):
/// records of other types pass through whatever their members hold.
pub fn is_envelope_type(rec: &[u8], ty: Raw) -> bool {
    let mut scratch = Vec::new();
    matches!(type_name(rec, ty, &mut scratch), b"line" | b"end" | b"object")
}

/// The envelope's members have the types `s3s(7)` gives them: `bucket`, `key` and `file` are
/// strings, `n` a whole number of at least 1 (a record with `"n":"2"` is refused, not guessed at).
/// For `line`, `end` and `object` records (see [`is_envelope_type`]).
pub fn check_envelope_types(
    rec: &[u8],
    bucket: Option<Raw>,
    key: Option<Raw>,
    file: Option<Raw>,
    n: Option<Raw>,
) -> Result<(), ScanError> {
    for (name, v) in [("bucket", bucket), ("key", key), ("file", file)] {
        if v.is_some_and(|v| !v.is_string) {
            return Err(ScanError::WrongType(name, "a string"));
        }
    }
    if let Some(n) = n {
        let t = &rec[n.start..n.end];
        // Digits only, no leading zero, and within u64 (a 20-digit value past u64::MAX is a
        // float to serde_json: found by the fuzzer).
        if n.is_string
            || t.is_empty()
            || t.len() > 20
            || !t.iter().all(u8::is_ascii_digit)
            || (t[0] == b'0')
            || std::str::from_utf8(t).ok().and_then(|s| s.parse::<u64>().ok()).is_none()
        {
            return Err(ScanError::WrongType("n", "a whole number from 1"));
        }
    }
    Ok(())
}

/// A `fields` member (of a `line`, `end` or `object` record) is a JSON object (s3s(7)).
#[inline]
pub fn check_fields_type(rec: &[u8], fields: Option<Raw>) -> Result<(), ScanError> {
    match fields {
        Some(f) if rec[f.start] != b'{' => Err(ScanError::WrongType("fields", "an object")),
        _ => Ok(()),
    }
}

/// Walk the members of a JSON object `obj` (a value the record scanner already accepted, e.g.
/// the bytes of a `fields` member): `f(key, value)` per member, the key decoded when it was
/// written with escapes, the value's positions relative to `obj`. `f` returns false to stop.
/// No allocation unless a key has escapes (decoded into `key_buf`).
#[inline]
pub fn object_members(obj: &[u8], key_buf: &mut Vec<u8>, f: impl FnMut(&[u8], Raw) -> bool) -> Result<(), ScanError> {
    walk_object(obj, skip_ws(obj, 0), key_buf, f).map(|_| ())
}

/// The object at `b[i]`, member by member as in [`object_members`] (positions in `b`), checked
/// as JSON like [`skip_nested`] checks it (its values one level deeper); the index after its
/// closing brace, or `None` when `f` stopped the walk.
#[inline]
fn walk_object(b: &[u8], mut i: usize, key_buf: &mut Vec<u8>, mut f: impl FnMut(&[u8], Raw) -> bool) -> Result<Option<usize>, ScanError> {
    if b.get(i) != Some(&b'{') {
        return Err(ScanError::NotObject);
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Ok(Some(i + 1));
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(ScanError::Malformed(i));
        }
        let (kend, key_escaped) = skip_string(b, i)?;
        let key = if key_escaped {
            key_buf.clear();
            unescape_into(&b[i + 1..kend - 1], key_buf);
            &key_buf[..]
        } else {
            &b[i + 1..kend - 1]
        };
        i = skip_ws(b, kend);
        if b.get(i) != Some(&b':') {
            return Err(ScanError::Malformed(i));
        }
        i = skip_ws(b, i + 1);
        let raw = match b.get(i) {
            // A member of a value of the record: two levels below it.
            Some(b'{' | b'[') => Raw { start: i, end: skip_nested_within(b, i, MAX_DEPTH - 2)?, is_string: false, escaped: false },
            _ => skip_value(b, i)?,
        };
        if !f(key, raw) {
            return Ok(None);
        }
        i = skip_ws(b, raw.end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Ok(Some(i + 1)),
            _ => return Err(ScanError::Malformed(i)),
        }
    }
}

/// The member `name` of the JSON object `obj` (see [`object_members`]); `Err(Duplicate)` when
/// it is there twice (JSON parsers disagree on which one counts).
pub fn object_member(obj: &[u8], name: &[u8], key_buf: &mut Vec<u8>) -> Result<Option<Raw>, ScanError> {
    let mut found = None;
    let mut dup = false;
    object_members(obj, key_buf, |k, v| {
        if k == name {
            if found.is_some() {
                dup = true;
                return false;
            }
            found = Some(v);
        }
        true
    })?;
    if dup { Err(ScanError::DuplicateField) } else { Ok(found) }
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
/// Escapes are checked as JSON defines them (`\x`, a `\u` without four hex digits, or a lone
/// surrogate are errors: serde_json and jq refuse them too).
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
                j = p + escape_len(b, p)?;
            }
        }
    }
}

/// The length of the escape at `b[p]` (a backslash): 2, 6, or 12 for a surrogate pair.
#[inline]
fn escape_len(b: &[u8], p: usize) -> Result<usize, ScanError> {
    let Some(&c) = b.get(p + 1) else {
        return Err(ScanError::Malformed(b.len()));
    };
    if SIMPLE_ESCAPE[c as usize] != 0 {
        return Ok(2);
    }
    if c != b'u' {
        return Err(ScanError::Malformed(p));
    }
    let Some(hi) = hex4(b, p + 2) else { return Err(ScanError::Malformed(p)) };
    match hi {
        0xD800..0xDC00 => match (b.get(p + 6..p + 8), hex4(b, p + 8)) {
            (Some(b"\\u"), Some(0xDC00..0xE000)) => Ok(12),
            _ => Err(ScanError::Malformed(p)),
        },
        0xDC00..0xE000 => Err(ScanError::Malformed(p)),
        _ => Ok(6),
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
        // \uXXXX (a surrogate pair takes two); anything else is an error.
        let len = escape_len(b, p)?;
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
        Some(b'{') | Some(b'[') => Ok(Raw { start: i, end: skip_nested(b, i)?, is_string: false, escaped: false }),
        Some(_) => Ok(Raw { start: i, end: skip_scalar(b, i)?, is_string: false, escaped: false }),
    }
}

/// How deep objects and arrays may nest, the record itself included: serde_json's own limit (it
/// refuses the 128th level; 128 levels below the record were accepted before, found by the
/// depth test of `fields_members_in_one_pass`).
const MAX_DEPTH: usize = 127;

/// `b[i]` opens an object or array, a value of the record: check it as JSON (without building
/// it) and return the index after its end. Iterative, with a fixed stack: no recursion for a
/// hostile depth.
fn skip_nested(b: &[u8], i: usize) -> Result<usize, ScanError> {
    skip_nested_within(b, i, MAX_DEPTH - 1)
}

/// [`skip_nested`] with at most `max_depth` levels of nesting.
fn skip_nested_within(b: &[u8], i: usize, max_depth: usize) -> Result<usize, ScanError> {
    let mut stack = [0u8; MAX_DEPTH];
    let mut depth = 0usize;
    let mut j = i;
    // After an opening bracket or a comma or colon: a value is expected at `j`.
    'value: loop {
        j = skip_ws(b, j);
        match b.get(j) {
            Some(&open @ (b'{' | b'[')) => {
                if depth == max_depth {
                    return Err(ScanError::Malformed(j));
                }
                stack[depth] = open;
                depth += 1;
                j = skip_ws(b, j + 1);
                let close = if open == b'{' { b'}' } else { b']' };
                if b.get(j) == Some(&close) {
                    depth -= 1;
                    j += 1;
                } else if open == b'{' {
                    j = member_key(b, j)?;
                    continue 'value;
                } else {
                    continue 'value;
                }
            }
            Some(b'"') => j = skip_string(b, j)?.0,
            Some(_) => j = skip_scalar(b, j)?,
            None => return Err(ScanError::Malformed(j)),
        }
        // After a value: a comma or the closing bracket of the innermost open one.
        loop {
            if depth == 0 {
                return Ok(j);
            }
            j = skip_ws(b, j);
            let top = stack[depth - 1];
            match (b.get(j), top) {
                (Some(b','), b'{') => {
                    j = member_key(b, skip_ws(b, j + 1))?;
                    continue 'value;
                }
                (Some(b','), _) => {
                    j += 1;
                    continue 'value;
                }
                (Some(b'}'), b'{') | (Some(b']'), b'[') => {
                    depth -= 1;
                    j += 1;
                }
                _ => return Err(ScanError::Malformed(j)),
            }
        }
    }
}

/// `"key" :` at `j`; the index after the colon.
fn member_key(b: &[u8], j: usize) -> Result<usize, ScanError> {
    if b.get(j) != Some(&b'"') {
        return Err(ScanError::Malformed(j));
    }
    let k = skip_ws(b, skip_string(b, j)?.0);
    if b.get(k) != Some(&b':') {
        return Err(ScanError::Malformed(k));
    }
    Ok(k + 1)
}

/// A number, `true`, `false` or `null` at `i`, exactly as JSON writes them; the index after it.
fn skip_scalar(b: &[u8], i: usize) -> Result<usize, ScanError> {
    let mut j = i;
    while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
        j += 1;
    }
    let v = &b[i..j];
    if matches!(v, b"true" | b"false" | b"null") || is_json_number(v) { Ok(j) } else { Err(ScanError::Malformed(i)) }
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn is_json_number(v: &[u8]) -> bool {
    let digits = |v: &[u8], k: usize| v[k..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut k = usize::from(v.first() == Some(&b'-'));
    match v.get(k) {
        Some(b'0') => k += 1,
        Some(b'1'..=b'9') => k += digits(v, k),
        _ => return false,
    }
    if v.get(k) == Some(&b'.') {
        let d = digits(v, k + 1);
        if d == 0 {
            return false;
        }
        k += 1 + d;
    }
    if matches!(v.get(k), Some(b'e' | b'E')) {
        k += 1;
        if matches!(v.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let d = digits(v, k);
        if d == 0 {
            return false;
        }
        k += d;
    }
    k == v.len()
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
    fn fields_members_in_one_pass() {
        let rec = br#"{"type":"line","n":1,"fields":{"a":1,"b\u0020c":{"d":[1,"}"]},"e":"x\"y"},"@timestamp":"t"}"#;
        let mut seen = Vec::new();
        let f = fields_scan_each(rec, false, &mut Vec::new(), |k, v| seen.push((k.to_vec(), rec[v.start..v.end].to_vec()))).unwrap();
        assert_eq!(f.timestamp.unwrap().content(rec), b"t");
        let want: Vec<(Vec<u8>, Vec<u8>)> = [("a", "1"), ("b c", r#"{"d":[1,"}"]}"#), ("e", r#""x\"y""#)]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(seen, want);
        assert_eq!(fields(br#"{"type":"line","fields":[]}"#).unwrap_err(), ScanError::WrongType("fields", "an object"));
        assert!(fields(br#"{"type":"other","fields":[]}"#).is_ok());
        // The same depth limit as serde_json's, in `fields` or in any other member.
        for depth in 124..=130 {
            let nested = "[".repeat(depth - 1) + &"]".repeat(depth - 1);
            let rec = format!(r#"{{"type":"line","fields":{{"a":{nested}}}}}"#);
            let plain = fields(rec.as_bytes()).is_ok();
            let each = fields_scan_each(rec.as_bytes(), false, &mut Vec::new(), |_, _| {}).is_ok();
            let serde = serde_json::from_str::<serde_json::Value>(&rec).is_ok();
            assert_eq!((plain, each), (serde, serde), "depth {depth}");
            let other = format!(r#"{{"type":"line","x":{nested}}}"#);
            let serde = serde_json::from_str::<serde_json::Value>(&other).is_ok();
            assert_eq!(fields(other.as_bytes()).is_ok(), serde, "depth {depth}");
        }
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
        fields_decoding_line(br#"{"type":"line","line":"\ud83d\ude00 \u00e9"}"#, &mut text).unwrap();
        assert_eq!(String::from_utf8(text.clone()).unwrap(), "😀 é");
        // What serde_json refuses, the scanner refuses.
        for bad in [r#""\uzz""#, r#""\ud800x""#, r#""\ude00""#, r#""\x""#, r#""a\""#] {
            let rec = format!(r#"{{"type":"line","line":{bad}}}"#);
            assert!(fields_decoding_line(rec.as_bytes(), &mut text).is_err(), "{rec}");
            assert!(serde_json::from_str::<serde_json::Value>(&rec).is_err(), "{rec}");
        }
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
