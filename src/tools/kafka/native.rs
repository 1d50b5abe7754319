//! The unsafe part of s3s-kafka: librdkafka called directly where rust-rdkafka costs too much
//! per message.
//!
//! The hot path calls librdkafka's `rd_kafka_produceva` directly with a topic handle made once:
//! `BaseProducer::send` builds a `CString` of the topic name and librdkafka then looks the
//! topic up under a lock for every message. Delivery reports are read from librdkafka's main
//! queue by [`native::Poller`], a batch at a time; rust-rdkafka's own `poll` (called by its
//! `flush` and at drop) still works too, through `Context::delivery`.
use std::ffi::{CStr, CString, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use rdkafka::ClientContext;
use rdkafka::bindings as rd;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer;

use super::context::Kafka;
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
                    if mine.context().fatal.is_raised() {
                        // Nothing can be delivered any more: fail what waits, now (again after
                        // each wait, for lines produced meanwhile).
                        mine.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
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
                } else if let Some(why) = context.fatal.reason() {
                    // Purged because of it: the fatal error is the reason.
                    batch.failed(ticket, &why);
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
        rd::RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH => {
            let token = context.generate_oauth_token(None).map_err(|e| e.to_string());
            // SAFETY: the client lives as long as `producer`.
            unsafe { super::security::set_token(producer.client().native_ptr(), token) };
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
pub struct Produce(Vec<rd::rd_kafka_vu_t>);

fn vu(vtype: rd::rd_kafka_vtype_t, u: rd::rd_kafka_vu_s__bindgen_ty_1) -> rd::rd_kafka_vu_t {
    rd::rd_kafka_vu_t { vtype, u }
}

impl Produce {
    pub fn new() -> Produce {
        Produce(Vec::with_capacity(16))
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
unsafe impl Send for Produce {}
