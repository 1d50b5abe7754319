//! Turning an object's bytes into lines: compression sniffed from the bytes, streamed.
//!
//! gzip (`1f 8b`, multi-member too), zstd (`28 b5 2f fd`, multi-frame too) or plain text are told
//! apart by magic numbers, never by the key's extension or `Content-Encoding`. Bytes flow
//! through a fixed-size buffer, so memory stays flat whatever the object's size.
//!
//! Limits that a hostile object cannot break ([`Limits`]): a line longer than `max_line_bytes` is
//! cut there (at a UTF-8 boundary) and the rest of it, up to its newline, is read and dropped
//! without being kept, so memory stays bounded by the limit, not by the line; the record says
//! how long the line was. Decompression stops with an error (the object is not finished, so it
//! gets no `end` record) once its output passes `max_decompressed_bytes`, or passes
//! [`RATIO_FLOOR`] and is more than `max_ratio` times the compressed bytes read so far: a
//! "zip bomb" (2 GB of zeros gzip to 2 MB, zstd far smaller) is refused after a bounded amount of
//! work instead of writing gigabytes of records or exhausting memory.

use std::io::{self, Read};
use std::sync::mpsc;

const BUF: usize = 256 * 1024;

/// Below this much decompressed output the ratio guard does not apply: small objects that
/// compress well (a log of one repeated line) are never refused.
pub const RATIO_FLOOR: u64 = 64 * 1024 * 1024;

/// What one object may cost (see the module docs). `0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A longer line is cut to this many bytes (and its record says it was).
    pub max_line_bytes: usize,
    /// Decompressed bytes per object.
    pub max_decompressed_bytes: u64,
    /// Decompressed bytes per compressed byte (checked past [`RATIO_FLOOR`]).
    pub max_ratio: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_line_bytes: 16 * 1024 * 1024, max_decompressed_bytes: 0, max_ratio: 200 }
    }
}

/// Decompression stopped at a limit (a bomb, or an object larger than allowed).
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("decompressed size passed --max-decompressed-bytes {0} (a decompression bomb?)")]
    Size(u64),
    #[error("decompressed {out} bytes from {inp} compressed bytes, more than --max-ratio {ratio} to 1 (a decompression bomb?)")]
    Ratio { out: u64, inp: u64, ratio: u64 },
}

/// The decompressor's output, counted and checked against the limits (on the decompression
/// thread, so a bomb is stopped before its output is split into lines).
struct Guarded<R> {
    inner: R,
    out: u64,
    /// Compressed bytes read so far (counted by [`Counting`] on the same thread).
    inp: std::sync::Arc<std::sync::atomic::AtomicU64>,
    limits: Limits,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out += n as u64;
        let l = self.limits;
        if l.max_decompressed_bytes > 0 && self.out > l.max_decompressed_bytes {
            return Err(io::Error::other(LimitError::Size(l.max_decompressed_bytes)));
        }
        if l.max_ratio > 0 && self.out > RATIO_FLOOR {
            let inp = self.inp.load(std::sync::atomic::Ordering::Relaxed).max(1);
            if self.out / inp > l.max_ratio {
                return Err(io::Error::other(LimitError::Ratio { out: self.out, inp, ratio: l.max_ratio }));
            }
        }
        Ok(n)
    }
}

/// The compression a body was found to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }
}

/// What reading one object's lines came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub lines: u64,
    /// Lines that held bytes that are not UTF-8 (replaced by U+FFFD).
    pub invalid_utf8: u64,
    /// Lines longer than the limit, cut (see [`Limits::max_line_bytes`]).
    pub truncated: u64,
    /// Bytes read from the source (compressed size).
    pub bytes_in: u64,
    /// Bytes after decompression.
    pub bytes_out: u64,
}

/// Why an object could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The source or its compressed data failed: the object is skipped.
    #[error("{0}")]
    Source(io::Error),
    /// Writing the lines failed (e.g. a closed stdout): the stage stops.
    #[error(transparent)]
    Sink(io::Error),
}

