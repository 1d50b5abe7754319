//! Metrics, the runs log and the progress line: what a stage did, for operators.
//!
//! One place for every stage: [`crate::cli::main`] calls [`start`] after parsing and
//! [`Run::finish`] at every exit, so each stage gets, for free:
//!
//! - a Prometheus recorder (`metrics` + `metrics-exporter-prometheus`, every series labelled
//!   `tool="s3s-<stage>"`), served on `--metrics-addr HOST:PORT` at `/metrics` by a small
//!   std::net loop (the exporter's own HTTP listener would bring hyper and a tokio runtime into
//!   stages that have none), and written to `--metrics-file PATH` atomically (temporary file +
//!   rename) every `--metrics-interval` seconds and at exit, for node_exporter's textfile
//!   collector;
//! - a live-state file `live/<tool>-<pid>.json` in the state directory, rewritten at the same
//!   cadence and removed at exit, which `s3s-status` reads to show the stages running now;
//! - one JSON line appended to `runs.log` in the state directory at exit: tool, host, pid,
//!   pipeline id (`S3S_PIPELINE`), start, end, exit status and a snapshot of its counters;
//! - a progress line on stderr when stderr is a terminal (s3s-cat by default, `--progress`).
//!
//! Events are counted through the functions of [`events`] (Vector's `internal_events` habit: one
//! function per event, the single place its metric names live). Hot paths count per buffer or per
//! batch, never with an atomic per line.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::{Map, Value, json};

/// The runs log is rotated (to `runs.log.1`, replacing it) once it is larger than this;
/// `S3S_RUNS_LOG_MAX_BYTES` overrides it.
pub const RUNS_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// Metric names, kinds and help texts: the one list (README and man pages describe it).
pub const METRICS: &[(&str, Kind, &str)] = &[
    ("s3s_sqs_messages_received_total", Kind::Counter, "SQS messages received (s3s-poll)."),
    ("s3s_sqs_receive_errors_total", Kind::Counter, "ReceiveMessage calls that failed (s3s-poll)."),
    (
        "s3s_sqs_messages_left_total",
        Kind::Counter,
        "SQS messages left in the queue for redelivery or its redrive policy, by reason (s3s-poll: not_understood; s3s-ack: incomplete).",
    ),
    ("s3s_sqs_messages_deleted_total", Kind::Counter, "SQS messages deleted once all their objects were delivered (s3s-ack)."),
    ("s3s_sqs_delete_failures_total", Kind::Counter, "SQS messages whose delete failed; they will be redelivered (s3s-ack)."),
    ("s3s_sqs_messages_in_flight", Kind::Gauge, "SQS messages whose objects have not all ended yet (s3s-ack)."),
    ("s3s_objects_announced_total", Kind::Counter, "Objects announced by notifications and passed on (s3s-poll)."),
    ("s3s_objects_excluded_total", Kind::Counter, "Announced objects excluded by --key-regex/--exclude-key-regex (s3s-poll)."),
    (
        "s3s_notification_lag_seconds",
        Kind::Histogram,
        "Seconds from the S3 event (or the SQS send time) to its receipt (s3s-poll).",
    ),
    ("s3s_objects_read_total", Kind::Counter, "Objects read to their end (s3s-cat)."),
    ("s3s_object_errors_total", Kind::Counter, "Sources that could not be read (s3s-cat)."),
    ("s3s_read_bytes_total", Kind::Counter, "Bytes read from sources, compressed (s3s-cat)."),
    ("s3s_decompressed_bytes_total", Kind::Counter, "Bytes after decompression (s3s-cat)."),
    ("s3s_lines_read_total", Kind::Counter, "Lines read from objects (s3s-cat)."),
    ("s3s_lines_kept_total", Kind::Counter, "Line records kept (s3s-filter)."),
    ("s3s_lines_dropped_total", Kind::Counter, "Line records dropped (s3s-filter)."),
    ("s3s_records_published_total", Kind::Counter, "Records whose delivery the destination confirmed (publishers)."),
    ("s3s_publish_retries_total", Kind::Counter, "Deliveries retried after a retryable error (publishers)."),
    ("s3s_delivery_failures_total", Kind::Counter, "Records whose delivery failed for good (publishers)."),
    (
        "s3s_delivery_latency_seconds",
        Kind::Histogram,
        "Seconds from handing a record to the publisher to its confirmed delivery (publishers).",
    ),
    ("s3s_invalid_input_lines_total", Kind::Counter, "Malformed input lines reported and skipped (every stage)."),
];

