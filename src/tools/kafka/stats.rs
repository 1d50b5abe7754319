//! Produce retries counted from librdkafka's statistics, for `s3s_publish_retries_total`.

/// Produce retries, from librdkafka's statistics (`statistics.interval.ms`).
///
/// librdkafka retries a failed produce request (connection lost, request timed out,
/// retriable broker error) by putting its messages back at the head of their partition's
/// queue and sending them again in a later request; per message, within message.timeout.ms.
/// Its per-broker `txretries` does not see these (in librdkafka 2.12 it counts only requests
/// re-sent as they were: metadata and the like, never produce batches), so it is not used.
/// What the statistics do show, per partition: `msgs`, messages produced to it, and
/// `txmsgs`, messages put into produce requests, every sending counted. When a partition is
/// idle in a snapshot (`msgq_cnt` and `msgs_inflight` both 0: nothing queued, nothing awaiting
/// a response), each of its messages was sent once plus once per retry, so `txmsgs - msgs`
/// is exactly the number of retries so far (less any messages that failed without ever
/// being sent; never more). The counter takes the increase of that number since the last
/// idle snapshot of the partition.
///
/// So retries are counted with a delay: at the first statistics snapshot (every second by
/// default) in which their partition is idle, which under a steady load may be a while, and
/// retries in the last second before the stage exits are not counted. Re-calling produce
/// after QueueFull (librdkafka's queue is full) is backpressure, not a retry: not counted.
#[derive(Default)]
pub struct Retries {
    /// Retries counted so far, per (topic, partition).
    counted: std::collections::HashMap<(String, i32), u64>,
}

#[derive(serde::Deserialize)]
struct Stats {
    #[serde(default)]
    topics: std::collections::HashMap<String, TopicStats>,
}

#[derive(serde::Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: std::collections::HashMap<String, PartitionStats>,
}

#[derive(serde::Deserialize)]
struct PartitionStats {
    partition: i32,
    #[serde(default)]
    msgq_cnt: i64,
    #[serde(default)]
    msgs_inflight: i64,
    #[serde(default)]
    txmsgs: u64,
    #[serde(default)]
    msgs: u64,
}

impl Retries {
    /// Retries counted so far.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.counted.values().sum()
    }

    /// One statistics snapshot (librdkafka's JSON).
    pub fn stats(&mut self, json: &[u8]) {
        let stats: Stats = match serde_json::from_slice(json) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("librdkafka statistics not understood: {e}");
                return;
            }
        };
        let mut new = 0;
        for (topic, t) in stats.topics {
            for p in t.partitions.into_values() {
                // -1 is the queue of messages not yet given a partition: never sent from.
                if p.partition < 0 || p.msgq_cnt != 0 || p.msgs_inflight != 0 {
                    continue;
                }
                let retried = p.txmsgs.saturating_sub(p.msgs);
                let counted = self.counted.entry((topic.clone(), p.partition)).or_default();
                if retried > *counted {
                    new += retried - *counted;
                    *counted = retried;
                }
            }
        }
        if new > 0 {
            tracing::info!("librdkafka sent {new} message(s) again after failed produce requests");
            crate::metrics::events::publish_retries(new);
        }
    }
}
