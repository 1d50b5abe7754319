//! The drain rule of the stages that run their own loop (s3s-cat, s3s-filter, s3s-ack), on top of
//! [`crate::signals`].
//!
//! The rule every stage keeps: a signal means "take no new work, finish and flush what is in
//! flight, exit 0", bounded by a drain timeout. Under systemd every stage of a pipeline gets
//! the signal at once; upstream stops first (s3s-poll stops receiving and closes its stdout), so
//! the stages below see the end of their input and finish on their own. Should that take longer
//! than the drain timeout (or a second signal arrive), the drain has *expired*: the stage stops
//! at the next record boundary (its loops check [`Shutdown::expired`], and [`crate::io::Input`]
//! ends early), writes out the whole records it has, and returns like any other run (exit 0, its
//! runs-log record written). What it had not forwarded is lost only as a duplicate-to-be, never
//! as a loss: an `end` record is always written after its object's lines, and a message is
//! deleted only after its `end`.
//!
//! A thread blocked in a system call (a write to a pipe nobody reads, a stalled download) cannot
//! see the flag: [`HARD_STOP`] after expiry the process ends anyway, through
//! [`crate::cli::exit_now`], which writes the runs-log record first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::signals::Signals;

/// The default bound on draining after a signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after the drain expired a stage that has not ended is ended by force.
pub const HARD_STOP: Duration = Duration::from_secs(10);

/// Whether a stop was asked for, and whether its drain has run out.
#[derive(Clone)]
pub struct Shutdown {
    signals: Signals,
    expired: Arc<AtomicBool>,
    /// Set at the first signal (for input readers that should stop taking work at once).
    stopping: Arc<AtomicBool>,
}

impl Shutdown {
    /// Install the handlers: the first signal asks for a stop and starts the drain timer; the
    /// timer or a second signal expires the drain.
    pub fn install(tool: &'static str, drain: Duration) -> std::io::Result<Shutdown> {
        let signals = Signals::install()?;
        let expired = Arc::new(AtomicBool::new(false));
        let stopping = Arc::new(AtomicBool::new(false));
        let (s, e, st) = (signals.clone(), expired.clone(), stopping.clone());
        std::thread::Builder::new().name("drain".into()).spawn(move || {
            while s.wait(0, Duration::from_secs(3600)) == 0 {}
            st.store(true, Ordering::SeqCst);
            tracing::info!("{}: taking no new work, draining (at most {drain:?})", s.last());
            if s.wait(1, drain) >= 2 {
                eprintln!("{tool}: second signal: stopping without draining");
            } else {
                eprintln!("{tool}: drain timeout ({drain:?}) reached: stopping; unfinished work comes back through SQS");
            }
            e.store(true, Ordering::SeqCst);
            std::thread::sleep(HARD_STOP);
            crate::cli::exit_now(tool, "the drain timeout expired and the stage did not stop by itself");
        })?;
        Ok(Shutdown { signals, expired, stopping })
    }

    /// A stop was asked for: take no new work.
    pub fn requested(&self) -> bool {
        self.signals.requested()
    }

    /// The drain ran out (or a second signal came): stop at the next record boundary.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::Relaxed)
    }

    /// Set once a stop was asked for, for an input reader that should take no more records at
    /// once (an idle `s3s-cat` ends at the signal instead of waiting out the drain).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// The expiry flag, for loops that cannot hold the whole [`Shutdown`] (an input reader).
    pub fn expiry_flag(&self) -> Arc<AtomicBool> {
        self.expired.clone()
    }
}

/// The drain bound, for every stage that drains (flattened into their `Args`; the publishers
/// have it through `crate::sink::SinkArgs`).
#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    /// After SIGTERM/SIGINT (or at the end of input, for the publishers), finish what is in
    /// flight for at most this long (e.g. 30s, 500ms, 2m); what is unfinished then is not
    /// forwarded and comes back through SQS.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::parse_duration, env = "S3S_DRAIN_TIMEOUT")]
    pub drain_timeout: Duration,
}
