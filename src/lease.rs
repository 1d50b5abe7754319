//! Keeping an SQS message invisible while a stage still works on it.
//!
//! `s3s-poll` puts the message's visibility timeout and the time it runs out into the ack token
//! (`visibility_timeout`, `deadline_ms`). A stage that holds the token for long (s3s-cat while
//! it streams the object, s3s-ack while a message waits for the `end` of its other objects)
//! holds a [`Lease`]: a task that calls ChangeMessageVisibility before the deadline, again and
//! again, and the new deadline goes on in the records the stage writes. So an object that takes
//! longer than the visibility timeout is not redelivered to another consumer while it is still
//! being worked on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::s3::describe_sdk_error;

/// What a lease needs from an ack token.
#[derive(Debug, Clone)]
pub struct Token {
    pub queue_url: String,
    pub receipt_handle: String,
    pub message_id: String,
    /// Seconds.
    pub timeout: i32,
    /// Milliseconds since the epoch.
    pub deadline_ms: u64,
}

impl Token {
    /// From an `ack` object; `None` when it has no visibility information (e.g. dry run).
    pub fn from_ack(ack: &Value) -> Option<Token> {
        Some(Token {
            queue_url: ack.get("queue_url")?.as_str()?.to_string(),
            receipt_handle: ack.get("receipt_handle")?.as_str()?.to_string(),
            message_id: ack.get("message_id").and_then(Value::as_str).unwrap_or("?").to_string(),
            timeout: i32::try_from(ack.get("visibility_timeout")?.as_i64()?).ok().filter(|t| *t > 0)?,
            deadline_ms: ack.get("deadline_ms")?.as_u64()?,
        })
    }
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A message kept invisible until the lease is released (or dropped).
pub struct Lease {
    task: tokio::task::JoinHandle<()>,
    deadline: Arc<AtomicU64>,
}

impl Lease {
    /// Start extending `token`'s message on `rt` (a runtime whose workers run in the background).
    pub fn hold(rt: &tokio::runtime::Handle, sqs: aws_sdk_sqs::Client, token: Token) -> Lease {
        let deadline = Arc::new(AtomicU64::new(token.deadline_ms));
        let d = deadline.clone();
        let task = rt.spawn(async move {
            let timeout_ms = token.timeout as u64 * 1000;
            loop {
                // Extend once half the timeout is left.
                let wake_at = d.load(Ordering::Relaxed).saturating_sub(timeout_ms / 2);
                let now = now_ms();
                if now < wake_at {
                    tokio::time::sleep(Duration::from_millis(wake_at - now)).await;
                    continue;
                }
                let req = sqs
                    .change_message_visibility()
                    .queue_url(&token.queue_url)
                    .receipt_handle(&token.receipt_handle)
                    .visibility_timeout(token.timeout)
                    .send();
                match req.await {
                    Ok(_) => {
                        d.store(now + timeout_ms, Ordering::Relaxed);
                        tracing::debug!("message {}: visibility extended by {}s", token.message_id, token.timeout);
                    }
                    Err(e) => {
                        tracing::warn!(
                            "message {}: could not extend its visibility ({}); it may be redelivered (a duplicate, not a loss)",
                            token.message_id,
                            describe_sdk_error(&e)
                        );
                        return;
                    }
                }
            }
        });
        Lease { task, deadline }
    }

    /// Stop extending; the latest deadline (ms since the epoch), for the records passed on.
    pub fn release(self) -> u64 {
        self.deadline.load(Ordering::Relaxed)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Set `ack.deadline_ms` in a record's fields to `deadline`.
pub fn pass_on(extra: &mut serde_json::Map<String, Value>, deadline: u64) {
    if let Some(Value::Object(ack)) = extra.get_mut("ack") {
        ack.insert("deadline_ms".into(), deadline.into());
    }
}
