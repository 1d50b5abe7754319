//! `s3s-es`: index `line` records into Elasticsearch or OpenSearch through the `_bulk` API, and
//! forward the other records only once every earlier line is indexed (or dead-lettered).
//!
//! The ordering, failure, backpressure, dry-run, signal and drain logic is the shared publisher
//! driver in [`crate::sink`]; this stage shapes documents (`document`, `index`), batches them
//! (`publisher`), sends them and turns `_bulk` responses into [`crate::sink::Reporter`] calls (`bulk`), as
//! whom and where `auth` says, signed with SigV4 when `sigv4` says so.
//!
//! How a line travels:
//! - `publish` (the stdin thread) appends the line's action and document lines straight into
//!   the batch being built (one scan of the record, raw JSON slices copied, no tree); a full
//!   batch (`--batch-docs`, `--batch-bytes`) goes into a bounded channel, so stdin pauses while
//!   `--concurrency` requests are in flight and one more batch waits. A ticker sends a batch
//!   that is older than `--flush-interval`.
//! - A tokio task per batch POSTs it (round-robin over the `--url` nodes), retries a whole batch
//!   on transport errors, 429 and 5xx with exponential backoff and jitter, then settles each item
//!   of a 2xx response: indexed → delivered; 429/503 → into a smaller batch that is retried the
//!   same way; anything else → one NDJSON entry in `--dead-letter` (synced before the line counts
//!   as delivered) or, without one, a failed line (its object's `end` is withheld).
//!
//! HTTP is hyper 1 + hyper-rustls (aws-lc-rs provider): the AWS SDK already builds exactly these
//! crates, so the stage adds no TLS stack and no new HTTP client to the build; the TLS
//! configuration is the publishers' shared one ([`crate::sink::tls`]). Dates are
//! [`crate::clock`]'s.

mod auth;
mod bulk;
mod document;
mod index;
mod publisher;
mod sigv4;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use clap::Parser;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;

use self::bulk::{Batch, Ctx, Https};
use self::document::Encoder;
use self::publisher::{EsControl, EsPublisher};
use crate::aws::lease::Keeper;
use crate::backoff::Backoff;
use crate::cli::{Common, Status, UsageError};
use crate::dead_letter::DeadLetter;
use crate::duration::parse_duration;
use crate::sink::tls::TlsOptions;
use crate::sink::{self, Control, NoControl, SinkArgs, Stage};

const TOOL: &str = "s3s-es";

/// Index `line` records into Elasticsearch or OpenSearch (_bulk API), and pass every other
/// record on only once the lines before it are indexed or dead-lettered.
///
/// Each `line` record becomes one document:
/// {"@timestamp":T,"message":LINE,"s3":{"bucket":B,"key":K,"line":N},...} ("file":{"path":P,
/// "line":N} for local files), plus every other top-level field the record carries (etag...),
/// copied as they are, and the members of its "fields" object (s3s-parse) at the document's top
/// level, not nested: numbers stay numbers (sc-status is indexed as a number); a member named
/// like one the document already has (message, s3, file, @timestamp, a copied field) is written
/// as "fields.NAME". A record without "line" (s3s-parse --drop-line) has no "message". T is the
/// record's event time (--time-field, else "@timestamp", which s3s-parse sets to the line's own
/// time, else "event_time": RFC 3339, or epoch milliseconds), else now; the index name's date
/// patterns use the same time, in UTC.
///
/// Documents are sent in batches (--batch-docs, --batch-bytes, --flush-interval), at most
/// --concurrency requests at a time. A request that fails (connection error, 429, 5xx) is
/// retried with exponential backoff and jitter, --max-retries times, then its lines fail. In a
/// response with errors, items rejected with 429 or 503 are retried the same way; any other
/// rejected item (a mapping conflict, a bad document) is written with its reason to
/// --dead-letter, or fails when none is given. An `end` record is forwarded only once each of
/// its object's lines is indexed or dead-lettered; a failed line withholds it (reported on
/// stderr, exit status 1), so the SQS message comes back later.
#[derive(Debug, Parser)]
#[command(
    name = "s3s-es",
    version,
    after_long_help = "EXAMPLES:
    s3s-poll | s3s-cat | s3s-es --url https://es1:9200 --url https://es2:9200 -i 'cdn-%Y.%m.%d' | s3s-ack
    S3S_ES_PASSWORD=... s3s-es --url https://es:9200 --user ingest -i cdn --ca-cert /etc/ssl/es-ca.pem
    S3S_ES_API_KEY=$(cat key) s3s-es --url https://es:9200 -i logs-cdn --op-type create   # a data stream
    s3s-es -i cdn --id-from-source --dead-letter /var/lib/s3s/es-dead.ndjson  # redelivery overwrites
    s3s-es --url https://search-cdn-abc.eu-west-1.es.amazonaws.com -i 'cdn-%Y.%m.%d' --aws-sigv4 --gzip
    s3s-es --url https://abc123.eu-west-1.aoss.amazonaws.com -i cdn --aws-sigv4 aoss
    s3s-cat access.log | s3s-es -i 'cdn-%Y.%m.%d' --dry-run 2>&1 >/dev/null | head -2

