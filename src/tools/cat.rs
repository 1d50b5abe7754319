//! `s3s-cat`: stream the lines of S3 objects and local files as `line` records.

use std::io::Read;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

use crate::aws::{self, lease, s3};
use crate::cli::{Common, Status};
use crate::decode::{self, ReadError};
use crate::envelope::Ack;
use crate::envelope::{Location, OBJECT, ObjectRecord};
use crate::io::{Input, Output, report_bad_line};
use crate::scan;
use crate::shutdown::{DrainArgs, Shutdown};

const TOOL: &str = "s3s-cat";

/// Stream the lines of S3 objects (and local files) as NDJSON `line` records.
///
/// Each source's lines come out as `{"type":"line","bucket":B,"key":K,"n":N,"line":"..."}`,
/// followed by one `{"type":"end",...,"lines":COUNT}` once all of them were written. gzip
/// (multi-member too), zstd and plain text are told apart by their bytes, not by names.
/// Objects stream through a fixed buffer: memory stays flat whatever their size.
///
/// With no SOURCE, or `-`, sources come from stdin: `object` records (from s3s-poll), or plain
/// `s3://bucket/key` and file-path lines (e.g. from `find`). Other records pass through unchanged.
///
/// A source that cannot be read (missing, access denied, corrupt compressed data) gets one error
/// line on stderr naming it and the cause, and no `end` record; the rest goes on, and the exit
/// status is 1.
///
/// Limits (a hostile object cannot break them): a line longer than --max-line-bytes is cut
/// there, at a character boundary, and its record gets `"truncated":ORIGINAL_BYTES` (the rest
/// of the line is read and dropped, never held in memory); decompression that passes
/// --max-decompressed-bytes, or is more than --max-ratio times the compressed size once past
/// 64 MiB, is stopped as a decompression bomb: an error naming the object, no `end` record for
/// it, exit status 1.
///
/// SIGTERM/SIGINT/SIGHUP: the object being read is finished (for at most --drain-timeout), no
/// new one is started, exit 0; an idle s3s-cat (waiting on stdin) ends at once.
#[derive(Debug, Parser)]
#[command(
    name = "s3s-cat",
    version,
    after_long_help = "EXAMPLES:
    s3s-cat s3://logs/cf/E2ABC.2026-11-28-17.1a2b.gz
    s3s-cat access.log.gz other.log.zst
    find /var/log/cf -name '*.gz' | s3s-cat | s3s-filter -e '\\t5[0-9][0-9]\\t'
    s3s-poll --once | s3s-cat | s3s-ack

ENVIRONMENT:
    AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3 and the rest of the standard
    AWS chain. With an endpoint override, requests use path-style addressing (S3S_PATH_STYLE=1
    forces it). S3S_LOG sets the log filter.

EXIT STATUS:
    0 all sources read (also when stdout was closed early), 1 a source or an input line failed,
    2 usage error."
)]
pub struct Args {
    /// `s3://bucket/key`, a local file, or `-` for stdin (the default).
    #[arg(value_name = "SOURCE")]
    pub sources: Vec<String>,

    /// Copy FIELD of the object record (e.g. `etag`, `event_time` from s3s-poll) onto each of
    /// its line records, for publishers that use it (index dates, GELF timestamps, ids).
    /// Repeatable, or comma-separated.
    #[arg(long, value_name = "FIELD", value_delimiter = ',')]
    pub carry: Vec<String>,

    /// A longer line is cut to this many bytes (at a UTF-8 character boundary) and its record
    /// says `"truncated":ORIGINAL_BYTES`; memory per line stays within it. 0: no limit.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_limit, env = "S3S_MAX_LINE_BYTES")]
    pub max_line_bytes: u64,

    /// Stop reading an object whose decompressed size passes SIZE (an error, no `end` record).
    /// 0: no limit.
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_limit, env = "S3S_MAX_DECOMPRESSED_BYTES")]
    pub max_decompressed_bytes: u64,

    /// Stop reading a compressed object that decompresses to more than RATIO times its compressed
    /// size (checked once past 64 MiB of output): a decompression bomb. Log files compress about
    /// 5-50 to 1 (gzip cannot pass 1032 to 1; zeros at gzip -1 come to about 230). 0: no limit.
    #[arg(long, value_name = "RATIO", default_value_t = 200, env = "S3S_MAX_RATIO")]
    pub max_ratio: u64,

    /// Local files must lie inside DIR (after resolving `..` and symbolic links); any other
    /// path, from a record, a stdin line or an argument, is refused as a failed source (error,
    /// no `end`). For running s3s-cat on records from elsewhere that may name files.
    #[arg(long, value_name = "DIR", env = "S3S_CAT_ROOT")]
    pub root: Option<std::path::PathBuf>,

    /// Read CloudTrail documents as lines, like any object. By default an object whose bytes
    /// start with `{"Records":` becomes one line per event (the event's compact JSON; `lines`
    /// of its `end` counts the events), streamed with flat memory, and CloudTrail digest
    /// objects (`/CloudTrail-Digest/` keys) are skipped with an `end` of 0 lines.
    #[arg(long)]
    pub whole_documents: bool,

    #[command(flatten)]
    pub drain: DrainArgs,

    #[command(flatten)]
    pub common: Common,
}

