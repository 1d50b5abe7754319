//! CloudTrail documents (`{"Records":[...]}`, often megabytes on one line) split into one
//! line per event as they stream, for `s3s-cat`: memory stays flat whatever the document's size
//! (one read buffer and one event, never the document).
//!
//! [`read`] is s3s-cat's reader of an object: a CloudTrail digest (`/CloudTrail-Digest/` in the
//! key) is skipped (0 lines: acknowledged, nothing emitted); an object whose decompressed bytes
//! start with `{"Records":` is split into its events (each element of `Records`, compacted: the
//! whitespace between tokens is dropped), each checked as JSON; anything else is read as lines
//! ([`decode::for_each_line`]). A document that is not well-formed JSON fails like a corrupt
//! object (an error, no `end` record), after the events before the fault went out.

use std::io::{self, Cursor, Read};

use crate::decode::{self, Compression, Limits, ReadError, Stats};
use crate::envelope::Location;

const BUF: usize = 256 * 1024;

/// A CloudTrail digest file (AWS writes them under `.../CloudTrail-Digest/...`; a local copy
/// of that layout too).
pub fn is_digest(loc: &Location) -> bool {
    match loc {
        Location::S3 { key, .. } => key.contains("/CloudTrail-Digest/"),
        Location::File(path) => path.contains("/CloudTrail-Digest/"),
    }
}

/// Stream the lines of `source`, or its events when it is a CloudTrail document and `split`
/// holds, to `emit(text, cut_from)` (as [`decode::for_each_line`] does). `Stats::lines` counts
/// what was emitted.
pub fn read<R: Read + Send>(
    source: R,
    loc: &Location,
    limits: Limits,
    split: bool,
    emit: impl FnMut(&[u8], Option<u64>) -> io::Result<()>,
) -> Result<(Compression, Stats), ReadError> {
    if !split {
        return decode::for_each_line(source, limits, emit);
    }
    if is_digest(loc) {
        tracing::info!("{loc}: a CloudTrail digest: skipped (0 lines)");
        return Ok((Compression::None, Stats::default()));
    }
    let (document, source) = sniff(source).map_err(ReadError::Source)?;
    if !document {
        return decode::for_each_line(source, limits, emit);
    }
    tracing::info!("{loc}: a CloudTrail document: one line per event");
    events(source, limits, emit)
}