/// Which metrics each stage registers at start (so they are exported, at 0, before any event).
fn metrics_of(tool: &str) -> &'static [&'static str] {
    match tool {
        "s3s-poll" => &[
            "s3s_sqs_messages_received_total",
            "s3s_sqs_receive_errors_total",
            "s3s_sqs_messages_left_total",
            "s3s_objects_announced_total",
            "s3s_objects_excluded_total",
            "s3s_notification_lag_seconds",
        ],
        "s3s-cat" => &[
            "s3s_objects_read_total",
            "s3s_object_errors_total",
            "s3s_read_bytes_total",
            "s3s_decompressed_bytes_total",
            "s3s_lines_read_total",
        ],
        "s3s-filter" => &["s3s_lines_kept_total", "s3s_lines_dropped_total"],
        "s3s-ack" => &[
            "s3s_sqs_messages_deleted_total",
            "s3s_sqs_delete_failures_total",
            "s3s_sqs_messages_left_total",
            "s3s_sqs_messages_in_flight",
        ],
        _ => &[
            "s3s_records_published_total",
            "s3s_publish_retries_total",
            "s3s_delivery_failures_total",
            "s3s_delivery_latency_seconds",
        ],
    }
}

/// A metric's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Histogram buckets (seconds).
const LAG_BUCKETS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0];
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The flags every stage has for metrics and progress (flattened into [`crate::cli::Common`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0 picks a free
    /// port, shown by `s3s-status`).
    #[arg(long, value_name = "HOST:PORT", global = true)]
    pub metrics_addr: Option<SocketAddr>,

    /// Write Prometheus metrics to PATH (atomically: a temporary file renamed over it) every
    /// --metrics-interval and at exit, for node_exporter's textfile collector (PATH should end in
    /// `.prom`). Give each stage its own file.
    #[arg(long, value_name = "PATH", global = true)]
    pub metrics_file: Option<PathBuf>,

    /// Seconds between rewrites of --metrics-file and of the live-state file `s3s-status` reads.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, global = true)]
    pub metrics_interval: f64,

    /// Progress line on stderr (objects, bytes, lines/s), only ever when stderr is a terminal:
    /// `auto` shows it for s3s-cat, `on` for this stage too, `off` never.
    #[arg(long, value_name = "WHEN", env = "S3S_PROGRESS", default_value = "auto", global = true)]
    pub progress: Progress,
}

/// When to show the progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Progress {
    /// s3s-cat only, when stderr is a terminal.
    #[default]
    Auto,
    /// This stage, when stderr is a terminal.
    On,
    /// Never.
    Off,
}

// ---------------------------------------------------------------------------------------------
// The recorder: Prometheus, plus a tally of every series so a stage can snapshot its own numbers
// (runs log, live state, progress) without parsing the exposition.

struct TallyCounter {
    inner: Counter,
    value: AtomicU64,
}

impl CounterFn for TallyCounter {
    fn increment(&self, value: u64) {
        self.value.fetch_add(value, Ordering::Relaxed);
        self.inner.increment(value);
    }
    fn absolute(&self, value: u64) {
        self.value.fetch_max(value, Ordering::Relaxed);
        self.inner.absolute(value);
    }
}

struct TallyGauge {
    inner: Gauge,
    bits: AtomicU64,
}

impl TallyGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self.bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(f(f64::from_bits(b)).to_bits()));
    }
}

impl GaugeFn for TallyGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
        self.inner.increment(value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
        self.inner.decrement(value);
    }
    fn set(&self, value: f64) {
        self.bits.store(value.to_bits(), Ordering::Relaxed);
        self.inner.set(value);
    }
}

struct TallyHistogram {
    inner: Histogram,
    count: AtomicU64,
    /// Sum in microseconds-of-a-unit (fixed point), so it stays an atomic add.
    sum_micros: AtomicU64,
}

impl HistogramFn for TallyHistogram {
    fn record(&self, value: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
        self.inner.record(value);
    }
}

