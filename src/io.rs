//! Record framing on stdin and stdout.
//!
//! Stdout: a large buffer written straight to fd 1 (Rust's `Stdout` is line-buffered, which costs
//! a syscall per record); line-buffered when stdout is a terminal. Callers flush whenever their
//! input runs dry, so records never wait in a buffer while upstream is idle.
//! Stdin: read(2) into one reused buffer on the caller's thread, lines handed out as slices of
//! it, counting line numbers for error messages. Both ends of a pipe are grown to 1 MiB.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
        grow_pipe(1);
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

/// Records from stdin, one line at a time, with line numbers.
///
/// fd 0 is read on the caller's thread into one buffer, and lines are returned as slices of it
/// (no copy per line); a partial line moves to the front before the next read, and the buffer
/// grows only for a line longer than itself. A reader thread was measured against this: in a
/// pipeline on 2 shared cores its wake-ups and hand-overs (futex calls) cost more than the
/// overlap saved (README, "Measured").
pub struct Input {
    file: Source,
    buf: Vec<u8>,
    /// Bytes of `buf` filled by read(2).
    len: usize,
    /// Start of the next line in `buf`.
    pos: usize,
    /// The index of the `\n` ending the next line, when `is_dry` has looked for it.
    next_nl: Option<usize>,
    eof: bool,
    number: u64,
    /// Ends the input early once set (a drain that expired, see [`crate::shutdown`]).
    stop: Option<Arc<AtomicBool>>,
}

/// Where an [`Input`]'s bytes come from.
enum Source {
    /// fd 0.
    Stdin(ManuallyDrop<File>),
    /// Any reader (tests, fuzzing): always ready, never dry.
    Reader(Box<dyn Read + Send>),
}

impl Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Stdin(f) => (&**f).read(buf),
            Source::Reader(r) => r.read(buf),
        }
    }
}

impl Input {
    /// Stdin, read straight from fd 0.
    pub fn stdin() -> Self {
        grow_pipe(0);
        // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop never closes it.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        Input::from_source(Source::Stdin(file))
    }

    /// The lines of any reader (for tests and fuzzing: never dry, stop flags are not awaited).
    pub fn new(reader: impl Read + Send + 'static) -> Self {
        Input::from_source(Source::Reader(Box::new(reader)))
    }

    fn from_source(file: Source) -> Self {
        Input { file, buf: vec![0u8; IN_BUF], len: 0, pos: 0, next_nl: None, eof: false, number: 0, stop: None }
    }

    /// End the input (as at end of file) once `flag` is set, even while waiting for more.
    pub fn stop_when(&mut self, flag: Arc<AtomicBool>) {
        self.stop = Some(flag);
    }

    /// True when no whole line is waiting (the next read would wait for the producer): flush
    /// output first, so records never sit in a buffer while upstream is idle.
    pub fn is_dry(&mut self) -> bool {
        if self.eof || self.next_nl.is_some() {
            return false;
        }
        if let Some(i) = memchr::memchr(b'\n', &self.buf[self.pos..self.len]) {
            self.next_nl = Some(self.pos + i);
            return false;
        }
        !readable(&self.file, 0)
    }

