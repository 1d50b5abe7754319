//! From delivery reports to forwarded records: the ring of "done" flags, the watermark below
//! which every line has its report, the records waiting for it, and the failure bookkeeping per
//! object (see the module docs of [`crate::sink`]).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{HeldRecord, Hold, NO_SLOT, Ticket};
use crate::io::Output;

/// Bytes of non-line records that may wait for their lines before reading stdin pauses.
pub(super) const MAX_PENDING_BYTES: usize = 64 << 20;

pub(super) enum Event {
    /// The stdin thread stopped: end of input, a read error or a fatal publisher error.
    InputDone(anyhow::Result<()>),
    /// Writing stdout failed (a closed pipe, usually).
    Stdout(std::io::Error),
}

/// A record waiting for the lines before it.
pub(super) struct Pending {
    /// Forwardable once the watermark reaches this (the number of lines published before it).
    pub(super) after: u64,
    pub(super) rec: Vec<u8>,
    /// An `end` record, and the slot of its object when lines of it were seen.
    pub(super) end: bool,
    pub(super) slot: Option<u32>,
    /// What the record holds upstream (its SQS message), kept alive while it waits.
    pub(super) held: Option<Box<dyn HeldRecord>>,
}

#[derive(Default)]
pub(super) struct Slot {
    pub(super) failed: u64,
    pub(super) first_error: Option<String>,
}

pub(super) struct State {
    pub(super) out: Output,
    pub(super) done: Box<[bool]>,
    pub(super) mask: u64,
    /// Every line with a sequence number below this has its report.
    pub(super) wm: u64,
    pub(super) pending: VecDeque<Pending>,
    pub(super) pending_bytes: usize,
    pub(super) slots: Vec<Slot>,
    pub(super) free_slots: Vec<u32>,
    /// The stdin thread waits until the watermark reaches this.
    pub(super) wake_at: Option<u64>,
    /// The stdin thread waits until the pending bytes drop to half the limit.
    pub(super) wake_on_pending: bool,
    /// The main thread waits for the watermark to reach the published count.
    pub(super) draining: bool,
    /// Nothing more is written: stdout closed, or the final accounting is done.
    pub(super) closed: bool,
    /// A failure whose object could not be told (slots exhausted): withhold every later end.
    pub(super) poisoned: bool,
    pub(super) failed_lines: u64,
    pub(super) withheld: u64,
    pub(super) forwarded: u64,
    /// The hand-over stamp of the last latency observation (see [`Shared::sent`]).
    pub(super) last_stamp: u32,
}

/// The driver's state, shared by the stdin thread, the main thread and the reporters.
pub(super) struct Watermark {
    pub(super) tool: &'static str,
    pub(super) state: Mutex<State>,
    /// Wakes the stdin thread (room in the window) and the main thread (drained).
    pub(super) cv: Condvar,
    pub(super) window: u64,
    pub(super) wm: AtomicU64,
    pub(super) published: AtomicU64,
    /// Malformed input lines so far.
    pub(super) bad: AtomicU64,
    pub(super) stop: AtomicBool,
    pub(super) events: mpsc::Sender<Event>,
    /// Delivery latency, without a clock reading per line: for each line in the window, the
    /// stamp (ticks of [`TICK`] since `epoch`) of the clock reading taken by the stdin thread
    /// before the line was handed to the publisher. The stdin thread reads the clock once per
    /// [`STAMP_LINES`] lines, and again after its input ran dry or it waited for room in the
    /// window, so a stamp is at most a few microseconds of in-memory work older than the
    /// hand-over of any line that carries it. One relaxed store per line; [`NOT_SENT`] for lines
    /// that failed.
    pub(super) sent: Box<[AtomicU32]>,
    pub(super) epoch: Instant,
    /// Keeps what waiting records hold upstream alive (`None`: nothing to keep, or a dry run).
    pub(super) hold: Option<Arc<dyn Hold>>,
}

