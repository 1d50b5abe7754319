//! One run of a stage: started by `cli::main` after parsing, finished at every exit. While it
//! runs, the metrics file and the live-state file are rewritten every `--metrics-interval`; at
//! the end, its [`RunRecord`] goes to the runs log (see [`crate::runs`]).

use std::fs::{self, File};
use std::io::{self, IsTerminal, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::progress::ProgressLine;
use super::{Flags, Progress, install, render, snapshot};
use crate::clock::{now_ms, rfc3339_ms};
use crate::runs::{self, RUNS_LOG_MAX_BYTES, RunRecord, live_dir};

/// How a run ended, for the runs log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 0 because the downstream pipe closed.
    BrokenPipe,
    /// The stage went on to the end but something failed (exit 1).
    Failed,
    /// A runtime error stopped it (exit 1).
    Error,
    /// A configuration problem found after parsing (exit 2).
    Usage,
    /// A panic (exit 101).
    Panic,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BrokenPipe => "broken-pipe",
            Outcome::Failed => "failed",
            Outcome::Error => "error",
            Outcome::Usage => "usage",
            Outcome::Panic => "panic",
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Ok | Outcome::BrokenPipe => 0,
            Outcome::Failed | Outcome::Error => 1,
            Outcome::Usage => 2,
            Outcome::Panic => 101,
        }
    }
}

/// What the run's threads share.
struct RunState {
    tool: String,
    host: String,
    pid: u32,
    pipeline: Option<String>,
    start_ms: u64,
    dir: PathBuf,
    metrics_file: Option<PathBuf>,
    metrics_addr: Mutex<Option<SocketAddr>>,
    interval: Duration,
    stop: Mutex<bool>,
    wake: Condvar,
    warned: AtomicBool,
}

impl RunState {
    fn record(&self, end: Option<(u64, Outcome, Option<&str>)>) -> RunRecord {
        let seconds = |to: u64| (to.saturating_sub(self.start_ms) as f64 / 1000.0 * 1000.0).round() / 1000.0;
        let mut r = RunRecord {
            tool: self.tool.clone(),
            host: self.host.clone(),
            pid: self.pid.into(),
            ppid: Some(std::os::unix::process::parent_id().into()),
            pipeline: self.pipeline.clone(),
            start: rfc3339_ms(self.start_ms as i64),
            counters: snapshot(),
            ..RunRecord::default()
        };
        match end {
            Some((end_ms, outcome, error)) => {
                r.end = Some(rfc3339_ms(end_ms as i64));
                r.seconds = seconds(end_ms);
                r.exit = Some(outcome.exit_code().into());
                r.outcome = Some(outcome.name().into());
                r.error = error.map(str::to_string);
            }
            None => {
                let now = now_ms();
                r.updated = Some(rfc3339_ms(now as i64));
                r.seconds = seconds(now);
                r.metrics_addr = self.metrics_addr.lock().unwrap_or_else(|e| e.into_inner()).map(|a| a.to_string());
                r.metrics_file = self.metrics_file.as_ref().map(|f| f.display().to_string());
            }
        }
        r
    }

    fn live_file(&self) -> PathBuf {
        live_dir(&self.dir).join(format!("{}-{}.json", self.tool, self.pid))
    }

    /// Say once that the state directory cannot be used; a stage never fails for it.
    fn warn(&self, what: &str, e: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("{what}: {e} (runs log and live state disabled for this run)");
        }
    }

    /// Rewrite the metrics file and the live-state file.
    fn tick(&self) {
        if let Some(path) = &self.metrics_file
            && let Err(e) = write_atomic(path, render().as_bytes())
        {
            tracing::warn!("writing --metrics-file {}: {e}", path.display());
        }
        if self.warned.load(Ordering::Relaxed) {
            return;
        }
        let live = self.live_file();
        let res = fs::create_dir_all(live_dir(&self.dir)).and_then(|()| {
            let mut rec = serde_json::to_vec(&self.record(None)).expect("JSON values serialize");
            rec.push(b'\n');
            write_atomic(&live, &rec)
        });
        if let Err(e) = res {
            self.warn(&format!("state directory {}", self.dir.display()), &e);
        }
    }
}