/// A size (`16MiB`, `500k`, `1024`), or `0` for none.
fn parse_limit(s: &str) -> Result<u64, String> {
    if s.trim() == "0" { Ok(0) } else { crate::tools::es::parse_size(s) }
}

struct Cat {
    limits: decode::Limits,
    out: Output,
    rt: Option<tokio::runtime::Runtime>,
    client: Option<aws_sdk_s3::Client>,
    sqs: Option<aws_sdk_sqs::Client>,
    failed: u64,
    shutdown: Shutdown,
    carry: Vec<String>,
    whole_documents: bool,
    /// The drain expired in the middle of an object: stop at once.
    stopped: bool,
    /// `--root`, resolved.
    root: Option<std::path::PathBuf>,
}

/// Open a local file, confined to `root` when one is given.
fn open_file(path: &str, root: Option<&std::path::Path>) -> Result<std::fs::File, String> {
    let Some(root) = root else { return std::fs::File::open(path).map_err(|e| e.to_string()) };
    let real = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
    if !real.starts_with(root) {
        return Err(format!(
            "outside --root {} (resolves to {}); not read",
            crate::io::printable(root.as_os_str().as_encoded_bytes()),
            crate::io::printable(real.as_os_str().as_encoded_bytes())
        ));
    }
    // The resolved path is opened. A link swapped into it in between is not guarded against:
    // where that matters, run s3s-cat as a user that can read only DIR.
    std::fs::File::open(&real).map_err(|e| e.to_string())
}

/// Run `s3s-cat`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let shutdown = Shutdown::install(TOOL, args.drain.drain_timeout)?;
    let limits = decode::Limits {
        max_line_bytes: usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX),
        max_decompressed_bytes: args.max_decompressed_bytes,
        max_ratio: args.max_ratio,
    };
    let mut cat = Cat {
        limits,
        out: Output::stdout(),
        rt: None,
        client: None,
        sqs: None,
        failed: 0,
        shutdown,
        carry: args.carry,
        whole_documents: args.whole_documents,
        stopped: false,
        root: match &args.root {
            Some(r) => Some(std::fs::canonicalize(r).map_err(|e| crate::cli::UsageError(format!("--root {}: {e}", r.display())))?),
            None => None,
        },
    };
    let sources = if args.sources.is_empty() { vec!["-".to_string()] } else { args.sources };
    for src in &sources {
        if cat.shutdown.requested() || cat.stopped {
            break;
        }
        if src == "-" {
            cat.stdin()?;
        } else {
            match Location::parse(src) {
                Ok(loc) => cat.object(&ObjectRecord::new(loc))?,
                Err(e) => {
                    eprintln!("{TOOL}: error: {e}");
                    crate::metrics::events::object_error();
                    cat.failed += 1;
                }
            }
        }
    }
    cat.out.flush()?;
    Ok(if cat.failed > 0 { Status::Failed } else { Status::Ok })
}

