//! The progress line on stderr (when stderr is a terminal): objects, bytes, lines and a rate,
//! from the stage's own counters, redrawn twice a second.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::counter_total;

pub(super) struct ProgressLine {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: std::thread::JoinHandle<()>,
}

/// `1.2 MB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", units[i]) }
}

/// `12.3k`-style counts.
pub fn human_count(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// The progress text of `tool` from its counters; `rate` is lines (or records) per second.
fn progress_text(tool: &str, rate: f64) -> (u64, String) {
    let c = counter_total;
    match tool {
        "s3s-cat" => {
            let lines = c("s3s_lines_read_total");
            (
                lines,
                format!(
                    "{TOOL}: {} objects, {} read ({} decompressed), {} lines, {} lines/s",
                    c("s3s_objects_read_total"),
                    human_bytes(c("s3s_read_bytes_total")),
                    human_bytes(c("s3s_decompressed_bytes_total")),
                    human_count(lines as f64),
                    human_count(rate),
                    TOOL = tool
                ),
            )
        }
        "s3s-filter" => {
            let (k, d) = (c("s3s_lines_kept_total"), c("s3s_lines_dropped_total"));
            (
                k + d,
                format!(
                    "{tool}: {} lines in, {} kept, {} lines/s",
                    human_count((k + d) as f64),
                    human_count(k as f64),
                    human_count(rate)
                ),
            )
        }
        "s3s-poll" => {
            let m = c("s3s_sqs_messages_received_total");
            (m, format!("{tool}: {m} messages, {} objects, {:.1} messages/s", c("s3s_objects_announced_total"), rate))
        }
        "s3s-ack" => {
            let d = c("s3s_sqs_messages_deleted_total");
            (d, format!("{tool}: {d} messages deleted, {} failed, {:.1} messages/s", c("s3s_sqs_delete_failures_total"), rate))
        }
        _ => {
            let p = c("s3s_records_published_total");
            (
                p,
                format!(
                    "{tool}: {} records published, {} failed, {} records/s",
                    human_count(p as f64),
                    c("s3s_delivery_failures_total"),
                    human_count(rate)
                ),
            )
        }
    }
}

impl ProgressLine {
    pub(super) fn start(tool: &str) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let tool = tool.to_string();
        let thread = std::thread::spawn(move || {
            let (lock, cv) = &*s;
            let mut last = (Instant::now(), 0u64);
            let mut rate = 0.0;
            let mut g = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                let (ng, _) = cv.wait_timeout(g, Duration::from_millis(500)).unwrap_or_else(|e| e.into_inner());
                g = ng;
                if *g {
                    break;
                }
                let (n, _) = progress_text(&tool, 0.0);
                let dt = last.0.elapsed().as_secs_f64();
                if dt > 0.0 {
                    rate = (n.saturating_sub(last.1)) as f64 / dt;
                }
                last = (Instant::now(), n);
                let (_, text) = progress_text(&tool, rate);
                // Ends in `\r`: a message written meanwhile starts at column 0, over the line.
                let mut err = io::stderr().lock();
                let _ = write!(err, "\r\x1b[K{text}\r");
                let _ = err.flush();
            }
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        });
        ProgressLine { stop, thread }
    }

    pub(super) fn stop(self) {
        *self.stop.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.1.notify_all();
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_count(12_345.0), "12.3k");
    }
}
