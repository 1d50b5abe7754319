//! `s3s-kafka`: publish `line` records to Kafka (librdkafka through the `rdkafka` crate), with
//! kcat's flags, and forward the other records only once every earlier line is delivered.
//!
//! The ordering, failure, backpressure, dry-run, signal and drain logic is the shared publisher
//! driver in [`crate::sink`]; this module only shapes messages (value, key, headers), configures
//! librdkafka and turns its delivery reports into [`Reporter`] calls.
//!
//! Producer: a `BaseProducer` whose event queue is served by a thread of ours (`native::Poller`)
//! that hands each batch of delivery reports to the driver under one lock (the ticket is the
//! message's opaque value: no allocation per message on our side). Measured against rdkafka's
//! `ThreadedProducer`, whose poll thread reports message by message through
//! `ProducerContext::delivery` (and spins ~1% of a core while idle), and `FutureProducer` (a
//! oneshot channel and a future per message): see the README. Messages are produced with
//! `rd_kafka_produceva` and a topic handle made once; librdkafka copies each message
//! (`RD_KAFKA_MSG_F_COPY`), so the payload is borrowed from the record bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::cli::{Common, Status, UsageError};
use crate::scan::quote_into;
use crate::sink::{self, Control, Driver, Line, NoControl, PublishError, Publisher, Reporter, SinkArgs, Ticket};

const TOOL: &str = "s3s-kafka";

/// librdkafka properties set before -F and -X (which override them).
pub const DEFAULTS: &[(&str, &str)] = &[
    ("client.id", "s3s-kafka"),
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("compression.type", "lz4"),
    ("linger.ms", "10"),
    // librdkafka's: a batch stays under a real broker's default message.max.bytes (1 MB).
    ("batch.size", "1000000"),
    ("batch.num.messages", "10000"),
    // Above any useful --max-in-flight, so that the window is the one limit.
    ("queue.buffering.max.messages", "2000000"),
    // librdkafka's statistics, for s3s_publish_retries_total (see `native::Retries`); 0 turns
    // the count off.
    ("statistics.interval.ms", "1000"),
];

/// Publish `line` records to Kafka, as kcat -P would, and pass every other record on only
/// once the lines before it are delivered.
///
/// Each `line` record becomes one message whose value is the line's text (or, with
/// `--payload json`, the whole record). Every other record (`end`, `message`, types it does not
/// know) is written to stdout in input order, but only after every earlier line has a
/// successful delivery report, so that `s3s-ack` downstream deletes an SQS message only once
/// all its lines are in Kafka. A line that fails for good (after librdkafka's own retries,
/// within message.timeout.ms) withholds its object's `end` record: reported on stderr, the rest
/// goes on, and the exit status is 1. Line records marked `"dry_run":true` are never sent.
///
/// librdkafka is configured from the defaults (enable.idempotence=true, acks=all,
/// compression.type=lz4, linger.ms=10, batch.size=1000000, statistics.interval.ms=1000), then
/// the -F file, then -b, then each -X in order (the last setting wins). Setting acks to anything
/// but all also turns the idempotence default off.
///
/// s3s_publish_retries_total counts messages librdkafka sent again after a failed produce
/// request (a dropped connection, a timeout, a retriable broker error), from its statistics
/// (every statistics.interval.ms, per partition once it is idle: sent minus produced).
#[derive(Debug, Parser)]
#[command(
    name = "s3s-kafka",
    version,
    after_long_help = "EXAMPLES:
    s3s-poll | s3s-cat | s3s-kafka -b kafka1:9092,kafka2:9092 -t cdn-logs | s3s-ack
    s3s-kafka -t cdn -X compression.type=zstd -X linger.ms=50
    s3s-kafka -t cdn -F /etc/s3s/kafka.properties       # security.protocol, sasl.* ...
    s3s-kafka -t cdn --key-field key --source-headers -H source=cloudfront
    s3s-kafka -t cdn --payload json                      # the whole record as the value
    s3s-cat access.log | s3s-kafka -t cdn --dry-run 2>&1 >/dev/null | jq .

DRY RUN:
    With --dry-run (and for line records marked \"dry_run\":true) nothing is sent; each line
    that would be is described on stderr as one JSON object:
    {\"topic\":T,\"partition\":P,\"key\":K|null,\"headers\":[[NAME,VALUE],...],\"value\":V}
    (partition and headers only when set). No broker is contacted with --dry-run.

ENVIRONMENT:
    S3S_KAFKA_BROKERS (-b), S3S_KAFKA_TOPIC (-t), S3S_KAFKA_CONFIG (-F), S3S_DRAIN_TIMEOUT,
    S3S_LOG (log filter).

EXIT STATUS:
    0 every line delivered and every record forwarded (also when stdout was closed early);
    1 a line failed delivery (its end record withheld), lines unconfirmed at the drain
    timeout, malformed input lines, or a fatal producer error; 2 usage or librdkafka
    configuration error."
)]
pub struct Args {
    /// Bootstrap broker(s), host:port[,host:port...] (librdkafka's bootstrap.servers).
    #[arg(short = 'b', long, value_name = "BROKERS", env = "S3S_KAFKA_BROKERS")]
    pub brokers: Option<String>,

