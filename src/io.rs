//! Record framing on stdin and stdout.
//!
//! Stdout: a large buffer written straight to fd 1 (Rust's `Stdout` is line-buffered, which costs
//! a syscall per record); line-buffered when stdout is a terminal. Callers flush whenever their
//! input runs dry, so records never wait in a buffer while upstream is idle.
//! Stdin: `read_until(b'\n')` into one reused buffer, counting line numbers for error messages.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const OUT_BUF: usize = 128 * 1024;
const IN_BUF: usize = 256 * 1024;

/// Buffered stdout for records.
pub struct Output {
    file: ManuallyDrop<File>,
    buf: Vec<u8>,
    line_buffered: bool,
}

impl Output {
    /// Stdout, fully buffered unless it is a terminal.
    pub fn stdout() -> Self {
        // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop never closes it.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(1) });
        Output { file, buf: Vec::with_capacity(OUT_BUF + 64 * 1024), line_buffered: io::stdout().is_terminal() }
    }

    /// The buffer to append record bytes to; call [`Output::record_done`] after each record.
    #[inline]
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// A whole record (ending in `\n`) has been appended to [`Output::buf`].
    #[inline]
    pub fn record_done(&mut self) -> io::Result<()> {
        if self.buf.len() >= OUT_BUF || self.line_buffered {
            self.flush()?;
        }
        Ok(())
    }

    /// Append one whole record line (the caller includes the trailing `\n`).
    #[inline]
    pub fn write_record(&mut self, rec: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(rec);
        self.record_done()
    }

    /// Append one record given without its `\n`, and the `\n`.
    #[inline]
    pub fn write_record_nl(&mut self, rec: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(rec);
        self.buf.push(b'\n');
        self.record_done()
    }

    /// Write out everything buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            MID_WRITE.store(true, Ordering::SeqCst);
            let r = self.file.write_all(&self.buf);
            MID_WRITE.store(false, Ordering::SeqCst);
            self.buf.clear();
            r?;
        }
        Ok(())
    }
}

/// Set while a buffer of records is being written to stdout: a process ended then (see
/// [`crate::cli::exit_now`]) may have written part of a record.
static MID_WRITE: AtomicBool = AtomicBool::new(false);

/// True while stdout is being written: ending the process now would cut a record.
pub fn stdout_mid_write() -> bool {
    MID_WRITE.load(Ordering::SeqCst)
}

impl Output {}

/// Records from stdin (or any reader), one line at a time, with line numbers.
///
/// A reader thread does the `read(2)` calls and hands over chunks that end at a line boundary,
/// so the kernel's copy overlaps with the stage's own work on the other core; lines are then
/// returned as slices of those chunks (no copy per line). Buffers circulate back to the reader
/// (a bounded number: flat memory, and backpressure on the producer).
pub struct Input {
    chunks: mpsc::Receiver<io::Result<(Vec<u8>, usize)>>,
    spare: mpsc::SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
    /// A chunk (or the reader's error) taken early by `is_dry`.
    next: Option<io::Result<(Vec<u8>, usize)>>,
    eof: bool,
    number: u64,
    /// Ends the input early once set (a drain that expired, see [`crate::shutdown`]).
    stop: Option<Arc<AtomicBool>>,
}

const CHUNKS: usize = 8;

struct StdinFile(ManuallyDrop<File>);
impl Read for StdinFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Input {
    /// Stdin, read straight from fd 0.
    pub fn stdin() -> Self {
        // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop never closes it.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        Input::new(StdinFile(file))
    }

    /// The lines of any reader.
    pub fn new(reader: impl Read + Send + 'static) -> Self {
        let (chunk_tx, chunks) = mpsc::sync_channel(CHUNKS);
        let (spare, spare_rx) = mpsc::sync_channel(CHUNKS);
        std::thread::Builder::new()
            .name("input".into())
            .spawn(move || read_chunks(reader, chunk_tx, spare_rx))
            .expect("spawning the input reader thread");
        Input { chunks, spare, cur: Vec::new(), len: 0, pos: 0, next: None, eof: false, number: 0, stop: None }
    }

