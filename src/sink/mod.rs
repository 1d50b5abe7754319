//! The delivery-then-forward driver that every publishing stage shares (s3s-kafka, s3s-es,
//! s3s-syslog, s3s-gelf), and the toolkit they build on.
//!
//! A publisher stage reads records on stdin, hands each `line` record to its [`Publisher`] and
//! forwards every other record (`end`, `object`, `message`, unknown types) to stdout in input
//! order, but only once every earlier line has a successful delivery report (rule 3 of
//! `man/s3s.7`): downstream, `s3s-ack` deletes an SQS message only after all its lines are
//! delivered. The publisher only has to deliver lines and report each outcome through a
//! [`Reporter`]; ordering, failure bookkeeping, backpressure, dry runs, malformed input,
//! signals, draining and the closed-pipe rule live here, once.
//!
//! How it works:
//! - Each published line gets a sequence number and a [`Ticket`] (sequence number + the slot of
//!   its object). Delivery reports may come back in any order, from any thread; a ring of
//!   "done" flags turns them into a watermark: every line below it has its report.
//! - A non-line record read after N published lines waits in a queue until the watermark
//!   reaches N, then is written to stdout. When nothing waits, it is written at once.
//! - A line that failed permanently marks its object (bucket+key, or file) as failed; that
//!   object's `end` record is then withheld (reported on stderr) while the stream goes on, and
//!   the exit status becomes 1. Its SQS message is not deleted and comes back later.
//! - At most `--max-in-flight` lines await a report; reading stdin pauses while the window is
//!   full (backpressure), and also while too many bytes of records wait for their lines.
//! - Stdin is read on its own thread. The main thread waits for the end of input, SIGTERM or
//!   SIGINT, or a closed stdout; then it stops reading, drains (waits at most
//!   `--drain-timeout` for outstanding reports), forwards what was confirmed and reports what
//!   was withheld. A second signal cuts the drain short. A closed stdout ends quietly (status
//!   0) and abandons what is in flight: nothing more is published.
//! - Records that wait may hold something upstream that must be kept alive meanwhile: an SQS
//!   message that must stay invisible until the record is forwarded (so a broker outage does
//!   not hand it to another consumer). The driver knows only the [`Hold`] a tool plugs in (for
//!   SQS, `crate::aws::lease::Keeper`: ChangeMessageVisibility once a record has waited half the
//!   visibility it had left, the new deadline written into its ack token). No token, no AWS
//!   access; a dry run holds nothing.
//! - Metrics: `s3s_records_published_total` and `s3s_delivery_failures_total` from the reports,
//!   `s3s_delivery_latency_seconds` from a hand-over stamp per line (see `watermark`).
//! - Hot path per line: one scan of the record's top level (no `serde_json::Value`), the line
//!   text unescaped into a reused buffer while scanning, a comparison of the object's raw
//!   bucket/key bytes with the previous line's, two atomic loads, one relaxed store of the
//!   hand-over stamp (a clock reading per 64 lines) and the publisher's call.
//!
//! The rooms: this one (what a publisher sees: [`Publisher`], [`Reporter`], [`Line`],
//! [`Ticket`], [`Control`], [`Hold`]), `driver` (the stdin thread and the main thread: read
//! loop, signals, drain), `watermark` (reports → watermark → forwarding), `objects` (which
//! object each line belongs to), `record` (the scan of a record's top level); and the shared
//! toolkit of the publishers: [`tls`] (one rustls client configuration), [`net`] (server URLs,
//! the writer thread with its resend window, for syslog and GELF), [`severity`] (syslog
//! severity names, for syslog and GELF).

pub mod net;
pub mod severity;
pub mod tls;

mod driver;
mod objects;
mod record;
mod watermark;

use std::fmt;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use crate::scan::{self, Raw};
pub use driver::run;
pub use watermark::location;
use watermark::{State, Watermark};

/// Flags every publisher stage shares (flattened into its `Args`).
/// Flags every publisher stage shares (flattened into its `Args`).
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Publish nothing: describe each line that would be published as one JSON object on stderr.
    /// Records are forwarded to stdout as usual (end records included). Line records marked
    /// `"dry_run":true` (by `s3s-poll --dry-run`) are always treated this way.
    #[arg(long)]
    pub dry_run: bool,

    /// At most N lines awaiting a delivery report; reading stdin pauses while the window is full.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..=MAX_WINDOW)
    )]
    pub max_in_flight: u64,

    /// At end of input or on SIGTERM/SIGINT, how long to wait for outstanding delivery reports;
    /// records behind unconfirmed lines are then withheld.
    #[command(flatten)]
    pub drain: crate::shutdown::DrainArgs,
}