    /// Topic to produce to.
    #[arg(short = 't', long, value_name = "TOPIC", env = "S3S_KAFKA_TOPIC")]
    pub topic: String,

    /// Partition to produce to (default: librdkafka's partitioner: by key, sticky without one).
    #[arg(short = 'p', long, value_name = "N", allow_negative_numbers = true)]
    pub partition: Option<i32>,

    /// Set a librdkafka property (repeatable), passed on unchanged; wins over -F and the defaults.
    #[arg(short = 'X', value_name = "PROP=VALUE")]
    pub property: Vec<String>,

    /// Read librdkafka properties from FILE: one PROP=VALUE a line, # starts a comment (kcat -F).
    #[arg(short = 'F', long = "config-file", value_name = "FILE", env = "S3S_KAFKA_CONFIG")]
    pub config_file: Option<PathBuf>,

    /// The message value: the line's text (raw), or the whole record as it came (json).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = PayloadFormat::Raw)]
    pub payload: PayloadFormat,

    /// The same message key for every line.
    #[arg(short = 'k', long, value_name = "KEY", conflicts_with_all = ["key_field", "key_delimiter"])]
    pub key: Option<String>,

    /// Key each message with this top-level field of its record (a string's text, or the JSON
    /// text of a number); no key when the field is missing or null.
    #[arg(long, value_name = "NAME", conflicts_with = "key_delimiter")]
    pub key_field: Option<String>,

    /// Split each line at the first DELIM: the key before it, the value after it (kcat -K);
    /// a line without DELIM is all value, with no key.
    #[arg(short = 'K', long, value_name = "DELIM")]
    pub key_delimiter: Option<String>,

    /// Add a message header (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,

    /// Add headers naming each line's source: s3s.bucket and s3s.key (or s3s.file) and
    /// s3s.line (its line number in the object).
    #[arg(long)]
    pub source_headers: bool,

    #[command(flatten)]
    pub sink: SinkArgs,

    #[command(flatten)]
    pub common: Common,
}

/// What a message's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadFormat {
    /// The line's text, JSON escapes decoded.
    Raw,
    /// The whole line record, byte for byte as it came.
    Json,
}

enum KeySource {
    None,
    Fixed(Vec<u8>),
    Field,
    Delimiter(Vec<u8>),
}

/// How a line becomes a message: everything but the transport.
struct Shape {
    topic: String,
    partition: Option<i32>,
    payload: PayloadFormat,
    key: KeySource,
    headers: Vec<(String, Vec<u8>)>,
    source_headers: bool,
}

impl Shape {
    fn new(args: &Args) -> Result<Shape, UsageError> {
        if args.topic.is_empty() {
            return Err(UsageError("the topic name is empty".into()));
        }
        let key = match (&args.key, &args.key_field, &args.key_delimiter) {
            (Some(k), _, _) => KeySource::Fixed(k.clone().into_bytes()),
            (_, Some(_), _) => KeySource::Field,
            (_, _, Some(d)) if d.is_empty() => return Err(UsageError("-K wants a non-empty delimiter".into())),
            (_, _, Some(d)) => KeySource::Delimiter(d.clone().into_bytes()),
            _ => KeySource::None,
        };
        let headers = args
            .headers
            .iter()
            .map(|h| match h.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.as_bytes().to_vec())),
                _ => Err(UsageError(format!("-H wants NAME=VALUE, got {h:?}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Shape {
            topic: args.topic.clone(),
            partition: args.partition,
            payload: args.payload,
            key,
            headers,
            source_headers: args.source_headers,
        })
    }

