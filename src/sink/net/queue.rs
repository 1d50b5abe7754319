//! What the publisher and the writer thread share: the queue of framed messages, its two
//! wake-ups, and the writer's options.

use std::io;
use std::sync::{Condvar, Mutex, MutexGuard};

use super::Server;
use crate::sink::Ticket;
use crate::sink::tls::TlsOptions;

/// One batch of messages: their bytes back to back, each message's end offset and ticket.
#[derive(Default)]
pub struct Batch {
    pub buf: Vec<u8>,
    pub msgs: Vec<(usize, Ticket)>,
}

impl Batch {
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.msgs.clear();
    }
}

/// What `publish` and the writer thread share.
pub(super) struct State {
    pub(super) queued: Batch,
    /// The writer holds a batch it has not reported yet.
    pub(super) busy: bool,
    /// No more messages will come (the publisher was dropped).
    pub(super) closed: bool,
    /// Give up: write nothing more, report nothing more.
    pub(super) abort: bool,
}

/// The queue and its two wake-ups, shared by the publisher, the driver and the writer thread.
pub(super) struct Queue {
    pub(super) state: Mutex<State>,
    /// Signalled when messages are queued, on close and on abort.
    pub(super) work: Condvar,
    /// Signalled when room frees up and when the writer goes idle.
    pub(super) room: Condvar,
}

impl Queue {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Splits one datagram message into the datagrams that carry it (GELF chunking).
pub type Chunker = Box<dyn FnMut(&[u8], &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> + Send>;

/// Options of the writer thread.
pub struct LinkOptions {
    pub server: Server,
    pub tls: TlsOptions,
    /// Bytes of already written messages kept to resend after a reconnect.
    pub resend_window: usize,
    /// At most this many messages per second (0: no limit).
    pub max_rate: u64,
    /// The tool's name, for messages.
    pub tool: &'static str,
    /// Split a datagram message into several datagrams (GELF chunking); None: send as is.
    pub chunker: Option<Chunker>,
}