/// A running stage's metrics machinery; [`Run::finish`] it at exit (dropping it unfinished
/// records a panic).
pub struct Run {
    shared: Arc<RunState>,
    threads: Vec<std::thread::JoinHandle<()>>,
    progress: Option<ProgressLine>,
    finished: bool,
}

/// Start the metrics machinery for `tool`: install the recorder, bind `--metrics-addr`, start
/// the periodic writer (and the progress line). Fails only when `--metrics-addr` cannot be bound
/// or the flags are out of range.
pub fn start(tool: &str, flags: &Flags) -> Result<Run, String> {
    if !(flags.metrics_interval.is_finite() && flags.metrics_interval >= 0.05) {
        return Err("--metrics-interval must be a number of seconds >= 0.05".into());
    }
    install(tool);
    let shared = Arc::new(RunState {
        tool: tool.to_string(),
        host: crate::host::name().unwrap_or_else(|| "unknown".into()),
        pid: std::process::id(),
        pipeline: std::env::var("S3S_PIPELINE").ok().filter(|s| !s.is_empty()),
        start_ms: now_ms(),
        dir: runs::state_dir(),
        metrics_file: flags.metrics_file.clone(),
        metrics_addr: Mutex::new(None),
        interval: Duration::from_secs_f64(flags.metrics_interval),
        stop: Mutex::new(false),
        wake: Condvar::new(),
        warned: AtomicBool::new(false),
    });
    let mut threads = Vec::new();
    if let Some(addr) = flags.metrics_addr {
        let listener = TcpListener::bind(addr).map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| format!("--metrics-addr {addr}: {e}"))?;
        tracing::info!("serving metrics on http://{bound}/metrics");
        *shared.metrics_addr.lock().unwrap_or_else(|e| e.into_inner()) = Some(bound);
        std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || super::http::serve(listener))
            .map_err(|e| format!("starting the metrics server: {e}"))?;
    }
    shared.tick();
    let s = shared.clone();
    threads.push(
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                let mut stop = s.stop.lock().unwrap_or_else(|e| e.into_inner());
                while !*stop {
                    let (g, timeout) = s.wake.wait_timeout(stop, s.interval).unwrap_or_else(|e| e.into_inner());
                    stop = g;
                    if *stop {
                        break;
                    }
                    if timeout.timed_out() {
                        drop(stop);
                        s.tick();
                        stop = s.stop.lock().unwrap_or_else(|e| e.into_inner());
                    }
                }
            })
            .map_err(|e| format!("starting the metrics thread: {e}"))?,
    );
    let show = match flags.progress {
        Progress::Off => false,
        Progress::On => true,
        Progress::Auto => tool == "s3s-cat",
    };
    let progress = (show && io::stderr().is_terminal()).then(|| ProgressLine::start(tool));
    Ok(Run { shared, threads, progress, finished: false })
}

impl Run {
    /// The stage ended: stop the threads, write the metrics file a last time, append the run's
    /// record to the runs log and remove the live-state file. Never fails the stage.
    pub fn finish(mut self, outcome: Outcome, error: Option<&str>) {
        self.end(outcome, error);
    }

    fn end(&mut self, outcome: Outcome, error: Option<&str>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(p) = self.progress.take() {
            p.stop();
        }
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let s = &self.shared;
        if let Some(path) = &s.metrics_file
            && let Err(e) = write_atomic(path, render().as_bytes())
        {
            tracing::warn!("writing --metrics-file {}: {e}", path.display());
        }
        let rec = s.record(Some((now_ms(), outcome, error)));
        let max = std::env::var("S3S_RUNS_LOG_MAX_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(RUNS_LOG_MAX_BYTES);
        if let Err(e) = runs::append(&s.dir, &rec, max) {
            s.warn(&format!("appending to {}", runs::runs_log(&s.dir).display()), &e);
        }
        let _ = fs::remove_file(s.live_file());
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.finished {
            self.end(Outcome::Panic, Some("panicked"));
        }
    }
}

/// Write `data` to `path` atomically: a temporary file beside it, then rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}
