//! `s3s-es`: index `line` records into Elasticsearch or OpenSearch through the `_bulk` API, and
//! forward the other records only once every earlier line is indexed (or dead-lettered).
//!
//! The ordering, failure, backpressure, dry-run, signal and drain logic is the shared publisher
//! driver in [`crate::sink`]; this module shapes documents, batches them and turns `_bulk`
//! responses into [`Reporter`] calls.
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
//! crates, so the stage adds no TLS stack and no new HTTP client to the build. Dates (index
//! patterns, `@timestamp`) are a few lines of civil-calendar arithmetic below: only UTC is ever
//! formatted and only RFC 3339 parsed, which does not justify a date crate.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use sha2::Digest;

use crate::cli::{Common, Status, UsageError};
use crate::metrics::events;
use crate::scan::{self, Raw, quote_into};
use crate::sink::{self, Control, Driver, Line, NoControl, PublishError, Publisher, Reporter, SinkArgs, Ticket, parse_duration};

const TOOL: &str = "s3s-es";

/// Index `line` records into Elasticsearch or OpenSearch (_bulk API), and pass every other
/// record on only once the lines before it are indexed or dead-lettered.
///
/// Each `line` record becomes one document:
/// {"@timestamp":T,"message":LINE,"s3":{"bucket":B,"key":K,"line":N},...} ("file":{"path":P,
/// "line":N} for local files), plus every other top-level field the record carries (fields added
/// by a parsing stage, etag...), copied as they are. T is the record's event time (--time-field,
/// else "@timestamp", else "event_time": RFC 3339, or epoch milliseconds), else now; the index
/// name's date patterns use the same time, in UTC.
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
    or ID:KEY), S3S_ES_BEARER_TOKEN (bearer token), S3S_DRAIN_TIMEOUT, S3S_LOG (log filter).
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
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

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

// ---------------------------------------------------------------------------------------------
// Dates: UTC only

