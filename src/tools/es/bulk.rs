//! Bulk requests: batches of documents POSTed to `_bulk` (round-robin over the nodes), retried
//! with backoff on transport errors, 429 and 5xx, and each item of a response settled: indexed,
//! retried (429/503), dead-lettered or failed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;

use super::OpType;
use crate::backoff::Backoff;
use crate::dead_letter::DeadLetter;
use crate::metrics::events;
use crate::scan::quote_into;
use crate::sink::{Reporter, Ticket};

/// One document of a batch: its ticket and the byte range of its action + document lines.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item {
    pub(super) ticket: Ticket,
    pub(super) start: usize,
    pub(super) end: usize,
}

/// A bulk request body and the documents in it.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) body: Vec<u8>,
    pub(super) items: Vec<Item>,
    pub(super) started: Option<Instant>,
}

impl Batch {
    /// The batch as it is, leaving an empty one sized like it (at most `max` bytes reserved).
    pub(super) fn take(&mut self, max: usize) -> Batch {
        let capacity = (self.body.len() + self.body.len() / 8).clamp(64 << 10, max);
        let items = self.items.len() + self.items.len() / 8;
        std::mem::replace(self, Batch { body: Vec::with_capacity(capacity), items: Vec::with_capacity(items), started: None })
    }
}

pub(super) type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// What the sending side shares: the HTTP client, the batch being built, counters.
pub(super) struct Ctx {
    pub(super) http: HyperClient<Https, Full<Bytes>>,
    /// `<url>/_bulk` of each node.
    pub(super) endpoints: Vec<String>,
    pub(super) next: AtomicUsize,
    pub(super) auth: Option<HeaderValue>,
    /// --aws-sigv4: signs each request.
    pub(super) signer: Option<crate::aws::sigv4::Signer>,
    pub(super) gzip: bool,
    pub(super) timeout: Duration,
    pub(super) max_retries: u32,
    pub(super) backoff: Backoff,
    pub(super) op_type: OpType,
    pub(super) reporter: Reporter,
    pub(super) dead_letter: Option<DeadLetter>,
    /// The batch being built (by the stdin thread; the ticker and `flush` take it when due).
    pub(super) building: Mutex<Batch>,
    pub(super) batch_capacity: usize,
    pub(super) flush_interval: Duration,
    /// Batches handed over and not settled yet.
    pub(super) outstanding: AtomicUsize,
    pub(super) idle: (Mutex<()>, Condvar),
    pub(super) aborted: AtomicBool,
    pub(super) tx: tokio::sync::mpsc::Sender<Batch>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
    pub(super) fn settled(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = lock(&self.idle.0);
            self.idle.1.notify_all();
        }
    }

    /// Take the batch being built when it is due (or when `force`), for sending.
    pub(super) fn take_due(&self, force: bool) -> Option<Batch> {
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
        let mut req = match req.body(Full::new(body.clone())) {
            Ok(r) => r,
            Err(e) => return (node, Outcome::Transport(format!("request: {e}"))),
        };
        // SigV4 over the body as sent (compressed, with --gzip); a failure to get credentials
        // is retried like a transport error.
        if let Some(signer) = &self.signer
            && let Err(e) = signer.sign(&mut req, &body).await
        {
            return (node, Outcome::Transport(e));
        }
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
        self.backoff.delay(attempt, retry_after)
    }

    fn fail_all(&self, batch: &Batch, why: &str) {
        for item in &batch.items {
            self.reporter.failed(item.ticket, &why);
        }
    }

    /// Send one batch until every line in it is settled (indexed, dead-lettered or failed).
    pub(super) async fn deliver(&self, mut batch: Batch) {
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
            let written = dl.append(&dead);
            let path = dl.path();
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