INDEX PATTERNS:
    %Y year, %y two-digit year, %m month, %d day, %j day of the year, %H hour, %M minute,
    %S second, %G ISO week-based year, %V ISO week, %% a percent sign; always UTC.

DRY RUN:
    With --dry-run (and for line records marked \"dry_run\":true) nothing is sent; the bulk body
    that would be sent is written to stderr: an action line and a document line per record.
    No server is contacted with --dry-run.

DEAD LETTERS:
    One JSON object per rejected document, appended to --dead-letter FILE and synced before the
    line counts as handled: {\"status\":S,\"reason\":\"TYPE: REASON\",\"error\":{...},
    \"action\":{...},\"document\":{...}}. The action and document lines can be sent again to
    _bulk once the cause is fixed. A 409 for --op-type create counts as indexed (the document is
    already there).

ENVIRONMENT:
    S3S_ES_URL (--url, comma-separated), S3S_ES_INDEX (--index), S3S_ES_USER (--user),
    S3S_ES_PASSWORD (basic auth password), S3S_ES_API_KEY (API key: the base64 form Kibana shows,
    or ID:KEY), S3S_ES_BEARER_TOKEN (bearer token), the standard AWS variables for --aws-sigv4
    (AWS_PROFILE, AWS_REGION, AWS_ACCESS_KEY_ID...), SSL_CERT_FILE and SSL_CERT_DIR (the system's
    CA certificates), S3S_DRAIN_TIMEOUT, S3S_LOG (log filter).
    Secrets are read from the environment or a file, never from the command line.

EXIT STATUS:
    0 every line indexed or dead-lettered and every record forwarded (also when stdout was
    closed early); 1 a line failed (its end record withheld), lines unconfirmed at the drain
    timeout, or malformed input lines; 2 usage or configuration error."
)]
pub struct Args {
    /// Node URL, e.g. https://es1:9200 (repeatable, or comma-separated); requests go round-robin
    /// over the nodes, so a retry after a connection error goes to the next one.
    #[arg(long = "url", value_name = "URL", env = "S3S_ES_URL", value_delimiter = ',')]
    pub urls: Vec<String>,

    /// Index (or data stream, or alias) to write to; date patterns like %Y.%m.%d take the
    /// record's event time, else now (see INDEX PATTERNS).
    #[arg(short = 'i', long, value_name = "NAME", env = "S3S_ES_INDEX")]
    pub index: String,

    /// Ingest pipeline to run each document through.
    #[arg(long, value_name = "NAME")]
    pub pipeline: Option<String>,

    /// The bulk action: index (create or overwrite) or create (data streams; fails if the _id
    /// exists, which --id-from-source turns into "already indexed").
    #[arg(long, value_enum, value_name = "OP", default_value_t = OpType::Index)]
    pub op_type: OpType,

    /// A deterministic _id from bucket, key, etag (when the record has one) and line number, so
    /// that a redelivered object overwrites its documents instead of duplicating them.
    #[arg(long)]
    pub id_from_source: bool,

    /// The record field that holds each line's event time (default: "@timestamp", then
    /// "event_time"); RFC 3339 text or epoch milliseconds.
    #[arg(long, value_name = "NAME")]
    pub time_field: Option<String>,

    /// Basic authentication user; the password comes from S3S_ES_PASSWORD or --password-file.
    #[arg(long, value_name = "USER", env = "S3S_ES_USER")]
    pub user: Option<String>,

    /// Read the basic authentication password from FILE (its first line).
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Read an API key from FILE (sent as "Authorization: ApiKey ..."; ID:KEY is encoded).
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,

    /// Read a bearer token from FILE (sent as "Authorization: Bearer ...").
    #[arg(long, value_name = "FILE")]
    pub bearer_token_file: Option<PathBuf>,

    /// Trust only the CA certificates in this PEM file for https URLs (instead of the system's).
    #[arg(long, visible_alias = "tls-ca", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Client certificate (PEM) for servers that require one; with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Do not verify the server's TLS certificate (a test cluster with a self-signed one).
    #[arg(long)]
    pub insecure: bool,

    /// Send a batch once it holds this many documents.
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch_docs: u64,

    /// Send a batch once its body reaches this size (e.g. 5MiB, 500k).
    #[arg(long, value_name = "SIZE", default_value = "5MiB", value_parser = parse_size)]
    pub batch_bytes: u64,

    /// Send a batch that has waited this long, full or not (e.g. 1s, 200ms).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub flush_interval: Duration,

    /// At most N bulk requests in flight.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,

    /// Compress request bodies with gzip (Content-Encoding: gzip).
    #[arg(long)]
    pub gzip: bool,

    /// Retries of a failed request (or of items rejected with 429/503) before its lines fail.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_retries: u32,

    /// The first retry's delay; each retry doubles it (with jitter), up to --max-backoff.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    pub backoff: Duration,