    /// End the input (as at end of file) once `flag` is set, even while waiting for more.
    pub fn stop_when(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// The next chunk from the reader thread; `None` at the end (or once stopped).
    fn recv(&self) -> Option<io::Result<(Vec<u8>, usize)>> {
        let Some(stop) = &self.stop else { return self.chunks.recv().ok() };
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            match self.chunks.recv_timeout(Duration::from_millis(100)) {
                Ok(c) => return Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// True when no input is waiting (the next read would wait for the producer): flush output
    /// first, so records never sit in a buffer while upstream is idle.
    pub fn is_dry(&mut self) -> bool {
        if self.pos < self.len || self.next.is_some() || self.eof {
            return false;
        }
        match self.chunks.try_recv() {
            Ok(c) => {
                self.next = Some(c);
                false
            }
            Err(mpsc::TryRecvError::Empty) => true,
            Err(mpsc::TryRecvError::Disconnected) => false,
        }
    }

    /// The next line without its `\n` (and without a `\r` before it) and its 1-based number,
    /// or `None` at end of input. A last line without a newline is still a line.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        while self.pos >= self.len {
            if self.eof {
                return Ok(None);
            }
            let c = match self.next.take() {
                Some(c) => c,
                None => match self.recv() {
                    Some(c) => c,
                    None => {
                        self.eof = true;
                        return Ok(None);
                    }
                },
            };
            let (buf, len) = c?;
            let old = std::mem::replace(&mut self.cur, buf);
            if !old.is_empty() {
                let _ = self.spare.try_send(old);
            }
            self.len = len;
            self.pos = 0;
        }
        let start = self.pos;
        let rest = &self.cur[start..self.len];
        let mut end = match memchr::memchr(b'\n', rest) {
            Some(i) => {
                self.pos = start + i + 1;
                start + i
            }
            None => {
                self.pos = self.len;
                self.len
            }
        };
        if end > start && self.cur[end - 1] == b'\r' {
            end -= 1;
        }
        self.number += 1;
        Ok(Some((self.number, &self.cur[start..end])))
    }

    /// The next chunk of whole lines as the reader thread made it (the buffer and how many of its
    /// bytes are data), for stages that work on chunks in parallel; `None` at the end. Not to be
    /// mixed with [`Input::next_line`]. Hand the buffer back with the [`Input::recycler`].
    pub fn next_chunk(&mut self) -> io::Result<Option<(Vec<u8>, usize)>> {
        let c = match self.next.take() {
            Some(c) => c,
            None => match self.recv() {
                Some(c) => c,
                None => return Ok(None),
            },
        };
        c.map(Some)
    }

    /// Where used chunk buffers go back to the reader thread.
    pub fn recycler(&self) -> mpsc::SyncSender<Vec<u8>> {
        self.spare.clone()
    }

    /// Like [`Input::next_line`], flushing `out` first when no input is waiting.
    pub fn next_line_flushing(&mut self, out: &mut Output) -> io::Result<Option<(u64, &[u8])>> {
        if self.is_dry() {
            out.flush()?;
        }
        self.next_line()
    }
}

/// The reader thread: fill buffers, send each one cut after its last newline (the partial line
/// moves on to the next buffer); at the end, whatever is left. Stops when the receiver is gone.
fn read_chunks(mut reader: impl Read, chunks: mpsc::SyncSender<io::Result<(Vec<u8>, usize)>>, spare: mpsc::Receiver<Vec<u8>>) {
    let fresh = |spare: &mpsc::Receiver<Vec<u8>>| spare.try_recv().unwrap_or_else(|_| vec![0u8; IN_BUF]);
    let mut buf = fresh(&spare);
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_RECORD {
                // One line longer than any record may be: drop it (its start and its length go
                // on, as a line every scanner refuses) and read on after its newline.
                match drop_long_line(&mut reader, buf, filled) {
                    Ok((line, mut rest)) => {
                        let len = line.len();
                        if chunks.send(Ok((line, len))).is_err() {
                            return;
                        }
                        // Whole lines read after it go on at once, not with the next read.
                        if let Some(last) = memchr::memrchr(b'\n', &rest) {
                            let tail = rest.split_off(last + 1);
                            let len = rest.len();
                            if chunks.send(Ok((rest, len))).is_err() {
                                return;
                            }
                            rest = tail;
                        }
                        filled = rest.len();
                        buf = rest;
                        buf.resize(filled.max(IN_BUF), 0);
                        continue;
                    }
                    Err(e) => {
                        let _ = chunks.send(Err(e));
                        return;
                    }
                }
            }
            // One line longer than the buffer: grow for it.
            buf.resize(buf.len() * 2, 0);
        }
        let n = match reader.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = chunks.send(Err(e));
                return;
            }
        };
        if n == 0 {
            if filled > 0 {
                let _ = chunks.send(Ok((buf, filled)));
            }
            return;
        }
        let scan_from = filled;
        filled += n;
        let Some(last) = memchr::memrchr(b'\n', &buf[scan_from..filled]) else { continue };
        let cut = scan_from + last + 1;
        let mut next = fresh(&spare);
        let tail = filled - cut;
        if next.len() < tail.max(IN_BUF) {
            next.resize(tail.max(IN_BUF), 0);
        }
        next[..tail].copy_from_slice(&buf[cut..filled]);
        if chunks.send(Ok((buf, cut))).is_err() {
            return;
        }
        buf = next;
        filled = tail;
    }
}

