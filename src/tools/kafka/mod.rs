//! `s3s-kafka`: publish `line` records to Kafka (librdkafka through the `rdkafka` crate), with
//! kcat's flags, and forward the other records only once every earlier line is delivered.
//!
//! The ordering, failure, backpressure, dry-run, signal and drain logic is the shared publisher
//! driver in [`crate::sink`]; this module only shapes messages (value, key, headers), configures
//! librdkafka and turns its delivery reports into [`Reporter`] calls.
//!
//! The rooms: this one (flags, librdkafka configuration, setup), `message` (the encoder),
//! `publisher` (produce, flush, purge), `context` (librdkafka's callbacks), `native` (the FFI
//! hot path), `stats` (retries from librdkafka's statistics), `security` (TLS, SASL and MSK IAM
//! flags, secrets, fatal errors).
//!
//! Producer: a `BaseProducer` whose event queue is served by a thread of ours (`native::Poller`)
//! that hands each batch of delivery reports to the driver under one lock (the ticket is the
//! message's opaque value: no allocation per message on our side). Measured against rdkafka's
//! `ThreadedProducer`, whose poll thread reports message by message through
//! `ProducerContext::delivery` (and spins ~1% of a core while idle), and `FutureProducer` (a
//! oneshot channel and a future per message): see the README. Messages are produced with
//! `rd_kafka_produceva` and a topic handle made once; librdkafka copies each message
//! (`RD_KAFKA_MSG_F_COPY`), so the payload is borrowed from the record bytes.

mod context;
mod message;
mod native;
mod publisher;
mod security;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;

use self::context::{Context, Kafka};
use self::message::Encoder;
use self::publisher::{KafkaControl, KafkaPublisher};
use crate::aws::lease::Keeper;
use crate::cli::{Common, Status, UsageError};
use crate::sink::{self, Control, NoControl, SinkArgs, Stage};

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
/// `--payload json`, the whole record; with `--payload fields`, the record's parsed fields
/// from s3s-parse). Every other record (`end`, `message`, types it does not
/// know) is written to stdout in input order, but only after every earlier line has a
/// successful delivery report, so that `s3s-ack` downstream deletes an SQS message only once
/// all its lines are in Kafka. A line that fails for good (after librdkafka's own retries,
/// within message.timeout.ms) withholds its object's `end` record: reported on stderr, the rest
/// goes on, and the exit status is 1. Line records marked `"dry_run":true` are never sent.
///
/// librdkafka is configured from the defaults (enable.idempotence=true, acks=all,
/// compression.type=lz4, linger.ms=10, batch.size=1000000, statistics.interval.ms=1000), then
/// the security flags (--tls*, --sasl-*, --aws-msk-iam), then the -F file, then -b, then each
/// -X in order (the last setting wins). Setting acks to anything but all also turns the
/// idempotence default off.
///
/// Security: TLS (security.protocol=SSL) with --tls or any --tls-* flag; SASL with
/// --sasl-mechanism (over TLS: SASL_SSL, unless -X security.protocol=SASL_PLAINTEXT), the
/// password from --sasl-password-file or S3S_KAFKA_SASL_PASSWORD, never the command line;
/// Amazon MSK IAM with --aws-msk-iam (SASL/OAUTHBEARER over TLS, tokens signed with the
/// standard AWS credential chain and signed again before they expire). A refused password,
/// token or certificate stops s3s-kafka at once (exit 1, nothing more acknowledged) rather
/// than retrying until message.timeout.ms. No secret value is ever printed.
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
    s3s-kafka -t cdn -F /etc/s3s/kafka.properties       # any librdkafka property
    s3s-kafka -b b-1.cdn.abc123.c2.kafka.eu-west-1.amazonaws.com:9098 -t cdn --aws-msk-iam
    S3S_KAFKA_SASL_PASSWORD=... s3s-kafka -b kafka:9096 -t cdn --sasl-mechanism SCRAM-SHA-512 --sasl-username s3s
    s3s-kafka -b kafka:9093 -t cdn --tls-ca ca.pem --tls-cert me.pem --tls-key me.key
    s3s-kafka -t cdn --key-field key --source-headers -H source=cloudfront
    s3s-kafka -t cdn --payload json                      # the whole record as the value
    s3s-parse | s3s-kafka -t cdn --payload fields --key-field c-ip   # parsed fields, keyed by client
    s3s-cat access.log | s3s-kafka -t cdn --dry-run 2>&1 >/dev/null | jq .

