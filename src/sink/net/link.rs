//! The publisher's end of the writer thread: a queue of framed messages that `publish` appends
//! to (waiting while it is full) and the writer takes in one swap; flush and abort for the
//! driver.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Server;
use super::queue::{Batch, LinkOptions, Queue, State};
use super::writer::Writer;
use crate::sink::tls::client_config;
use crate::sink::{Control, Reporter, Ticket};

/// Bytes queued for the writer before `publish` waits.
pub const QUEUE_BYTES: usize = 4 << 20;

/// The publisher's end of a writer thread: queue messages, flush, abort.
pub struct Link {
    shared: Arc<Queue>,
    stream: bool,
}

/// The driver's [`Control`] of a link.
pub struct LinkControl(Arc<Queue>);

impl Link {
    /// Start the writer thread. `stream` tells the encoder whether to frame messages for a
    /// stream socket; for `unix://` it is found out by trying the socket once now.
    pub fn start(opts: LinkOptions, reporter: Reporter) -> Result<(Link, LinkControl), String> {
        let tls = match &opts.server {
            Server::Tls(_) => {
                let config = client_config(&opts.tls, "--tls-ca")?;
                let host = opts.tls.server_name.clone().or_else(|| opts.server.host().map(str::to_string)).unwrap_or_default();
                let name =
                    rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("TLS server name {host:?}: {e}"))?;
                Some((config, name))
            }
            _ => None,
        };
        let stream = match &opts.server {
            Server::Udp(_) => false,
            Server::Tcp(_) | Server::Tls(_) => true,
            Server::Unix(p) => match super::conn::open(&opts.server, None) {
                Ok(c) => !c.is_datagram(),
                Err(e) => return Err(format!("{}: {e}", p.display())),
            },
        };
        let shared = Arc::new(Queue {
            state: Mutex::new(State { queued: Batch::default(), busy: false, closed: false, abort: false }),
            work: Condvar::new(),
            room: Condvar::new(),
        });
        let writer = Writer::new(opts, tls, shared.clone(), reporter);
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer.run())
            .map_err(|e| format!("starting the writer thread: {e}"))?;
        Ok((Link { shared: shared.clone(), stream }, LinkControl(shared)))
    }

    /// True when messages travel on a stream socket and need framing.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Queue one message: `encode` appends its bytes (framing included) to the buffer.
    /// Waits while the queue is full; false when the link was aborted (nothing queued).
    pub fn send(&self, ticket: Ticket, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut st = self.shared.lock();
        while st.queued.buf.len() >= QUEUE_BYTES && !st.abort {
            st = self.shared.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.abort {
            return false;
        }
        let was_empty = st.queued.msgs.is_empty();
        encode(&mut st.queued.buf);
        let end = st.queued.buf.len();
        st.queued.msgs.push((end, ticket));
        if was_empty {
            self.shared.work.notify_one();
        }
        true
    }
}

impl Link {
    /// Queue a message of no bytes: its ticket is reported in order with the others, nothing
    /// is sent (for a message handled otherwise, e.g. dead-lettered).
    pub fn send_nothing(&self, ticket: Ticket) -> bool {
        self.send(ticket, |_| {})
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        self.shared.work.notify_all();
    }
}

impl Control for LinkControl {
    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.0.lock();
        loop {
            if st.abort || (!st.busy && st.queued.msgs.is_empty()) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.0.room.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn abort(&self) {
        let mut st = self.0.lock();
        st.abort = true;
        self.0.work.notify_all();
        self.0.room.notify_all();
    }
}