/// Largest `--max-in-flight` (the ring of done flags is a power of two up to this).
pub const MAX_WINDOW: u64 = 1 << 24;

/// One top-level value of a record, as found by the scanner (not decoded until asked).
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    pub(crate) rec: &'a [u8],
    pub(crate) raw: Raw,
}

impl<'a> Value<'a> {
    /// The value's JSON text (a string with its quotes and escapes).
    pub fn json(&self) -> &'a [u8] {
        &self.rec[self.raw.start..self.raw.end]
    }

    /// True for a JSON string.
    pub fn is_string(&self) -> bool {
        self.raw.is_string
    }

    /// True for JSON `null`.
    pub fn is_null(&self) -> bool {
        self.json() == b"null"
    }

    /// The value as bytes: a string's decoded content, anything else its JSON text. Borrowed from
    /// the record unless the string has escapes (then decoded into `scratch`).
    pub fn bytes<'s>(&self, scratch: &'s mut Vec<u8>) -> &'s [u8]
    where
        'a: 's,
    {
        if self.raw.is_string && self.raw.escaped {
            scratch.clear();
            scan::unescape_into(self.raw.content(self.rec), scratch);
            scratch
        } else {
            self.raw.content(self.rec)
        }
    }
}

/// A `line` record handed to a [`Publisher`].
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// The whole record as it came (without its newline).
    pub record: &'a [u8],
    /// The line's text, JSON escapes decoded (valid UTF-8 when the record came from s3s-cat); for
    /// a record without `line` (s3s-parse --drop-line), its `fields` object's JSON text.
    pub text: &'a [u8],
    /// The record has a `line` (else `text` is its fields' JSON).
    pub has_line: bool,
    /// Its line number on stdin (for messages).
    pub input_line: u64,
    /// The record's `bucket`, `key`, `file` and `n` fields, when present.
    pub bucket: Option<Value<'a>>,
    pub key: Option<Value<'a>>,
    pub file: Option<Value<'a>>,
    pub n: Option<Value<'a>>,
    /// The field the publisher asked for in [`Stage::field`], when present: the record's
    /// top-level member of that name, else the member of that name in its `fields` object.
    pub field: Option<Value<'a>>,
    /// The record's `fields` object (s3s-parse), raw.
    pub fields: Option<Value<'a>>,
    /// The record's `@timestamp` (s3s-parse: RFC 3339 text, UTC).
    pub timestamp: Option<Value<'a>>,
}

/// Identifies one published line in the reports: its sequence number and its object's slot.
/// Fits in a `usize` (64-bit targets), so it travels as a publisher's opaque pointer-sized value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

const SLOT_BITS: u32 = 24;
pub(crate) const NO_SLOT: u32 = (1 << SLOT_BITS) - 1;

impl Ticket {
    pub(crate) fn new(seq: u64, slot: u32) -> Ticket {
        Ticket((seq << SLOT_BITS) | u64::from(slot))
    }
    pub(crate) fn seq(self) -> u64 {
        self.0 >> SLOT_BITS
    }
    pub(crate) fn slot(self) -> u32 {
        (self.0 & u64::from(NO_SLOT)) as u32
    }
    /// The ticket as a raw number (for a publisher's per-message opaque value).
    pub fn to_raw(self) -> u64 {
        self.0
    }
    /// Back from [`Ticket::to_raw`].
    pub fn from_raw(raw: u64) -> Ticket {
        Ticket(raw)
    }
}

/// Why [`Publisher::publish`] could not take a line.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// This line can never be delivered (too large, rejected by the client): its object fails,
    /// the stream goes on.
    #[error("{0}")]
    Rejected(String),
    /// The publisher cannot go on (a fatal client error): stop reading, drain, exit 1.
    #[error("{0}")]
    Fatal(String),
}

