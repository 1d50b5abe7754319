//! The events stages emit: one function per thing that happens, the only place metric names
//! are spelled (Vector's `internal_events` habit). Hot paths count per buffer or per batch,
//! never with an atomic per line.

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

/// s3s-parse's counts, published as deltas of its running totals (whenever its input runs dry,
/// every 64Ki lines and at the end): no atomic per line.
#[derive(Debug)]
pub struct LinesParsed {
    parsed: metrics::Counter,
    errors: metrics::Counter,
    parsed_done: u64,
    errors_done: u64,
}

impl Default for LinesParsed {
    fn default() -> Self {
        Self::new()
    }
}

impl LinesParsed {
    pub fn new() -> Self {
        LinesParsed {
            parsed: counter!("s3s_lines_parsed_total"),
            errors: counter!("s3s_parse_errors_total"),
            parsed_done: 0,
            errors_done: 0,
        }
    }

    /// Publish the running totals: lines parsed, lines passed on with `parse_error`.
    pub fn emit(&mut self, parsed: u64, errors: u64) {
        self.parsed.increment(parsed - self.parsed_done);
        self.errors.increment(errors - self.errors_done);
        (self.parsed_done, self.errors_done) = (parsed, errors);
    }
}