    /// The key and value of a line's message; the key may be decoded into `scratch`.
    #[inline]
    fn key_value<'a>(&'a self, line: &Line<'a>, scratch: &'a mut Vec<u8>) -> (Option<&'a [u8]>, &'a [u8]) {
        let mut value = match self.payload {
            PayloadFormat::Raw => line.text,
            PayloadFormat::Json => line.record,
        };
        let key = match &self.key {
            KeySource::None => None,
            KeySource::Fixed(k) => Some(k.as_slice()),
            KeySource::Field => line.field.filter(|f| !f.is_null()).map(|f| f.bytes(scratch)),
            KeySource::Delimiter(d) => match memchr::memmem::find(line.text, d) {
                Some(i) => {
                    if self.payload == PayloadFormat::Raw {
                        value = &line.text[i + d.len()..];
                    }
                    Some(&line.text[..i])
                }
                None => None,
            },
        };
        (key, value)
    }

    fn wants_headers(&self) -> bool {
        !self.headers.is_empty() || self.source_headers
    }

    /// Every header of a line's message, in order, to `f(name, value)`.
    fn each_header(&self, line: &Line<'_>, mut f: impl FnMut(&str, &[u8])) {
        for (name, value) in &self.headers {
            f(name, value);
        }
        if self.source_headers {
            let mut scratch = Vec::new();
            match (line.bucket, line.key, line.file) {
                (Some(b), Some(k), _) => {
                    f("s3s.bucket", b.bytes(&mut scratch));
                    f("s3s.key", k.bytes(&mut scratch));
                }
                (_, _, Some(file)) => f("s3s.file", file.bytes(&mut scratch)),
                _ => {}
            }
            if let Some(n) = line.n {
                f("s3s.line", n.bytes(&mut scratch));
            }
        }
    }

    /// The dry-run description of a line's message (one JSON object).
    fn describe(&self, line: &Line<'_>, out: &mut Vec<u8>) {
        let mut scratch = Vec::new();
        let (key, value) = self.key_value(line, &mut scratch);
        out.extend_from_slice(br#"{"topic":"#);
        quote_into(self.topic.as_bytes(), out);
        if let Some(p) = self.partition {
            out.extend_from_slice(br#","partition":"#);
            out.extend_from_slice(itoa::Buffer::new().format(p).as_bytes());
        }
        out.extend_from_slice(br#","key":"#);
        match key {
            Some(k) => quote_into(k, out),
            None => out.extend_from_slice(b"null"),
        }
        if self.wants_headers() {
            out.extend_from_slice(br#","headers":["#);
            let mut first = true;
            self.each_header(line, |name, value| {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                out.push(b'[');
                quote_into(name.as_bytes(), out);
                out.push(b',');
                quote_into(value, out);
                out.push(b']');
            });
            out.push(b']');
        }
        out.extend_from_slice(br#","value":"#);
        quote_into(value, out);
        out.push(b'}');
    }
}

/// librdkafka's callbacks: delivery reports go to the driver, logs and errors to tracing.
struct Context {
    reporter: Reporter,
    /// `-X debug=...` was given: show librdkafka's debug lines without -vv.
    debug: bool,
    /// Produce retries seen in librdkafka's statistics.
    retries: std::sync::Mutex<native::Retries>,
    /// Error events shown lately, and when: a broker that stays down repeats the same few.
    seen_errors: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// An error event repeated within this interval is logged at debug level only.
const ERROR_REPEAT: Duration = Duration::from_secs(30);

impl ClientContext for Context {
    fn stats_raw(&self, statistics: &[u8]) {
        self.retries.lock().unwrap_or_else(|e| e.into_inner()).stats(statistics);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!("librdkafka: {fac}: {msg}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!("librdkafka: {fac}: {msg}"),
            // Error lines repeat what the error events say (shown by `error` below).
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!("librdkafka: {fac}: {msg}")
            }
            RDKafkaLogLevel::Debug if self.debug => tracing::warn!("librdkafka: {fac}: {msg}"),
            RDKafkaLogLevel::Debug => tracing::debug!("librdkafka: {fac}: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!("librdkafka: fatal: {reason}");
            return;
        }
        // "1/1 brokers are down" and "Connect to ... failed (after 0ms ...)" come again and
        // again while a broker is away: show each once per interval.
        let key = reason.split(" (").next().unwrap_or(reason);
        let now = std::time::Instant::now();
        let mut seen = self.seen_errors.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 64 {
            seen.clear();
        }
        match seen.get(key) {
            Some(at) if now.duration_since(*at) < ERROR_REPEAT => tracing::debug!("librdkafka: {reason}"),
            _ => {
                seen.insert(key.to_string(), now);
                tracing::warn!("librdkafka: {reason}");
            }
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    #[inline]
    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let ticket = Ticket::from_raw(opaque as u64);
        match result {
            Ok(_) => self.reporter.delivered(ticket),
            Err((e, _)) => match e.rdkafka_error_code() {
                Some(code) => self.reporter.failed(ticket, &code),
                None => self.reporter.failed(ticket, e),
            },
        }
    }
}

type Kafka = Arc<BaseProducer<Context>>;

/// The hot path calls librdkafka's `rd_kafka_produceva` directly with a topic handle made once:
/// `BaseProducer::send` builds a `CString` of the topic name and librdkafka then looks the
/// topic up under a lock for every message. Delivery reports are read from librdkafka's main
/// queue by [`native::Poller`], a batch at a time; rust-rdkafka's own `poll` (called by its
/// `flush` and at drop) still works too, through `Context::delivery`.
mod native {
    use std::ffi::{CStr, CString, c_void};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;

    use rdkafka::ClientContext;
    use rdkafka::bindings as rd;
    use rdkafka::config::RDKafkaLogLevel;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::Producer;

    use super::Kafka;
    use crate::sink::Ticket;

    /// A librdkafka topic handle, destroyed before the producer (declared first in its owner).
    pub struct Topic(*mut rd::rd_kafka_topic_t);

    // SAFETY: librdkafka topic handles may be used from any thread.
    unsafe impl Send for Topic {}

    impl Topic {
        pub fn new(producer: &Kafka, name: &str) -> Result<Topic, String> {
            let cname = CString::new(name).map_err(|_| format!("topic {name:?} contains a NUL byte"))?;
            // SAFETY: the client pointer is valid while `producer` lives; a null conf means the
            // default topic configuration (from the global one).
            let rkt = unsafe { rd::rd_kafka_topic_new(producer.client().native_ptr(), cname.as_ptr(), std::ptr::null_mut()) };
            if rkt.is_null() {
                // SAFETY: reads the calling thread's last librdkafka error.
                let code: RDKafkaErrorCode = unsafe { rd::rd_kafka_last_error() }.into();
                return Err(format!("topic {name:?}: {code}"));
            }
            Ok(Topic(rkt))
        }
    }

    impl Drop for Topic {
        fn drop(&mut self) {
            // SAFETY: made by rd_kafka_topic_new, destroyed once, while its client lives.
            unsafe { rd::rd_kafka_topic_destroy(self.0) }
        }
    }

    /// The thread serving librdkafka's main queue: delivery reports go to the driver a batch
    /// at a time (one lock per batch, not per message), logs and errors to the context.
    pub struct Poller {
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
        producer: Kafka,
    }

    /// How long one wait on the queue lasts (the stop flag is checked between waits).
    const POLL_MS: i32 = 100;

    impl Poller {
        pub fn start(producer: Kafka) -> std::io::Result<Poller> {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let mine = producer.clone();
            let thread = std::thread::Builder::new().name("kafka-reports".into()).spawn(move || {
                // SAFETY: the queue handle is taken and released while `producer` (an Arc
                // held by this thread) keeps the client alive.
                unsafe {
                    let queue = rd::rd_kafka_queue_get_main(mine.client().native_ptr());
                    while !flag.load(Ordering::Acquire) {
                        let ev = rd::rd_kafka_queue_poll(queue, POLL_MS);
                        if !ev.is_null() {
                            serve(&mine, ev);
                            rd::rd_kafka_event_destroy(ev);
                        }
                    }
                    rd::rd_kafka_queue_destroy(queue);
                }
            })?;
            Ok(Poller { stop, thread: Some(thread), producer })
        }
    }

    impl Drop for Poller {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
            // SAFETY: a queue handle of a live client, used once and released; yield makes
            // the thread's current wait return at once instead of at its timeout.
            unsafe {
                let queue = rd::rd_kafka_queue_get_main(self.producer.client().native_ptr());
                rd::rd_kafka_queue_yield(queue);
                rd::rd_kafka_queue_destroy(queue);
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// One event from the main queue.
    ///
    /// # Safety
    /// `ev` is a live event of `producer`'s main queue, destroyed by the caller afterwards.
    unsafe fn serve(producer: &Kafka, ev: *mut rd::rd_kafka_event_t) {
        let context = producer.context();
        // SAFETY (all blocks): librdkafka's accessors on a live event; the strings and
        // messages they return live as long as the event.
        match unsafe { rd::rd_kafka_event_type(ev) } {
            rd::RD_KAFKA_EVENT_DR => {
                let mut batch = context.reporter.batch();
                loop {
                    let m = unsafe { rd::rd_kafka_event_message_next(ev) };
                    if m.is_null() {
                        break;
                    }
                    let (err, opaque) = unsafe { ((*m).err, (*m)._private) };
                    let ticket = Ticket::from_raw(opaque as u64);
                    if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        batch.delivered(ticket);
                    } else {
                        batch.failed(ticket, &RDKafkaErrorCode::from(err));
                    }
                }
            }
            rd::RD_KAFKA_EVENT_LOG => {
                let (mut fac, mut text, mut level) = (std::ptr::null(), std::ptr::null(), 0);
                if unsafe { rd::rd_kafka_event_log(ev, &mut fac, &mut text, &mut level) } == 0 {
                    let (fac, text) = unsafe { (CStr::from_ptr(fac).to_string_lossy(), CStr::from_ptr(text).to_string_lossy()) };
                    context.log(log_level(level), fac.trim(), text.trim());
                }
            }
            rd::RD_KAFKA_EVENT_ERROR => {
                let code = unsafe { rd::rd_kafka_event_error(ev) };
                let reason = unsafe { CStr::from_ptr(rd::rd_kafka_event_error_string(ev)).to_string_lossy() };
                context.error(KafkaError::Global(code.into()), reason.trim());
            }
            rd::RD_KAFKA_EVENT_STATS => {
                let json = unsafe { rd::rd_kafka_event_stats(ev) };
                if !json.is_null() {
                    context.stats_raw(unsafe { CStr::from_ptr(json) }.to_bytes());
                }
            }
            _ => {}
        }
    }

    /// Produce retries, from librdkafka's statistics (`statistics.interval.ms`).
    ///
    /// librdkafka retries a failed produce request (connection lost, request timed out,
    /// retriable broker error) by putting its messages back at the head of their partition's
    /// queue and sending them again in a later request; per message, within message.timeout.ms.
    /// Its per-broker `txretries` does not see these (in librdkafka 2.12 it counts only requests
    /// re-sent as they were: metadata and the like, never produce batches), so it is not used.
    /// What the statistics do show, per partition: `msgs`, messages produced to it, and
    /// `txmsgs`, messages put into produce requests, every sending counted. When a partition is
    /// idle in a snapshot (`msgq_cnt` and `msgs_inflight` both 0: nothing queued, nothing awaiting
    /// a response), each of its messages was sent once plus once per retry, so `txmsgs - msgs`
    /// is exactly the number of retries so far (less any messages that failed without ever
    /// being sent; never more). The counter takes the increase of that number since the last
    /// idle snapshot of the partition.
    ///
    /// So retries are counted with a delay: at the first statistics snapshot (every second by
    /// default) in which their partition is idle, which under a steady load may be a while, and
    /// retries in the last second before the stage exits are not counted. Re-calling produce
    /// after QueueFull (librdkafka's queue is full) is backpressure, not a retry: not counted.
    #[derive(Default)]
    pub struct Retries {
        /// Retries counted so far, per (topic, partition).
        counted: std::collections::HashMap<(String, i32), u64>,
    }

    #[derive(serde::Deserialize)]
    struct Stats {
        #[serde(default)]
        topics: std::collections::HashMap<String, TopicStats>,
    }

    #[derive(serde::Deserialize)]
    struct TopicStats {
        #[serde(default)]
        partitions: std::collections::HashMap<String, PartitionStats>,
    }

    #[derive(serde::Deserialize)]
    struct PartitionStats {
        partition: i32,
        #[serde(default)]
        msgq_cnt: i64,
        #[serde(default)]
        msgs_inflight: i64,
        #[serde(default)]
        txmsgs: u64,
        #[serde(default)]
        msgs: u64,
    }

    impl Retries {
        /// Retries counted so far.
        #[cfg(test)]
        pub fn total(&self) -> u64 {
            self.counted.values().sum()
        }

        /// One statistics snapshot (librdkafka's JSON).
        pub fn stats(&mut self, json: &[u8]) {
            let stats: Stats = match serde_json::from_slice(json) {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("librdkafka statistics not understood: {e}");
                    return;
                }
            };
            let mut new = 0;
            for (topic, t) in stats.topics {
                for p in t.partitions.into_values() {
                    // -1 is the queue of messages not yet given a partition: never sent from.
                    if p.partition < 0 || p.msgq_cnt != 0 || p.msgs_inflight != 0 {
                        continue;
                    }
                    let retried = p.txmsgs.saturating_sub(p.msgs);
                    let counted = self.counted.entry((topic.clone(), p.partition)).or_default();
                    if retried > *counted {
                        new += retried - *counted;
                        *counted = retried;
                    }
                }
            }
            if new > 0 {
                tracing::info!("librdkafka sent {new} message(s) again after failed produce requests");
                crate::metrics::events::publish_retries(new);
            }
        }
    }

    fn log_level(level: i32) -> RDKafkaLogLevel {
        match level {
            0 => RDKafkaLogLevel::Emerg,
            1 => RDKafkaLogLevel::Alert,
            2 => RDKafkaLogLevel::Critical,
            3 => RDKafkaLogLevel::Error,
            4 => RDKafkaLogLevel::Warning,
            5 => RDKafkaLogLevel::Notice,
            6 => RDKafkaLogLevel::Info,
            _ => RDKafkaLogLevel::Debug,
        }
    }

    /// One produce call's arguments, reused from message to message.
    pub struct Args(Vec<rd::rd_kafka_vu_t>);

    fn vu(vtype: rd::rd_kafka_vtype_t, u: rd::rd_kafka_vu_s__bindgen_ty_1) -> rd::rd_kafka_vu_t {
        rd::rd_kafka_vu_t { vtype, u }
    }

    impl Args {
        pub fn new() -> Args {
            Args(Vec::with_capacity(16))
        }

        /// Start a message: topic, partition (-1: the partitioner's choice), value, opaque.
        pub fn start(&mut self, topic: &Topic, partition: i32, value: &[u8], opaque: usize) {
            use rd::rd_kafka_vtype_t::*;
            self.0.clear();
            self.0.push(vu(RD_KAFKA_VTYPE_RKT, rd::rd_kafka_vu_s__bindgen_ty_1 { rkt: topic.0 }));
            self.0.push(vu(RD_KAFKA_VTYPE_PARTITION, rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: partition }));
            self.0.push(vu(RD_KAFKA_VTYPE_MSGFLAGS, rd::rd_kafka_vu_s__bindgen_ty_1 { i: rd::RD_KAFKA_MSG_F_COPY }));
            let mem = rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr: value.as_ptr() as *mut c_void, size: value.len() };
            self.0.push(vu(RD_KAFKA_VTYPE_VALUE, rd::rd_kafka_vu_s__bindgen_ty_1 { mem }));
            self.0.push(vu(RD_KAFKA_VTYPE_OPAQUE, rd::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque as *mut c_void }));
        }

        pub fn key(&mut self, key: &[u8]) {
            let mem = rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr: key.as_ptr() as *mut c_void, size: key.len() };
            self.0.push(vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_KEY, rd::rd_kafka_vu_s__bindgen_ty_1 { mem }));
        }

        pub fn header(&mut self, name: &CStr, value: &[u8]) {
            let header = rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                name: name.as_ptr(),
                val: value.as_ptr() as *const c_void,
                size: value.len() as isize,
            };
            self.0.push(vu(rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER, rd::rd_kafka_vu_s__bindgen_ty_1 { header }));
        }

        /// Produce the message (librdkafka copies every byte it needs before returning).
        ///
        /// # Safety
        /// Every pointer given to `start`, `key` and `header` since the last `start` must still
        /// be valid, and `producer` must be the client `topic` was made from.
        pub unsafe fn produce(&self, producer: &Kafka) -> Result<(), (RDKafkaErrorCode, String)> {
            // SAFETY: see the function's contract; the array outlives the call.
            let err = unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), self.0.as_ptr(), self.0.len()) };
            if err.is_null() {
                return Ok(());
            }
            // SAFETY: a non-null error from produceva is ours to read and destroy once.
            unsafe {
                let code = rd::rd_kafka_error_code(err).into();
                let text = CStr::from_ptr(rd::rd_kafka_error_string(err)).to_string_lossy().into_owned();
                rd::rd_kafka_error_destroy(err);
                Err((code, text))
            }
        }
    }

    // SAFETY: the argument array holds pointers only between `start` and `produce`, on one thread.
    unsafe impl Send for Args {}
}