    /// The longest delay between retries.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub max_backoff: Duration,

    /// Give up on a request (and retry it) after this long without a complete response.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Append documents the server rejected (other than 429/503) to FILE as NDJSON, with the
    /// reason; without it such a document fails its line.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    #[command(flatten)]
    pub aws: sigv4::SigV4Args,

    #[command(flatten)]
    pub sink: SinkArgs,

    #[command(flatten)]
    pub common: Common,
}

/// The bulk action of each document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OpType {
    /// Create the document, or replace it when its _id exists.
    Index,
    /// Create the document; a document with its _id already there is left alone.
    Create,
}

/// Parse `5MiB`, `5M`, `500k`, `1024` (bytes); k/M/G are powers of 1024 like KiB/MiB/GiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size like 5MiB or 500k"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown unit {other:?} in {s:?} (use k, MiB or G)")),
    };
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{s:?}: out of range")),
        Some(v) => Ok(v),
    }
}

/// The HTTPS connector: the system's roots, --ca-cert's, or none checked (--insecure); a client
/// certificate with --tls-cert/--tls-key.
fn connector(args: &Args) -> Result<Https, UsageError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let opts = TlsOptions {
        ca: args.ca_cert.clone(),
        insecure: args.insecure,
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
        ..TlsOptions::default()
    };
    let config = crate::sink::tls::client_config(&opts, "--ca-cert").map_err(UsageError)?;
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(Arc::unwrap_or_clone(config));
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

/// Run `s3s-es`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let encoder = Encoder::new(&args)?;
    let dry_run = args.sink.dry_run;
    let batch_docs = args.batch_docs as usize;
    let batch_bytes = args.batch_bytes.min(usize::MAX as u64) as usize;
    let stage = Stage { tool: TOOL, args: &args.sink, field: None, hold: Some(Arc::new(Keeper::new())) };
    if dry_run {
        return sink::run(stage, move |_| {
            let publisher = EsPublisher { encoder, ctx: None, batch_docs, batch_bytes };
            Ok((publisher, Arc::new(NoControl) as Arc<dyn Control>))
        });
    }
    let endpoints = auth::endpoints(&args.urls)?;
    let auth = auth::auth_header(&args)?;
    auth::warn_cleartext_credentials(TOOL, &endpoints, auth.is_some());
    args.aws.check(auth.is_some())?;
    let https = connector(&args)?;
    let dead_letter = match &args.dead_letter {
        Some(p) => Some(DeadLetter::open("--dead-letter", p)?),
        None => None,
    };
    let concurrency = args.concurrency as usize;
    let flush_interval = args.flush_interval;
    sink::run(stage, move |reporter| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("es-send").enable_all().build()?;
        let http = {
            let _guard = rt.enter();
            HyperClient::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(50))
                .pool_max_idle_per_host(concurrency)
                .build(https)
        };
        // On the runtime that sends: the credential providers' HTTP clients belong to it.
        let signer = rt.block_on(args.aws.signer())?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
        let capacity = batch_bytes.min(16 << 20) + (batch_bytes.min(16 << 20) >> 3);
        let first = capacity.min(256 << 10);
        let ctx = Arc::new(Ctx {
            http,
            endpoints,
            next: AtomicUsize::new(0),
            auth,
            signer,
            gzip: args.gzip,
            timeout: args.timeout,
            max_retries: args.max_retries,
            backoff: Backoff::new(args.backoff, args.max_backoff).with_jitter(),
            op_type: args.op_type,
            reporter,
            dead_letter,
            building: Mutex::new(Batch { body: Vec::with_capacity(first), items: Vec::new(), started: None }),
            batch_capacity: capacity,
            flush_interval,
            outstanding: AtomicUsize::new(0),
            idle: (Mutex::new(()), Condvar::new()),
            aborted: AtomicBool::new(false),
            tx,
        });
        // The dispatcher: at most `concurrency` batches in flight.
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let c = ctx.clone();
        rt.spawn(async move {
            while let Some(batch) = rx.recv().await {
                let Ok(permit) = sem.clone().acquire_owned().await else { return };
                let c = c.clone();
                tokio::spawn(async move {
                    c.deliver(batch).await;
                    drop(permit);
                    c.settled();
                });
            }
        });
        // The ticker: send a batch that has waited --flush-interval.
        let c = ctx.clone();
        let tick = (flush_interval / 4).max(Duration::from_millis(5));
        rt.spawn(async move {
            let mut iv = tokio::time::interval(tick);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                if let Some(b) = c.take_due(false)
                    && c.tx.send(b).await.is_err()
                {
                    c.settled();
                    return;
                }
            }
        });
        let publisher = EsPublisher { encoder, ctx: Some(ctx.clone()), batch_docs, batch_bytes };
        Ok((publisher, Arc::new(EsControl { ctx, _rt: rt }) as Arc<dyn Control>))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(parse_size("5MiB").unwrap(), 5 << 20);
        assert_eq!(parse_size("500k").unwrap(), 500 << 10);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("0").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }
}