/// The longest input record a stage reads (bytes): a longer line is not kept in memory but
/// replaced by [`drop_long_line`]'s stand-in, which every scanner refuses (reported with its line
/// number, charged to an object like any malformed line). s3s-cat's longest line (16 MiB by
/// default) makes a record of at most six times that, when every byte needs a `\u00XX` escape.
pub const MAX_RECORD: usize = 128 << 20;

/// `buf[..filled]` is the start of a line of at least [`MAX_RECORD`] bytes: read and drop the
/// rest of it, up to its newline. Returns the stand-in line (a NUL, its length, its first bytes:
/// not JSON, so it is refused as malformed) ending in `\n`, and the bytes read after the newline.
fn drop_long_line(reader: &mut impl Read, mut buf: Vec<u8>, filled: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
    const KEEP: usize = 200;
    let mut total = filled as u64;
    let rest = loop {
        let n = match reader.read(&mut buf[KEEP..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break Vec::new();
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[KEEP..KEEP + n]) {
            total += i as u64;
            break buf[KEEP + i + 1..KEEP + n].to_vec();
        }
        total += n as u64;
    };
    let mut line = format!("\0(a record of {total} bytes, longer than {MAX_RECORD}: dropped) ").into_bytes();
    line.extend_from_slice(&buf[..KEEP]);
    line.push(b'\n');
    Ok((line, rest))
}

/// Report a malformed input line on stderr: its number, why, and the start of it (made
/// [`printable`]: an input line never reaches the operator's terminal raw).
pub fn report_bad_line(tool: &str, number: u64, why: &str, line: &[u8]) {
    crate::metrics::events::invalid_input_line();
    let mut cut = line.len().min(120);
    // Cut at a character boundary when there is one near (a cut character would show as \xNN).
    while cut < line.len() && cut > 116 && (line[cut] & 0xc0) == 0x80 {
        cut -= 1;
    }
    let shown = printable(&line[..cut]);
    let more = if line.len() > cut { "..." } else { "" };
    eprintln!("{tool}: stdin line {number}: {why}, skipped: {shown}{more}");
}

/// Text from input made safe to print on a terminal: control characters (C0, DEL, C1: an ESC
/// sequence could move the cursor, retitle the window or worse) become `\xNN` / `\u{NN}`, and so
/// do bytes that are not UTF-8 (shown as they are, not as U+FFFD, so the operator sees them).
/// A backslash stays a backslash: the output is for reading, not for parsing back.
pub fn printable(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.chars().any(char::is_control)
    {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x80 && c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn printable_escapes_what_a_terminal_would_act_on() {
        assert_eq!(printable(b"plain text \\ \xc3\xa9"), "plain text \\ \u{e9}");
        assert_eq!(printable(b"\x1b[2J\x1b]0;owned\x07"), "\\x1b[2J\\x1b]0;owned\\x07");
        assert_eq!(printable(b"tab\tnl\ncr\r del\x7f"), "tab\\tnl\\x0acr\\x0d del\\x7f");
        assert_eq!(printable("c1 \u{9b}31m".as_bytes()), "c1 \\u{9b}31m");
        assert_eq!(printable(b"bad \xff\xfe end"), "bad \\xff\\xfe end");
    }
}