/// (year, month, day) of a day number counted from 1970-01-01 (H. Hinnant's civil_from_days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The day number of a date (inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let (m, d) = (i64::from(m), i64::from(d));
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the epoch of an RFC 3339 / ISO 8601 date-time: `YYYY-MM-DD[T ]HH:MM:SS[.frac]`
/// then `Z`, `±HH:MM`, `±HHMM` or nothing (UTC).
fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let b = s.get(r)?;
        b.iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match s.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == s.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let (oh, om) = match s.len() - i {
                6 if s[i + 3] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                5 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                3 => (num(i + 1..i + 3)?, 0),
                _ => return None,
            };
            let o = oh * 3600 + om * 60;
            if sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Append `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the epoch.
fn format_rfc3339_millis(ms: i64, out: &mut Vec<u8>) {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    let _ =
        write!(out, "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", tod / 3600, tod / 60 % 60, tod % 60, ms.rem_euclid(1000));
}

/// ISO 8601 week-based year and week number of a day number.
fn iso_week(days: i64) -> (i64, u32) {
    let (y, _, _) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) + 1; // Monday = 1; 1970-01-01 was a Thursday
    let yday = days - days_from_civil(y, 1, 1) + 1;
    let weeks_in = |y: i64| {
        let p = |y: i64| (y + y.div_euclid(4) - y.div_euclid(100) + y.div_euclid(400)).rem_euclid(7);
        if p(y) == 4 || p(y - 1) == 3 { 53i64 } else { 52 }
    };
    let w = (yday - weekday + 10) / 7;
    if w < 1 {
        (y - 1, weeks_in(y - 1) as u32)
    } else if w > weeks_in(y) {
        (y + 1, 1)
    } else {
        (y, w as u32)
    }
}

/// One piece of an index pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Conv(char),
}

/// An index name with strftime-style date patterns, formatted per line with a cache keyed by
/// the finest unit it uses (a day for `%Y.%m.%d`), so most lines reuse the previous name.
#[derive(Debug, Clone)]
struct IndexPattern {
    pieces: Vec<Piece>,
    /// Seconds per distinct name (0: a fixed name).
    unit: i64,
    cache: Option<(i64, String)>,
}

impl IndexPattern {
    fn parse(s: &str) -> Result<IndexPattern, UsageError> {
        if s.is_empty() {
            return Err(UsageError("the index name is empty".into()));
        }
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut unit = 0i64;
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                if c.is_ascii_uppercase() || "\\/*?\"<>| ,#:".contains(c) {
                    return Err(UsageError(format!(
                        "index {s:?}: {c:?} is not allowed in an index name (lowercase, no \\ / * ? \" < > | , # : or space)"
                    )));
                }
                lit.push(c);
                continue;
            }
            let conv =
                chars.next().ok_or_else(|| UsageError(format!("index {s:?}: a lone % at the end (%% for a percent sign)")))?;
            let u = match conv {
                '%' => {
                    lit.push('%');
                    continue;
                }
                'Y' | 'y' | 'm' | 'd' | 'j' | 'G' | 'V' => 86_400,
                'H' => 3600,
                'M' => 60,
                'S' => 1,
                other => {
                    return Err(UsageError(format!(
                        "index {s:?}: %{other} is not supported (use %Y %y %m %d %j %H %M %S %G %V %%)"
                    )));
                }
            };
            unit = if unit == 0 { u } else { unit.min(u) };
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Conv(conv));
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        if let Some(Piece::Lit(first)) = pieces.first() {
            if first.starts_with(['-', '_', '+']) || first == "." || first == ".." {
                return Err(UsageError(format!("index {s:?}: must not start with -, _ or +, nor be . or ..")));
            }
        }
        Ok(IndexPattern { pieces, unit, cache: None })
    }

    /// The index name for a time (seconds since the epoch, UTC).
    fn name(&mut self, secs: i64) -> &str {
        let key = if self.unit == 0 { 0 } else { secs.div_euclid(self.unit) };
        if self.cache.as_ref().is_none_or(|(k, _)| *k != key) {
            self.cache = Some((key, self.format(secs)));
        }
        &self.cache.as_ref().expect("just set").1
    }

    fn format(&self, secs: i64) -> String {
        use std::fmt::Write as _;
        let days = secs.div_euclid(86_400);
        let tod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let mut out = String::new();
        for p in &self.pieces {
            let _ = match p {
                Piece::Lit(s) => write!(out, "{s}"),
                Piece::Conv('Y') => write!(out, "{y:04}"),
                Piece::Conv('y') => write!(out, "{:02}", y.rem_euclid(100)),
                Piece::Conv('m') => write!(out, "{m:02}"),
                Piece::Conv('d') => write!(out, "{d:02}"),
                Piece::Conv('j') => write!(out, "{:03}", days - days_from_civil(y, 1, 1) + 1),
                Piece::Conv('H') => write!(out, "{:02}", tod / 3600),
                Piece::Conv('M') => write!(out, "{:02}", tod / 60 % 60),
                Piece::Conv('S') => write!(out, "{:02}", tod % 60),
                Piece::Conv('G') => write!(out, "{:04}", iso_week(days).0),
                Piece::Conv('V') => write!(out, "{:02}", iso_week(days).1),
                Piece::Conv(_) => Ok(()),
            };
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Documents

/// Top-level record fields that the document shapes itself (never copied as extra fields).
const CONSUMED: &[&[u8]] = &[b"type", b"bucket", b"key", b"file", b"n", b"line", b"dry_run", b"etag", b"message", b"s3"];

/// How a line becomes a bulk action + document: everything but the transport.
struct Shape {
    index: IndexPattern,
    pipeline: Option<String>,
    op_type: OpType,
    id_from_source: bool,
    /// Time fields in the order they are tried.
    time_fields: Vec<Vec<u8>>,
    /// Reused per line: the record's members (key range, value).
    members: Vec<(usize, usize, Raw)>,
    scratch: Vec<u8>,
    /// `now` formatted, cached per millisecond.
    now_cache: (i64, Vec<u8>),
}

impl Shape {
    fn new(args: &Args) -> Result<Shape, UsageError> {
        let time_fields = match &args.time_field {
            Some(f) if f.is_empty() => return Err(UsageError("--time-field: empty name".into())),
            Some(f) => vec![f.clone().into_bytes()],
            None => vec![b"@timestamp".to_vec(), b"event_time".to_vec()],
        };
        if args.pipeline.as_deref() == Some("") {
            return Err(UsageError("--pipeline: empty name".into()));
        }
        Ok(Shape {
            index: IndexPattern::parse(&args.index)?,
            pipeline: args.pipeline.clone(),
            op_type: args.op_type,
            id_from_source: args.id_from_source,
            time_fields,
            members: Vec::with_capacity(16),
            scratch: Vec::with_capacity(256),
            now_cache: (i64::MIN, Vec::new()),
        })
    }

    /// Append the line's action line and document line, each ended by a newline.
    fn write(&mut self, line: &Line<'_>, out: &mut Vec<u8>) {
        let rec = line.record;
        self.members.clear();
        let members = &mut self.members;
        // The driver checked the record's structure; this finds the members again.
        let _ = scan::members(rec, |k, v| {
            let ks = k.as_ptr() as usize - rec.as_ptr() as usize;
            members.push((ks, ks + k.len(), v));
            true
        });
        let get = |name: &[u8]| self.members.iter().find(|(s, e, _)| &rec[*s..*e] == name).map(|m| m.2);
        let line_raw = get(b"line");
        let etag = get(b"etag");

        // The event time: the first time field that parses; else now.
        let mut time: Option<(usize, i64)> = None; // (index in time_fields, seconds)
        for (i, name) in self.time_fields.iter().enumerate() {
            let Some(v) = get(name) else { continue };
            let secs = if v.is_string {
                if v.escaped { None } else { parse_rfc3339(v.content(rec)) }
            } else {
                std::str::from_utf8(&rec[v.start..v.end]).ok().and_then(|t| t.parse::<i64>().ok()).map(|ms| ms.div_euclid(1000))
            };
            if let Some(secs) = secs {
                time = Some((i, secs));
                break;
            }
        }
        let secs = match time {
            Some((_, s)) => s,
            None => {
                let ms = now_millis();
                if self.now_cache.0 != ms {
                    self.now_cache.1.clear();
                    format_rfc3339_millis(ms, &mut self.now_cache.1);
                    self.now_cache.0 = ms;
                }
                ms.div_euclid(1000)
            }
        };

        // The action line.
        let action = match self.op_type {
            OpType::Index => &br#"{"index":{"_index":"#[..],
            OpType::Create => &br#"{"create":{"_index":"#[..],
        };
        out.extend_from_slice(action);
        quote_into(self.index.name(secs).as_bytes(), out);
        if self.id_from_source {
            out.extend_from_slice(br#","_id":""#);
            let mut h = sha2::Sha256::new();
            let mut feed = |v: Option<sink::Value<'_>>| {
                if let Some(v) = v {
                    h.update(v.bytes(&mut self.scratch));
                }
                h.update([0u8]);
            };
            match (line.bucket, line.key) {
                (Some(_), Some(_)) => {
                    feed(line.bucket);
                    feed(line.key);
                }
                _ => {
                    feed(None);
                    feed(line.file);
                }
            }
            if let Some(e) = etag.filter(|e| e.is_string) {
                self.scratch.clear();
                scan::unescape_into(e.content(rec), &mut self.scratch);
                h.update(&self.scratch);
            }
            h.update([0u8]);
            if let Some(n) = line.n {
                h.update(n.json());
            }
            let digest = h.finalize();
            let mut id = [0u8; 22];
            let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode_slice(&digest[..16], &mut id)
                .expect("22 bytes hold 16 in base64");
            out.extend_from_slice(&id[..len]);
            out.push(b'"');
        }
        if let Some(p) = &self.pipeline {
            out.extend_from_slice(br#","pipeline":"#);
            quote_into(p.as_bytes(), out);
        }
        out.extend_from_slice(b"}}\n");

        // The document.
        out.extend_from_slice(br#"{"@timestamp":"#);
        let used_time = time.map(|(i, _)| &self.time_fields[i][..]);
        match used_time.and_then(|name| get(name)) {
            Some(v) if v.is_string => {
                // Verbatim (its precision and offset kept), with a `T` for a space between date
                // and time: Elasticsearch's default date format wants the T.
                let at = out.len();
                out.extend_from_slice(&rec[v.start..v.end]);
                if out[at + 11] == b' ' {
                    out[at + 11] = b'T';
                }
            }
            Some(_) => {
                out.push(b'"');
                format_rfc3339_millis(secs * 1000, out);
                out.push(b'"');
            }
            None => match get(b"@timestamp") {
                // An @timestamp that is no date: the server decides (a dead letter, probably).
                Some(v) => out.extend_from_slice(&rec[v.start..v.end]),
                None => {
                    out.push(b'"');
                    out.extend_from_slice(&self.now_cache.1);
                    out.push(b'"');
                }
            },
        }
        out.extend_from_slice(br#","message":"#);
        match line_raw {
            Some(v) => out.extend_from_slice(&rec[v.start..v.end]),
            None => quote_into(line.text, out),
        }
        match (line.bucket, line.key, line.file) {
            (Some(b), Some(k), _) => {
                out.extend_from_slice(br#","s3":{"bucket":"#);
                out.extend_from_slice(b.json());
                out.extend_from_slice(br#","key":"#);
                out.extend_from_slice(k.json());
                if let Some(n) = line.n {
                    out.extend_from_slice(br#","line":"#);
                    out.extend_from_slice(n.json());
                }
                if let Some(e) = etag {
                    out.extend_from_slice(br#","etag":"#);
                    out.extend_from_slice(&rec[e.start..e.end]);
                }
                out.push(b'}');
            }
            (_, _, Some(f)) => {
                out.extend_from_slice(br#","file":{"path":"#);
                out.extend_from_slice(f.json());
                if let Some(n) = line.n {
                    out.extend_from_slice(br#","line":"#);
                    out.extend_from_slice(n.json());
                }
                out.push(b'}');
            }
            _ => {}
        }
        for &(ks, ke, v) in &self.members {
            let k = &rec[ks..ke];
            if CONSUMED.contains(&k) || k == b"@timestamp" || used_time == Some(k) {
                continue;
            }
            out.push(b',');
            out.extend_from_slice(&rec[ks - 1..ke + 1]);
            out.push(b':');
            out.extend_from_slice(&rec[v.start..v.end]);
        }
        out.extend_from_slice(b"}\n");
    }
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------------------------
// Batches

/// One document of a batch: its ticket and the byte range of its action + document lines.
#[derive(Debug, Clone, Copy)]
struct Item {
    ticket: Ticket,
    start: usize,
    end: usize,
}

/// A bulk request body and the documents in it.
#[derive(Default)]
struct Batch {
    body: Vec<u8>,
    items: Vec<Item>,
    started: Option<Instant>,
}

impl Batch {
    /// The batch as it is, leaving an empty one sized like it (at most `max` bytes reserved).
    fn take(&mut self, max: usize) -> Batch {
        let capacity = (self.body.len() + self.body.len() / 8).clamp(64 << 10, max);
        let items = self.items.len() + self.items.len() / 8;
        std::mem::replace(self, Batch { body: Vec::with_capacity(capacity), items: Vec::with_capacity(items), started: None })
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// What the sending side shares: the HTTP client, the batch being built, counters.
struct Ctx {
    http: HyperClient<Https, Full<Bytes>>,
    /// `<url>/_bulk` of each node.
    endpoints: Vec<String>,
    next: AtomicUsize,
    auth: Option<HeaderValue>,
    gzip: bool,
    timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    op_type: OpType,
    reporter: Reporter,
    dead_letter: Option<Mutex<(PathBuf, File)>>,
    /// The batch being built (by the stdin thread; the ticker and `flush` take it when due).
    building: Mutex<Batch>,
    batch_capacity: usize,
    flush_interval: Duration,
    /// Batches handed over and not settled yet.
    outstanding: AtomicUsize,
    idle: (Mutex<()>, Condvar),
    aborted: AtomicBool,
    tx: tokio::sync::mpsc::Sender<Batch>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one POST went.
enum Outcome {
    /// A complete response.
    Response { status: StatusCode, body: Bytes, retry_after: Option<Duration> },
    /// No complete response (connection refused or reset, timeout, TLS...).
    Transport(String),
}

impl Ctx {
    fn settled(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = lock(&self.idle.0);
            self.idle.1.notify_all();
        }
    }

    /// Take the batch being built when it is due (or when `force`), for sending.
    fn take_due(&self, force: bool) -> Option<Batch> {
        let mut b = lock(&self.building);
        let due = !b.items.is_empty() && (force || b.started.is_some_and(|s| s.elapsed() >= self.flush_interval));
        if !due {
            return None;
        }
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        Some(b.take(self.batch_capacity))
    }

    async fn post(&self, body: Bytes) -> (usize, Outcome) {
        let node = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&self.endpoints[node])
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("s3s-es/", env!("CARGO_PKG_VERSION")));
        if self.gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
        }
        if let Some(a) = &self.auth {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return (node, Outcome::Transport(format!("request: {e}"))),
        };
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| error_chain(&e))?;
            let status = resp.status();
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = resp.into_body().collect().await.map_err(|e| error_chain(&e))?.to_bytes();
            Ok::<_, String>(Outcome::Response { status, body, retry_after })
        };
        let outcome = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::Transport(e),
            Err(_) => Outcome::Transport(format!("no response within {:?}", self.timeout)),
        };
        (node, outcome)
    }

    fn encode(&self, body: &[u8]) -> Bytes {
        if !self.gzip {
            return Bytes::copy_from_slice(body);
        }
        let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
        let _ = e.write_all(body);
        Bytes::from(e.finish().unwrap_or_default())
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        // The request (or the rejected items of one) goes again: counted once per retry. Published
        // and failed lines are counted by the driver from the delivery reports.
        events::publish_retries(1);
        let exp = self.backoff.saturating_mul(1u32 << attempt.min(20)).min(self.max_backoff);
        // Jitter: anywhere between half and all of it, so that many clients do not retry in step.
        let jittered = exp.mul_f64(0.5 + fastrand::f64() * 0.5);
        jittered.max(retry_after.unwrap_or_default().min(self.max_backoff))
    }

    fn fail_all(&self, batch: &Batch, why: &str) {
        for item in &batch.items {
            self.reporter.failed(item.ticket, &why);
        }
    }

    /// Send one batch until every line in it is settled (indexed, dead-lettered or failed).
    async fn deliver(&self, mut batch: Batch) {
        let mut attempt = 0u32;
        let mut body = self.encode(&batch.body);
        loop {
            if self.aborted.load(Ordering::Acquire) {
                return;
            }
            let (node, outcome) = self.post(body.clone()).await;
            let (why, retry_after) = match outcome {
                Outcome::Transport(e) => (format!("{}: {e}", self.endpoints[node]), None),
                Outcome::Response { status, body: resp, retry_after }
                    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() =>
                {
                    (format!("{}: HTTP {status}: {}", self.endpoints[node], error_summary(&resp)), retry_after)
                }
                Outcome::Response { status, body: resp, .. } if !status.is_success() => {
                    let why = format!("{}: HTTP {status}: {}", self.endpoints[node], error_summary(&resp));
                    tracing::error!("bulk request of {} documents rejected: {why}", batch.items.len());
                    self.fail_all(&batch, &why);
                    return;
                }
                Outcome::Response { body: resp, .. } => match self.settle(&batch, &resp) {
                    Err(why) => {
                        let why = format!("{}: {why}", self.endpoints[node]);
                        tracing::error!("{why}");
                        self.fail_all(&batch, &why);
                        return;
                    }
                    Ok(None) => return,
                    Ok(Some((retry, why))) => {
                        batch = retry;
                        body = self.encode(&batch.body);
                        (why, None)
                    }
                },
            };
            if attempt >= self.max_retries {
                let why = format!("{why} (gave up after {} attempts)", attempt + 1);
                tracing::error!("{} documents not indexed: {why}", batch.items.len());
                self.fail_all(&batch, &why);
                return;
            }
            let delay = self.backoff(attempt, retry_after);
            tracing::warn!("{} documents: {why}; retry {} in {delay:.1?}", batch.items.len(), attempt + 1);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// Settle the items of a 2xx bulk response. Returns the batch of items to retry (429/503),
    /// with a reason, if any.
    fn settle(&self, batch: &Batch, resp: &[u8]) -> Result<Option<(Batch, String)>, String> {
        #[derive(serde::Deserialize)]
        struct Head {
            errors: bool,
        }
        #[derive(serde::Deserialize)]
        struct Full {
            #[serde(default)]
            items: Vec<std::collections::HashMap<String, ItemResult>>,
        }
        #[derive(serde::Deserialize)]
        struct ItemResult {
            status: u16,
            #[serde(default)]
            error: Option<serde_json::Value>,
        }
        let head: Head =
            serde_json::from_slice(resp).map_err(|e| format!("unreadable bulk response ({e}): {}", preview(resp)))?;
        if !head.errors {
            for item in &batch.items {
                self.reporter.delivered(item.ticket);
            }
            return Ok(None);
        }
        let full: Full = serde_json::from_slice(resp).map_err(|e| format!("unreadable bulk response ({e})"))?;
        if full.items.len() != batch.items.len() {
            return Err(format!("bulk response has {} items for {} documents", full.items.len(), batch.items.len()));
        }
        let mut retry = Batch::default();
        let mut retry_why = String::new();
        let mut dead = Vec::new();
        let mut dead_items = Vec::new();
        let mut failed = 0u64;
        for (item, result) in batch.items.iter().zip(full.items) {
            let Some(r) = result.into_values().next() else {
                return Err("bulk response item without an action".into());
            };
            let ok = (200..300).contains(&r.status) || (r.status == 409 && self.op_type == OpType::Create);
            if ok {
                self.reporter.delivered(item.ticket);
                continue;
            }
            let reason = r.error.as_ref().map(error_reason).unwrap_or_else(|| format!("status {}", r.status));
            if r.status == 429 || r.status == 503 {
                if retry_why.is_empty() {
                    retry_why = format!("HTTP {} for some documents: {reason}", r.status);
                }
                let start = retry.body.len();
                retry.body.extend_from_slice(&batch.body[item.start..item.end]);
                retry.items.push(Item { ticket: item.ticket, start, end: retry.body.len() });
                continue;
            }
            let why = format!("HTTP {}: {reason}", r.status);
            if self.dead_letter.is_some() {
                let lines = &batch.body[item.start..item.end];
                let split = memchr::memchr(b'\n', lines).unwrap_or(lines.len());
                let doc = lines[(split + 1).min(lines.len())..].strip_suffix(b"\n").unwrap_or(&[]);
                dead.extend_from_slice(br#"{"status":"#);
                dead.extend_from_slice(itoa::Buffer::new().format(r.status).as_bytes());
                dead.extend_from_slice(br#","reason":"#);
                quote_into(reason.as_bytes(), &mut dead);
                dead.extend_from_slice(br#","error":"#);
                match &r.error {
                    Some(e) => dead.extend_from_slice(e.to_string().as_bytes()),
                    None => dead.extend_from_slice(b"null"),
                }
                dead.extend_from_slice(br#","action":"#);
                dead.extend_from_slice(&lines[..split]);
                dead.extend_from_slice(br#","document":"#);
                dead.extend_from_slice(doc);
                dead.extend_from_slice(b"}\n");
                dead_items.push(item.ticket);
            } else {
                failed += 1;
                self.reporter.failed(item.ticket, &why);
            }
        }
        if failed > 0 {
            tracing::warn!("{failed} documents rejected (no --dead-letter): see the withheld end records");
        }
        if !dead_items.is_empty() {
            let dl = self.dead_letter.as_ref().expect("checked above");
            let mut g = lock(dl);
            let (path, file) = &mut *g;
            let written = file.write_all(&dead).and_then(|()| file.sync_data());
            let path = path.clone();
            drop(g);
            match written {
                Ok(()) => {
                    tracing::warn!("{} documents rejected: written to {}", dead_items.len(), path.display());
                    for t in dead_items {
                        self.reporter.delivered(t);
                    }
                }
                Err(e) => {
                    let why = format!("writing the dead letter file {}: {e}", path.display());
                    tracing::error!("{why}");
                    for t in dead_items {
                        self.reporter.failed(t, &why);
                    }
                }
            }
        }
        Ok(if retry.items.is_empty() { None } else { Some((retry, retry_why)) })
    }
}

/// `type: reason` of an Elasticsearch error object.
fn error_reason(e: &serde_json::Value) -> String {
    let ty = e.get("type").and_then(|t| t.as_str()).unwrap_or("error");
    match e.get("reason").and_then(|r| r.as_str()) {
        Some(r) => format!("{ty}: {r}"),
        None => ty.to_string(),
    }
}

/// A short description of an error response body.
fn error_summary(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => match v.get("error") {
            Some(e @ serde_json::Value::Object(_)) => error_reason(e),
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => preview(body),
        },
        Err(_) => preview(body),
    }
}

fn preview(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string();
    if s.is_empty() { "(empty body)".into() } else { s }
}

/// An error and its sources, `a: b: c`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The publisher and its control

struct EsPublisher {
    shape: Shape,
    ctx: Option<Arc<Ctx>>,
    batch_docs: usize,
    batch_bytes: usize,
}

impl Publisher for EsPublisher {
    fn publish(&mut self, line: &Line<'_>, ticket: Ticket) -> Result<(), PublishError> {
        let ctx = self.ctx.as_ref().expect("a dry-run publisher is never asked to publish");
        let full = {
            let mut b = lock(&ctx.building);
            if b.items.is_empty() {
                b.started = Some(Instant::now());
            }
            let start = b.body.len();
            self.shape.write(line, &mut b.body);
            let end = b.body.len();
            b.items.push(Item { ticket, start, end });
            if b.items.len() >= self.batch_docs || b.body.len() >= self.batch_bytes {
                ctx.outstanding.fetch_add(1, Ordering::AcqRel);
                Some(b.take(ctx.batch_capacity))
            } else {
                None
            }
        };
        if let Some(batch) = full {
            if let Err(e) = ctx.tx.blocking_send(batch) {
                ctx.outstanding.fetch_sub(1, Ordering::AcqRel);
                // Report this batch's lines except the one being published (the driver does).
                for item in &e.0.items[..e.0.items.len() - 1] {
                    ctx.reporter.failed(item.ticket, &"the sender stopped");
                }
                return Err(PublishError::Fatal("the bulk sender stopped".into()));
            }
        }
        Ok(())
    }

    fn describe(&mut self, line: &Line<'_>, out: &mut Vec<u8>) {
        self.shape.write(line, out);
        // The driver ends each description with a newline.
        out.pop();
    }
}

struct EsControl {
    ctx: Arc<Ctx>,
    /// Owns the sending tasks; dropped (and so stopped) with the control.
    _rt: tokio::runtime::Runtime,
}

impl Control for EsControl {
    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if let Some(b) = self.ctx.take_due(true) {
            if self.ctx.tx.blocking_send(b).is_err() {
                self.ctx.outstanding.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let (m, cv) = &self.ctx.idle;
        let mut g = lock(m);
        while self.ctx.outstanding.load(Ordering::Acquire) > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = cv.wait_timeout(g, deadline - now).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
        lock(&self.ctx.building).items.is_empty()
    }

    fn abort(&self) {
        self.ctx.aborted.store(true, Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// Setup

/// Read the first line of a secret file.
fn read_secret(flag: &str, path: &Path) -> Result<String, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| UsageError(format!("{flag} {}: {e}", path.display())))?;
    let s = text.lines().next().unwrap_or("").trim().to_string();
    if s.is_empty() {
        return Err(UsageError(format!("{flag} {}: empty", path.display())));
    }
    Ok(s)
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The Authorization header from --user/--*-file and the S3S_ES_* secrets (at most one kind).
fn auth_header(args: &Args) -> Result<Option<HeaderValue>, UsageError> {
    let api_key = match &args.api_key_file {
        Some(p) => Some(read_secret("--api-key-file", p)?),
        None => env_secret("S3S_ES_API_KEY"),
    };
    let bearer = match &args.bearer_token_file {
        Some(p) => Some(read_secret("--bearer-token-file", p)?),
        None => env_secret("S3S_ES_BEARER_TOKEN"),
    };
    let b64 = &base64::engine::general_purpose::STANDARD;
    let basic = match &args.user {
        Some(user) => {
            let password = match &args.password_file {
                Some(p) => read_secret("--password-file", p)?,
                None => env_secret("S3S_ES_PASSWORD")
                    .ok_or_else(|| UsageError("--user needs a password: set S3S_ES_PASSWORD or give --password-file".into()))?,
            };
            Some(format!("Basic {}", b64.encode(format!("{user}:{password}"))))
        }
        None if args.password_file.is_some() => return Err(UsageError("--password-file needs --user".into())),
        None => None,
    };
    let api_key = api_key.map(|k| if k.contains(':') { format!("ApiKey {}", b64.encode(&k)) } else { format!("ApiKey {k}") });
    let bearer = bearer.map(|t| format!("Bearer {t}"));
    let given: Vec<String> = [basic, api_key, bearer].into_iter().flatten().collect();
    match given.len() {
        0 => Ok(None),
        1 => {
            let mut v = HeaderValue::from_str(&given[0])
                .map_err(|_| UsageError("credentials contain characters not allowed in a header".into()))?;
            v.set_sensitive(true);
            Ok(Some(v))
        }
        _ => Err(UsageError("more than one kind of credentials (user/password, API key, bearer token): give one".into())),
    }
}

/// `<url>/_bulk` for each --url, checked.
fn endpoints(urls: &[String]) -> Result<Vec<String>, UsageError> {
    if urls.is_empty() {
        return Err(UsageError("no server: give --url URL or set S3S_ES_URL (or use --dry-run)".into()));
    }
    urls.iter()
        .map(|u| {
            let u = u.trim().trim_end_matches('/');
            let uri: http::Uri = u.parse().map_err(|e| UsageError(format!("--url {u:?}: {e}")))?;
            match uri.scheme_str() {
                Some("http" | "https") => {}
                _ => return Err(UsageError(format!("--url {u:?}: wants http:// or https://"))),
            }
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                return Err(UsageError(format!(
                    "--url {u:?}: no credentials in URLs (use --user with S3S_ES_PASSWORD or --password-file)"
                )));
            }
            if uri.query().is_some() {
                return Err(UsageError(format!("--url {u:?}: no query string, please")));
            }
            Ok(format!("{u}/_bulk"))
        })
        .collect()
}

/// Accepts any server certificate (--insecure).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The HTTPS connector: the system's roots, --ca-cert's, or none checked (--insecure).
fn connector(args: &Args) -> Result<Https, UsageError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let tls = |roots: Option<rustls::RootCertStore>| -> Result<rustls::ClientConfig, UsageError> {
        let b = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| UsageError(format!("TLS: {e}")))?;
        Ok(match roots {
            Some(r) => b.with_root_certificates(r).with_no_client_auth(),
            None => b.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider.clone()))).with_no_client_auth(),
        })
    };
    let builder = if args.insecure {
        builder.with_tls_config(tls(None)?)
    } else if let Some(path) = &args.ca_cert {
        builder.with_tls_config(tls(Some(crate::transport::load_roots("--ca-cert", path).map_err(UsageError)?))?)
    } else {
        builder
            .with_provider_and_native_roots(provider.clone())
            .map_err(|e| UsageError(format!("loading the system's CA certificates: {e}")))?
    };
    Ok(builder.https_or_http().enable_http1().wrap_connector(http))
}

/// Run `s3s-es`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let shape = Shape::new(&args)?;
    let dry_run = args.sink.dry_run;
    let batch_docs = args.batch_docs as usize;
    let batch_bytes = args.batch_bytes.min(usize::MAX as u64) as usize;
    let driver = Driver { tool: TOOL, args: &args.sink, field: None };
    if dry_run {
        return sink::run(driver, move |_| {
            let publisher = EsPublisher { shape, ctx: None, batch_docs, batch_bytes };
            Ok((publisher, Arc::new(NoControl) as Arc<dyn Control>))
        });
    }
    let endpoints = endpoints(&args.urls)?;
    let auth = auth_header(&args)?;
    let https = connector(&args)?;
    let dead_letter = match &args.dead_letter {
        Some(p) => {
            let f = crate::cli::open_append("--dead-letter", p)?;
            Some(Mutex::new((p.clone(), f)))
        }
        None => None,
    };
    let concurrency = args.concurrency as usize;
    let flush_interval = args.flush_interval;
    sink::run(driver, move |reporter| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("es-send").enable_all().build()?;
        let http = {
            let _guard = rt.enter();
            HyperClient::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(50))
                .pool_max_idle_per_host(concurrency)
                .build(https)
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
        let capacity = batch_bytes.min(16 << 20) + (batch_bytes.min(16 << 20) >> 3);
        let first = capacity.min(256 << 10);
        let ctx = Arc::new(Ctx {
            http,
            endpoints,
            next: AtomicUsize::new(0),
            auth,
            gzip: args.gzip,
            timeout: args.timeout,
            max_retries: args.max_retries,
            backoff: args.backoff,
            max_backoff: args.max_backoff.max(args.backoff),
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
                if let Some(b) = c.take_due(false) {
                    if c.tx.send(b).await.is_err() {
                        c.settled();
                        return;
                    }
                }
            }
        });
        let publisher = EsPublisher { shape, ctx: Some(ctx.clone()), batch_docs, batch_bytes };
        Ok((publisher, Arc::new(EsControl { ctx, _rt: rt }) as Arc<dyn Control>))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn dates_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 59, 10_957, 20_000, 20_785, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(20_785), (2026, 11, 28));
        let mut s = Vec::new();
        format_rfc3339_millis(1_795_885_200_123, &mut s);
        assert_eq!(String::from_utf8(s).unwrap(), "2026-11-28T17:00:00.123Z");
    }

    #[test]
    fn parses_rfc3339() {
        let t = 1_795_885_200; // 2026-11-28T17:00:00Z
        assert_eq!(parse_rfc3339(b"2026-11-28T17:00:00Z"), Some(t));
        assert_eq!(parse_rfc3339(b"2026-11-28T17:00:00.123456Z"), Some(t));
        assert_eq!(parse_rfc3339(b"2026-11-28 17:00:00"), Some(t));
        assert_eq!(parse_rfc3339(b"2026-11-28T19:00:00+02:00"), Some(t));
        assert_eq!(parse_rfc3339(b"2026-11-28T12:00:00-0500"), Some(t));
        assert_eq!(parse_rfc3339(b"2026-11-28T17:00:00Zx"), None);
        assert_eq!(parse_rfc3339(b"2026-13-28T17:00:00Z"), None);
        assert_eq!(parse_rfc3339(b"yesterday"), None);
    }

    #[test]
    fn index_patterns() {
        let t = 1_795_885_200; // 2026-11-28T17:00:00Z, a Saturday of ISO week 48
        let mut p = IndexPattern::parse("logs-%Y.%m.%d").unwrap();
        assert_eq!(p.name(t), "logs-2026.11.28");
        assert_eq!(p.name(t + 3600), "logs-2026.11.28");
        assert_eq!(p.name(t + 7 * 3600), "logs-2026.11.29");
        let mut p = IndexPattern::parse("w-%G.%V-%j-%y-%H%M%S-100%%").unwrap();
        assert_eq!(p.name(t), "w-2026.48-332-26-170000-100%");
        // 2027-01-01 is a Friday: ISO week 53 of 2026.
        assert_eq!(IndexPattern::parse("%G-%V").unwrap().name(days_from_civil(2027, 1, 1) * 86_400), "2026-53");
        assert_eq!(IndexPattern::parse("%G-%V").unwrap().name(days_from_civil(2024, 12, 30) * 86_400), "2025-01");
        assert_eq!(IndexPattern::parse("fixed").unwrap().name(t), "fixed");
        for bad in ["Logs", "a b", "x%", "%q", "_x", "a,b", ""] {
            assert!(IndexPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("5MiB").unwrap(), 5 << 20);
        assert_eq!(parse_size("500k").unwrap(), 500 << 10);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("0").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn urls_and_credentials() {
        assert_eq!(endpoints(&["http://h:9200/".into()]).unwrap(), ["http://h:9200/_bulk"]);
        assert_eq!(endpoints(&["https://h/es".into()]).unwrap(), ["https://h/es/_bulk"]);
        assert!(endpoints(&["http://u:p@h:9200".into()]).is_err());
        assert!(endpoints(&["ftp://h".into()]).is_err());
        assert!(endpoints(&[]).is_err());
    }
}
