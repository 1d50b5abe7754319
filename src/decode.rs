//! Turning an object's bytes into lines: compression sniffed from the bytes, streamed.
//!
//! gzip (`1f 8b`, multi-member too), zstd (`28 b5 2f fd`, multi-frame too) or plain text are told
//! apart by magic numbers, never by the key's extension or `Content-Encoding`. Bytes flow
//! through a fixed-size buffer, so memory stays flat whatever the object's size.

use std::io::{self, Read};
use std::sync::mpsc;

const BUF: usize = 256 * 1024;

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
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
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

/// Stream the lines of `source` (decompressed as sniffed) to `emit(text, valid_utf8)`.
///
/// `text` has no trailing `\n` (nor a `\r` before it) and is always valid UTF-8: invalid bytes
/// are replaced by U+FFFD and counted. A last line without a newline is still a line.
pub fn for_each_line<R: Read + Send>(
    source: R,
    mut emit: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<(Compression, Stats), ReadError> {
    let counting = Counting { inner: source, n: 0 };
    let (compression, peeked) = sniff(counting).map_err(ReadError::Source)?;
    let mut stats = Stats::default();
    let mut lossy = Vec::new();
    let mut on_line = |line: &[u8], stats: &mut Stats| -> io::Result<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        stats.lines += 1;
        if std::str::from_utf8(line).is_ok() {
            emit(line)
        } else {
            stats.invalid_utf8 += 1;
            lossy.clear();
            lossy.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
            emit(&lossy)
        }
    };
    let bytes_in = match compression {
        Compression::Gzip => {
            let mut d = flate2::read::MultiGzDecoder::new(peeked);
            split_lines(&mut d, &mut stats, &mut on_line)?;
            d.into_inner().inner.n
        }
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(peeked).map_err(ReadError::Source)?;
            split_lines(&mut d, &mut stats, &mut on_line)?;
            d.finish().into_inner().inner.n
        }
        Compression::None => {
            let mut p = peeked;
            split_lines(&mut p, &mut stats, &mut on_line)?;
            p.inner.n
        }
    };
    stats.bytes_in = bytes_in;
    Ok((compression, stats))
}

/// Decompress on a second thread (`decompress`), split and hand out lines on this one, so
/// decompression and framing overlap on two cores. Buffers circulate between the two threads
/// (a fixed set of them: flat memory); a line split across buffers is joined in `carry`.
fn split_lines<R: Read + Send>(
    r: &mut R,
    stats: &mut Stats,
    on_line: &mut impl FnMut(&[u8], &mut Stats) -> io::Result<()>,
) -> Result<(), ReadError> {
    const BUFFERS: usize = 4;
    let (full_tx, full_rx) = mpsc::sync_channel::<io::Result<(Vec<u8>, usize)>>(BUFFERS);
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
    for _ in 0..BUFFERS {
        empty_tx.send(vec![0u8; BUF]).expect("the receiver is alive");
    }
    std::thread::scope(|scope| {
        scope.spawn(move || decompress(r, empty_rx, full_tx));
        let mut carry: Vec<u8> = Vec::new();
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
                let r = if carry.is_empty() {
                    on_line(&data[start..nl], stats)
                } else {
                    carry.extend_from_slice(&data[start..nl]);
                    let r = on_line(&carry, stats);
                    carry.clear();
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
            carry.extend_from_slice(&data[start..]);
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
        if !carry.is_empty() {
            on_line(&carry, stats).map_err(ReadError::Sink)?;
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
        let (c, s) = for_each_line(data, |l| {
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
        let r = for_each_line(&[0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6][..], |_| Ok(()));
        assert!(matches!(r, Err(ReadError::Source(_))));
    }
}