struct Counting<R> {
    inner: R,
    n: u64,
    /// The same count, for the ratio guard.
    shared: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        self.shared.store(self.n, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::events::bytes_read(n as u64);
        Ok(n)
    }
}

/// Reads the first bytes to sniff the compression, then hands them back before the rest.
struct Peeked<R> {
    head: [u8; 4],
    pos: usize,
    len: usize,
    inner: R,
}

impl<R: Read> Read for Peeked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.len {
            let n = (self.len - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

fn sniff<R: Read>(mut r: R) -> io::Result<(Compression, Peeked<R>)> {
    let mut head = [0u8; 4];
    let mut len = 0;
    while len < 4 {
        match r.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let c = if len >= 2 && head[..2] == [0x1f, 0x8b] {
        Compression::Gzip
    } else if len >= 4 && head == [0x28, 0xb5, 0x2f, 0xfd] {
        Compression::Zstd
    } else {
        Compression::None
    };
    Ok((c, Peeked { head, pos: 0, len, inner: r }))
}

/// Stream the lines of `source` (decompressed as sniffed) to `emit(text, cut_from)`.
///
/// `text` has no trailing `\n` (nor a `\r` before it) and is always valid UTF-8: invalid bytes
/// are replaced by U+FFFD and counted. A last line without a newline is still a line. A line
/// longer than `limits.max_line_bytes` is handed over cut, with `cut_from = Some(its length)`.
pub fn for_each_line<R: Read + Send>(
    source: R,
    limits: Limits,
    mut emit: impl FnMut(&[u8], Option<u64>) -> io::Result<()>,
) -> Result<(Compression, Stats), ReadError> {
    let inp = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = Counting { inner: source, n: 0, shared: inp.clone() };
    let (compression, peeked) = sniff(counting).map_err(ReadError::Source)?;
    let mut stats = Stats::default();
    let mut lossy = Vec::new();
    let mut on_line = |line: &[u8], whole: Option<u64>, stats: &mut Stats| -> io::Result<()> {
        let line = if whole.is_none() { line.strip_suffix(b"\r").unwrap_or(line) } else { line };
        stats.lines += 1;
        if whole.is_some() {
            stats.truncated += 1;
        }
        if std::str::from_utf8(line).is_ok() {
            emit(line, whole)
        } else {
            stats.invalid_utf8 += 1;
            lossy.clear();
            lossy.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
            emit(&lossy, whole)
        }
    };
    let max_line = if limits.max_line_bytes == 0 { usize::MAX } else { limits.max_line_bytes };
    let bytes_in = match compression {
        Compression::Gzip => {
            let d = flate2::read::MultiGzDecoder::new(peeked);
            let mut g = Guarded { inner: d, out: 0, inp, limits };
            split_lines(&mut g, max_line, &mut stats, &mut on_line)?;
            g.inner.into_inner().inner.n
        }
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(peeked).map_err(ReadError::Source)?;
            let mut g = Guarded { inner: d, out: 0, inp, limits };
            split_lines(&mut g, max_line, &mut stats, &mut on_line)?;
            g.inner.finish().into_inner().inner.n
        }
        Compression::None => {
            // Plain bytes: only the size limit applies (the ratio is 1).
            let mut g = Guarded { inner: peeked, out: 0, inp, limits: Limits { max_ratio: 0, ..limits } };
            split_lines(&mut g, max_line, &mut stats, &mut on_line)?;
            g.inner.inner.n
        }
    };
    stats.bytes_in = bytes_in;
    Ok((compression, stats))
}

/// The decompressed bytes of a source (compression sniffed as [`for_each_line`] does), counted
/// and checked against the same [`Limits`]: for readers that do not split lines (CloudTrail
/// documents, [`crate::cloudtrail`]). Reads on the caller's thread.
pub struct Decompressed<'a> {
    inner: Box<dyn Read + Send + 'a>,
    inp: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Decompressed<'_> {
    /// Compressed bytes read from the source so far.
    pub fn bytes_in(&self) -> u64 {
        self.inp.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Read for Decompressed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// `source` decompressed (see [`Decompressed`]).
pub fn decompressed<'a, R: Read + Send + 'a>(source: R, limits: Limits) -> io::Result<(Compression, Decompressed<'a>)> {
    let inp = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counting = Counting { inner: source, n: 0, shared: inp.clone() };
    let (compression, peeked) = sniff(counting)?;
    let shared = inp.clone();
    let inner: Box<dyn Read + Send + 'a> = match compression {
        Compression::Gzip => Box::new(Guarded { inner: flate2::read::MultiGzDecoder::new(peeked), out: 0, inp: shared, limits }),
        Compression::Zstd => Box::new(Guarded { inner: zstd::stream::read::Decoder::new(peeked)?, out: 0, inp: shared, limits }),
        Compression::None => Box::new(Guarded { inner: peeked, out: 0, inp: shared, limits: Limits { max_ratio: 0, ..limits } }),
    };
    Ok((compression, Decompressed { inner, inp }))
}

/// Where `line` may be cut to at most `max` bytes without splitting a UTF-8 character.
fn cut_point(line: &[u8], max: usize) -> usize {
    if line.len() <= max {
        return line.len();
    }
    let mut cut = max;
    // Back over at most 3 continuation bytes to the start of the character.
    while cut > 0 && max - cut < 3 && (line[cut] & 0xc0) == 0x80 {
        cut -= 1;
    }
    if (line[cut] & 0xc0) == 0x80 { max } else { cut }
}

/// Decompress on a second thread (`decompress`), split and hand out lines on this one, so
/// decompression and framing overlap on two cores. Buffers circulate between the two threads
/// (a fixed set of them: flat memory); a line split across buffers is joined in `carry`, which
/// holds at most `max_line` bytes: the rest of a longer line is only counted.
fn split_lines<R: Read + Send>(
    r: &mut R,
    max_line: usize,
    stats: &mut Stats,
    on_line: &mut impl FnMut(&[u8], Option<u64>, &mut Stats) -> io::Result<()>,
) -> Result<(), ReadError> {
    const BUFFERS: usize = 4;
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        empty_tx.send(vec![0u8; BUF]).expect("the receiver is alive");
    }
    // A whole line (or the kept start of a long one) to the caller.
    let mut line_out = |text: &[u8], total: u64, stats: &mut Stats| -> io::Result<()> {
        if total as usize > max_line || text.len() > max_line {
            let cut = cut_point(text, max_line);
            on_line(&text[..cut], Some(total), stats)
        } else {
            on_line(text, None, stats)
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(move || decompress(r, empty_rx, full_tx));
        let mut carry: Vec<u8> = Vec::new();
        // Length of the line being carried, kept bytes and dropped ones (0: no line carried).
        let mut carry_total: u64 = 0;
        let result = loop {
            let (buf, n) = match full_rx.recv() {
                Ok(Ok((_, 0))) => break Ok(()),
                Ok(Ok(full)) => full,
                Ok(Err(e)) => break Err(ReadError::Source(e)),
                Err(_) => break Err(ReadError::Source(io::Error::other("the decompression thread stopped"))),
            };
            stats.bytes_out += n as u64;
            let lines_before = stats.lines;
            let data = &buf[..n];
            let mut start = 0;
            let mut failed = None;
            for nl in memchr::memchr_iter(b'\n', data) {
                let seg = &data[start..nl];
                let r = if carry_total == 0 {
                    line_out(seg, seg.len() as u64, stats)
                } else {
                    let room = (max_line + 3).saturating_sub(carry.len()).min(seg.len());
                    carry.extend_from_slice(&seg[..room]);
                    carry_total += seg.len() as u64;
                    let r = line_out(&carry, carry_total, stats);
                    carry.clear();
                    carry_total = 0;
                    r
                };
                if let Err(e) = r {
                    failed = Some(e);
                    break;
                }
                start = nl + 1;
            }
            // Counted per buffer (256 KiB), not per line.
            crate::metrics::events::lines_read(stats.lines - lines_before, n as u64);
            if let Some(e) = failed {
                break Err(ReadError::Sink(e));
            }
            let tail = &data[start..];
            if !tail.is_empty() {
                // Kept up to the limit (and 3 bytes more, to cut at a character boundary).
                let room = (max_line + 3).saturating_sub(carry.len()).min(tail.len());
                carry.extend_from_slice(&tail[..room]);
                carry_total += tail.len() as u64;
            }
            if carry.capacity() > 4 * BUF && carry.len() < BUF {
                carry.shrink_to(BUF);
            }
            // The decompressor may have stopped early (an error): then it no longer takes buffers.
            let _ = empty_tx.send(buf);
        };
        // Unblock the decompressor whatever happened, then let the scope join it.
        drop(empty_tx);
        drop(full_rx);
        result?;
        if carry_total > 0 {
            line_out(&carry, carry_total, stats).map_err(ReadError::Sink)?;
            crate::metrics::events::lines_read(1, 0);
        }
        Ok(())
    })
}

/// The decompression thread: fill empty buffers, send them back full; `(buf, 0)` marks the end.
fn decompress<R: Read>(r: &mut R, empty: mpsc::Receiver<Vec<u8>>, full: mpsc::SyncSender<io::Result<(Vec<u8>, usize)>>) {
    while let Ok(mut buf) = empty.recv() {
        let mut n = 0;
        let res = loop {
            if n == buf.len() {
                break Ok(n);
            }
            match r.read(&mut buf[n..]) {
                Ok(0) => break Ok(n),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        match res {
            Ok(k) => {
                let eof = k < buf.len();
                if full.send(Ok((buf, k))).is_err() {
                    return;
                }
                if eof {
                    if k > 0 {
                        let _ = full.send(Ok((Vec::new(), 0)));
                    }
                    return;
                }
            }
            Err(e) => {
                let _ = full.send(Err(e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(data: &[u8]) -> (Compression, Vec<String>, Stats) {
        let mut v = Vec::new();
        let (c, s) = for_each_line(data, Limits::default(), |l, _| {
            v.push(String::from_utf8(l.to_vec()).unwrap());
            Ok(())
        })
        .unwrap();
        (c, v, s)
    }

    #[test]
    fn plain_gzip_multimember_zstd() {
        assert_eq!(lines_of(b"a\r\nb\n\nc").1, ["a", "b", "", "c"]);
        assert_eq!(lines_of(b"").1, Vec::<String>::new());
        let gz = |s: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(s).unwrap();
            e.finish().unwrap()
        };
        let mut multi = gz(b"one\ntw");
        multi.extend(gz(b"o\nthree\n"));
        let (c, l, s) = lines_of(&multi);
        assert_eq!(c, Compression::Gzip);
        assert_eq!(l, ["one", "two", "three"]);
        assert_eq!(s.bytes_in, multi.len() as u64);
        let z = zstd::encode_all(&b"x\ny\n"[..], 3).unwrap();
        assert_eq!(lines_of(&z).0, Compression::Zstd);
        assert_eq!(lines_of(&z).1, ["x", "y"]);
        let (_, l, s) = lines_of(b"ok\nbad\xff\n");
        assert_eq!(l, ["ok", "bad\u{FFFD}"]);
        assert_eq!(s.invalid_utf8, 1);
    }

    #[test]
    fn long_lines_and_corrupt_gzip() {
        let long = "x".repeat(3 * BUF + 7);
        let data = format!("{long}\nshort\n");
        assert_eq!(lines_of(data.as_bytes()).1, [long.as_str(), "short"]);
        let r = for_each_line(&[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6][..], Limits::default(), |_, _| Ok(()));
        assert!(matches!(r, Err(ReadError::Source(_))));
    }
}