struct KafkaPublisher {
    shape: Shape,
    /// Declared before `producer`: dropped first.
    native: Option<(native::Topic, native::Args)>,
    producer: Option<Kafka>,
    headers: Vec<std::ffi::CString>,
    scratch: Vec<u8>,
}

const SOURCE_HEADERS: [&std::ffi::CStr; 4] = [c"s3s.bucket", c"s3s.key", c"s3s.file", c"s3s.line"];

impl Publisher for KafkaPublisher {
    #[inline]
    fn publish(&mut self, line: &Line<'_>, ticket: Ticket) -> Result<(), PublishError> {
        let (Some(producer), Some((topic, call))) = (&self.producer, &mut self.native) else {
            unreachable!("a dry-run publisher is never asked to publish");
        };
        let shape = &self.shape;
        let (key, value) = shape.key_value(line, &mut self.scratch);
        call.start(topic, shape.partition.unwrap_or(-1), value, ticket.to_raw() as usize);
        if let Some(k) = key {
            call.key(k);
        }
        // Header values borrowed from the record, or decoded into these (only when escaped).
        let (mut s1, mut s2, mut s3);
        if shape.wants_headers() {
            for (i, (_, value)) in shape.headers.iter().enumerate() {
                call.header(&self.headers[i], value);
            }
            if shape.source_headers {
                (s1, s2, s3) = (Vec::new(), Vec::new(), Vec::new());
                match (line.bucket, line.key, line.file) {
                    (Some(b), Some(k), _) => {
                        call.header(SOURCE_HEADERS[0], b.bytes(&mut s1));
                        call.header(SOURCE_HEADERS[1], k.bytes(&mut s2));
                    }
                    (_, _, Some(f)) => call.header(SOURCE_HEADERS[2], f.bytes(&mut s1)),
                    _ => {}
                }
                if let Some(n) = line.n {
                    call.header(SOURCE_HEADERS[3], n.bytes(&mut s3));
                }
            }
        }
        loop {
            // SAFETY: value, key and header values borrow `line`, `self.scratch`, `shape` and
            // s1..s3, all alive here; names are 'static or owned by `self.headers`.
            match unsafe { call.produce(producer) } {
                Ok(()) => return Ok(()),
                Err((RDKafkaErrorCode::QueueFull, _)) => {
                    // librdkafka's queue is full (queue.buffering.max.* below --max-in-flight):
                    // wait for deliveries to make room.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((RDKafkaErrorCode::Fatal, _)) => {
                    let why = producer.client().fatal_error().map(|(_, s)| s).unwrap_or_else(|| "fatal error".into());
                    return Err(PublishError::Fatal(format!("producer: {why}")));
                }
                Err((_, text)) => return Err(PublishError::Rejected(text)),
            }
        }
    }

