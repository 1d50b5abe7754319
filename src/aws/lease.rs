//! Keeping an SQS message invisible while a stage still works on it.
//!
//! `s3s-poll` puts the message's visibility timeout and the time it runs out into the ack token
//! (`visibility_timeout`, `deadline_ms`). A stage that holds the token for long (s3s-cat while
//! it streams the object, s3s-ack while a message waits for the `end` of its other objects)
//! holds a [`Lease`]: a task that calls ChangeMessageVisibility before the deadline, again and
//! again, and the new deadline goes on in the records the stage writes. So an object that takes
//! longer than the visibility timeout is not redelivered to another consumer while it is still
//! being worked on. A stage that holds records rather than streams (the publisher driver, whose
//! `end` records wait for the delivery of the lines before them) uses a [`Keeper`]: one thread
//! that extends every held record's message, and [`Held::pass_on`] for the deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::describe_sdk_error;
use crate::clock::now_ms;
use crate::envelope::Ack;

/// What a lease needs from an ack token.
#[derive(Debug, Clone)]
pub struct Token {
    pub queue_url: String,
    pub receipt_handle: String,
    pub message_id: String,
    /// Seconds.
    pub timeout: i32,
    /// Milliseconds since the epoch.
    pub deadline_ms: u64,
}

impl Token {
    /// From an ack token; `None` when it has no visibility information (e.g. dry run).
    pub fn from_ack(ack: &Ack) -> Option<Token> {
        Some(Token {
            queue_url: ack.queue_url.clone(),
            receipt_handle: ack.receipt_handle.clone(),
            message_id: ack.message_id().to_string(),
            timeout: i32::try_from(ack.visibility_timeout?).ok().filter(|t| *t > 0)?,
            deadline_ms: ack.deadline_ms?,
        })
    }

    /// When to extend a message whose visibility runs out at `deadline_ms`: once half the
    /// timeout is left.
    fn wake_at(&self, deadline_ms: u64) -> u64 {
        deadline_ms.saturating_sub(self.timeout as u64 * 500)
    }
}

/// A message kept invisible until the lease is released (or dropped).
pub struct Lease {
    task: tokio::task::JoinHandle<()>,
    deadline: Arc<AtomicU64>,
}

impl Lease {
    /// Start extending `token`'s message on `rt` (a runtime whose workers run in the background).
    pub fn hold(rt: &tokio::runtime::Handle, sqs: aws_sdk_sqs::Client, token: Token) -> Lease {
        let deadline = Arc::new(AtomicU64::new(token.deadline_ms));
        let d = deadline.clone();
        let task = rt.spawn(async move {
            loop {
                let wake_at = token.wake_at(d.load(Ordering::Relaxed));
                let now = now_ms();
                if now < wake_at {
                    tokio::time::sleep(Duration::from_millis(wake_at - now)).await;
                    continue;
                }
                match extend(&sqs, &token).await {
                    Ok(deadline) => d.store(deadline, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(
                            "message {}: could not extend its visibility ({e}); it may be redelivered (a duplicate, not a loss)",
                            token.message_id,
                        );
                        return;
                    }
                }
            }
        });
        Lease { task, deadline }
    }

