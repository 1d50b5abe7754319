//! The delivery-then-forward driver that every publishing stage shares (`s3s-kafka` now;
//! Elasticsearch, syslog and GELF publishers later).
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
//! - `end` records that wait carry their SQS message's ack token: once one has waited half the
//!   visibility it had left, a background thread keeps the message invisible
//!   (ChangeMessageVisibility, [`crate::lease::Keeper`]) until it is forwarded, with the new
//!   deadline written into its ack token, as s3s-cat does (so a broker outage does not hand the
//!   message to another consumer meanwhile). No token, no AWS access.
//! - Metrics: `s3s_records_published_total` and `s3s_delivery_failures_total` from the reports,
//!   `s3s_delivery_latency_seconds` from a hand-over stamp per line (see [`Shared::advance`]).
//! - Hot path per line: one scan of the record's top level (no `serde_json::Value`), the line
//!   text unescaped into a reused buffer while scanning, a comparison of the object's raw
//!   bucket/key bytes with the previous line's, two atomic loads, one relaxed store of the
//!   hand-over stamp (a clock reading per 64 lines) and the publisher's call.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::Status;
use crate::io::{Input, Output, report_bad_line};
use crate::lease::{Held, Keeper};
use crate::scan::{self, Raw, ScanError};

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

    /// At end of input or on SIGTERM/SIGINT, wait at most this long for outstanding delivery
    /// reports (e.g. 30s, 500ms, 2m); records behind unconfirmed lines are then withheld.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, env = "S3S_DRAIN_TIMEOUT")]
    pub drain_timeout: Duration,
}

/// Largest `--max-in-flight` (the ring of done flags is a power of two up to this).
pub const MAX_WINDOW: u64 = 1 << 24;
/// Bytes of non-line records that may wait for their lines before reading stdin pauses.
const MAX_PENDING_BYTES: usize = 64 << 20;
/// Dry-run descriptions are written to stderr in chunks of about this size.
const DRY_BUF: usize = 64 * 1024;

/// Parse `30`, `30s`, `500ms`, `2m`, `1.5s` into a duration (bare numbers are seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 30s, 500ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => n,
        "ms" => n / 1000.0,
        "m" | "min" | "mins" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// What a publisher sees

/// One top-level value of a record, as found by the scanner (not decoded until asked).
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    rec: &'a [u8],
    raw: Raw,
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
    /// The line's text, JSON escapes decoded (valid UTF-8 when the record came from s3s-cat).
    pub text: &'a [u8],
    /// Its line number on stdin (for messages).
    pub input_line: u64,
    /// The record's `bucket`, `key`, `file` and `n` fields, when present.
    pub bucket: Option<Value<'a>>,
    pub key: Option<Value<'a>>,
    pub file: Option<Value<'a>>,
    pub n: Option<Value<'a>>,
    /// The top-level field the publisher asked for in [`Driver::field`], when present.
    pub field: Option<Value<'a>>,
}

/// Identifies one published line in the reports: its sequence number and its object's slot.
/// Fits in a `usize` (64-bit targets), so it travels as a publisher's opaque pointer-sized value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

const SLOT_BITS: u32 = 24;
const NO_SLOT: u32 = (1 << SLOT_BITS) - 1;