/// Whether the object's decompressed bytes start with `{"Records":`; the source, its first
/// bytes put back.
fn sniff<R: Read>(mut source: R) -> io::Result<(bool, io::Chain<Cursor<Vec<u8>>, R>)> {
    let mut head = vec![0u8; 64 * 1024];
    let mut len = 0;
    while len < head.len() {
        match source.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(len);
    let mut start = [0u8; 64];
    let got = if head.starts_with(&[0x1f, 0x8b]) {
        prefix(flate2::read::MultiGzDecoder::new(&head[..]), &mut start)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        match zstd::stream::read::Decoder::new(&head[..]) {
            Ok(d) => prefix(d, &mut start),
            Err(_) => 0,
        }
    } else {
        prefix(&head[..], &mut start)
    };
    Ok((is_document_start(&start[..got]), Cursor::new(head).chain(source)))
}

/// Read up to `buf.len()` bytes; a decoder that fails (a cut stream) gives what it had.
fn prefix(mut r: impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// `{ "Records" :` (whitespace and a UTF-8 byte order mark allowed).
fn is_document_start(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    fn ws(b: &[u8]) -> &[u8] {
        b.iter().position(|c| !c.is_ascii_whitespace()).map_or(&[][..], |i| &b[i..])
    }
    let Some(b) = ws(b).strip_prefix(b"{") else { return false };
    let Some(b) = ws(b).strip_prefix(b"\"Records\"") else { return false };
    ws(b).starts_with(b":")
}

/// The document's bytes, through one buffer.
struct Bytes<R> {
    r: R,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    /// Bytes before `buf[0]`.
    before: u64,
}

impl<R: Read> Bytes<R> {
    fn offset(&self) -> u64 {
        self.before + self.pos as u64
    }

    /// Make `buf[pos..len]` non-empty; false at end of input.
    fn fill(&mut self) -> io::Result<bool> {
        if self.pos < self.len {
            return Ok(true);
        }
        self.before += self.len as u64;
        self.pos = 0;
        self.len = 0;
        loop {
            match self.r.read(&mut self.buf) {
                Ok(n) => {
                    self.len = n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        Ok(if self.fill()? { Some(self.buf[self.pos]) } else { None })
    }

    fn next(&mut self) -> io::Result<Option<u8>> {
        let c = self.peek()?;
        if c.is_some() {
            self.pos += 1;
        }
        Ok(c)
    }

    fn ws(&mut self) -> io::Result<()> {
        while let Some(c) = self.peek()? {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.pos += 1;
        }
        Ok(())
    }

    fn malformed(&self, what: &str) -> io::Error {
        io::Error::other(format!("not a well-formed CloudTrail document: {what} at byte {}", self.offset()))
    }

    fn expect(&mut self, c: u8, what: &str) -> io::Result<()> {
        if self.next()? == Some(c) {
            Ok(())
        } else {
            self.pos = self.pos.saturating_sub(1);
            Err(self.malformed(what))
        }
    }

    /// A JSON string at `pos` (its quote), its content kept when short (member names).
    fn key(&mut self, key: &mut Vec<u8>) -> io::Result<()> {
        key.clear();
        self.expect(b'"', "expected a member name")?;
        let mut escaped = false;
        loop {
            let Some(c) = self.next()? else { return Err(self.malformed("the document ends inside a string")) };
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                return Ok(());
            }
            if key.len() < 64 {
                key.push(c);
            }
        }
    }

    /// Copy the value at `pos` (an object or array, with its nesting; a string; a scalar) into
    /// `out` without the whitespace between its tokens, at most `max` bytes of it (`total`
    /// counts them all); `out: None` skips it.
    fn value(&mut self, mut out: Option<&mut Vec<u8>>, max: usize, total: &mut u64) -> io::Result<()> {
        let mut depth = 0usize;
        let mut in_str = false;
        let mut escape = false;
        let mut started = false;
        loop {
            if !self.fill()? {
                if !started || in_str || depth > 0 {
                    return Err(self.malformed("the document ends inside a value"));
                }
                return Ok(());
            }
            let chunk = &self.buf[self.pos..self.len];
            let mut run = 0;
            let mut i = 0;
            let mut done = false;
            while i < chunk.len() {
                if escape {
                    escape = false;
                    i += 1;
                    continue;
                }
                if in_str {
                    match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
                        None => i = chunk.len(),
                        Some(k) => {
                            i += k;
                            if chunk[i] == b'\\' {
                                escape = true;
                            } else {
                                in_str = false;
                                if depth == 0 {
                                    i += 1;
                                    done = true;
                                    break;
                                }
                            }
                            i += 1;
                        }
                    }
                    continue;
                }
                let c = chunk[i];
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        if depth == 0 {
                            // The end of the enclosing container: a scalar ends here.
                            done = true;
                            break;
                        }
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            done = true;
                            break;
                        }
                    }
                    b',' if depth == 0 => {
                        done = true;
                        break;
                    }
                    b' ' | b'\t' | b'\n' | b'\r' => {
                        if depth == 0 && started {
                            done = true;
                            break;
                        }
                        keep(&mut out, &chunk[run..i], max, total);
                        run = i + 1;
                    }
                    _ => {}
                }
                started = true;
                i += 1;
            }
            keep(&mut out, &chunk[run..i], max, total);
            self.pos += i;
            if done {
                if !started {
                    return Err(self.malformed("expected a value"));
                }
                return Ok(());
            }
        }
    }
}

#[inline]
fn keep(out: &mut Option<&mut Vec<u8>>, bytes: &[u8], max: usize, total: &mut u64) {
    *total += bytes.len() as u64;
    if let Some(out) = out {
        let room = max.saturating_sub(out.len()).min(bytes.len());
        out.extend_from_slice(&bytes[..room]);
    }
}