#[derive(Default)]
struct Series {
    counters: HashMap<Key, Arc<TallyCounter>>,
    gauges: HashMap<Key, Arc<TallyGauge>>,
    histograms: HashMap<Key, Arc<TallyHistogram>>,
}

struct Tally {
    prom: PrometheusRecorder,
    series: RwLock<Series>,
}

fn get_or_insert<T>(
    lock: &RwLock<Series>,
    key: &Key,
    get: impl Fn(&Series) -> &HashMap<Key, Arc<T>>,
    get_mut: impl Fn(&mut Series) -> &mut HashMap<Key, Arc<T>>,
    make: impl FnOnce() -> T,
) -> Arc<T> {
    // Read-mostly: `counter!` registers on every call, the series exists after the first.
    if let Some(v) = get(&lock.read().unwrap_or_else(|e| e.into_inner())).get(key) {
        return v.clone();
    }
    let v = Arc::new(make());
    let mut s = lock.write().unwrap_or_else(|e| e.into_inner());
    get_mut(&mut s).entry(key.clone()).or_insert(v).clone()
}

impl metrics::Recorder for Tally {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prom.describe_counter(key, unit, description)
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prom.describe_gauge(key, unit, description)
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prom.describe_histogram(key, unit, description)
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let t = get_or_insert(
            &self.series,
            key,
            |s| &s.counters,
            |s| &mut s.counters,
            || TallyCounter { inner: self.prom.register_counter(key, metadata), value: AtomicU64::new(0) },
        );
        Counter::from_arc(t)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let t = get_or_insert(
            &self.series,
            key,
            |s| &s.gauges,
            |s| &mut s.gauges,
            || TallyGauge { inner: self.prom.register_gauge(key, metadata), bits: AtomicU64::new(0f64.to_bits()) },
        );
        Gauge::from_arc(t)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let t = get_or_insert(
            &self.series,
            key,
            |s| &s.histograms,
            |s| &mut s.histograms,
            || TallyHistogram {
                inner: self.prom.register_histogram(key, metadata),
                count: AtomicU64::new(0),
                sum_micros: AtomicU64::new(0),
            },
        );
        Histogram::from_arc(t)
    }
}

