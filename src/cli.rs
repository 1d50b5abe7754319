//! Conventions every stage shares: logging to stderr, exit codes, broken-pipe handling.
//!
//! Exit status: 0 success (also when the downstream pipe closed), 1 a runtime failure (an object
//! that could not be read, a delivery that failed, malformed input lines), 2 a usage or
//! configuration error (clap's own code).

use std::io;
use std::process::ExitCode;

use clap::Parser;

/// Flags every stage has.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// More log output on stderr (once: info, twice: debug, thrice: trace). `S3S_LOG` takes
    /// tracing's filter syntax and wins over --verbose/--quiet.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Metrics and progress (see `crate::metrics`).
    #[command(flatten)]
    pub metrics: crate::metrics::Flags,
}

/// What a stage's `run` reports when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Everything worked.
    Ok,
    /// The stage went on to the end, but something failed along the way (exit code 1).
    Failed,
}

/// Set up logging on stderr (never stdout: stdout carries records).
pub fn init_logging(common: &Common) {
    use tracing_subscriber::EnvFilter;
    let default = if common.quiet {
        "error"
    } else {
        match common.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = std::env::var("S3S_LOG").ok().and_then(|s| EnvFilter::try_new(s).ok()).unwrap_or_else(|| {
        // Our own crate at the chosen level; the AWS SDK and hyper stay quiet unless asked.
        EnvFilter::new(format!("warn,s3s={default}"))
    });
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).with_target(false).without_time().try_init();
}

/// True when `err` (or anything in its chain) is a closed downstream pipe.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            // serde_json wraps the writer's error in its own (s3s-status --json | head).
            || e.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind) == Some(io::ErrorKind::BrokenPipe)
    })
}

/// Parse the arguments, run the stage, map the outcome to an exit code.
///
/// Parsing comes first: `--help`, `--version` and usage errors return before anything starts.
/// Then the metrics machinery starts (`--metrics-addr`, `--metrics-file`, live state, progress),
/// and whatever way the stage ends (success, failure, error, closed stdout, panic), its record
/// is appended to the runs log (see `crate::metrics`).
pub fn main<A: Parser>(tool: &str, common: impl Fn(&A) -> &Common, run: impl FnOnce(A) -> anyhow::Result<Status>) -> ExitCode {
    let args = A::parse();
    init_logging(common(&args));
    match crate::metrics::start(tool, &common(&args).metrics) {
        Ok(t) => *RUN.lock().unwrap_or_else(|e| e.into_inner()) = Some(t),
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            return ExitCode::from(2);
        }
    };
    let (outcome, error) = outcome(tool, run(args));
    if let Some(run) = RUN.lock().unwrap_or_else(|e| e.into_inner()).take() {
        run.finish(outcome, error.as_deref());
    }
    ExitCode::from(outcome.exit_code())
}

/// The running stage's metrics bookkeeping, finished by whichever comes first: [`main`] when the
/// stage returns, or [`exit_now`].
static RUN: std::sync::Mutex<Option<crate::metrics::Run>> = std::sync::Mutex::new(None);

/// End the process now, after recording the run: for a stage whose drain expired while one of
/// its threads is stuck in a system call that no flag can interrupt (see [`crate::shutdown`]).
/// What it had not forwarded comes back through SQS. The one place a stage ends with
/// `process::exit`.
///
/// Status 0 (outcome `ok`, with `why` as its error) when stdout holds only whole records; status
/// 1 (outcome `failed`) when a write to stdout was under way, i.e. its reader (stuck or gone) may
/// have got part of a record: that last line is malformed, and the stage reading it forwards no
/// `end` for its object (see s3s(7)), so nothing is acknowledged on the strength of it.
pub fn exit_now(tool: &str, why: &str) -> ! {
    let cut = crate::io::stdout_mid_write();
    let why = if cut {
        format!("{why}; stdout was cut in the middle of a write (the last record may be partial)")
    } else {
        why.to_string()
    };
    eprintln!("{tool}: {why}: exiting");
    let outcome = if cut { crate::metrics::Outcome::Failed } else { crate::metrics::Outcome::Ok };
    if let Some(run) = RUN.lock().unwrap_or_else(|e| e.into_inner()).take() {
        run.finish(outcome, Some(&why));
    }
    std::process::exit(if cut { 1 } else { 0 })
}

/// Like [`main`] for tools that are not pipeline stages (`s3s-status`): no metrics, no runs log.
pub fn main_untracked<A: Parser>(tool: &str, run: impl FnOnce(A) -> anyhow::Result<Status>) -> ExitCode {
    let args = A::parse();
    init_logging(&Common { verbose: 0, quiet: false, metrics: Default::default() });
    let (outcome, _) = outcome(tool, run(args));
    ExitCode::from(outcome.exit_code())
}

/// What a stage's result comes to (an error is printed here, once), and its message.
fn outcome(tool: &str, result: anyhow::Result<Status>) -> (crate::metrics::Outcome, Option<String>) {
    use crate::metrics::Outcome;
    match result {
        Ok(Status::Ok) => (Outcome::Ok, None),
        Ok(Status::Failed) => (Outcome::Failed, None),
        Err(e) if is_broken_pipe(&e) => (Outcome::BrokenPipe, None),
        Err(e) => {
            eprintln!("{tool}: error: {e:#}");
            let kind = if e.downcast_ref::<UsageError>().is_some() { Outcome::Usage } else { Outcome::Error };
            (kind, Some(format!("{e:#}")))
        }
    }
}

/// A configuration problem found after parsing (a bad regex, an unusable option value):
/// exit code 2, like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
