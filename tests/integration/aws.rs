//! Test fixtures on the real local S3/SQS server (moto, started by `scripts/services`):
//! buckets with notification configurations, queues, objects, queue counts.

use std::io::Write;

use aws_sdk_s3::primitives::ByteStream;

/// Panics with instructions when the local servers' environment is missing: a service test
/// must never pass without its server.
pub fn require_services() {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        panic!(
            "AWS_ENDPOINT_URL is not set: these tests need the local servers. Run `scripts/test`, \
             or `scripts/services install && scripts/services start && eval \"$(scripts/services env)\"` first"
        );
    }
}

/// A bucket and a queue of this test's own, with S3 → SQS notifications configured.
pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub bucket: String,
    pub queue_url: String,
}

/// gzip `text`.
pub fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// `n` CloudFront-like lines for object `tag`; every line is unique across objects.
pub fn lines(tag: &str, n: usize) -> String {
    let mut s = String::new();
    for i in 1..=n {
        let status = [200, 200, 304, 404, 503][i % 5];
        s.push_str(&format!("2026-11-28\t17:00:{:02}\tIAD89-C1\t{tag}\t{i}\tGET\t/p/{i}\t{status}\n", i % 60));
    }
    s
}

impl Fixture {
    /// `name` must be unique per test (it names the bucket and the queue).
    pub fn new(name: &str, notify: bool) -> Fixture {
        require_services();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cfg = rt.block_on(s3s::aws::sdk_config());
        let s3 = s3s::aws::s3_client(&cfg);
        let sqs = s3s::aws::sqs_client(&cfg);
        let unique = format!(
            "{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 1_000_000
        );
        let bucket = format!("s3s-{unique}");
        let queue_url = rt.block_on(async {
            s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
            let q = sqs.create_queue().queue_name(format!("q-{unique}")).send().await.expect("create queue");
            q.queue_url.unwrap()
        });
        let f = Fixture { rt, s3, sqs, bucket, queue_url };
        if notify {
            f.notify_queue();
        }
        f
    }

    fn queue_arn(&self) -> String {
        self.rt.block_on(async {
            let a = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await
                .expect("queue attributes");
            a.attributes.unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone()
        })
    }

    /// Configure ObjectCreated notifications of the bucket onto the queue (S3 then sends an
    /// s3:TestEvent, as AWS does).
    pub fn notify_queue(&self) {
        use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
        let arn = self.queue_arn();
        self.rt.block_on(async {
            let qc = QueueConfiguration::builder().queue_arn(arn).events(Event::from("s3:ObjectCreated:*")).build().unwrap();
            self.s3
                .put_bucket_notification_configuration()
                .bucket(&self.bucket)
                .notification_configuration(NotificationConfiguration::builder().queue_configurations(qc).build())
                .send()
                .await
                .expect("put notification configuration");
        });
    }

    pub fn put(&self, key: &str, body: Vec<u8>) {
        self.rt.block_on(async {
            self.s3.put_object().bucket(&self.bucket).key(key).body(ByteStream::from(body)).send().await.expect("put object");
        });
    }

    pub fn send(&self, body: &str) {
        self.rt.block_on(async {
            self.sqs.send_message().queue_url(&self.queue_url).message_body(body).send().await.expect("send message");
        });
    }

    /// (visible, in flight) messages in the queue.
    pub fn counts(&self) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        self.rt.block_on(async {
            let a = self
                .sqs
                .get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(A::ApproximateNumberOfMessages)
                .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .expect("queue attributes");
            let m = a.attributes.unwrap();
            let n = |k: &A| m.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            (n(&A::ApproximateNumberOfMessages), n(&A::ApproximateNumberOfMessagesNotVisible))
        })
    }

    /// Total messages in the queue, visible or not.
    pub fn total(&self) -> u64 {
        let (v, i) = self.counts();
        v + i
    }

    /// An S3 event notification body for `key` in this bucket, URL-encoded as S3 does.
    pub fn s3_event(&self, key: &str) -> String {
        let encoded: String = percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%2F", "/")
            .replace("%20", "+")
            .replace("%2E", ".")
            .replace("%2D", "-")
            .replace("%5F", "_");
        serde_json::json!({"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2026-11-28T17:00:00.000Z",
            "eventName":"ObjectCreated:Put","s3":{"bucket":{"name":self.bucket},"object":{"key":encoded,"size":1}}}]})
        .to_string()
    }
}
