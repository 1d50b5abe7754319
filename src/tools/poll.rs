//! `s3s-poll`: turn S3 event notifications on an SQS queue into `object` records.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use clap::Parser;
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::aws;
use crate::backoff::Backoff;
use crate::cli::{Common, Status, UsageError};
use crate::clock::now_ms;
use crate::dead_letter::DeadLetter;
use crate::envelope::Ack;
use crate::io::Output;
use crate::notify::{self, Notice};
use crate::signals::Signals;

const TOOL: &str = "s3s-poll";

/// Receive S3 event notifications from SQS and write one `object` record per announced object.
///
/// Understands S3 notifications sent directly, wrapped by SNS, or through EventBridge, several
/// records in one message, URL-encoded keys, and `s3:TestEvent`. Each `object` record carries an
/// `ack` token (queue URL, receipt handle, message id, number of objects) that `s3s-ack` uses to
/// delete the message once all its objects were delivered. A message that announces nothing to
/// read (a test event, a deletion, keys excluded by --key-regex) becomes a `message` record, which
/// `s3s-ack` deletes at once.
///
/// A message it cannot understand is reported on stderr with its message id, counted, and left
/// in the queue: after its visibility timeout it returns, and the queue's redrive policy moves it
/// to a dead-letter queue.
///
/// Runs until SIGTERM/SIGINT (then it stops receiving, flushes, and exits 0 so the rest of the
/// pipeline drains), sleeping --interval after an empty receive; --once stops at the first empty
/// receive. Any number of pollers may share a queue: SQS hides a message in flight from the others.
#[derive(Debug, Parser)]
#[command(
    name = "s3s-poll",
    version,
    after_long_help = "EXAMPLES:
    s3s-poll --queue-url https://sqs.eu-west-1.amazonaws.com/123456789012/cf-logs | s3s-cat | s3s-ack
    s3s-poll --once --key-regex '\\.gz$' | s3s-cat | s3s-filter -e GET | s3s-ack
    s3s-poll --dry-run --once | jq -c .                  # peek: nothing held, nothing deleted
    s3s-poll --lock /run/s3s/poll.lock ...               # cron-safe: a second start exits at once

ENVIRONMENT:
    S3S_QUEUE_URL is the default for --queue-url. The standard AWS chain (AWS_PROFILE, AWS_REGION,
    AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS...) configures the client. S3S_LOG sets the log filter.

EXIT STATUS:
    0 stopped normally (signal, --once, --max-messages, another instance holds --lock, stdout
    closed), 1 SQS could not be used, 2 usage error."
)]
pub struct Args {
    /// The SQS queue's URL.
    #[arg(long, env = "S3S_QUEUE_URL", value_name = "URL")]
    pub queue_url: String,

    /// Long-polling wait of each receive, in seconds (0-20) [default: 20, 1 with --once].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(i32).range(0..=20))]
    pub wait_time: Option<i32>,

    /// Messages per receive (1-10).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=10))]
    pub batch: i32,

    /// Visibility timeout for received messages, in seconds [default: the queue's].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(i32).range(0..=43200))]
    pub visibility_timeout: Option<i32>,

    /// Seconds to sleep after a receive that came back empty.
    #[arg(long, value_name = "SECS", default_value_t = 0.0)]
    pub interval: f64,

    /// Drain what is in the queue now: exit 0 at the first empty receive.
    #[arg(long)]
    pub once: bool,

    /// Stop after receiving N messages.
    #[arg(long, value_name = "N")]
    pub max_messages: Option<u64>,

    /// Only objects whose key matches REGEX are read; the others are acknowledged unread.
    #[arg(long, value_name = "REGEX")]
    pub key_regex: Option<String>,

    /// Objects whose key matches REGEX are acknowledged unread.
    #[arg(long, value_name = "REGEX")]
    pub exclude_key_regex: Option<String>,

    /// Peek: receive with visibility timeout 0 (other consumers are not held up) and mark every
    /// record dry-run, so no stage publishes or deletes anything.
    #[arg(long)]
    pub dry_run: bool,

    /// Hold an exclusive lock on FILE while running; if another process holds it, exit 0 at once
    /// with a message (or wait for it with --lock-wait).
    #[arg(long, value_name = "FILE")]
    pub lock: Option<PathBuf>,