DRY RUN:
    With --dry-run (and for line records marked \"dry_run\":true) nothing is sent; each line
    that would be is described on stderr as one JSON object:
    {\"topic\":T,\"partition\":P,\"key\":K|null,\"headers\":[[NAME,VALUE],...],\"value\":V}
    (partition and headers only when set). No broker is contacted with --dry-run.

ENVIRONMENT:
    S3S_KAFKA_BROKERS (-b), S3S_KAFKA_TOPIC (-t), S3S_KAFKA_CONFIG (-F),
    S3S_KAFKA_SASL_USERNAME (--sasl-username), S3S_KAFKA_SASL_PASSWORD (the SASL password,
    unless --sasl-password-file), the standard AWS variables for --aws-msk-iam (AWS_PROFILE,
    AWS_REGION, AWS_ACCESS_KEY_ID...), S3S_DRAIN_TIMEOUT, S3S_LOG (log filter).

EXIT STATUS:
    0 every line delivered and every record forwarded (also when stdout was closed early);
    1 a line failed delivery (its end record withheld), lines unconfirmed at the drain
    timeout, malformed input lines, a fatal producer error, or refused credentials or
    certificates; 2 usage or librdkafka configuration error."
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

    /// The message value: the line's text (raw), the whole record as it came (json), or the
    /// record's "fields" object as it came (fields; a line without one, such as a line
    /// s3s-parse could not parse, is sent as the whole record).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = PayloadFormat::Raw)]
    pub payload: PayloadFormat,

    /// The same message key for every line.
    #[arg(short = 'k', long, value_name = "KEY", conflicts_with_all = ["key_field", "key_delimiter"])]
    pub key: Option<String>,

    /// Key each message with this field of its record: a top-level member, else a member of its
    /// "fields" object (c-ip); a string's text, or the JSON text of a number; no key when the
    /// field is missing or null.
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
    pub security: security::SecurityArgs,

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
    /// The record's "fields" object (s3s-parse), byte for byte as it came; the whole record for
    /// a line without one.
    Fields,
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
            // The line is not shown: it may hold a secret.
            _ => return Err(UsageError(format!("-F {} line {}: expected PROP=VALUE", path.display(), i + 1))),
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
            _ if security::is_secret(x) => return Err(UsageError("-X wants PROP=VALUE".into())),
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
    // The security flags, then -F and -X (which win).
    let password = std::env::var(security::PASSWORD_ENV).ok();
    for (k, v) in security::properties(&args.security, password)? {
        config.set(k, v);
    }
    for (k, v) in &user {
        config.set(k, v);
    }
    security::check(&args.security, |k| config.get(k).map(str::to_string))?;
    security::warn_secrets_in_argv(&args.property);
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
        KafkaError::ClientConfig(_, desc, key, value) => {
            // A secret's value is not shown, not even inside librdkafka's description.
            let desc = if security::is_secret(&key) && !value.is_empty() { desc.replace(&value, "...") } else { desc };
            UsageError(format!("librdkafka configuration: {key}={}: {desc}", security::shown(&key, &value)))
        }
        KafkaError::ClientCreation(desc) => UsageError(format!("librdkafka configuration: {desc}")),
        other => UsageError(format!("librdkafka configuration: {other}")),
    }
}

/// Run `s3s-kafka`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let encoder = Encoder::new(&args)?;
    let config = client_config(&args)?;
    let stage = Stage { tool: TOOL, args: &args.sink, field: args.key_field.clone(), hold: Some(Arc::new(Keeper::new())) };
    let dry_run = args.sink.dry_run;
    sink::run(stage, move |reporter| {
        if dry_run {
            let publisher = KafkaPublisher { encoder, native: None, producer: None, headers: Vec::new(), scratch: Vec::new() };
            return Ok((publisher, Arc::new(NoControl) as Arc<dyn Control>));
        }
        let msk = match args.security.aws_msk_iam {
            true => Some(security::MskIam::new(&args.security, config.get("bootstrap.servers"))?),
            false => None,
        };
        let context = Context {
            reporter,
            debug: config.get("debug").is_some(),
            retries: Default::default(),
            seen_errors: Default::default(),
            msk,
            fatal: Default::default(),
        };
        let producer: Kafka = Arc::new(config.create_with_context(context).map_err(config_error)?);
        let poller = native::Poller::start(producer.clone()).context("starting the delivery report thread")?;
        let headers = encoder
            .headers
            .iter()
            .map(|(name, _)| std::ffi::CString::new(name.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| UsageError("-H: a header name contains a NUL byte".into()))?;
        let topic = native::Topic::new(&producer, &encoder.topic).map_err(UsageError)?;
        let publisher = KafkaPublisher {
            encoder,
            native: Some((topic, native::Produce::new())),
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
        let mut r = stats::Retries::default();
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