/// Split a CloudTrail document into its events.
fn events<R: Read + Send>(
    source: R,
    limits: Limits,
    mut emit: impl FnMut(&[u8], Option<u64>) -> io::Result<()>,
) -> Result<(Compression, Stats), ReadError> {
    let (compression, dec) = decode::decompressed(source, limits).map_err(ReadError::Source)?;
    let mut b = Bytes { r: dec, buf: vec![0u8; BUF], pos: 0, len: 0, before: 0 };
    let max = if limits.max_line_bytes == 0 { usize::MAX } else { limits.max_line_bytes };
    let mut stats = Stats::default();
    let mut event = Vec::with_capacity(8192);
    let mut key = Vec::new();
    let mut counted = (0u64, 0u64);
    let src = ReadError::Source;
    b.ws().map_err(src)?;
    if b.peek().map_err(src)? == Some(0xef) {
        // A UTF-8 byte order mark.
        for _ in 0..3 {
            b.next().map_err(src)?;
        }
        b.ws().map_err(src)?;
    }
    b.expect(b'{', "expected {").map_err(src)?;
    b.ws().map_err(src)?;
    if b.peek().map_err(src)? == Some(b'}') {
        b.next().map_err(src)?;
    } else {
        loop {
            b.ws().map_err(src)?;
            b.key(&mut key).map_err(src)?;
            b.ws().map_err(src)?;
            b.expect(b':', "expected :").map_err(src)?;
            b.ws().map_err(src)?;
            if key == b"Records" && b.peek().map_err(src)? == Some(b'[') {
                b.next().map_err(src)?;
                let mut first = true;
                loop {
                    b.ws().map_err(src)?;
                    if first {
                        if b.peek().map_err(src)? == Some(b']') {
                            b.next().map_err(src)?;
                            break;
                        }
                    } else {
                        match b.next().map_err(src)? {
                            Some(b',') => b.ws().map_err(src)?,
                            Some(b']') => break,
                            _ => {
                                b.pos = b.pos.saturating_sub(1);
                                return Err(src(b.malformed("expected , or ] after an event")));
                            }
                        }
                    }
                    first = false;
                    if b.peek().map_err(src)? != Some(b'{') {
                        return Err(src(b.malformed("a Records element that is not an object")));
                    }
                    event.clear();
                    let mut total = 0u64;
                    let at = b.offset();
                    b.value(Some(&mut event), max.saturating_add(3), &mut total).map_err(src)?;
                    stats.lines += 1;
                    if total <= max as u64 {
                        if let Err(e) = crate::scan::members(&event, |_, _| true) {
                            return Err(src(io::Error::other(format!(
                                "not a well-formed CloudTrail document: event {} (at byte {at}): {e}",
                                stats.lines
                            ))));
                        }
                        emit(&event, None).map_err(ReadError::Sink)?;
                    } else {
                        stats.truncated += 1;
                        let text = String::from_utf8_lossy(&event[..max.min(event.len())]);
                        let mut cut = text.len().min(max);
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        emit(&text.as_bytes()[..cut], Some(total)).map_err(ReadError::Sink)?;
                    }
                    if event.capacity() > 4 * BUF {
                        event.shrink_to(BUF);
                    }
                    if stats.lines.is_multiple_of(4096) {
                        let out = b.offset();
                        crate::metrics::events::lines_read(stats.lines - counted.0, out - counted.1);
                        counted = (stats.lines, out);
                    }
                }
            } else {
                b.value(None, 0, &mut 0).map_err(src)?;
            }
            b.ws().map_err(src)?;
            match b.next().map_err(src)? {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => {
                    b.pos = b.pos.saturating_sub(1);
                    return Err(src(b.malformed("expected , or }")));
                }
            }
        }
    }
    b.ws().map_err(src)?;
    if b.peek().map_err(src)?.is_some() {
        return Err(src(b.malformed("data after the document")));
    }
    stats.bytes_out = b.offset();
    stats.bytes_in = b.r.bytes_in();
    crate::metrics::events::lines_read(stats.lines - counted.0, stats.bytes_out - counted.1);
    Ok((compression, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(doc: &str) -> Result<Vec<String>, String> {
        let mut v = Vec::new();
        let loc = Location::File("x".into());
        read(doc.as_bytes(), &loc, Limits::default(), true, |e, _| {
            v.push(String::from_utf8(e.to_vec()).unwrap());
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok(v)
    }

    #[test]
    fn documents_split_into_events() {
        let doc = "{\"Records\": [\n {\"eventTime\": \"2014-03-06T21:22:54Z\", \"a\": [1, {\"b\": \"x \\\" ]}\"}]},\n{\"c\":true}\n]}\n";
        assert_eq!(split(doc).unwrap(), [r#"{"eventTime":"2014-03-06T21:22:54Z","a":[1,{"b":"x \" ]}"}]}"#, r#"{"c":true}"#]);
        assert_eq!(split(r#"{"Records":[]}"#).unwrap(), Vec::<String>::new());
        assert_eq!(split(r#"{"Records":[{"a":1}],"other":{"x":[1,2]},"n":5}"#).unwrap(), [r#"{"a":1}"#]);
        assert_eq!(split("plain\nlines\n").unwrap(), ["plain", "lines"]);
        assert!(split(r#"{"Records":[{"a":1}"#).unwrap_err().contains("expected , or ]"));
        assert!(split(r#"{"Records":[{"a":1},2]}"#).unwrap_err().contains("not an object"));
        assert!(split(r#"{"Records":[{"a":tru}]}"#).unwrap_err().contains("event 1"));
        assert!(split(r#"{"Records":[{"a":1}]} x"#).unwrap_err().contains("data after"));
    }

    #[test]
    fn gzip_documents_are_sniffed() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(br#"{"Records":[{"a":1},{"b":2}]}"#).unwrap();
        let gz = e.finish().unwrap();
        let mut v = Vec::new();
        let (c, s) = read(&gz[..], &Location::File("x".into()), Limits::default(), true, |e, _| {
            v.push(e.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!((c, s.lines, v.len()), (Compression::Gzip, 2, 2));
        assert_eq!(s.bytes_in, gz.len() as u64);
    }
}
