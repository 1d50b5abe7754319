//! `s3s-ack`: delete each SQS message once every object it announced has been delivered.

use std::collections::HashMap;

use anyhow::Context;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use clap::Parser;
use serde_json::{Map, Value};

use crate::aws::{self, lease};
use crate::cli::{Common, Status};
use crate::envelope::Ack;
use crate::io::{Input, Output, report_bad_line};
use crate::scan;
use crate::shutdown::{DrainArgs, Shutdown};

const TOOL: &str = "s3s-ack";

/// Delete each SQS message once an `end` record arrived for every object it announced.
///
/// Reads the records of a pipeline's last stage. A message is deleted (DeleteMessageBatch, up to
/// 10 at a time) once as many `end` records carrying its ack token have arrived as the token's
/// `objects` count; a `message` record (an announcement with nothing to read, such as
/// s3:TestEvent) is deleted at once. Everything else is ignored, or echoed with --pass.
///
/// Records marked dry-run (by `s3s-poll --dry-run`) and --dry-run delete nothing and say what
/// would have been deleted. A failed delete (e.g. an expired receipt handle: the message was
/// redelivered meanwhile) is reported and counted, not fatal. When stdin ends, messages still
/// waiting for `end` records are reported and left for redelivery. A summary goes to stderr.
/// SIGTERM/SIGINT/SIGHUP: it goes on until its input ends (upstream stops), for at most
/// --drain-timeout, deleting what completes, then exits 0.
///
/// The queue a message is deleted from is the `queue_url` of its record's ack token, which comes
/// from upstream. With --queue-url (or S3S_QUEUE_URL, as s3s-poll reads it), a record naming
/// any other queue is refused (reported as a bad line, nothing deleted): a crafted record cannot
/// make s3s-ack delete from a queue it was not meant for.
#[derive(Debug, Parser)]
#[command(
    name = "s3s-ack",
    version,
    after_long_help = "EXAMPLES:
    s3s-poll | s3s-cat | s3s-kafka -b kafka:9092 -t cdn | s3s-ack
    s3s-poll --once | s3s-cat | s3s-filter -e ' 5[0-9][0-9] ' > out.ndjson   # no ack: nothing deleted
    ... | s3s-ack --pass | jq -c 'select(.type==\"end\")'

ENVIRONMENT:
    The standard AWS chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS...)
    configures the client. S3S_LOG sets the log filter.

EXIT STATUS:
    0 success (failed deletes are reported and counted, not fatal; also when stdout was closed
    with --pass), 1 malformed input lines were skipped, 2 usage error."
)]
pub struct Args {
    /// Echo every input record to stdout.
    #[arg(long)]
    pub pass: bool,

    /// Delete nothing; say on stderr what would have been deleted.
    #[arg(long)]
    pub dry_run: bool,

    /// Delete only from this queue (repeatable, or comma-separated): a record whose ack token
    /// names another queue is refused.
    #[arg(long = "queue-url", value_name = "URL", env = "S3S_QUEUE_URL", value_delimiter = ',')]
    pub queue_urls: Vec<String>,

    #[command(flatten)]
    pub drain: DrainArgs,

    #[command(flatten)]
    pub common: Common,
}

/// A message still waiting for `end` records.
struct Waiting {
    message_id: String,
    queue_url: String,
    objects: u64,
    ended: u64,
    /// Keeps the message invisible while it waits for the `end` of its other objects.
    _lease: Option<lease::Lease>,
}

#[derive(Default)]
struct Counts {
    deleted: u64,
    failed: u64,
    dry_run: u64,
    bad_lines: u64,
}

struct Acker {
    dry_run: bool,
    /// --queue-url: the queues it may delete from (empty: any).
    allowed: Vec<String>,
    rt: tokio::runtime::Runtime,
    sqs: Option<aws_sdk_sqs::Client>,
    /// By receipt handle (unique per receive: a redelivered message is a new entry).
    waiting: HashMap<String, Waiting>,
    /// Ready to delete, by queue URL: (message id, receipt handle).
    ready: HashMap<String, Vec<(String, String)>>,
    counts: Counts,
}

/// Run `s3s-ack`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    // A signal changes nothing but the bound: the input ends when upstream stops, and what is
    // complete by then is deleted.
    let shutdown = Shutdown::install(TOOL, args.drain.drain_timeout)?;
    // One background worker: it runs the visibility leases while the main thread reads stdin.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut acker = Acker {
        dry_run: args.dry_run,
        allowed: args.queue_urls.clone(),
        rt,
        sqs: None,
        waiting: HashMap::new(),
        ready: HashMap::new(),
        counts: Counts::default(),
    };
    let mut out = Output::stdout();
    let mut input = Input::stdin();
    input.stop_when(shutdown.expiry_flag());
    let mut ty_buf = Vec::new();
    loop {
        if input.is_dry() {
            out.flush()?;
            acker.delete_ready();
        }
        let Some((number, rec)) = input.next_line().context("reading stdin")? else { break };
        if rec.is_empty() {
            continue;
        }
        let fields = match scan::fields(rec) {
            Ok(f) => f,
            Err(e) => {
                report_bad_line(TOOL, number, &e.to_string(), rec);
                acker.counts.bad_lines += 1;
                continue;
            }
        };
        if args.pass {
            out.write_record_nl(rec)?;
        }
        let ty = scan::type_name(rec, fields.ty.expect("fields() checks type"), &mut ty_buf);
        let is_end = ty == b"end";
        if !is_end && ty != b"message" {
            continue;
        }
        if let Err(why) = acker.record(rec, is_end) {
            report_bad_line(TOOL, number, &why, rec);
            acker.counts.bad_lines += 1;
        }
    }
    out.flush()?;
    acker.delete_ready();
    crate::metrics::events::sqs_messages_left("incomplete", acker.waiting.len() as u64);
    for w in acker.waiting.values() {
        eprintln!(
            "{TOOL}: message {} incomplete ({} of {} objects ended); left for redelivery",
            w.message_id, w.ended, w.objects
        );
    }
    let c = &acker.counts;
    if !args.common.quiet {
        eprintln!(
            "{TOOL}: {} messages deleted, {} failed, {} dry-run, {} incomplete left for redelivery",
            c.deleted,
            c.failed,
            c.dry_run,
            acker.waiting.len()
        );
    }
    Ok(if c.bad_lines > 0 { Status::Failed } else { Status::Ok })
}

