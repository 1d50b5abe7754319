//! The writer thread of the syslog/GELF publishers: it owns the connection, writes what the
//! [`Link`](super::Link)'s queue holds in one swap, reports each message once written, reconnects
//! with backoff, and keeps the resend window (the last bytes written on a connection, sent again
//! after a reconnect: the receiver may not have read them).

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Conn, open};
use super::queue::{Batch, LinkOptions, Queue};
use crate::backoff::Backoff;
use crate::metrics::events;
use crate::sink::Reporter;

/// How many emptied resend-window buffers are kept for reuse.
const SPARE_BUFFERS: usize = 4;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A token bucket for `--max-rate`.
#[derive(Default)]
struct Rate {
    start: Option<Instant>,
    sent: u64,
}

impl Rate {
    fn pace(&mut self, max: u64) {
        if max == 0 {
            return;
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        self.sent += 1;
        let due = start + Duration::from_secs_f64(self.sent as f64 / max as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > Duration::from_secs(1) {
            // Fell behind (a reconnect): no burst to catch up.
            self.start = Some(now);
            self.sent = 0;
        }
    }
}

pub(super) struct Writer {
    opts: LinkOptions,
    tls: Option<(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
    shared: Arc<Queue>,
    reporter: Reporter,
    conn: Option<Conn>,
    /// Batches written on the current connection, newest last, at most `resend_window` bytes.
    window: VecDeque<Vec<u8>>,
    window_bytes: usize,
    /// Buffers the window let go, for its next copies.
    spare: Vec<Vec<u8>>,
    rate: Rate,
    warned_udp: bool,
    /// When a connect failure was last logged at warn level.
    last_warn: Option<Instant>,
    /// The last connect failed or the connection broke: the next connect is a retry.
    broken: bool,
}

impl Writer {
    pub(super) fn new(
        opts: LinkOptions,
        tls: Option<(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
        shared: Arc<Queue>,
        reporter: Reporter,
    ) -> Writer {
        Writer {
            opts,
            tls,
            shared,
            reporter,
            conn: None,
            window: VecDeque::new(),
            window_bytes: 0,
            spare: Vec::new(),
            rate: Rate::default(),
            warned_udp: false,
            last_warn: None,
            broken: false,
        }
    }

    pub(super) fn run(mut self) {
        let mut batch = Batch::default();
        loop {
            {
                let mut st = self.shared.lock();
                st.busy = false;
                self.shared.room.notify_all();
                while st.queued.msgs.is_empty() && !st.closed && !st.abort {
                    st = self.shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.abort || (st.closed && st.queued.msgs.is_empty()) {
                    break;
                }
                // The cleared buffers go back to the queue: no allocation once warmed up.
                batch.clear();
                std::mem::swap(&mut batch, &mut st.queued);
                st.busy = true;
                self.shared.room.notify_all();
            }
            if !self.write_batch(&batch) {
                break;
            }
            for &(_, ticket) in &batch.msgs {
                self.reporter.delivered(ticket);
            }
        }
        if let Some(c) = self.conn.as_mut() {
            c.close();
        }
    }

    fn aborted(&self) -> bool {
        self.shared.lock().abort
    }

    /// Write one batch, reconnecting as often as it takes; false when aborted.
    fn write_batch(&mut self, batch: &Batch) -> bool {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            if self.conn.as_ref().is_some_and(|c| c.peer_gone()) {
                tracing::warn!("{}: the receiver closed the connection; reconnecting", self.opts.server);
                self.conn = None;
                self.broken = true;
            }
            if self.conn.is_none() {
                if self.broken {
                    // One retry: a connection attempt made because the last one failed or the
                    // connection broke (see `s3s_publish_retries_total` in s3s(7)).
                    events::publish_retries(1);
                }
                match self.reconnect() {
                    Ok(()) => {
                        backoff.reset();
                        self.last_warn = None;
                        self.broken = false;
                    }
                    Err(e) => {
                        self.broken = true;
                        // A server that stays away: say so at first, then every 30 s.
                        let now = Instant::now();
                        if self.last_warn.is_none_or(|t| now - t >= Duration::from_secs(30)) {
                            self.last_warn = Some(now);
                            tracing::warn!("{}: {e}; retrying with backoff (up to {BACKOFF_MAX:?})", self.opts.server);
                        } else {
                            tracing::debug!("{}: {e}; retrying in {:?}", self.opts.server, backoff.peek());
                        }
                        if !self.sleep(backoff.next_delay()) {
                            return false;
                        }
                        continue;
                    }
                }
            }
            let conn = self.conn.as_mut().expect("connected");
            let result = if conn.is_datagram() {
                self.send_datagrams(batch)
            } else {
                if self.opts.max_rate == 0 {
                    conn.write_all(&batch.buf).and_then(|()| conn.flush())
                } else {
                    let mut start = 0;
                    let mut r = Ok(());
                    for &(end, _) in &batch.msgs {
                        self.rate.pace(self.opts.max_rate);
                        r = conn.write_all(&batch.buf[start..end]).and_then(|()| conn.flush());
                        if r.is_err() {
                            break;
                        }
                        start = end;
                    }
                    r
                }
            };
            match result {
                Ok(()) => {
                    if self.conn.as_ref().is_some_and(|c| !c.is_datagram()) {
                        self.remember(&batch.buf);
                    }
                    return true;
                }
                Err(e) => {
                    tracing::warn!("{}: {e}; reconnecting", self.opts.server);
                    self.conn = None;
                    self.broken = true;
                    if self.aborted() {
                        return false;
                    }
                }
            }
        }
    }

    fn send_datagrams(&mut self, batch: &Batch) -> io::Result<()> {
        let conn = self.conn.as_mut().expect("connected");
        let mut start = 0;
        for &(end, _) in &batch.msgs {
            self.rate.pace(self.opts.max_rate);
            let msg = &batch.buf[start..end];
            start = end;
            if msg.is_empty() {
                continue;
            }
            let mut send = |d: &[u8]| -> io::Result<()> {
                match conn.write_all(d) {
                    // An ICMP port-unreachable from an earlier datagram: the receiver is not
                    // there (yet). UDP promises nothing: say so once, send again, go on.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        if !self.warned_udp {
                            tracing::warn!("{}: {e} (nobody listening?); UDP goes on regardless", self.opts.server);
                            self.warned_udp = true;
                        }
                        match conn.write_all(d) {
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
                            r => r,
                        }
                    }
                    r => r,
                }
            };
            match &mut self.opts.chunker {
                Some(chunk) => chunk(msg, &mut send)?,
                None => send(msg)?,
            }
        }
        Ok(())
    }

    /// Keep a copy of a written batch in the resend window. The copy goes into a buffer the
    /// window let go earlier (kept in `spare`), so once warm this allocates nothing; and it is
    /// made here on the writer thread, not where the publisher encodes (whose queue buffers
    /// stay the same two, swapped back and forth).
    fn remember(&mut self, buf: &[u8]) {
        if self.opts.resend_window == 0 {
            return;
        }
        // The newest batch is kept even when it alone is larger than the window.
        while self.window_bytes + buf.len() > self.opts.resend_window && !self.window.is_empty() {
            let old = self.window.pop_front().expect("non-empty");
            self.window_bytes -= old.len();
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(old);
            }
        }
        let mut copy = self.spare.pop().unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(buf);
        self.window.push_back(copy);
        self.window_bytes += buf.len();
    }

    fn reconnect(&mut self) -> io::Result<()> {
        let mut conn = open(&self.opts.server, self.tls.as_ref())?;
        if !self.window.is_empty() {
            tracing::warn!(
                "{}: reconnected; resending the last {} bytes written before the connection broke",
                self.opts.server,
                self.window_bytes
            );
            for b in &self.window {
                conn.write_all(b)?;
            }
            conn.flush()?;
            self.window.clear();
            self.window_bytes = 0;
        } else if self.last_warn.is_some() {
            tracing::warn!("{}: connected", self.opts.server);
        } else {
            tracing::info!("{}: connected", self.opts.server);
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Sleep, waking early on abort; false when aborted.
    fn sleep(&self, d: Duration) -> bool {
        let st = self.shared.lock();
        let (st, _) = self.shared.work.wait_timeout_while(st, d, |s| !s.abort).unwrap_or_else(|e| e.into_inner());
        !st.abort
    }
}
