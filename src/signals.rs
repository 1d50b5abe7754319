//! SIGTERM, SIGINT and SIGHUP, one way for every stage: `signal-hook`'s iterator on a small thread
//! counts them, and each stage asks in the way that suits its loop: [`Signals::count`] from a
//! loop that wakes now and then (the publisher driver), [`Signals::wait`] from a thread that has
//! nothing else to do (the drain timer of [`crate::shutdown`]), [`Signals::notified`] from async
//! code (s3s-poll). No stage installs a handler of its own, and none needs an async runtime for
//! signals.
//!
//! SIGHUP (the terminal or the ssh session closed, `kill -HUP`) is taken as SIGTERM: its default
//! action would end the stage mid-record, with no runs-log record and a stale live file.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The signals a stage has received so far (cheap to clone).
#[derive(Clone)]
pub struct Signals(Arc<Inner>);

struct Inner {
    count: AtomicU32,
    /// The name of the last signal.
    last: Mutex<&'static str>,
    cv: Condvar,
    /// One permit per signal for the async waiter.
    notify: tokio::sync::Notify,
}

impl Signals {
    /// Install the handlers for SIGTERM, SIGINT and SIGHUP (the default action, ending the
    /// process, no longer applies) and start counting.
    pub fn install() -> std::io::Result<Signals> {
        let inner = Arc::new(Inner {
            count: AtomicU32::new(0),
            last: Mutex::new(""),
            cv: Condvar::new(),
            notify: tokio::sync::Notify::new(),
        });
        let mut iter = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let me = inner.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in iter.forever() {
                let name = match sig {
                    SIGTERM => "SIGTERM",
                    SIGHUP => "SIGHUP",
                    _ => "SIGINT",
                };
                {
                    // Counted under the lock, so that a waiter cannot miss the wake-up.
                    let mut last = me.last.lock().unwrap_or_else(|e| e.into_inner());
                    *last = name;
                    me.count.fetch_add(1, Ordering::SeqCst);
                }
                me.cv.notify_all();
                me.notify.notify_one();
            }
        })?;
        Ok(Signals(inner))
    }

    /// How many signals arrived so far.
    pub fn count(&self) -> u32 {
        self.0.count.load(Ordering::SeqCst)
    }

    /// True once a stop was asked for.
    pub fn requested(&self) -> bool {
        self.count() > 0
    }

    /// The name of the last signal (`SIGTERM`, `SIGINT`), or "" before any.
    pub fn last(&self) -> &'static str {
        *self.0.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until more than `seen` signals arrived, at most `timeout`; the count then.
    pub fn wait(&self, seen: u32, timeout: Duration) -> u32 {
        let guard = self.0.last.lock().unwrap_or_else(|e| e.into_inner());
        let (_g, _) = self.0.cv.wait_timeout_while(guard, timeout, |_| self.count() <= seen).unwrap_or_else(|e| e.into_inner());
        self.count()
    }

    /// Resolves at the next signal (or at once for one that arrived since the last call).
    pub async fn notified(&self) {
        self.0.notify.notified().await
    }
}