    /// The next line without its `\n` (and without a `\r` before it) and its 1-based number,
    /// or `None` at end of input. A last line without a newline is still a line.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        self.line(None)
    }

    /// Like [`Input::next_line`], flushing `out` first when no input is waiting.
    pub fn next_line_flushing(&mut self, out: &mut Output) -> io::Result<Option<(u64, &[u8])>> {
        self.line(Some(out))
    }

    fn line(&mut self, mut out: Option<&mut Output>) -> io::Result<Option<(u64, &[u8])>> {
        let mut scanned = self.pos;
        let end = loop {
            if let Some(nl) = self.next_nl.take() {
                break nl;
            }
            if let Some(i) = memchr::memchr(b'\n', &self.buf[scanned..self.len]) {
                break scanned + i;
            }
            if self.eof {
                if self.pos < self.len {
                    break self.len;
                }
                return Ok(None);
            }
            // No whole line left: move the partial one to the front, grow for a long one.
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.len, 0);
                self.len -= self.pos;
                self.pos = 0;
            }
            scanned = self.len;
            if self.len == self.buf.len() {
                if self.len >= MAX_RECORD {
                    // One line longer than any record may be: drop it (its start and its length
                    // go on, as a line every scanner refuses) and read on after its newline.
                    self.drop_long_line()?;
                    scanned = 0;
                    continue;
                }
                self.buf.resize((self.buf.len() * 2).min(MAX_RECORD.max(IN_BUF)), 0);
            }
            if let Some(out) = out.as_deref_mut()
                && !readable(&self.file, 0)
            {
                out.flush()?;
            }
            if let Some(stop) = &self.stop {
                // Wait in slices, so that a drain that expires ends the input.
                loop {
                    if stop.load(Ordering::Relaxed) {
                        self.eof = true;
                        self.len = self.pos;
                        return Ok(None);
                    }
                    if readable(&self.file, 100) {
                        break;
                    }
                }
            }
            let n = loop {
                match self.file.read(&mut self.buf[self.len..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.len += n;
        };
        let start = self.pos;
        self.pos = if end < self.len { end + 1 } else { end };
        let mut stop = end;
        if stop > start && self.buf[stop - 1] == b'\r' {
            stop -= 1;
        }
        self.number += 1;
        Ok(Some((self.number, &self.buf[start..stop])))
    }
}

/// The longest input record a stage reads (bytes): a longer line is not kept in memory but
/// replaced by [`drop_long_line`]'s stand-in, which every scanner refuses (reported with its line
/// number, charged to an object like any malformed line). s3s-cat's longest line (16 MiB by
/// default) makes a record of at most six times that, when every byte needs a `\u00XX` escape.
pub const MAX_RECORD: usize = 128 << 20;

impl Input {
    /// `buf[..len]` (from 0) is the start of a line of [`MAX_RECORD`] bytes or more: read and
    /// drop the rest of it, up to its newline, and leave in `buf` the stand-in line (a NUL, its
    /// length, its first bytes: not JSON, so it is refused as malformed) and its newline,
    /// followed by the bytes read after it.
    fn drop_long_line(&mut self) -> io::Result<()> {
        const KEEP: usize = 200;
        let mut total = self.len as u64;
        let mut scratch = vec![0u8; IN_BUF];
        let rest = loop {
            let n = match self.file.read(&mut scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                break Vec::new();
            }
            if let Some(i) = memchr::memchr(b'\n', &scratch[..n]) {
                total += i as u64;
                break scratch[i + 1..n].to_vec();
            }
            total += n as u64;
        };
        let mut line = format!("\0(a record of {total} bytes, longer than {MAX_RECORD}: dropped) ").into_bytes();
        line.extend_from_slice(&self.buf[..KEEP]);
        line.push(b'\n');
        line.extend_from_slice(&rest);
        self.buf = line;
        self.len = self.buf.len();
        let want = self.len.max(IN_BUF);
        self.buf.resize(want, 0);
        self.pos = 0;
        self.next_nl = None;
        Ok(())
    }
}

/// Whether `source` has data (or end of file, or an error) to read within `timeout_ms`.
fn readable(source: &Source, timeout_ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let Source::Stdin(file) = source else { return true };
    let mut p = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, its count, a timeout.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    // An error of poll itself (EINTR: a signal arrived) counts as "not yet": the caller checks
    // its stop flag and polls again (a blocking read here would miss the stop).
    n > 0
}

/// Make the pipe on `fd` 1 MiB (Linux' default is 64 KiB): fewer, larger reads and writes and
/// fewer wake-ups between stages. Not a pipe, or not allowed: nothing changes.
pub fn grow_pipe(fd: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on a descriptor number; fails harmlessly when it is not a pipe.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
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