impl Cat {
    fn stdin(&mut self) -> anyhow::Result<()> {
        let mut input = Input::stdin();
        // A signal means no new work: stop reading at once (idle, waiting for the next record,
        // is when most stops come), not when the drain expires.
        input.stop_when(self.shutdown.stop_flag());
        let mut scratch = Vec::new();
        while let Some((number, line)) = input.next_line_flushing(&mut self.out).context("reading stdin")? {
            if self.shutdown.requested() || self.stopped {
                // Take no new work: the records not read yet come back through SQS.
                tracing::info!("stopping at stdin line {number}");
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if line[0] != b'{' {
                match std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string()).and_then(|s| Location::parse(s.trim())) {
                    Ok(loc) => self.object(&ObjectRecord::new(loc))?,
                    Err(e) => {
                        report_bad_line(TOOL, number, &format!("not a record nor a source ({e})"), line);
                        self.failed += 1;
                    }
                }
                continue;
            }
            let fields = match scan::fields(line) {
                Ok(f) => f,
                Err(e) => {
                    report_bad_line(TOOL, number, &e.to_string(), line);
                    self.failed += 1;
                    continue;
                }
            };
            if scan::type_name(line, fields.ty.expect("fields() checks type"), &mut scratch) != OBJECT.as_bytes() {
                self.out.write_record_nl(line)?;
                continue;
            }
            let parsed = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
                .map_err(|e| e.to_string())
                .and_then(ObjectRecord::from_json);
            match parsed {
                Ok(obj) => self.object(&obj)?,
                Err(e) => {
                    report_bad_line(TOOL, number, &e, line);
                    self.failed += 1;
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, loc: &Location) -> Result<Box<dyn Read + Send>, String> {
        match loc {
            Location::File(p) => open_file(p, self.root.as_deref()).map(|f| Box::new(f) as Box<dyn Read + Send>),
            Location::S3 { bucket, key } => {
                if self.rt.is_none() {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(1)
                        .enable_all()
                        .build()
                        .map_err(|e| format!("starting the runtime: {e}"))?;
                    let cfg = rt.block_on(aws::sdk_config());
                    self.client = Some(aws::s3_client(&cfg));
                    self.sqs = Some(aws::sqs_client(&cfg));
                    self.rt = Some(rt);
                }
                let rt = self.rt.as_ref().expect("set above").handle();
                let client = self.client.as_ref().expect("set with rt");
                let (_info, body) = s3::get_object(rt, client, bucket, key)?;
                Ok(Box::new(body))
            }
        }
    }

    /// Stream one object's lines, then its `end` record; a failed source is reported and skipped.
    fn object(&mut self, obj: &ObjectRecord) -> anyhow::Result<()> {
        let reader = match self.open(&obj.location) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{TOOL}: error: {}: {e}", obj.location);
                crate::metrics::events::object_error();
                self.failed += 1;
                return Ok(());
            }
        };
        // Keep the message invisible while this object streams (it may take longer than the
        // queue's visibility timeout); the end record carries the latest deadline on.
        let lease = match (&self.rt, &self.sqs, obj.extra.get("ack")) {
            (Some(rt), Some(sqs), Some(ack)) if !obj.dry_run() => Ack::deserialize(ack)
                .ok()
                .and_then(|a| lease::Token::from_ack(&a))
                .map(|t| lease::Lease::hold(rt.handle(), sqs.clone(), t)),
            _ => None,
        };
        let lw = obj.line_writer_carrying(&self.carry);
        let out = &mut self.out;
        let expired = self.shutdown.expiry_flag();
        let mut n = 0u64;
        let split = !self.whole_documents;
        let res = crate::cloudtrail::read(reader, &obj.location, self.limits, split, |text, cut_from| {
            // Checked once per 1024 lines: the drain's expiry is a matter of seconds.
            if n.is_multiple_of(1024) && expired.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(std::io::Error::other(DrainExpired));
            }
            n += 1;
            match cut_from {
                None => lw.write(n, text, out.buf()),
                Some(whole) => lw.write_truncated(n, text, whole, out.buf()),
            }
            out.record_done()
        });
        match res {
            Ok((compression, stats)) => {
                if stats.truncated > 0 {
                    eprintln!(
                        "{TOOL}: {}: {} line(s) longer than --max-line-bytes {} cut (their records say \"truncated\")",
                        obj.location, stats.truncated, self.limits.max_line_bytes
                    );
                }
                if stats.invalid_utf8 > 0 {
                    tracing::warn!(
                        "{}: {} line(s) held bytes that are not UTF-8 (replaced by U+FFFD)",
                        obj.location,
                        stats.invalid_utf8
                    );
                }
                let renewed;
                let obj = match lease {
                    Some(l) => {
                        let mut o = obj.clone();
                        lease::pass_on(&mut o.extra, l.release());
                        renewed = o;
                        &renewed
                    }
                    None => obj,
                };
                let counters = [
                    ("lines", stats.lines),
                    ("bytes", stats.bytes_in),
                    ("decompressed_bytes", stats.bytes_out),
                    ("invalid_utf8", stats.invalid_utf8),
                    ("truncated", stats.truncated),
                ];
                // `truncated` only when a line was cut (the common end record stays as it was).
                let end = obj.end_line(&counters[..if stats.truncated > 0 { 5 } else { 4 }]);
                tracing::info!("{}: {} lines, {} compression", obj.location, stats.lines, compression.name());
                self.out.write_record(&end)?;
                crate::metrics::events::object_read();
            }
            Err(ReadError::Source(e)) => {
                eprintln!("{TOOL}: error: {}: {e} (after {n} lines; no end record)", obj.location);
                crate::metrics::events::object_error();
                self.failed += 1;
            }
            Err(ReadError::Sink(e)) if e.get_ref().is_some_and(|e| e.is::<DrainExpired>()) => {
                // Whole records so far go out; the object's end does not (it comes back).
                eprintln!("{TOOL}: {}: stopped after {n} lines (drain timeout); no end record", obj.location);
                self.stopped = true;
            }
            Err(ReadError::Sink(e)) => return Err(e.into()),
        }
        Ok(())
    }
}

/// The drain expired while an object streamed (see [`crate::shutdown`]).
#[derive(Debug, thiserror::Error)]
#[error("the drain timeout expired")]
struct DrainExpired;
