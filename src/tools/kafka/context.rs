//! librdkafka's callbacks: delivery reports to the driver's [`Reporter`], logs and errors to
//! tracing (repeats damped; refused credentials or certificates raise [`Fatal`]), statistics to
//! the retry count, MSK IAM tokens on request.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};

use super::security::{self, Fatal, MskIam};
use super::stats::Retries;
use crate::sink::{Reporter, Ticket};

/// librdkafka's callbacks: delivery reports go to the driver, logs and errors to tracing.
pub struct Context {
    pub reporter: Reporter,
    /// `-X debug=...` was given: show librdkafka's debug lines without -vv.
    pub debug: bool,
    /// Produce retries seen in librdkafka's statistics.
    pub retries: std::sync::Mutex<Retries>,
    /// Error events shown lately, and when: a broker that stays down repeats the same few.
    pub seen_errors: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// MSK IAM tokens (--aws-msk-iam).
    pub msk: Option<MskIam>,
    /// An error no retry can mend (refused credentials or certificates): stops the stage.
    pub fatal: Fatal,
}

/// An error event repeated within this interval is logged at debug level only.
const ERROR_REPEAT: Duration = Duration::from_secs(30);

impl ClientContext for Context {
    // Also served by our own report thread (`native::serve`); this is for rust-rdkafka's poll.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        match &self.msk {
            Some(msk) => msk.token().map_err(Into::into),
            None => Err("OAUTHBEARER tokens come only with --aws-msk-iam".into()),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.retries.lock().unwrap_or_else(|e| e.into_inner()).stats(statistics);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, msg: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!("librdkafka: {fac}: {msg}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!("librdkafka: {fac}: {msg}"),
            // Error lines repeat what the error events say (shown by `error` below).
            RDKafkaLogLevel::Error | RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!("librdkafka: {fac}: {msg}")
            }
            RDKafkaLogLevel::Debug if self.debug => tracing::warn!("librdkafka: {fac}: {msg}"),
            RDKafkaLogLevel::Debug => tracing::debug!("librdkafka: {fac}: {msg}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            tracing::error!("librdkafka: fatal: {reason}");
            return;
        }
        if error.rdkafka_error_code().is_some_and(security::is_fatal) {
            if self.fatal.raise(reason) {
                tracing::error!("{reason}");
            }
            return;
        }
        // "1/1 brokers are down" and "Connect to ... failed (after 0ms ...)" come again and
        // again while a broker is away: show each once per interval.
        let key = reason.split(" (").next().unwrap_or(reason);
        let now = std::time::Instant::now();
        let mut seen = self.seen_errors.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 64 {
            seen.clear();
        }
        match seen.get(key) {
            Some(at) if now.duration_since(*at) < ERROR_REPEAT => tracing::debug!("librdkafka: {reason}"),
            _ => {
                seen.insert(key.to_string(), now);
                tracing::warn!("librdkafka: {reason}");
            }
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    #[inline]
    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let ticket = Ticket::from_raw(opaque as u64);
        match result {
            Ok(_) => self.reporter.delivered(ticket),
            Err((e, _)) => match e.rdkafka_error_code() {
                Some(code) => self.reporter.failed(ticket, &code),
                None => self.reporter.failed(ticket, e),
            },
        }
    }
}

/// The producer, shared by the publisher, the control and the report thread.
pub type Kafka = Arc<BaseProducer<Context>>;