    fn describe(&mut self, line: &Line<'_>, out: &mut Vec<u8>) {
        self.shape.describe(line, out);
    }
}

/// Declared poller first: it stops (and lets go of its producer) before the producer drops.
struct KafkaControl {
    _poller: native::Poller,
    producer: Kafka,
}

impl Control for KafkaControl {
    fn flush(&self, timeout: Duration) -> bool {
        // librdkafka's own flush: send now (no linger), wait until its queues are empty (our
        // poller takes the reports). rdkafka's `Producer::flush` would then poll on for its
        // whole timeout slice.
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: a live client; rd_kafka_flush is thread-safe.
        let err = unsafe { rdkafka::bindings::rd_kafka_flush(self.producer.client().native_ptr(), ms) };
        err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    }

    fn abort(&self) {
        self.producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    }
}

/// Read a kcat-style properties file: `prop=value` lines, blank lines and `#` comments.
pub fn read_properties(path: &Path) -> Result<Vec<(String, String)>, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsageError(format!("-F {}: {e}", path.display())))?;
    let mut props = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => props.push((k.trim().to_string(), v.trim().to_string())),
            _ => return Err(UsageError(format!("-F {} line {}: expected PROP=VALUE, got {line:?}", path.display(), i + 1))),
        }
    }
    Ok(props)
}

