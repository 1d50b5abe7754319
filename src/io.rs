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
        Output {
            file,
            buf: Vec::with_capacity(OUT_BUF + 64 * 1024),
            line_buffered: io::stdout().is_terminal(),
        }
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

/// Records from stdin (or any reader), one line at a time, with line numbers. Lines are
/// returned as slices of one large buffer (no copy per line).
pub struct Input<R = Box<dyn Read>> {
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    number: u64,
}

impl Input<Box<dyn Read>> {
    /// Stdin, read through a large buffer straight from fd 0.
    pub fn stdin() -> Self {
        // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop never closes it.
        let file = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
        Input::new(Box::new(StdinFile(file)))
    }
}

struct StdinFile(ManuallyDrop<File>);
impl Read for StdinFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read> Input<R> {
    pub fn new(reader: R) -> Self {
        Input { reader, buf: vec![0; IN_BUF], pos: 0, end: 0, eof: false, number: 0 }
    }

    /// True when the next read would have to wait for the producer: flush output first.
    pub fn is_dry(&self) -> bool {
        self.pos == self.end
    }

    /// The next line without its `\n` (and without a `\r` before it) and its 1-based number,
    /// or `None` at end of input. A last line without a newline is still a line.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, &[u8])>> {
        let mut searched = self.pos;
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[searched..self.end]) {
                let (start, nl) = (self.pos, searched + i);
                self.pos = nl + 1;
                return Ok(Some(self.take(start, nl)));
            }
            if self.eof {
                if self.pos == self.end {
                    return Ok(None);
                }
                let (start, end) = (self.pos, self.end);
                self.pos = end;
                return Ok(Some(self.take(start, end)));
            }
            // Make room: move the partial line to the front, grow only for a line longer than
            // the buffer (and shrink back once it is gone).
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
                if self.buf.len() > IN_BUF && self.end < IN_BUF / 2 {
                    self.buf.truncate(IN_BUF);
                    self.buf.shrink_to_fit();
                }
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            searched = self.end;
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn take(&mut self, start: usize, mut end: usize) -> (u64, &[u8]) {
        self.number += 1;
        if end > start && self.buf[end - 1] == b'\r' {
            end -= 1;
        }
        (self.number, &self.buf[start..end])
    }

    /// Like [`Input::next_line`], flushing `out` first when no input is waiting.
    pub fn next_line_flushing(&mut self, out: &mut Output) -> io::Result<Option<(u64, &[u8])>> {
        if self.is_dry() {
            out.flush()?;
        }
        self.next_line()
    }
}

/// Report a malformed input line on stderr: its number, why, and the start of it.
pub fn report_bad_line(tool: &str, number: u64, why: &str, line: &[u8]) {
    let shown = String::from_utf8_lossy(&line[..line.len().min(120)]);
    let more = if line.len() > 120 { "..." } else { "" };
    eprintln!("{tool}: stdin line {number}: {why}, skipped: {shown}{more}");
}