    /// With --lock: wait for the lock instead of exiting.
    #[arg(long, requires = "lock")]
    pub lock_wait: bool,

    /// A message received more than N times (it keeps failing somewhere: an empty or broken
    /// object, a poison body) is written to --dead-letter FILE with its reason and deleted, so a
    /// queue without a redrive policy does not loop on it forever. Without --dead-letter it is
    /// only reported and left for the queue's redrive policy.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_receives: Option<u64>,

    /// Where --max-receives writes the messages it gives up on (NDJSON, appended).
    #[arg(long, value_name = "FILE", requires = "max_receives")]
    pub dead_letter: Option<PathBuf>,

    #[command(flatten)]
    pub common: Common,
}

/// Counters of one run.
#[derive(Debug, Default)]
struct Counts {
    messages: u64,
    objects: u64,
    no_object: u64,
    excluded: u64,
    not_understood: u64,
    receive_errors: u64,
    dead_lettered: u64,
}

struct KeyFilter {
    keep: Option<Regex>,
    exclude: Option<Regex>,
}

impl KeyFilter {
    fn new(args: &Args) -> Result<Self, UsageError> {
        let compile = |flag: &str, p: &Option<String>| {
            p.as_deref().map(|p| Regex::new(p).map_err(|e| UsageError(format!("invalid {flag}: {e}")))).transpose()
        };
        Ok(KeyFilter {
            keep: compile("--key-regex", &args.key_regex)?,
            exclude: compile("--exclude-key-regex", &args.exclude_key_regex)?,
        })
    }

    fn wants(&self, key: &str) -> bool {
        self.keep.as_ref().is_none_or(|r| r.is_match(key)) && !self.exclude.as_ref().is_some_and(|r| r.is_match(key))
    }
}

/// Run `s3s-poll`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let filter = KeyFilter::new(&args)?;
    if !(args.interval.is_finite() && args.interval >= 0.0) {
        return Err(UsageError("--interval must be a number of seconds >= 0".into()).into());
    }
    let _lock = match &args.lock {
        None => None,
        Some(path) => match take_lock(path, args.lock_wait)? {
            Some(f) => Some(f),
            None => {
                eprintln!("{TOOL}: another instance holds the lock {}; exiting", path.display());
                return Ok(Status::Ok);
            }
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(poll(args, filter))
}

/// Lock `path` exclusively: `None` when another process holds it and we do not wait.
fn take_lock(path: &std::path::Path, wait: bool) -> anyhow::Result<Option<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))?;
    if wait {
        f.lock().with_context(|| format!("locking {}", path.display()))?;
        return Ok(Some(f));
    }
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
    }
}

