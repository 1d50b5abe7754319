//! Exponential backoff, the one policy for every retry loop: a first delay doubling up to a
//! ceiling, with optional jitter (s3s-es: anywhere between half and all of the delay, so that
//! many clients do not retry in step) and a server's `Retry-After` honoured up to the ceiling.
//! Used by s3s-poll (receive errors), s3s-es (bulk requests) and the syslog/GELF writer
//! (reconnects).

use std::time::Duration;

/// A backoff policy and where a retry loop stands in it.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: bool,
    attempt: u32,
}

impl Backoff {
    /// `first`, doubling with each attempt up to `max`; no jitter.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max: max.max(first), jitter: false, attempt: 0 }
    }

    /// With jitter: each delay anywhere between half and all of it.
    pub fn with_jitter(mut self) -> Backoff {
        self.jitter = true;
        self
    }

    /// The delay before retry number `attempt` (0 for the first retry), at least `retry_after`
    /// (a server's `Retry-After`, capped at the ceiling).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.first.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        let d = if self.jitter { exp.mul_f64(0.5 + fastrand::f64() * 0.5) } else { exp };
        d.max(retry_after.unwrap_or_default().min(self.max))
    }

    /// The delay before the next retry of this loop (and one attempt more).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.delay(self.attempt, None);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// The delay the next retry would wait, without counting it.
    pub fn peek(&self) -> Duration {
        self.delay(self.attempt, None)
    }

    /// It worked: the next failure starts from the first delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The longest delay.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let seq: Vec<_> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(seq, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.delay(0, Some(Duration::from_secs(5))), Duration::from_secs(1));
        assert_eq!(b.delay(0, Some(Duration::from_millis(700))), Duration::from_millis(700));
        let j = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter();
        for _ in 0..100 {
            let d = j.delay(2, None);
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400), "{d:?}");
        }
        assert_eq!(Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).delay(60, None), Duration::from_secs(1));
    }
}