impl Acker {
    /// An `end` or `message` record: count it towards its message, queue the delete when complete.
    fn record(&mut self, rec: &[u8], is_end: bool) -> Result<(), String> {
        let v: Map<String, Value> = serde_json::from_slice(rec).map_err(|e| e.to_string())?;
        let Some(ack) = Ack::of_record(&v)? else {
            // An end record of a source that came from no message (a file, an s3:// argument).
            return Ok(());
        };
        if !self.allowed.is_empty() && !self.allowed.contains(&ack.queue_url) {
            return Err(format!(
                "ack token names queue \"{}\", not one of --queue-url; nothing deleted",
                crate::io::printable(ack.queue_url.as_bytes())
            ));
        }
        let (receipt, queue_url, objects) = (ack.receipt_handle.clone(), ack.queue_url.clone(), ack.objects);
        let message_id = ack.message_id().to_string();
        let dry = self.dry_run || v.get("dry_run").and_then(Value::as_bool) == Some(true);
        if !self.waiting.contains_key(&receipt) {
            let waits = objects > u64::from(is_end);
            let lease = match lease::Token::from_ack(&ack) {
                Some(t) if waits && !dry => {
                    let sqs = self.sqs().clone();
                    Some(lease::Lease::hold(self.rt.handle(), sqs, t))
                }
                _ => None,
            };
            self.waiting.insert(receipt.clone(), Waiting { message_id, queue_url, objects, ended: 0, _lease: lease });
        }
        let w = self.waiting.get_mut(&receipt).expect("inserted above");
        if is_end {
            w.ended += 1;
        }
        if w.ended < w.objects {
            crate::metrics::events::sqs_in_flight(self.in_flight());
            return Ok(());
        }
        let w = self.waiting.remove(&receipt).expect("inserted above");
        if dry {
            self.counts.dry_run += 1;
            eprintln!("{TOOL}: dry run: would delete message {} from {}", w.message_id, w.queue_url);
            return Ok(());
        }
        let batch = self.ready.entry(w.queue_url).or_default();
        batch.push((w.message_id, receipt));
        if batch.len() >= 10 {
            self.delete_ready();
        }
        Ok(())
    }

    fn sqs(&mut self) -> &aws_sdk_sqs::Client {
        self.sqs.get_or_insert_with(|| self.rt.block_on(async { aws::sqs_client(&aws::sdk_config().await) }))
    }

    /// Messages received and not yet deleted: waiting for `end` records, or ready to delete.
    fn in_flight(&self) -> usize {
        self.waiting.len() + self.ready.values().map(Vec::len).sum::<usize>()
    }

    /// Delete every message that is ready, 10 per request.
    fn delete_ready(&mut self) {
        crate::metrics::events::sqs_in_flight(self.in_flight());
        if self.ready.is_empty() {
            return;
        }
        let sqs = self.sqs().clone();
        for (queue_url, msgs) in self.ready.drain() {
            for chunk in msgs.chunks(10) {
                let entries: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, (_, receipt))| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(receipt)
                            .build()
                            .expect("id and receipt handle are set")
                    })
                    .collect();
                let req = sqs.delete_message_batch().queue_url(&queue_url).set_entries(Some(entries)).send();
                match self.rt.block_on(req) {
                    Ok(resp) => {
                        self.counts.deleted += resp.successful().len() as u64;
                        crate::metrics::events::sqs_messages_deleted(resp.successful().len() as u64);
                        crate::metrics::events::sqs_delete_failed(resp.failed().len() as u64);
                        for f in resp.failed() {
                            self.counts.failed += 1;
                            let id = f.id().parse::<usize>().ok().and_then(|i| chunk.get(i)).map_or("?", |m| m.0.as_str());
                            eprintln!(
                                "{TOOL}: deleting message {id} failed: {}: {}; it will be redelivered",
                                f.code(),
                                f.message().unwrap_or("")
                            );
                        }
                    }
                    Err(e) => {
                        self.counts.failed += chunk.len() as u64;
                        crate::metrics::events::sqs_delete_failed(chunk.len() as u64);
                        let ids: Vec<&str> = chunk.iter().map(|m| m.0.as_str()).collect();
                        eprintln!(
                            "{TOOL}: deleting messages {} failed: {}; they will be redelivered",
                            ids.join(","),
                            aws::describe_sdk_error(&e)
                        );
                    }
                }
            }
        }
        crate::metrics::events::sqs_in_flight(self.in_flight());
    }
}