async fn poll(args: Args, filter: KeyFilter) -> anyhow::Result<Status> {
    let signals = Signals::install().context("installing signal handlers")?;
    let cfg = aws::sdk_config().await;
    let sqs = aws::sqs_client(&cfg);
    let mut out = Output::stdout();
    let mut counts = Counts::default();
    let wait = args.wait_time.unwrap_or(if args.once { 1 } else { 20 });
    let visibility = if args.dry_run { Some(0) } else { args.visibility_timeout };
    // The timeout the messages get, so that the stages holding them can extend it in time
    // (the ack token carries it and the deadline).
    let effective_visibility = match visibility {
        Some(v) => Some(v),
        None => queue_visibility(&sqs, &args.queue_url).await,
    };
    let dead_letter = match &args.dead_letter {
        Some(p) => Some(DeadLetter::open("--dead-letter", p)?),
        None => None,
    };
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut ever_received = false;
    // Dry run receives with visibility timeout 0: the same messages come back at once. Each is
    // shown once; a receive of only messages already shown counts as empty.
    let mut shown: std::collections::HashSet<String> = std::collections::HashSet::new();
    let status = loop {
        let batch = match args.max_messages {
            Some(max) if counts.messages >= max => break Status::Ok,
            Some(max) => args.batch.min((max - counts.messages).min(10) as i32),
            None => args.batch,
        };
        let req = sqs
            .receive_message()
            .queue_url(&args.queue_url)
            .max_number_of_messages(batch)
            .wait_time_seconds(wait)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send();
        let resp = tokio::select! {
            _ = signals.notified() => break Status::Ok,
            r = req => r,
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                counts.receive_errors += 1;
                crate::metrics::events::sqs_receive_error();
                let why = aws::describe_sdk_error(&e);
                if !ever_received || args.once {
                    // Most likely configuration (no such queue, no credentials): fail fast.
                    eprintln!("{TOOL}: error: receiving from {}: {why}", args.queue_url);
                    break Status::Failed;
                }
                let delay = backoff.next_delay();
                eprintln!("{TOOL}: receiving from {} failed ({why}); retrying in {delay:?}", args.queue_url);
                tokio::select! {
                    _ = signals.notified() => break Status::Ok,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        ever_received = true;
        backoff.reset();
        let mut messages: Vec<&aws_sdk_sqs::types::Message> = resp.messages().iter().collect();
        if args.dry_run {
            messages.retain(|m| shown.insert(m.message_id().unwrap_or_default().to_string()));
        }
        if messages.is_empty() {
            if args.once {
                break Status::Ok;
            }
            if args.interval > 0.0 {
                tokio::select! {
                    _ = signals.notified() => break Status::Ok,
                    _ = tokio::time::sleep(Duration::from_secs_f64(args.interval)) => {}
                }
            }
            continue;
        }
        let received_ms = now_ms();
        crate::metrics::events::sqs_messages_received(messages.len() as u64);
        for m in messages {
            counts.messages += 1;
            if let (Some(max), Some(n)) = (args.max_receives, receive_count(m))
                && n > max
            {
                give_up(&args, &sqs, m, n, max, dead_letter.as_ref(), &mut counts).await;
                continue;
            }
            let lease = effective_visibility.map(|v| (v, received_ms + v as u64 * 1000));
            emit(&args, &filter, m, lease, &mut out, &mut counts)?;
        }
        out.flush()?;
    };
    out.flush()?;
    tracing::info!(
        "{} messages, {} objects, {} without objects, {} keys excluded, {} not understood, {} dead-lettered, {} receive errors",
        counts.messages,
        counts.objects,
        counts.no_object,
        counts.excluded,
        counts.not_understood,
        counts.dead_lettered,
        counts.receive_errors
    );
    Ok(status)
}

/// The notification lag of an object: now minus its S3 event time, else minus the SQS send time.
fn lag(event_time: Option<&str>, sent_ms: Option<u64>) -> Option<Duration> {
    let then = event_time.and_then(|t| crate::clock::parse_ms(t.as_bytes())).or(sent_ms.map(|t| t as i64))?;
    Some(Duration::from_millis((now_ms() as i64 - then).max(0) as u64))
}

fn receive_count(m: &aws_sdk_sqs::types::Message) -> Option<u64> {
    m.attributes().and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount)).and_then(|v| v.parse().ok())
}

/// The queue's own visibility timeout, when --visibility-timeout does not set one.
async fn queue_visibility(sqs: &aws_sdk_sqs::Client, url: &str) -> Option<i32> {
    let resp = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .ok()?;
    resp.attributes()?.get(&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)?.parse().ok()
}

/// --max-receives: write the message to the dead-letter file (if any), then delete it.
async fn give_up(
    args: &Args,
    sqs: &aws_sdk_sqs::Client,
    m: &aws_sdk_sqs::types::Message,
    n: u64,
    max: u64,
    file: Option<&DeadLetter>,
    counts: &mut Counts,
) {
    let id = m.message_id().unwrap_or("?");
    let reason = format!("received {n} times, more than --max-receives {max}");
    let Some(file) = file else {
        eprintln!("{TOOL}: message {id}: {reason}; left for the queue's redrive policy (no --dead-letter)");
        return;
    };
    if args.dry_run {
        eprintln!("{TOOL}: dry run: message {id}: {reason}; would be dead-lettered");
        return;
    }
    let mut rec = serde_json::to_vec(&json!({
        "type": "dead_letter", "queue_url": args.queue_url, "message_id": id, "receive_count": n,
        "reason": reason, "time_ms": now_ms(), "body": m.body().unwrap_or(""),
    }))
    .expect("a JSON value serializes");
    rec.push(b'\n');
    if let Err(e) = file.append(&rec) {
        eprintln!("{TOOL}: message {id}: writing the dead-letter file failed ({e}); left in the queue");
        return;
    }
    let receipt = m.receipt_handle().unwrap_or_default();
    match sqs.delete_message().queue_url(&args.queue_url).receipt_handle(receipt).send().await {
        Ok(_) => {
            counts.dead_lettered += 1;
            crate::metrics::events::sqs_messages_left("max_receives", 1);
            eprintln!("{TOOL}: message {id}: {reason}; written to the dead-letter file and deleted");
        }
        Err(e) => eprintln!("{TOOL}: message {id}: dead-lettered but deleting it failed: {}", aws::describe_sdk_error(&e)),
    }
}