/// The librdkafka configuration: defaults, then -F, then -b, then -X.
pub fn client_config(args: &Args) -> Result<ClientConfig, UsageError> {
    let mut user = Vec::new();
    if let Some(path) = &args.config_file {
        user.extend(read_properties(path)?);
    }
    if let Some(b) = &args.brokers {
        user.push(("bootstrap.servers".to_string(), b.clone()));
    }
    for x in &args.property {
        match x.split_once('=') {
            Some((k, v)) if !k.is_empty() => user.push((k.to_string(), v.to_string())),
            _ => return Err(UsageError(format!("-X wants PROP=VALUE, got {x:?}"))),
        }
    }
    let mut config = ClientConfig::new();
    let set_by_user = |name: &str| user.iter().any(|(k, _)| k == name);
    for (k, v) in DEFAULTS {
        config.set(*k, *v);
    }
    // acks=1 or 0 cannot go with idempotence: a user who lowers acks gets no idempotence
    // (unless asked for explicitly, when librdkafka's own error says why not).
    let acks = user.iter().rev().find(|(k, _)| k == "acks" || k == "request.required.acks").map(|(_, v)| v.as_str());
    if acks.is_some_and(|a| a != "all" && a != "-1") && !set_by_user("enable.idempotence") {
        config.set("enable.idempotence", "false");
    }
    for (k, v) in &user {
        config.set(k, v);
    }
    let has_brokers = ["bootstrap.servers", "metadata.broker.list"].iter().any(|k| config.get(k).is_some_and(|v| !v.is_empty()));
    if !has_brokers && !args.sink.dry_run {
        return Err(UsageError("no brokers: give -b BROKERS, set S3S_KAFKA_BROKERS, or bootstrap.servers in -F/-X".into()));
    }
    let debug = config.get("debug").is_some();
    config.set_log_level(if args.common.quiet {
        RDKafkaLogLevel::Error
    } else if debug || args.common.verbose >= 2 {
        RDKafkaLogLevel::Debug
    } else if args.common.verbose == 1 {
        RDKafkaLogLevel::Info
    } else {
        RDKafkaLogLevel::Warning
    });
    // Check every property now (names, values), whether or not a producer is made.
    config.create_native_config().map_err(config_error)?;
    Ok(config)
}