/// The unit of the hand-over stamps: 100 µs (a u32 of them wraps after 4.9 days; the difference
/// of two stamps is taken modulo 2^32, right for any latency below that).
pub(super) const TICK: Duration = Duration::from_micros(100);
/// The stdin thread reads the clock at least once per this many lines.
pub(super) const STAMP_LINES: u32 = 64;
/// The stamp of a line that failed (no latency observation).
pub(super) const NOT_SENT: u32 = u32::MAX;

impl Watermark {
    /// Now, in stamp ticks since `epoch`.
    pub(super) fn stamp_now(&self) -> u32 {
        (self.epoch.elapsed().as_micros() / TICK.as_micros()) as u32
    }
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; carry on with the data as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn complete(&self, ticket: Ticket, error: Option<&dyn fmt::Display>) {
        let mut st = self.lock();
        if self.mark(&mut st, ticket, error) {
            self.advance(&mut st);
        }
    }

    /// Record one line's outcome; true when the watermark can move (it was the oldest).
    #[inline]
    pub(super) fn mark(&self, st: &mut State, ticket: Ticket, error: Option<&dyn fmt::Display>) -> bool {
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
    pub(super) fn advance(&self, st: &mut State) {
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
            let renewed = p.held.as_ref().and_then(|h| h.release(&p.rec));
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
    pub(super) fn forward(&self, st: &mut State, rec: &[u8], end: bool, slot: Option<u32>) {
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

    pub(super) fn flush(&self, st: &mut State) {
        if !st.closed
            && let Err(e) = st.out.flush()
        {
            self.broken(st, e);
        }
    }

    /// Stdout failed: write nothing more, stop reading, tell the main thread.
    pub(super) fn broken(&self, st: &mut State, e: std::io::Error) {
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
    pub(super) fn push(&self, rec: &[u8], after: u64, end: bool, slot: Option<u32>) {
        // Held outside the lock, and only when the record will most likely wait.
        let held = match &self.hold {
            Some(h) if after > self.wm.load(Ordering::Acquire) => h.hold(rec),
            _ => None,
        };
        let mut st = self.lock();
        if st.pending.is_empty() && st.wm >= after {
            if let Some(h) = held {
                h.release(rec);
            }
            self.forward(&mut st, rec, end, slot);
            return;
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
    pub(super) fn wait_for_room(&self, seq: u64) -> Room {
        if seq - self.wm.load(Ordering::Acquire) < self.window {
            return Room::Free;
        }
        self.wait_for_room_slow(seq)
    }

    #[cold]
    pub(super) fn wait_for_room_slow(&self, seq: u64) -> Room {
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

    /// Withhold the `end` of the object in `slot`: a malformed input line was charged to it.
    pub(super) fn fail_slot(&self, slot: u32, why: &str) {
        let mut st = self.lock();
        if let Some(s) = st.slots.get_mut(slot as usize) {
            s.failed += 1;
            if s.first_error.is_none() {
                s.first_error = Some(why.to_string());
            }
        }
    }

    pub(super) fn alloc_slot(&self) -> u32 {
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

    pub(super) fn flush_stdout(&self) {
        let mut st = self.lock();
        self.flush(&mut st);
    }
}

/// What [`Shared::wait_for_room`] did.
#[derive(PartialEq, Eq)]
pub(super) enum Room {
    Free,
    /// There is room after a wait (the hand-over clock is stale).
    Waited,
    /// Told to stop instead.
    Stop,
}

/// `s3://bucket/key` or the file of a record, for messages (slow path: parses the record).
pub fn location(rec: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(rec).unwrap_or_default();
    let shown = |s: &str| crate::io::printable(s.as_bytes()).into_owned();
    match (
        v.get("bucket").and_then(|b| b.as_str()),
        v.get("key").and_then(|k| k.as_str()),
        v.get("file").and_then(|f| f.as_str()),
    ) {
        (Some(b), Some(k), _) => format!("s3://{}/{}", shown(b), shown(k)),
        (_, _, Some(f)) => shown(f),
        _ => "(record without bucket/key or file)".to_string(),
    }
}