/// The installed recorder's pieces, shared by the exporters.
struct Installed {
    tally: &'static Tally,
    handle: PrometheusHandle,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

fn series_name(key: &Key) -> String {
    let mut name = key.name().to_string();
    let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    if !labels.is_empty() {
        name.push('{');
        name.push_str(&labels.join(","));
        name.push('}');
    }
    name
}

/// Every series of this process: counters and gauges as numbers, histograms as
/// `{"count": N, "sum": S}`; names carry extra labels as `name{k=v}`. Empty when no recorder is
/// installed (library use).
pub fn snapshot() -> Map<String, Value> {
    let mut out = BTreeMap::new();
    if let Some(inst) = INSTALLED.get() {
        let s = inst.tally.series.read().unwrap_or_else(|e| e.into_inner());
        for (k, c) in &s.counters {
            out.insert(series_name(k), json!(c.value.load(Ordering::Relaxed)));
        }
        for (k, g) in &s.gauges {
            let v = f64::from_bits(g.bits.load(Ordering::Relaxed));
            out.insert(series_name(k), if v.fract() == 0.0 && v.abs() < 1e15 { json!(v as i64) } else { json!(v) });
        }
        for (k, h) in &s.histograms {
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            out.insert(series_name(k), json!({"count": h.count.load(Ordering::Relaxed), "sum": sum}));
        }
    }
    out.into_iter().collect()
}

/// The sum of a counter's series (all label values), 0 when absent.
fn counter_total(name: &str) -> u64 {
    let Some(inst) = INSTALLED.get() else { return 0 };
    let s = inst.tally.series.read().unwrap_or_else(|e| e.into_inner());
    s.counters.iter().filter(|(k, _)| k.name() == name).map(|(_, c)| c.value.load(Ordering::Relaxed)).sum()
}

/// The Prometheus text exposition of this process's metrics.
pub fn render() -> String {
    match INSTALLED.get() {
        Some(inst) => {
            inst.handle.run_upkeep();
            inst.handle.render()
        }
        None => String::new(),
    }
}

fn install(tool: &str) {
    if INSTALLED.get().is_some() {
        return;
    }
    let builder = PrometheusBuilder::new()
        .add_global_label("tool", tool)
        .set_buckets_for_metric(Matcher::Full("s3s_notification_lag_seconds".into()), LAG_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("s3s_delivery_latency_seconds".into()), LATENCY_BUCKETS))
        .expect("bucket lists are not empty");
    let prom = builder.build_recorder();
    let handle = prom.handle();
    let tally: &'static Tally = Box::leak(Box::new(Tally { prom, series: RwLock::new(Series::default()) }));
    if metrics::set_global_recorder(tally).is_err() {
        return;
    }
    let _ = INSTALLED.set(Installed { tally, handle });
    let names = metrics_of(tool).iter().chain(std::iter::once(&"s3s_invalid_input_lines_total"));
    for name in names {
        let Some(&(_, kind, help)) = METRICS.iter().find(|m| m.0 == *name) else { continue };
        match kind {
            Kind::Counter => {
                metrics::describe_counter!(*name, help);
                if *name != "s3s_sqs_messages_left_total" {
                    metrics::counter!(*name).absolute(0);
                }
            }
            Kind::Gauge => {
                metrics::describe_gauge!(*name, help);
                metrics::gauge!(*name).set(0.0);
            }
            Kind::Histogram => {
                metrics::describe_histogram!(*name, Unit::Seconds, help);
                let _ = metrics::histogram!(*name);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events: one function per thing that happens, the only place metric names are spelled.

/// The events stages emit. Each function counts (and, where the stage does not already, logs).
pub mod events {
    use metrics::{counter, gauge, histogram};

    /// A malformed input line was reported and skipped (`io::report_bad_line`).
    pub fn invalid_input_line() {
        counter!("s3s_invalid_input_lines_total").increment(1);
    }

    /// s3s-poll received `n` messages in one ReceiveMessage call.
    pub fn sqs_messages_received(n: u64) {
        counter!("s3s_sqs_messages_received_total").increment(n);
    }

    /// s3s-poll: a ReceiveMessage call failed.
    pub fn sqs_receive_error() {
        counter!("s3s_sqs_receive_errors_total").increment(1);
    }

    /// A message was left in the queue for redelivery or its redrive policy (`reason`:
    /// `not_understood`, `incomplete`, `max_receives`...).
    pub fn sqs_messages_left(reason: &'static str, n: u64) {
        counter!("s3s_sqs_messages_left_total", "reason" => reason).increment(n);
    }

    /// s3s-ack deleted `n` messages.
    pub fn sqs_messages_deleted(n: u64) {
        counter!("s3s_sqs_messages_deleted_total").increment(n);
    }

    /// s3s-ack: deleting `n` messages failed.
    pub fn sqs_delete_failed(n: u64) {
        counter!("s3s_sqs_delete_failures_total").increment(n);
    }

    /// s3s-ack: messages waiting for their `end` records or their delete.
    pub fn sqs_in_flight(n: usize) {
        gauge!("s3s_sqs_messages_in_flight").set(n as f64);
    }

    /// s3s-poll: an object was announced (and passed on); `lag` from its event time to now.
    pub fn object_announced(lag: Option<std::time::Duration>) {
        counter!("s3s_objects_announced_total").increment(1);
        if let Some(lag) = lag {
            histogram!("s3s_notification_lag_seconds").record(lag.as_secs_f64());
        }
    }

    /// s3s-poll: `n` announced objects were excluded by the key filters.
    pub fn objects_excluded(n: u64) {
        if n > 0 {
            counter!("s3s_objects_excluded_total").increment(n);
        }
    }

    /// s3s-cat: an object was read to its end (its bytes and lines are counted as they stream,
    /// by [`bytes_read`] and [`lines_read`]).
    pub fn object_read() {
        counter!("s3s_objects_read_total").increment(1);
    }

    /// s3s-cat: a source could not be read.
    pub fn object_error() {
        counter!("s3s_object_errors_total").increment(1);
    }

    /// Compressed bytes read from a source (counted per read buffer).
    pub fn bytes_read(n: u64) {
        counter!("s3s_read_bytes_total").increment(n);
    }

    /// Lines and decompressed bytes of an object (counted per decompressed buffer).
    pub fn lines_read(lines: u64, decompressed_bytes: u64) {
        counter!("s3s_lines_read_total").increment(lines);
        counter!("s3s_decompressed_bytes_total").increment(decompressed_bytes);
    }

    /// s3s-filter's counts, published as deltas of its running totals (whenever its input runs
    /// dry, every 64Ki lines and at the end): no atomic per line.
    #[derive(Debug)]
    pub struct LinesFiltered {
        kept: metrics::Counter,
        dropped: metrics::Counter,
        seen_done: u64,
        kept_done: u64,
    }

    impl Default for LinesFiltered {
        fn default() -> Self {
            Self::new()
        }
    }

    impl LinesFiltered {
        pub fn new() -> Self {
            LinesFiltered {
                kept: counter!("s3s_lines_kept_total"),
                dropped: counter!("s3s_lines_dropped_total"),
                seen_done: 0,
                kept_done: 0,
            }
        }

        /// Publish the running totals `seen` and `kept`.
        pub fn emit(&mut self, seen: u64, kept: u64) {
            let (dk, ds) = (kept - self.kept_done, seen - self.seen_done);
            if ds == 0 {
                return;
            }
            self.kept.increment(dk);
            self.dropped.increment(ds - dk);
            self.seen_done = seen;
            self.kept_done = kept;
        }
    }

    /// A publisher's destination confirmed `n` records.
    pub fn records_published(n: u64) {
        counter!("s3s_records_published_total").increment(n);
    }

    /// A publisher's running total of confirmed records (the sink driver's watermark less its
    /// failures); a counter that only moves up. Called per report batch: the handle is cached.
    pub fn records_published_total(total: u64) {
        static C: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
        C.get_or_init(|| counter!("s3s_records_published_total")).absolute(total);
    }

    /// A publisher retried `n` deliveries.
    pub fn publish_retries(n: u64) {
        counter!("s3s_publish_retries_total").increment(n);
    }

    /// `n` records failed delivery for good.
    pub fn delivery_failures(n: u64) {
        counter!("s3s_delivery_failures_total").increment(n);
    }

    /// A delivery latency: handed to the publisher → confirmed. Recorded by the sink driver
    /// (`crate::sink`), once per group of lines handed over together, not per line; the handle
    /// is cached.
    pub fn delivery_latency(d: std::time::Duration) {
        static H: std::sync::OnceLock<metrics::Histogram> = std::sync::OnceLock::new();
        H.get_or_init(|| histogram!("s3s_delivery_latency_seconds")).record(d.as_secs_f64());
    }
}

// ---------------------------------------------------------------------------------------------
// Time and places.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 UTC, millisecond precision (`2026-11-28T17:00:00.123Z`).
pub fn rfc3339(ms: i64) -> String {
    use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
    let secs = DateTime::from_secs(ms.div_euclid(1000));
    let base = secs.fmt(DateTimeFormat::DateTime).unwrap_or_default();
    // `fmt` gives `...:SSZ` for whole seconds: put the milliseconds in.
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// Parse an RFC 3339 / ISO-8601 time (S3 event times) to milliseconds since the epoch.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    use aws_sdk_sqs::primitives::{DateTime, DateTimeFormat};
    DateTime::from_str(s, DateTimeFormat::DateTime).ok()?.to_millis().ok()
}

/// The notification lag of an object: now minus its S3 event time, else minus the SQS send time.
pub fn lag(event_time: Option<&str>, sent_ms: Option<u64>) -> Option<Duration> {
    let then = event_time.and_then(parse_time_ms).or(sent_ms.map(|t| t as i64))?;
    Some(Duration::from_millis((now_ms() - then).max(0) as u64))
}

/// The state directory: `S3S_STATE_DIR`, else systemd's `$STATE_DIRECTORY` (its first entry),
/// else `$XDG_STATE_HOME/s3s`, else `~/.local/state/s3s`.
pub fn state_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("S3S_STATE_DIR") {
        return d.into();
    }
    if let Some(d) = var("STATE_DIRECTORY") {
        let s = d.to_string_lossy().into_owned();
        return s.split(':').next().unwrap_or(&s).into();
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return PathBuf::from(d).join("s3s");
    }
    let home = var("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/s3s")
}

/// The runs log in `dir`.
pub fn runs_log(dir: &Path) -> PathBuf {
    dir.join("runs.log")
}

/// The directory of live-state files in `dir`.
pub fn live_dir(dir: &Path) -> PathBuf {
    dir.join("live")
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| fs::read_to_string("/etc/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
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

/// Append one record (a line) to the runs log in `dir`, rotating it first when it is larger
/// than `max` bytes.
///
/// Safe with many processes: the line goes out in one `write(2)` on an `O_APPEND` descriptor
/// (so lines never interleave); rotation (rename to `runs.log.1`) happens under an exclusive
/// `flock` of `runs.lock`, re-checking the size under the lock so only one process rotates.
pub fn append_run(dir: &Path, record: &[u8], max: u64) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let path = runs_log(dir);
    let open = || OpenOptions::new().create(true).append(true).open(&path);
    let mut f = open()?;
    if f.metadata()?.len() > max {
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("runs.lock"))?;
        lock.lock()?;
        if fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > max {
            fs::rename(&path, dir.join("runs.log.1"))?;
        }
        f = open()?;
        drop(lock);
    }
    let mut line = Vec::with_capacity(record.len() + 1);
    line.extend_from_slice(record);
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    // One write call: regular files take an O_APPEND write whole.
    let n = f.write(&line)?;
    if n != line.len() {
        return Err(io::Error::other(format!("short append ({n} of {} bytes)", line.len())));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One run: started by `cli::main` after parsing, finished at every exit.

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

struct Shared {
    tool: String,
    host: String,
    pid: u32,
    pipeline: Option<String>,
    start_ms: i64,
    dir: PathBuf,
    metrics_file: Option<PathBuf>,
    metrics_addr: Mutex<Option<SocketAddr>>,
    interval: Duration,
    stop: Mutex<bool>,
    wake: Condvar,
    warned: AtomicBool,
}

impl Shared {
    fn record(&self, end: Option<(i64, Outcome, Option<&str>)>) -> Value {
        let mut r = Map::new();
        r.insert("tool".into(), self.tool.as_str().into());
        r.insert("host".into(), self.host.as_str().into());
        r.insert("pid".into(), self.pid.into());
        // The stages of one shell pipeline share their parent: `s3s-status` groups by it when
        // there is no pipeline id.
        r.insert("ppid".into(), std::os::unix::process::parent_id().into());
        r.insert("pipeline".into(), self.pipeline.clone().map_or(Value::Null, Value::from));
        r.insert("start".into(), rfc3339(self.start_ms).into());
        match end {
            Some((end_ms, outcome, error)) => {
                r.insert("end".into(), rfc3339(end_ms).into());
                r.insert("seconds".into(), json!(((end_ms - self.start_ms) as f64 / 1000.0 * 1000.0).round() / 1000.0));
                r.insert("exit".into(), outcome.exit_code().into());
                r.insert("outcome".into(), outcome.name().into());
                if let Some(e) = error {
                    r.insert("error".into(), e.into());
                }
            }
            None => {
                let now = now_ms();
                r.insert("updated".into(), rfc3339(now).into());
                r.insert("seconds".into(), json!(((now - self.start_ms) as f64 / 1000.0 * 1000.0).round() / 1000.0));
                if let Some(a) = *self.metrics_addr.lock().unwrap_or_else(|e| e.into_inner()) {
                    r.insert("metrics_addr".into(), a.to_string().into());
                }
                if let Some(f) = &self.metrics_file {
                    r.insert("metrics_file".into(), f.display().to_string().into());
                }
            }
        }
        r.insert("counters".into(), Value::Object(snapshot()));
        Value::Object(r)
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
    shared: Arc<Shared>,
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
    let shared = Arc::new(Shared {
        tool: tool.to_string(),
        host: hostname(),
        pid: std::process::id(),
        pipeline: std::env::var("S3S_PIPELINE").ok().filter(|s| !s.is_empty()),
        start_ms: now_ms(),
        dir: state_dir(),
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
            .spawn(move || serve(listener))
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
        let rec = serde_json::to_vec(&s.record(Some((now_ms(), outcome, error)))).expect("JSON values serialize");
        let max = std::env::var("S3S_RUNS_LOG_MAX_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(RUNS_LOG_MAX_BYTES);
        if let Err(e) = append_run(&s.dir, &rec, max) {
            s.warn(&format!("appending to {}", runs_log(&s.dir).display()), &e);
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

/// Serve `GET /metrics` (and `/`) until the process ends: one connection at a time, each with
/// short timeouts, `Connection: close`. Scrapes are rare; this needs no runtime.
fn serve(listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = answer(&mut conn);
    }
}

fn answer(conn: &mut TcpStream) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") && req.len() < 16 * 1024 {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = req.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics" | "/") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found: try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET /metrics\n".to_string()),
    };
    let head =
        format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    conn.write_all(head.as_bytes())?;
    if method != "HEAD" {
        conn.write_all(body.as_bytes())?;
    }
    conn.flush()
}

// ---------------------------------------------------------------------------------------------
// The progress line.

struct ProgressLine {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

/// `1.2 MB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[i]) }
}

/// `12.3k`-style counts.
pub fn human_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// The progress text of `tool` from its counters; `rate` is lines (or records) per second.
fn progress_text(tool: &str, rate: f64) -> (u64, String) {
    let c = counter_total;
    match tool {
        "s3s-cat" => {
            let lines = c("s3s_lines_read_total");
            (
                lines,
                format!(
                    "{TOOL}: {} objects, {} read ({} decompressed), {} lines, {} lines/s",
                    c("s3s_objects_read_total"),
                    human_bytes(c("s3s_read_bytes_total")),
                    human_bytes(c("s3s_decompressed_bytes_total")),
                    human_count(lines as f64),
                    human_count(rate),
                    TOOL = tool
                ),
            )
        }
        "s3s-filter" => {
            let (k, d) = (c("s3s_lines_kept_total"), c("s3s_lines_dropped_total"));
            (
                k + d,
                format!(
                    "{tool}: {} lines in, {} kept, {} lines/s",
                    human_count((k + d) as f64),
                    human_count(k as f64),
                    human_count(rate)
                ),
            )
        }
        "s3s-poll" => {
            let m = c("s3s_sqs_messages_received_total");
            (m, format!("{tool}: {m} messages, {} objects, {:.1} messages/s", c("s3s_objects_announced_total"), rate))
        }
        "s3s-ack" => {
            let d = c("s3s_sqs_messages_deleted_total");
            (d, format!("{tool}: {d} messages deleted, {} failed, {:.1} messages/s", c("s3s_sqs_delete_failures_total"), rate))
        }
        _ => {
            let p = c("s3s_records_published_total");
            (
                p,
                format!(
                    "{tool}: {} records published, {} failed, {} records/s",
                    human_count(p as f64),
                    c("s3s_delivery_failures_total"),
                    human_count(rate)
                ),
            )
        }
    }
}

impl ProgressLine {
    fn start(tool: &str) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let tool = tool.to_string();
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*s;
            let mut last = (Instant::now(), 0u64);
            let mut rate = 0.0;
            let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (ng, _) = cv.wait_timeout(g, Duration::from_millis(500)).unwrap_or_else(|e| e.into_inner());
                g = ng;
                if *g {
                    break;
                }
                let (n, _) = progress_text(&tool, 0.0);
                let dt = last.0.elapsed().as_secs_f64();
                if dt > 0.0 {
                    rate = (n.saturating_sub(last.1)) as f64 / dt;
                }
                last = (Instant::now(), n);
                let (_, text) = progress_text(&tool, rate);
                // Ends in `\r`: a message written meanwhile starts at column 0, over the line.
                let mut err = io::stderr().lock();
                let _ = write!(err, "\r\x1b[K{text}\r");
                let _ = err.flush();
            }
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        });
        ProgressLine { stop, thread }
    }

    fn stop(self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_all();
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let ms = 1_795_885_200_123; // 2026-11-28T17:00:00.123Z
        assert_eq!(rfc3339(ms), "2026-11-28T17:00:00.123Z");
        assert_eq!(parse_time_ms("2026-11-28T17:00:00.123Z"), Some(ms));
        assert_eq!(parse_time_ms("2026-11-28T17:00:00Z"), Some(ms - 123));
    }

    #[test]
    fn every_stage_metric_is_listed() {
        for tool in ["s3s-poll", "s3s-cat", "s3s-filter", "s3s-ack", "s3s-kafka"] {
            for name in metrics_of(tool) {
                assert!(METRICS.iter().any(|m| m.0 == *name), "{name}");
            }
        }
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_count(12_345.0), "12.3k");
    }
}
