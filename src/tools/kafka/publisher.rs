//! s3s-kafka's side of the driver: [`KafkaPublisher`] produces each line with one
//! `rd_kafka_produceva` call; [`KafkaControl`] flushes and purges librdkafka's queues.

use std::time::Duration;

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer;

use super::context::Kafka;
use super::message::Encoder;
use super::native;
use crate::sink::{Control, Line, PublishError, Publisher, Ticket};

pub(super) struct KafkaPublisher {
    pub(super) encoder: Encoder,
    /// Declared before `producer`: dropped first.
    pub(super) native: Option<(native::Topic, native::Produce)>,
    pub(super) producer: Option<Kafka>,
    pub(super) headers: Vec<std::ffi::CString>,
    pub(super) scratch: Vec<u8>,
}

const SOURCE_HEADERS: [&std::ffi::CStr; 4] = [c"s3s.bucket", c"s3s.key", c"s3s.file", c"s3s.line"];

impl Publisher for KafkaPublisher {
    #[inline]
    fn publish(&mut self, line: &Line<'_>, ticket: Ticket) -> Result<(), PublishError> {
        let (Some(producer), Some((topic, call))) = (&self.producer, &mut self.native) else {
            unreachable!("a dry-run publisher is never asked to publish");
        };
        if producer.context().fatal.is_raised() {
            return Err(PublishError::Fatal(producer.context().fatal.reason().unwrap_or("fatal error").to_string()));
        }
        let shape = &self.encoder;
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
        self.encoder.describe(line, out);
    }
}

/// Declared poller first: it stops (and lets go of its producer) before the producer drops.
pub(super) struct KafkaControl {
    pub(super) _poller: native::Poller,
    pub(super) producer: Kafka,
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
