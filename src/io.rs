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
            let r = self.file.write_all(&self.buf);
            self.buf.clear();
            r?;
        }
        Ok(())
    }
}

/// Records from stdin, one line at a time, with line numbers.
///
/// fd 0 is read on the caller's thread into one buffer, and lines are returned as slices of it
/// (no copy per line); a partial line moves to the front before the next read, and the buffer
/// grows only for a line longer than itself. A reader thread was measured against this: in a
/// pipeline on 2 shared cores its wake-ups and hand-overs (futex calls) cost more than the
/// overlap saved (README, "Measured").
pub struct Input {
    file: ManuallyDrop<File>,
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

impl Input {
    /// Stdin, read straight from fd 0.
    pub fn stdin() -> Self {
        grow_pipe(0);
        // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop never closes it.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
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
                self.buf.resize(self.buf.len() * 2, 0);
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
                match (&*self.file).read(&mut self.buf[self.len..]) {
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

/// Whether fd `file` has data (or end of file, or an error) to read within `timeout_ms`.
fn readable(file: &File, timeout_ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd { fd: file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, its count, a timeout.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    // An error of poll itself (EINTR) counts as "maybe": the caller then reads, which blocks
    // correctly.
    n != 0
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

/// Report a malformed input line on stderr: its number, why, and the start of it.
pub fn report_bad_line(tool: &str, number: u64, why: &str, line: &[u8]) {
    crate::metrics::events::invalid_input_line();
    let shown = String::from_utf8_lossy(&line[..line.len().min(120)]);
    let more = if line.len() > 120 { "..." } else { "" };
    eprintln!("{tool}: stdin line {number}: {why}, skipped: {shown}{more}");
}