/// Write the records for one message. `lease`: the visibility timeout (seconds) and the time
/// (ms since the epoch) it runs out, carried in the ack token for the stages that hold it.
fn emit(
    args: &Args,
    filter: &KeyFilter,
    m: &aws_sdk_sqs::types::Message,
    lease: Option<(i32, u64)>,
    out: &mut Output,
    counts: &mut Counts,
) -> std::io::Result<()> {
    let id = m.message_id().unwrap_or("?");
    let Some(receipt) = m.receipt_handle() else {
        eprintln!("{TOOL}: message {id}: no receipt handle; skipped");
        counts.not_understood += 1;
        crate::metrics::events::sqs_messages_left("not_understood", 1);
        return Ok(());
    };
    let attr = |name: MessageSystemAttributeName| m.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<u64>().ok());
    let notice = match notify::parse(m.body().unwrap_or("")) {
        Ok(n) => n,
        Err(why) => {
            counts.not_understood += 1;
            crate::metrics::events::sqs_messages_left("not_understood", 1);
            let why = crate::io::printable(why.as_bytes());
            eprintln!("{TOOL}: message {id}: not understood ({why}); left in the queue for its redrive policy");
            return Ok(());
        }
    };
    let (objects, reason) = match notice {
        Notice::Nothing(reason) => (Vec::new(), reason),
        Notice::Objects(all) => {
            let total = all.len();
            let kept: Vec<_> = all.into_iter().filter(|a| filter.wants(&a.key)).collect();
            counts.excluded += (total - kept.len()) as u64;
            crate::metrics::events::objects_excluded((total - kept.len()) as u64);
            (kept, format!("all {total} key(s) excluded by the key filters"))
        }
    };
    let lease = lease.filter(|_| !args.dry_run);
    let ack = Ack {
        queue_url: args.queue_url.clone(),
        receipt_handle: receipt.to_string(),
        message_id: Some(id.to_string()),
        objects: objects.len() as u64,
        receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount),
        sent_ms: attr(MessageSystemAttributeName::SentTimestamp),
        visibility_timeout: lease.map(|(timeout, _)| timeout.into()),
        deadline_ms: lease.map(|(_, deadline)| deadline),
        extra: Map::new(),
    };
    let ack = serde_json::to_value(&ack).expect("an ack token serializes");
    if objects.is_empty() {
        counts.no_object += 1;
        let mut rec = json!({"type": "message", "ack": ack, "reason": reason});
        if args.dry_run {
            rec["dry_run"] = true.into();
        }
        return write_json(out, &rec);
    }
    let sent_ms = attr(MessageSystemAttributeName::SentTimestamp);
    for a in objects {
        counts.objects += 1;
        crate::metrics::events::object_announced(lag(a.event_time.as_deref(), sent_ms));
        let mut rec = Map::new();
        rec.insert("type".into(), "object".into());
        rec.insert("bucket".into(), a.bucket.into());
        rec.insert("key".into(), a.key.into());
        if let Some(s) = a.size {
            rec.insert("size".into(), s.into());
        }
        if let Some(e) = a.etag {
            rec.insert("etag".into(), e.into());
        }
        if let Some(t) = a.event_time {
            rec.insert("event_time".into(), t.into());
        }
        if let Some(n) = a.event_name {
            rec.insert("event_name".into(), n.into());
        }
        rec.insert("ack".into(), ack.clone());
        if args.dry_run {
            rec.insert("dry_run".into(), true.into());
        }
        write_json(out, &Value::Object(rec))?;
    }
    Ok(())
}

fn write_json(out: &mut Output, v: &Value) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out.buf(), v).map_err(std::io::Error::other)?;
    out.buf().push(b'\n');
    out.record_done()
}