/// The transport side of a publishing stage.
///
/// `publish` is called from the stdin thread only; delivery outcomes are reported through the
/// [`Reporter`] the publisher was built with, from any thread, exactly once per accepted ticket.
pub trait Publisher: Send + 'static {
    /// Hand one line over for delivery (usually just enqueue it). `Ok`: its outcome will be
    /// reported with `ticket`. `Err`: it was not accepted (and must not be reported).
    fn publish(&mut self, line: &Line<'_>, ticket: Ticket) -> Result<(), PublishError>;

    /// Dry run: append a description of what `publish` would send (one JSON object, no newline).
    fn describe(&mut self, line: &Line<'_>, out: &mut Vec<u8>);
}

/// Control of a running publisher from the main thread, while the stdin thread publishes.
pub trait Control: Send + Sync {
    /// Send whatever is buffered now and wait at most `timeout` for outstanding deliveries;
    /// true when the publisher holds nothing more.
    fn flush(&self, timeout: Duration) -> bool;
    /// Give up on whatever is outstanding (reports that still come are ignored).
    fn abort(&self);
}

/// A [`Control`] for publishers with nothing to flush (dry runs).
pub struct NoControl;
impl Control for NoControl {
    fn flush(&self, _: Duration) -> bool {
        true
    }
    fn abort(&self) {}
}

/// How a publisher reports delivery outcomes. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct Reporter(Arc<Watermark>);

impl Reporter {
    /// The line with this ticket is delivered.
    #[inline]
    pub fn delivered(&self, ticket: Ticket) {
        self.0.complete(ticket, None);
    }

    /// The line with this ticket failed for good (after the publisher's own retries).
    pub fn failed(&self, ticket: Ticket, why: &dyn fmt::Display) {
        self.0.complete(ticket, Some(why));
    }

    /// Report many outcomes under one lock, for publishers whose reports come in batches
    /// (librdkafka hands over thousands per event). Records they release are forwarded when
    /// the batch is dropped.
    pub fn batch(&self) -> ReportBatch<'_> {
        ReportBatch { sh: &self.0, st: self.0.lock(), advance: false }
    }
}

/// Outcomes reported together (see [`Reporter::batch`]).
pub struct ReportBatch<'a> {
    sh: &'a Watermark,
    st: MutexGuard<'a, State>,
    advance: bool,
}

impl ReportBatch<'_> {
    /// The line with this ticket is delivered.
    #[inline]
    pub fn delivered(&mut self, ticket: Ticket) {
        self.advance |= self.sh.mark(&mut self.st, ticket, None);
    }

    /// The line with this ticket failed for good.
    pub fn failed(&mut self, ticket: Ticket, why: &dyn fmt::Display) {
        self.advance |= self.sh.mark(&mut self.st, ticket, Some(why));
    }
}

impl Drop for ReportBatch<'_> {
    fn drop(&mut self) {
        if self.advance {
            self.sh.advance(&mut self.st);
        }
    }
}

impl fmt::Debug for Reporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reporter")
    }
}

/// What a stage tells the driver about itself.
pub struct Stage<'a> {
    /// The stage's binary name, for messages.
    pub tool: &'static str,
    /// The shared flags.
    pub args: &'a SinkArgs,
    /// A field of line records the publisher wants (e.g. `--key-field`): a top-level member,
    /// else a member of the record's `fields` object.
    pub field: Option<String>,
    /// What keeps waiting records' sources alive (SQS visibility); `None`: nothing to keep.
    pub hold: Option<Arc<dyn Hold>>,
}

/// Keeps alive what a waiting record holds upstream (an SQS message's visibility) until the
/// record is forwarded or withheld. Implemented by the AWS layer, plugged in by the tools.
pub trait Hold: Send + Sync {
    /// A record is about to wait for the lines before it: start keeping its source alive, if it
    /// has one (`None`: nothing to keep). May parse the record; called outside the driver's lock.
    fn hold(&self, rec: &[u8]) -> Option<Box<dyn HeldRecord>>;
    /// The stage ends: let everything go.
    fn stop(&self);
}

/// One record held by a [`Hold`].
pub trait HeldRecord: Send + Sync {
    /// Stop keeping it alive (it is being forwarded or withheld). `Some`: the record to forward
    /// in place of `rec`, changed by the holding (a new deadline in its ack token).
    fn release(&self, rec: &[u8]) -> Option<Vec<u8>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip() {
        let t = Ticket::new(123_456_789_012, 77);
        assert_eq!(Ticket::from_raw(t.to_raw()), t);
        assert_eq!((t.seq(), t.slot()), (123_456_789_012, 77));
        assert_eq!(Ticket::new(5, NO_SLOT).slot(), NO_SLOT);
    }
}