fn config_error(e: KafkaError) -> UsageError {
    match e {
        KafkaError::ClientConfig(_, desc, key, value) => UsageError(format!("librdkafka configuration: {key}={value}: {desc}")),
        KafkaError::ClientCreation(desc) => UsageError(format!("librdkafka configuration: {desc}")),
        other => UsageError(format!("librdkafka configuration: {other}")),
    }
}

/// Run `s3s-kafka`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let shape = Shape::new(&args)?;
    let config = client_config(&args)?;
    let driver = Driver { tool: TOOL, args: &args.sink, field: args.key_field.clone() };
    let dry_run = args.sink.dry_run;
    sink::run(driver, move |reporter| {
        if dry_run {
            let publisher = KafkaPublisher { shape, native: None, producer: None, headers: Vec::new(), scratch: Vec::new() };
            return Ok((publisher, Arc::new(NoControl) as Arc<dyn Control>));
        }
        let context = Context {
            reporter,
            debug: config.get("debug").is_some(),
            retries: Default::default(),
            seen_errors: Default::default(),
        };
        let producer: Kafka = Arc::new(config.create_with_context(context).map_err(config_error)?);
        let poller = native::Poller::start(producer.clone()).context("starting the delivery report thread")?;
        let headers = shape
            .headers
            .iter()
            .map(|(name, _)| std::ffi::CString::new(name.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| UsageError("-H: a header name contains a NUL byte".into()))?;
        let topic = native::Topic::new(&producer, &shape.topic).map_err(UsageError)?;
        let publisher = KafkaPublisher {
            shape,
            native: Some((topic, native::Args::new())),
            producer: Some(producer.clone()),
            headers,
            scratch: Vec::with_capacity(256),
        };
        Ok((publisher, Arc::new(KafkaControl { _poller: poller, producer }) as Arc<dyn Control>))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_consistent() {
        Args::command().debug_assert();
    }

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["s3s-kafka", "-t", "topic", "-b", "127.0.0.1:1"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn later_settings_win_and_acks_turns_idempotence_off() {
        let c = client_config(&args(&["-X", "linger.ms=50", "-X", "linger.ms=5"])).unwrap();
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        let c = client_config(&args(&["-X", "acks=1"])).unwrap();
        assert_eq!(c.get("enable.idempotence"), Some("false"));
        // Asked for both: librdkafka refuses when the producer is made (an integration test).
        let c = client_config(&args(&["-X", "acks=1", "-X", "enable.idempotence=true"])).unwrap();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn retries_are_counted_from_idle_partitions_only_and_once() {
        let snap = |q0: i64, f0: i64, tx0: u64, tx1: u64| {
            format!(
                r#"{{"name":"x","topics":{{"t":{{"topic":"t","partitions":{{
                "0":{{"partition":0,"msgq_cnt":{q0},"msgs_inflight":{f0},"txmsgs":{tx0},"msgs":100}},
                "1":{{"partition":1,"msgq_cnt":0,"msgs_inflight":0,"txmsgs":{tx1},"msgs":50}},
                "-1":{{"partition":-1,"msgq_cnt":0,"msgs_inflight":0,"txmsgs":0,"msgs":0}}}}}}}}}}"#
            )
        };
        let mut r = native::Retries::default();
        // Partition 0 is busy (messages queued or in flight): not counted yet.
        r.stats(snap(5, 0, 130, 50).as_bytes());
        r.stats(snap(0, 7, 130, 50).as_bytes());
        assert_eq!(r.total(), 0);
        // Idle: 30 messages were sent twice.
        r.stats(snap(0, 0, 130, 60).as_bytes());
        assert_eq!(r.total(), 40);
        // The same snapshot again, or a lower figure, counts nothing more.
        r.stats(snap(0, 0, 130, 55).as_bytes());
        assert_eq!(r.total(), 40);
        r.stats(b"not json");
        assert_eq!(r.total(), 40);
    }

    #[test]
    fn config_errors_are_usage_errors() {
        let e = client_config(&args(&["-X", "no.such.property=1"])).unwrap_err();
        assert!(e.0.contains("no.such.property"), "{e}");
        let e = client_config(&args(&["-X", "compression.type=snappy2"])).unwrap_err();
        assert!(e.0.contains("compression.type"), "{e}");
        assert!(client_config(&args(&["-X", "linger.ms"])).is_err());
    }
}
