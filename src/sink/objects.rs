//! Which object each published line belongs to (the stdin thread's bookkeeping): a slot per
//! object, so that a failed line withholds its own object's `end` and no other.
//!
//! A malformed input line names no object, so it is charged by position (s3s(7), "Malformed
//! records"): to the object of the last line record before it, if that object's `end` has not
//! come yet; otherwise to the next object a record names (its next line or its `end`). That
//! object's `end` is withheld: its message is not deleted, and comes back.

use std::collections::HashMap;

use super::NO_SLOT;
use super::record::Scanned;
use super::watermark::{Slot, Watermark};
use crate::scan::{self, Raw};

/// Which slot each object's lines use (stdin thread only). An object is its decoded bucket+key
/// (or file); the previous line's raw bytes are cached so that consecutive lines of one object
/// cost three slice comparisons.
pub(super) struct Objects {
    map: HashMap<Vec<u8>, u32>,
    /// Sequence number of the last line published with each slot.
    last_seq: Vec<u64>,
    cur: Option<u32>,
    cur_bucket: Vec<u8>,
    cur_key: Vec<u8>,
    cur_file: Vec<u8>,
    ident: Vec<u8>,
    cleanup_at: usize,
    /// A malformed line seen while no object was open: charged to the next one.
    pending_bad: Option<String>,
}

const CLEANUP_MIN: usize = 10_000;

/// Byte equality for short slices without a call to `memcmp` (which costs more than the
/// comparison itself here: three per line).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn raw_bytes(rec: &[u8], r: Option<Raw>) -> &[u8] {
    r.map_or(&[][..], |r| &rec[r.start..r.end])
}

impl Objects {
    pub(super) fn new() -> Self {
        Objects {
            map: HashMap::new(),
            last_seq: Vec::new(),
            cur: None,
            cur_bucket: Vec::new(),
            cur_key: Vec::new(),
            cur_file: Vec::new(),
            ident: Vec::new(),
            cleanup_at: CLEANUP_MIN,
            pending_bad: None,
        }
    }

    /// The decoded identity of a record's object into `self.ident`.
    pub(super) fn identify(&mut self, rec: &[u8], s: &Scanned) {
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
    pub(super) fn slot_for_line(&mut self, sh: &Watermark, rec: &[u8], s: &Scanned, seq: u64) -> u32 {
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
    pub(super) fn switch(&mut self, sh: &Watermark, rec: &[u8], s: &Scanned, b: &[u8], k: &[u8], f: &[u8]) -> u32 {
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
        if let Some(why) = self.pending_bad.take()
            && slot != NO_SLOT
        {
            sh.fail_slot(slot, &why);
        }
        for (dst, src) in [(&mut self.cur_bucket, b), (&mut self.cur_key, k), (&mut self.cur_file, f)] {
            dst.clear();
            dst.extend_from_slice(src);
        }
        slot
    }

    /// An end record: its object's slot (lines of the same object after it get a new one).
    pub(super) fn take(&mut self, sh: &Watermark, rec: &[u8], s: &Scanned) -> Option<u32> {
        self.identify(rec, s);
        let Some(slot) = self.map.remove(&self.ident) else {
            // No line of it was seen: a malformed line just before is still its own.
            let why = self.pending_bad.take()?;
            let slot = sh.alloc_slot();
            if slot == NO_SLOT {
                return None;
            }
            sh.fail_slot(slot, &why);
            return Some(slot);
        };
        if self.cur == Some(slot) {
            self.cur = None;
        }
        if let Some(why) = self.pending_bad.take() {
            sh.fail_slot(slot, &why);
        }
        Some(slot)
    }

    /// A malformed input line: charged to the open object, or else to the next one.
    pub(super) fn malformed(&mut self, sh: &Watermark, why: String) {
        match self.cur {
            Some(slot) if slot != NO_SLOT => sh.fail_slot(slot, &why),
            _ => {
                if self.pending_bad.is_none() {
                    self.pending_bad = Some(why);
                }
            }
        }
    }

    /// Forget objects that never got an end record (their source failed upstream), once all
    /// their lines are reported and none failed; keeps the map from growing without bound.
    pub(super) fn cleanup(&mut self, sh: &Watermark) {
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