impl Ticket {
    fn new(seq: u64, slot: u32) -> Ticket {
        Ticket((seq << SLOT_BITS) | u64::from(slot))
    }
    fn seq(self) -> u64 {
        self.0 >> SLOT_BITS
    }
    fn slot(self) -> u32 {
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
pub struct Reporter(Arc<Shared>);

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
    sh: &'a Shared,
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

/// What a stage tells the driver.
pub struct Driver<'a> {
    /// The stage's binary name, for messages.
    pub tool: &'static str,
    /// The shared flags.
    pub args: &'a SinkArgs,
    /// A top-level field of line records the publisher wants (e.g. `--key-field`).
    pub field: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Shared state

enum Event {
    /// The stdin thread stopped: end of input, a read error or a fatal publisher error.
    InputDone(anyhow::Result<()>),
    Signal(&'static str),
    /// Writing stdout failed (a closed pipe, usually).
    Stdout(std::io::Error),
}

/// A record waiting for the lines before it.
struct Pending {
    /// Forwardable once the watermark reaches this (the number of lines published before it).
    after: u64,
    rec: Vec<u8>,
    /// An `end` record, and the slot of its object when lines of it were seen.
    end: bool,
    slot: Option<u32>,
    /// The record's ack token (an `end`, or a `message` record of an s3:TestEvent), kept
    /// invisible while the record waits.
    held: Option<Arc<Held>>,
}

#[derive(Default)]
struct Slot {
    failed: u64,
    first_error: Option<String>,
}

struct State {
    out: Output,
    done: Box<[bool]>,
    mask: u64,
    /// Every line with a sequence number below this has its report.
    wm: u64,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    /// The stdin thread waits until the watermark reaches this.
    wake_at: Option<u64>,
    /// The stdin thread waits until the pending bytes drop to half the limit.
    wake_on_pending: bool,
    /// The main thread waits for the watermark to reach the published count.
    draining: bool,
    /// Nothing more is written: stdout closed, or the final accounting is done.
    closed: bool,
    /// A failure whose object could not be told (slots exhausted): withhold every later end.
    poisoned: bool,
    failed_lines: u64,
    withheld: u64,
    forwarded: u64,
    /// The hand-over stamp of the last latency observation (see [`Shared::sent`]).
    last_stamp: u32,
}

struct Shared {
    tool: &'static str,
    state: Mutex<State>,
    /// Wakes the stdin thread (room in the window) and the main thread (drained).
    cv: Condvar,
    window: u64,
    wm: AtomicU64,
    published: AtomicU64,
    /// Malformed input lines so far.
    bad: AtomicU64,
    stop: AtomicBool,
    events: mpsc::Sender<Event>,
    /// Delivery latency, without a clock reading per line: for each line in the window, the
    /// stamp (ticks of [`TICK`] since `epoch`) of the clock reading taken by the stdin thread
    /// before the line was handed to the publisher. The stdin thread reads the clock once per
    /// [`STAMP_LINES`] lines, and again after its input ran dry or it waited for room in the
    /// window, so a stamp is at most a few microseconds of in-memory work older than the
    /// hand-over of any line that carries it. One relaxed store per line; [`NOT_SENT`] for lines
    /// that failed.
    sent: Box<[AtomicU32]>,
    epoch: Instant,
    /// Keeps the SQS messages of waiting `end` records invisible.
    keeper: Keeper,
    /// --dry-run: nothing is published, nothing held.
    dry_run: bool,
}

/// The unit of the hand-over stamps: 100 µs (a u32 of them wraps after 4.9 days; the difference
/// of two stamps is taken modulo 2^32, right for any latency below that).
const TICK: Duration = Duration::from_micros(100);
/// The stdin thread reads the clock at least once per this many lines.
const STAMP_LINES: u32 = 64;
/// The stamp of a line that failed (no latency observation).
const NOT_SENT: u32 = u32::MAX;

impl Shared {
    /// Now, in stamp ticks since `epoch`.
    fn stamp_now(&self) -> u32 {
        (self.epoch.elapsed().as_micros() / TICK.as_micros()) as u32
    }
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; carry on with the data as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn complete(&self, ticket: Ticket, error: Option<&dyn fmt::Display>) {
        let mut st = self.lock();
        if self.mark(&mut st, ticket, error) {
            self.advance(&mut st);
        }
    }

    /// Record one line's outcome; true when the watermark can move (it was the oldest).
    #[inline]
    fn mark(&self, st: &mut State, ticket: Ticket, error: Option<&dyn fmt::Display>) -> bool {
        let seq = ticket.seq();
        if let Some(why) = error {
            // A failed line is no delivery: no latency observation for it.
            self.sent[(seq & st.mask) as usize].store(NOT_SENT, Ordering::Relaxed);
            st.failed_lines += 1;
            crate::metrics::events::delivery_failures(1);
            let slot = ticket.slot();
            if slot == NO_SLOT {
                st.poisoned = true;
            } else if let Some(s) = st.slots.get_mut(slot as usize) {
                s.failed += 1;
                if s.first_error.is_none() {
                    s.first_error = Some(why.to_string());
                }
            }
            tracing::debug!("line {seq} failed: {why}");
        }
        let i = (seq & st.mask) as usize;
        st.done[i] = true;
        seq == st.wm
    }

    /// Move the watermark over finished lines, forward what it releases, wake waiters.
    ///
    /// Delivery latency (`s3s_delivery_latency_seconds`): one observation per group of lines
    /// that share a hand-over stamp (at most [`STAMP_LINES`] lines handed over in one go), taken
    /// when the watermark passes the group's first line, i.e. once that line and every line
    /// before it are confirmed (what an `end` record waits for). It is the time from the clock
    /// reading just before that line was handed to the publisher (`publish()`) to now. Lines
    /// that failed are not observed. So the histogram's count is about lines/64 under load and
    /// one per line when lines trickle in; no per-line histogram record.
    fn advance(&self, st: &mut State) {
        let mut wm = st.wm;
        let mut now = None;
        loop {
            let i = (wm & st.mask) as usize;
            if !st.done[i] {
                break;
            }
            st.done[i] = false;
            let stamp = self.sent[i].load(Ordering::Relaxed);
            if stamp != st.last_stamp && stamp != NOT_SENT {
                st.last_stamp = stamp;
                let now = *now.get_or_insert_with(|| self.stamp_now());
                crate::metrics::events::delivery_latency(TICK * now.wrapping_sub(stamp));
            }
            wm += 1;
        }
        st.wm = wm;
        crate::metrics::events::records_published_total(wm.saturating_sub(st.failed_lines));
        self.wm.store(wm, Ordering::Release);
        let mut wrote = false;
        while st.pending.front().is_some_and(|p| p.after <= wm) {
            let p = st.pending.pop_front().expect("front exists");
            st.pending_bytes -= p.rec.len();
            // A waiting end record whose message was kept invisible meanwhile goes on with the
            // new deadline in its ack token (as s3s-cat passes its lease on).
            let renewed = p.held.as_ref().and_then(|h| h.release()).and_then(|d| Held::pass_on(&p.rec, d));
            self.forward(st, renewed.as_deref().unwrap_or(&p.rec), p.end, p.slot);
            wrote = true;
        }
        if wrote && st.pending.is_empty() {
            self.flush(st);
        }
        if st.wake_at.is_some_and(|w| wm >= w)
            || (st.wake_on_pending && st.pending_bytes <= MAX_PENDING_BYTES / 2)
            || (st.draining && wm >= self.published.load(Ordering::Acquire))
        {
            st.wake_at = None;
            st.wake_on_pending = false;
            self.cv.notify_all();
        }
    }

    /// Write one record whose earlier lines are all reported (or withhold a failed object's end).
    fn forward(&self, st: &mut State, rec: &[u8], end: bool, slot: Option<u32>) {
        let failed = slot.map(|s| {
            let info = std::mem::take(&mut st.slots[s as usize]);
            st.free_slots.push(s);
            info
        });
        if st.closed {
            return;
        }
        if let Some(Slot { failed: n @ 1.., first_error }) = failed {
            st.withheld += 1;
            eprintln!(
                "{}: {}: {n} line{} not delivered ({}); end record withheld",
                self.tool,
                location(rec),
                if n == 1 { "" } else { "s" },
                first_error.as_deref().unwrap_or("failed"),
            );
            return;
        }
        if end && st.poisoned {
            st.withheld += 1;
            eprintln!("{}: {}: end record withheld (a line of an unknown object failed)", self.tool, location(rec));
            return;
        }
        st.forwarded += 1;
        if let Err(e) = st.out.write_record_nl(rec) {
            self.broken(st, e);
        }
    }

    fn flush(&self, st: &mut State) {
        if !st.closed {
            if let Err(e) = st.out.flush() {
                self.broken(st, e);
            }
        }
    }

    /// Stdout failed: write nothing more, stop reading, tell the main thread.
    fn broken(&self, st: &mut State, e: std::io::Error) {
        st.closed = true;
        self.stop.store(true, Ordering::Release);
        self.cv.notify_all();
        let _ = self.events.send(Event::Stdout(e));
    }

    /// A non-line record read after `after` published lines.
    ///
    /// A record that has to wait and carries an ack token with a visibility deadline (an `end`
    /// record; also a `message` record, which s3s-ack deletes at once) is held: its SQS message
    /// is kept invisible (ChangeMessageVisibility, from the keeper's thread) once it has waited
    /// half the visibility it had left, until it is forwarded or withheld. Records without a
    /// token (local files, dry runs) need no AWS access.
    fn push(&self, rec: &[u8], after: u64, end: bool, slot: Option<u32>) {
        // Parsed outside the lock, and only when the record will most likely wait.
        let held =
            (!self.dry_run && after > self.wm.load(Ordering::Acquire)).then(|| Held::from_record(rec)).flatten().map(Arc::new);
        let mut st = self.lock();
        if st.pending.is_empty() && st.wm >= after {
            self.forward(&mut st, rec, end, slot);
            return;
        }
        if let Some(h) = &held {
            self.keeper.hold(h.clone());
        }
        st.pending_bytes += rec.len();
        st.pending.push_back(Pending { after, rec: rec.to_vec(), end, slot, held });
        while st.pending_bytes > MAX_PENDING_BYTES && !self.stop.load(Ordering::Acquire) {
            st.wake_on_pending = true;
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Wait until line `seq` fits in the window.
    #[inline]
    fn wait_for_room(&self, seq: u64) -> Room {
        if seq - self.wm.load(Ordering::Acquire) < self.window {
            return Room::Free;
        }
        self.wait_for_room_slow(seq)
    }

    #[cold]
    fn wait_for_room_slow(&self, seq: u64) -> Room {
        let mut st = self.lock();
        while seq - st.wm >= self.window {
            if self.stop.load(Ordering::Acquire) {
                return Room::Stop;
            }
            st.wake_at = Some(seq - self.window + (self.window / 4).max(1));
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        Room::Waited
    }

    fn alloc_slot(&self) -> u32 {
        let mut st = self.lock();
        if let Some(s) = st.free_slots.pop() {
            return s;
        }
        if st.slots.len() >= NO_SLOT as usize {
            return NO_SLOT;
        }
        st.slots.push(Slot::default());
        (st.slots.len() - 1) as u32
    }

    fn flush_stdout(&self) {
        let mut st = self.lock();
        self.flush(&mut st);
    }
}

/// What [`Shared::wait_for_room`] did.
#[derive(PartialEq, Eq)]
enum Room {
    Free,
    /// There is room after a wait (the hand-over clock is stale).
    Waited,
    /// Told to stop instead.
    Stop,
}

/// `s3://bucket/key` or the file of a record, for messages (slow path: parses the record).
fn location(rec: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(rec).unwrap_or_default();
    match (
        v.get("bucket").and_then(|b| b.as_str()),
        v.get("key").and_then(|k| k.as_str()),
        v.get("file").and_then(|f| f.as_str()),
    ) {
        (Some(b), Some(k), _) => format!("s3://{b}/{k}"),
        (_, _, Some(f)) => f.to_string(),
        _ => "(record without bucket/key or file)".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The stdin side

/// The fields the driver reads from a record.
#[derive(Default)]
struct Scanned {
    ty: Option<Raw>,
    line: Option<Raw>,
    bucket: Option<Raw>,
    key: Option<Raw>,
    file: Option<Raw>,
    n: Option<Raw>,
    dry_run: bool,
    field: Option<Raw>,
}

#[derive(PartialEq, Eq)]
enum Kind {
    Line,
    End,
    Other,
}

fn scan_record(rec: &[u8], field: Option<&[u8]>, text: &mut Vec<u8>) -> Result<Scanned, ScanError> {
    let mut s = Scanned::default();
    text.clear();
    scan::members_decoding(
        rec,
        |k| k == b"line",
        text,
        |k, v| {
            // By length first, then as a fixed-size array: one integer compare, no memcmp call.
            match *k {
                [b'n'] => s.n = Some(v),
                [b'k', b'e', b'y'] => s.key = Some(v),
                [a, b, c, d] => match &[a, b, c, d] {
                    b"type" => s.ty = Some(v),
                    b"line" => s.line = Some(v),
                    b"file" => s.file = Some(v),
                    _ => {}
                },
                [a, b, c, d, e, f] if &[a, b, c, d, e, f] == b"bucket" => s.bucket = Some(v),
                [a, b, c, d, e, f, g] if &[a, b, c, d, e, f, g] == b"dry_run" => {
                    s.dry_run = !v.is_string && &rec[v.start..v.end] == b"true"
                }
                _ => {}
            }
            if field.is_some_and(|f| f == k) {
                s.field = Some(v);
            }
            true
        },
    )?;
    match s.ty {
        Some(t) if t.is_string => Ok(s),
        _ => Err(ScanError::NoType),
    }
}

fn kind(rec: &[u8], ty: Raw, scratch: &mut Vec<u8>) -> Kind {
    match scan::type_name(rec, ty, scratch) {
        b"line" => Kind::Line,
        b"end" => Kind::End,
        _ => Kind::Other,
    }
}

/// Which slot each object's lines use (stdin thread only). An object is its decoded bucket+key
/// (or file); the previous line's raw bytes are cached so that consecutive lines of one object
/// cost three slice comparisons.
struct Objects {
    map: HashMap<Vec<u8>, u32>,
    /// Sequence number of the last line published with each slot.
    last_seq: Vec<u64>,
    cur: Option<u32>,
    cur_bucket: Vec<u8>,
    cur_key: Vec<u8>,
    cur_file: Vec<u8>,
    ident: Vec<u8>,
    cleanup_at: usize,
}

const CLEANUP_MIN: usize = 10_000;

/// Byte equality for short slices without a call to `memcmp` (which costs more than the
/// comparison itself here: three per line).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn raw_bytes<'a>(rec: &'a [u8], r: Option<Raw>) -> &'a [u8] {
    r.map_or(&[][..], |r| &rec[r.start..r.end])
}

impl Objects {
    fn new() -> Self {
        Objects {
            map: HashMap::new(),
            last_seq: Vec::new(),
            cur: None,
            cur_bucket: Vec::new(),
            cur_key: Vec::new(),
            cur_file: Vec::new(),
            ident: Vec::new(),
            cleanup_at: CLEANUP_MIN,
        }
    }

    /// The decoded identity of a record's object into `self.ident`.
    fn identify(&mut self, rec: &[u8], s: &Scanned) {
        let id = &mut self.ident;
        id.clear();
        let add = |r: Raw, id: &mut Vec<u8>| {
            if r.is_string {
                scan::unescape_into(r.content(rec), id);
            } else {
                id.extend_from_slice(&rec[r.start..r.end]);
            }
        };
        match (s.bucket, s.key, s.file) {
            (Some(b), Some(k), _) => {
                id.push(b's');
                add(b, id);
                id.push(0);
                add(k, id);
            }
            (_, _, Some(f)) => {
                id.push(b'f');
                add(f, id);
            }
            _ => id.push(b'-'),
        }
    }

    /// The slot for a line that is about to get sequence number `seq`.
    #[inline]
    fn slot_for_line(&mut self, sh: &Shared, rec: &[u8], s: &Scanned, seq: u64) -> u32 {
        let (b, k, f) = (raw_bytes(rec, s.bucket), raw_bytes(rec, s.key), raw_bytes(rec, s.file));
        let slot = match self.cur {
            Some(slot) if same(&self.cur_bucket, b) && same(&self.cur_key, k) && same(&self.cur_file, f) => slot,
            _ => self.switch(sh, rec, s, b, k, f),
        };
        if slot != NO_SLOT {
            self.last_seq[slot as usize] = seq;
        }
        slot
    }

    #[cold]
    fn switch(&mut self, sh: &Shared, rec: &[u8], s: &Scanned, b: &[u8], k: &[u8], f: &[u8]) -> u32 {
        self.identify(rec, s);
        let slot = match self.map.get(&self.ident) {
            Some(&slot) => slot,
            None => {
                if self.map.len() >= self.cleanup_at {
                    self.cleanup(sh);
                }
                let slot = sh.alloc_slot();
                if slot != NO_SLOT {
                    self.map.insert(self.ident.clone(), slot);
                    if self.last_seq.len() <= slot as usize {
                        self.last_seq.resize(slot as usize + 1, 0);
                    }
                }
                slot
            }
        };
        self.cur = Some(slot);
        for (dst, src) in [(&mut self.cur_bucket, b), (&mut self.cur_key, k), (&mut self.cur_file, f)] {
            dst.clear();
            dst.extend_from_slice(src);
        }
        slot
    }

    /// An end record: its object's slot (lines of the same object after it get a new one).
    fn take(&mut self, rec: &[u8], s: &Scanned) -> Option<u32> {
        self.identify(rec, s);
        let slot = self.map.remove(&self.ident)?;
        if self.cur == Some(slot) {
            self.cur = None;
        }
        Some(slot)
    }

    /// Forget objects that never got an end record (their source failed upstream), once all
    /// their lines are reported and none failed; keeps the map from growing without bound.
    fn cleanup(&mut self, sh: &Shared) {
        let mut st = sh.lock();
        let wm = st.wm;
        let before = self.map.len();
        let last_seq = &self.last_seq;
        let mut freed = Vec::new();
        self.map.retain(|_, &mut slot| {
            let keep = last_seq[slot as usize] >= wm || st.slots[slot as usize].failed > 0;
            if !keep {
                freed.push(slot);
            }
            keep
        });
        for slot in freed {
            st.slots[slot as usize] = Slot::default();
            st.free_slots.push(slot);
            if self.cur == Some(slot) {
                self.cur = None;
            }
        }
        drop(st);
        tracing::debug!("forgot {} objects without end records", before - self.map.len());
        self.cleanup_at = (self.map.len() * 2).max(CLEANUP_MIN);
    }
}

/// The stdin thread: read, scan, publish lines, queue the rest.
fn read_loop<P: Publisher>(sh: &Shared, mut publisher: P, field: Option<Vec<u8>>, all_dry: bool) -> anyhow::Result<()> {
    let tool = sh.tool;
    let mut input = Input::stdin();
    let mut text = Vec::with_capacity(4096);
    let mut ty_scratch = Vec::new();
    let mut dry: Vec<u8> = Vec::new();
    let mut objects = Objects::new();
    let mut published = 0u64;
    // The hand-over stamp (see `Shared::sent`) and how many more lines may use it.
    let mut stamp = 0u32;
    let mut stamp_left = 0u32;
    let bad = || {
        sh.bad.fetch_add(1, Ordering::Relaxed);
    };
    let field = field.as_deref();
    let write_dry = |dry: &mut Vec<u8>| {
        if !dry.is_empty() {
            let _ = std::io::stderr().lock().write_all(dry);
            dry.clear();
        }
    };
    loop {
        if input.is_dry() {
            sh.flush_stdout();
            write_dry(&mut dry);
            // The next line comes after a wait: read the clock again.
            stamp_left = 0;
        }
        if sh.stop.load(Ordering::Acquire) {
            break;
        }
        let Some((number, rec)) = input.next_line().context("reading stdin")? else { break };
        if sh.stop.load(Ordering::Acquire) {
            break;
        }
        if rec.is_empty() {
            continue;
        }
        let s = match scan_record(rec, field, &mut text) {
            Ok(s) => s,
            Err(e) => {
                write_dry(&mut dry);
                report_bad_line(tool, number, &e.to_string(), rec);
                bad();
                continue;
            }
        };
        match kind(rec, s.ty.expect("scan_record checks type"), &mut ty_scratch) {
            Kind::Line => {
                if !s.line.is_some_and(|l| l.is_string) {
                    write_dry(&mut dry);
                    report_bad_line(tool, number, "line record without a string \"line\"", rec);
                    bad();
                    continue;
                }
                let value = |r: Option<Raw>| r.map(|raw| Value { rec, raw });
                let line = Line {
                    record: rec,
                    text: &text,
                    input_line: number,
                    bucket: value(s.bucket),
                    key: value(s.key),
                    file: value(s.file),
                    n: value(s.n),
                    field: value(s.field),
                };
                if all_dry || s.dry_run {
                    publisher.describe(&line, &mut dry);
                    dry.push(b'\n');
                    if dry.len() >= DRY_BUF {
                        write_dry(&mut dry);
                    }
                    continue;
                }
                let slot = objects.slot_for_line(sh, rec, &s, published);
                match sh.wait_for_room(published) {
                    Room::Free => {}
                    Room::Waited => stamp_left = 0,
                    Room::Stop => break,
                }
                if stamp_left == 0 {
                    stamp = sh.stamp_now();
                    stamp_left = STAMP_LINES;
                }
                stamp_left -= 1;
                sh.sent[(published & (sh.sent.len() as u64 - 1)) as usize].store(stamp, Ordering::Relaxed);
                let ticket = Ticket::new(published, slot);
                published += 1;
                sh.published.store(published, Ordering::Release);
                match publisher.publish(&line, ticket) {
                    Ok(()) => {}
                    Err(PublishError::Rejected(why)) => sh.complete(ticket, Some(&why)),
                    Err(PublishError::Fatal(why)) => {
                        sh.complete(ticket, Some(&why));
                        write_dry(&mut dry);
                        anyhow::bail!("{why}");
                    }
                }
            }
            Kind::End => {
                let slot = objects.take(rec, &s);
                sh.push(rec, published, true, slot);
            }
            Kind::Other => sh.push(rec, published, false, None),
        }
    }
    write_dry(&mut dry);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The main thread

/// Listen for SIGTERM and SIGINT on a small thread; each one becomes an [`Event::Signal`].
/// Returns once the handlers are installed.
fn listen_for_signals(events: mpsc::Sender<Event>) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            use tokio::signal::unix::{SignalKind, signal};
            let rt = match tokio::runtime::Builder::new_current_thread().enable_io().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::Error::new(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                    (Ok(t), Ok(i)) => (t, i),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = ready_tx.send(Err(anyhow::Error::new(e)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                loop {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    if events.send(Event::Signal(name)).is_err() {
                        return;
                    }
                }
            });
        })
        .context("starting the signal thread")?;
    ready_rx.recv().context("signal thread")?.context("installing signal handlers")
}

/// Run a publishing stage: `start` builds the publisher (given the [`Reporter`] its delivery
/// reports go to) and its [`Control`]; the driver does the rest (see the module docs).
pub fn run<P, F>(driver: Driver<'_>, start: F) -> anyhow::Result<Status>
where
    P: Publisher,
    F: FnOnce(Reporter) -> anyhow::Result<(P, Arc<dyn Control>)>,
{
    let Driver { tool, args, field } = driver;
    let window = args.max_in_flight.clamp(1, MAX_WINDOW);
    let ring = window.next_power_of_two();
    let (events, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        tool,
        state: Mutex::new(State {
            out: Output::stdout(),
            done: vec![false; ring as usize].into_boxed_slice(),
            mask: ring - 1,
            wm: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            wake_at: None,
            wake_on_pending: false,
            draining: false,
            closed: false,
            poisoned: false,
            failed_lines: 0,
            withheld: 0,
            forwarded: 0,
            last_stamp: NOT_SENT,
        }),
        cv: Condvar::new(),
        window,
        wm: AtomicU64::new(0),
        published: AtomicU64::new(0),
        bad: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        events: events.clone(),
        sent: (0..ring).map(|_| AtomicU32::new(NOT_SENT)).collect(),
        epoch: Instant::now(),
        keeper: Keeper::new(),
        dry_run: args.dry_run,
    });
    let (publisher, control) = start(Reporter(shared.clone()))?;
    listen_for_signals(events.clone())?;

    let reader = {
        let sh = shared.clone();
        let field = field.map(String::into_bytes);
        let all_dry = args.dry_run;
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let result = read_loop(&sh, publisher, field, all_dry);
                let _ = sh.events.send(Event::InputDone(result));
            })
            .context("starting the stdin thread")?
    };
    drop(events);

    // Wait for the end of input, a signal or a closed stdout; flush stdout now and then so that
    // forwarded records never sit in the buffer while deliveries trickle in.
    let mut signals = 0;
    let input_result = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::InputDone(r)) => break Some(r),
            Ok(Event::Signal(name)) => {
                tracing::info!("{name}: stop reading, drain what is in flight");
                signals += 1;
                break None;
            }
            Ok(Event::Stdout(e)) => return stdout_failed(&shared, &*control, e),
            Err(mpsc::RecvTimeoutError::Timeout) if reader.is_finished() => match rx.try_recv() {
                Ok(Event::InputDone(r)) => break Some(r),
                // The stdin thread ended without saying why (a panic).
                _ => break Some(Err(anyhow::anyhow!("the stdin thread died"))),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => shared.flush_stdout(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    shared.stop.store(true, Ordering::Release);
    {
        let _st = shared.lock();
        shared.cv.notify_all();
    }
    if input_result.is_some() {
        let _ = reader.join();
    }

    // Drain: wait for every published line's report, at most --drain-timeout.
    let deadline = Instant::now() + args.drain_timeout;
    let mut publisher_idle = false;
    loop {
        {
            let mut st = shared.lock();
            if st.wm >= shared.published.load(Ordering::Acquire) {
                break;
            }
            if publisher_idle {
                // The publisher holds nothing, but its last reports are still being handed over.
                st.draining = true;
                let _ = shared.cv.wait_timeout(st, Duration::from_millis(20));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.try_recv() {
            Ok(Event::Signal(name)) => {
                signals += 1;
                if signals >= 2 || input_result.is_some() {
                    tracing::warn!("{name}: drain cut short");
                    break;
                }
            }
            Ok(Event::Stdout(e)) => return stdout_failed(&shared, &*control, e),
            _ => {}
        }
        publisher_idle = control.flush((deadline - now).min(Duration::from_millis(100)));
    }

    // Final accounting: whatever still waits is withheld; nothing is written after this.
    let mut st = shared.lock();
    let unconfirmed = shared.published.load(Ordering::Acquire).saturating_sub(st.wm);
    let waiting = st.pending.len();
    for p in &st.pending {
        if let Some(h) = &p.held {
            h.release();
        }
    }
    st.pending.clear();
    shared.keeper.stop();
    shared.flush(&mut st);
    st.closed = true;
    let (failed_lines, withheld, forwarded) = (st.failed_lines, st.withheld, st.forwarded);
    drop(st);
    if let Ok(Event::Stdout(e)) = rx.try_recv() {
        return stdout_failed(&shared, &*control, e);
    }
    if unconfirmed > 0 {
        control.abort();
        eprintln!(
            "{tool}: {unconfirmed} line{} unconfirmed after the {:?} drain timeout; {waiting} record{} behind them withheld",
            if unconfirmed == 1 { "" } else { "s" },
            args.drain_timeout,
            if waiting == 1 { "" } else { "s" },
        );
    }
    if failed_lines > 0 {
        eprintln!(
            "{tool}: {failed_lines} line{} failed delivery; {withheld} end record{} withheld",
            if failed_lines == 1 { "" } else { "s" },
            if withheld == 1 { "" } else { "s" },
        );
    }
    tracing::info!(
        "{} lines published, {forwarded} records forwarded, {failed_lines} failed, {withheld} withheld",
        shared.published.load(Ordering::Relaxed)
    );
    match input_result {
        Some(Err(e)) if crate::cli::is_broken_pipe(&e) => return Ok(Status::Ok),
        Some(Err(e)) => return Err(e),
        _ => {}
    }
    let bad = shared.bad.load(Ordering::Relaxed);
    let clean = bad == 0 && failed_lines == 0 && withheld == 0 && unconfirmed == 0 && waiting == 0;
    Ok(if clean { Status::Ok } else { Status::Failed })
}

/// Writing stdout failed: publish nothing more and abandon what is in flight. A closed pipe
/// ends quietly with status 0 (rule 5 of `man/s3s.7`); any other error is an error.
fn stdout_failed(shared: &Shared, control: &dyn Control, e: std::io::Error) -> anyhow::Result<Status> {
    shared.stop.store(true, Ordering::Release);
    {
        let mut st = shared.lock();
        st.closed = true;
        shared.cv.notify_all();
    }
    shared.keeper.stop();
    control.abort();
    if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(Status::Ok) } else { Err(anyhow::Error::new(e).context("writing stdout")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 days").is_err());
    }

    #[test]
    fn tickets_round_trip() {
        let t = Ticket::new(123_456_789_012, 77);
        assert_eq!(Ticket::from_raw(t.to_raw()), t);
        assert_eq!((t.seq(), t.slot()), (123_456_789_012, 77));
        assert_eq!(Ticket::new(5, NO_SLOT).slot(), NO_SLOT);
    }

    #[test]
    fn scans_what_publishers_need() {
        let rec = br#"{"type":"line","bucket":"b","key":"a\/k","dry_run":true,"n":7,"line":"x\ty","id":"q\"1"}"#;
        let mut text = Vec::new();
        let s = scan_record(rec, Some(b"id"), &mut text).unwrap();
        assert_eq!(text, b"x\ty");
        assert!(s.dry_run);
        let mut scratch = Vec::new();
        let key = Value { rec, raw: s.key.unwrap() };
        assert_eq!(key.bytes(&mut scratch), b"a/k");
        let id = Value { rec, raw: s.field.unwrap() };
        assert_eq!(id.bytes(&mut scratch), b"q\"1");
        assert_eq!(Value { rec, raw: s.n.unwrap() }.bytes(&mut scratch), b"7");
        assert!(!scan_record(br#"{"type":"line","dry_run":"true"}"#, None, &mut text).unwrap().dry_run);
    }
}
