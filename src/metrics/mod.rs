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
//!   pipeline id (`S3S_PIPELINE`), start, end, exit status and a snapshot of its counters
//!   ([`crate::runs::RunRecord`]);
//! - a progress line on stderr when stderr is a terminal (s3s-cat by default, `--progress`).
//!
//! Events are counted through the functions of [`events`] (Vector's `internal_events` habit: one
//! function per event, the single place its metric names live). Hot paths count per buffer or per
//! batch, never with an atomic per line. The rooms: this one (the metric list, the recorder),
//! [`events`], `run` (one run's bookkeeping: runs log, live state), `http` (`--metrics-addr`),
//! `progress` (the progress line).

pub mod events;
mod http;
mod progress;
mod run;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::{Map, Value, json};

pub use progress::{human_bytes, human_count};
pub use run::{Outcome, Run, start};

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
    ("s3s_lines_parsed_total", Kind::Counter, "Line records given fields (s3s-parse)."),
    ("s3s_parse_errors_total", Kind::Counter, "Line records that could not be parsed, passed on with parse_error (s3s-parse)."),
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
pub(crate) fn metrics_of(tool: &str) -> &'static [&'static str] {
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
        "s3s-parse" => &["s3s_lines_parsed_total", "s3s_parse_errors_total"],
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
pub(crate) fn counter_total(name: &str) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_metric_is_listed() {
        for tool in ["s3s-poll", "s3s-cat", "s3s-filter", "s3s-ack", "s3s-kafka"] {
            for name in metrics_of(tool) {
                assert!(METRICS.iter().any(|m| m.0 == *name), "{name}");
            }
        }
    }
}
