//! SIGTERM/SIGINT for the stages that run no async runtime (s3s-cat, s3s-filter, s3s-ack).
//!
//! The rule every stage keeps: a signal means "take no new work, finish and flush what is in
//! flight, exit 0", bounded by a drain timeout. Under systemd every stage of a pipeline gets
//! the signal at once; upstream stops first (s3s-poll stops receiving and closes its stdout), so
//! the stages below see the end of their input and finish on their own. Should that take longer
//! than the drain timeout (or a second signal arrive), the stage exits 0 at once: what it had
//! not forwarded yet is lost only as a duplicate-to-be, never as a loss, since an `end` record is
//! always written after its object's lines and a message is deleted only after its `end`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// The default bound on draining after a signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a stop was asked for.
#[derive(Clone)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Install the handlers: the first signal sets the flag and starts the drain timer; the timer
    /// or a second signal ends the process with status 0.
    pub fn install(tool: &'static str, drain: Duration) -> std::io::Result<Shutdown> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        let f = flag.clone();
        std::thread::Builder::new().name("signals".into()).spawn(move || {
            let Some(sig) = signals.forever().next() else { return };
            f.store(true, Ordering::SeqCst);
            tracing::info!("signal {sig}: taking no new work, draining (at most {drain:?})");
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = signals.forever().next();
                let _ = tx.send(());
            });
            match rx.recv_timeout(drain) {
                Ok(()) => eprintln!("{tool}: second signal: exiting without draining"),
                Err(_) => eprintln!("{tool}: drain timeout ({drain:?}) reached: exiting; unfinished work comes back through SQS"),
            }
            // What was not forwarded is redelivered later (see the module doc): exit at once.
            std::process::exit(0);
        })?;
        Ok(Shutdown(flag))
    }

    /// A stop was asked for: take no new work.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The drain bound, for the stages that install [`Shutdown`] (the publishers have the same flag
/// in their sink options).
#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    /// After SIGTERM/SIGINT, finish what is in flight for at most this long, then exit 0.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::sink::parse_duration, env = "S3S_DRAIN_TIMEOUT")]
    pub drain_timeout: Duration,
}