    /// Stop extending; the latest deadline (ms since the epoch), for the records passed on.
    pub fn release(self) -> u64 {
        self.deadline.load(Ordering::Relaxed)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One ChangeMessageVisibility call: the message stays invisible for another `token.timeout`
/// seconds from now. Returns the new deadline (ms since the epoch, taken before the request, so
/// it is never later than SQS's own).
pub async fn extend(sqs: &aws_sdk_sqs::Client, token: &Token) -> Result<u64, String> {
    let now = now_ms();
    let req = sqs
        .change_message_visibility()
        .queue_url(&token.queue_url)
        .receipt_handle(&token.receipt_handle)
        .visibility_timeout(token.timeout)
        .send();
    match req.await {
        Ok(_) => {
            tracing::debug!("message {}: visibility extended by {}s", token.message_id, token.timeout);
            Ok(now + token.timeout as u64 * 1000)
        }
        Err(e) => Err(describe_sdk_error(&e)),
    }
}

/// Set `ack.deadline_ms` in a record's fields to `deadline`.
pub fn pass_on(extra: &mut serde_json::Map<String, Value>, deadline: u64) {
    if let Some(Value::Object(ack)) = extra.get_mut("ack") {
        ack.insert("deadline_ms".into(), deadline.into());
    }
}

// ---------------------------------------------------------------------------------------------
// Records held, not streams: the publisher driver's `end` records.

/// A record that holds an ack token while it waits (a publisher's `end` record waiting for the
/// delivery of the lines before it), kept invisible by a [`Keeper`].
#[derive(Debug)]
pub struct Held {
    token: Token,
    /// Not extended before this (ms since the epoch): half the visibility the record had left
    /// when it started waiting, so that records which wait briefly (the usual case) cost no
    /// request at all.
    first_wake_ms: u64,
    deadline: AtomicU64,
    /// Forwarded or withheld: no more extensions.
    released: AtomicBool,
}

impl Held {
    /// From a record's text: `None` unless it has an ack token with visibility information
    /// (`visibility_timeout`, `deadline_ms`) and is not a dry run. Parses the record, so call it
    /// for records that are about to wait only.
    pub fn from_record(rec: &[u8]) -> Option<Held> {
        memchr::memmem::find(rec, b"\"deadline_ms\"")?;
        let v: serde_json::Map<String, Value> = serde_json::from_slice(rec).ok()?;
        if v.get("dry_run").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        let token = Token::from_ack(&Ack::of_record(&v).ok()??)?;
        let now = now_ms();
        let first_wake_ms = now + token.deadline_ms.saturating_sub(now) / 2;
        Some(Held { deadline: AtomicU64::new(token.deadline_ms), token, first_wake_ms, released: AtomicBool::new(false) })
    }

    /// When to extend next: half the timeout before the deadline, not before `first_wake_ms`.
    fn wake_at(&self) -> u64 {
        self.token.wake_at(self.deadline.load(Ordering::Relaxed)).max(self.first_wake_ms)
    }

    /// Stop extending (the record was forwarded or withheld). Returns the latest deadline when
    /// it was extended, for [`Held::pass_on`].
    pub fn release_deadline(&self) -> Option<u64> {
        self.released.store(true, Ordering::Release);
        let d = self.deadline.load(Ordering::Relaxed);
        (d != self.token.deadline_ms).then_some(d)
    }

    /// The record with `ack.deadline_ms` set to `deadline` (as s3s-cat passes its lease on).
    pub fn pass_on(rec: &[u8], deadline: u64) -> Option<Vec<u8>> {
        let mut m: serde_json::Map<String, Value> = serde_json::from_slice(rec).ok()?;
        pass_on(&mut m, deadline);
        serde_json::to_vec(&m).ok()
    }
}

/// Keeps many [`Held`] records' messages invisible from one background thread (with its own
/// small tokio runtime and SQS client). Nothing is started (no thread, no runtime, no AWS
/// configuration) until the first record is held: a stage that never holds a token (local
/// files, dry runs) needs no AWS access.
#[derive(Default)]
pub struct Keeper {
    inner: std::sync::OnceLock<Arc<KeeperInner>>,
}

struct KeeperInner {
    state: Mutex<KeeperState>,
    cv: Condvar,
}

#[derive(Default)]
struct KeeperState {
    held: Vec<Arc<Held>>,
    stop: bool,
}

/// How long one ChangeMessageVisibility may take before the keeper gives up on it.
const EXTEND_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many ChangeMessageVisibility requests at once.
const EXTEND_CONCURRENCY: usize = 16;

impl Keeper {
    pub fn new() -> Keeper {
        Keeper::default()
    }

    /// Keep `held`'s message invisible until [`Held::release`].
    pub fn hold(&self, held: Arc<Held>) {
        let inner = self.inner.get_or_init(|| {
            let inner = Arc::new(KeeperInner { state: Mutex::default(), cv: Condvar::new() });
            let me = inner.clone();
            if let Err(e) = std::thread::Builder::new().name("visibility".into()).spawn(move || me.run()) {
                tracing::warn!("cannot start the visibility thread ({e}); waiting messages may be redelivered");
            }
            inner
        });
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.held.push(held);
        inner.cv.notify_all();
    }

    /// Stop the thread (at exit): records still held are let go.
    pub fn stop(&self) {
        if let Some(inner) = self.inner.get() {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            st.stop = true;
            st.held.clear();
            inner.cv.notify_all();
        }
    }
}

impl KeeperInner {
    fn run(&self) {
        let mut sqs: Option<(tokio::runtime::Runtime, aws_sdk_sqs::Client)> = None;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if st.stop {
                return;
            }
            st.held.retain(|h| !h.released.load(Ordering::Acquire));
            let now = now_ms();
            let next = st.held.iter().map(|h| h.wake_at()).min();
            match next {
                None => {
                    st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                Some(at) if at > now => {
                    st = self.cv.wait_timeout(st, Duration::from_millis(at - now)).unwrap_or_else(|e| e.into_inner()).0;
                    continue;
                }
                Some(_) => {}
            }
            // Due now: one request per message (several end records may share one).
            let mut due: Vec<Vec<Arc<Held>>> = Vec::new();
            for h in st.held.iter().filter(|h| h.wake_at() <= now) {
                match due
                    .iter_mut()
                    .find(|g| g[0].token.receipt_handle == h.token.receipt_handle && g[0].token.queue_url == h.token.queue_url)
                {
                    Some(g) => g.push(h.clone()),
                    None => due.push(vec![h.clone()]),
                }
            }
            drop(st);
            if sqs.is_none() {
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => {
                        let cfg = rt.block_on(super::sdk_config());
                        let client = super::sqs_client(&cfg);
                        sqs = Some((rt, client));
                    }
                    Err(e) => {
                        tracing::warn!(
                            "cannot start a runtime for visibility extensions ({e}); waiting messages may be redelivered"
                        );
                        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                        st.held.clear();
                        st.stop = true;
                        return;
                    }
                }
            }
            let (rt, client) = sqs.as_ref().expect("made above");
            // Up to EXTEND_CONCURRENCY requests at once: many messages may wait together (small
            // objects during a broker outage), and one after the other they could fall behind.
            let results = rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                let mut results = Vec::with_capacity(due.len());
                for (i, group) in due.iter().enumerate() {
                    if set.len() >= EXTEND_CONCURRENCY
                        && let Some(Ok(r)) = set.join_next().await
                    {
                        results.push(r);
                    }
                    let (client, token) = (client.clone(), group[0].token.clone());
                    set.spawn(async move { (i, tokio::time::timeout(EXTEND_TIMEOUT, extend(&client, &token)).await) });
                }
                while let Some(r) = set.join_next().await {
                    if let Ok(r) = r {
                        results.push(r);
                    }
                }
                results
            });
            let mut gave_up = Vec::new();
            for (i, r) in results {
                let group = &due[i];
                let token = &group[0].token;
                let failed = match r {
                    Ok(Ok(deadline)) => {
                        for h in group {
                            h.deadline.store(deadline, Ordering::Relaxed);
                        }
                        continue;
                    }
                    Ok(Err(e)) => e,
                    Err(_) => format!("no answer within {EXTEND_TIMEOUT:?}"),
                };
                if group.iter().all(|h| h.released.load(Ordering::Acquire)) {
                    // Forwarded meanwhile (and maybe deleted downstream): nothing to worry about.
                    tracing::debug!("message {}: extension after release failed: {failed}", token.message_id);
                } else {
                    tracing::warn!(
                        "message {}: could not extend its visibility ({failed}); it may be redelivered (a duplicate, not a loss)",
                        token.message_id
                    );
                    gave_up.extend(group.iter().cloned());
                }
            }
            st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.held.retain(|h| !gave_up.iter().any(|g| Arc::ptr_eq(g, h)));
        }
    }
}

/// The publisher driver holds waiting records through [`crate::sink::Hold`]: this is the SQS
/// side of it, plugged in by the publishing tools.
impl crate::sink::Hold for Keeper {
    fn hold(&self, rec: &[u8]) -> Option<Box<dyn crate::sink::HeldRecord>> {
        let held = Arc::new(Held::from_record(rec)?);
        Keeper::hold(self, held.clone());
        Some(Box::new(held))
    }

    fn stop(&self) {
        Keeper::stop(self)
    }
}

impl crate::sink::HeldRecord for Arc<Held> {
    fn release(&self, rec: &[u8]) -> Option<Vec<u8>> {
        self.release_deadline().and_then(|d| Held::pass_on(rec, d))
    }
}
