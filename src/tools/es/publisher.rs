//! s3s-es's side of the driver: [`EsPublisher`] builds batches on the stdin thread and hands
//! full ones to the sending tasks; [`EsControl`] flushes and aborts them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::bulk::{Ctx, Item, lock};
use super::document::Encoder;
use crate::sink::{Control, Line, PublishError, Publisher, Ticket};

pub(super) struct EsPublisher {
    pub(super) encoder: Encoder,
    pub(super) ctx: Option<Arc<Ctx>>,
    pub(super) batch_docs: usize,
    pub(super) batch_bytes: usize,
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
            self.encoder.write(line, &mut b.body);
            let end = b.body.len();
            b.items.push(Item { ticket, start, end });
            if b.items.len() >= self.batch_docs || b.body.len() >= self.batch_bytes {
                ctx.outstanding.fetch_add(1, Ordering::AcqRel);
                Some(b.take(ctx.batch_capacity))
            } else {
                None
            }
        };
        if let Some(batch) = full
            && let Err(e) = ctx.tx.blocking_send(batch)
        {
            ctx.outstanding.fetch_sub(1, Ordering::AcqRel);
            // Report this batch's lines except the one being published (the driver does).
            for item in &e.0.items[..e.0.items.len() - 1] {
                ctx.reporter.failed(item.ticket, &"the sender stopped");
            }
            return Err(PublishError::Fatal("the bulk sender stopped".into()));
        }
        Ok(())
    }

    fn describe(&mut self, line: &Line<'_>, out: &mut Vec<u8>) {
        self.encoder.write(line, out);
        // The driver ends each description with a newline.
        out.pop();
    }
}

pub(super) struct EsControl {
    pub(super) ctx: Arc<Ctx>,
    /// Owns the sending tasks; dropped (and so stopped) with the control.
    pub(super) _rt: tokio::runtime::Runtime,
}

impl Control for EsControl {
    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if let Some(b) = self.ctx.take_due(true)
            && self.ctx.tx.blocking_send(b).is_err()
        {
            self.ctx.outstanding.fetch_sub(1, Ordering::AcqRel);
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
