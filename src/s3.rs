//! AWS access: the standard credential/region/endpoint chain, and S3 bodies as `Read`ers.
//!
//! `aws-config` reads `AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL[_S3|_SQS]` itself. With an
//! endpoint override in effect we use path-style addressing (S3-compatible stores and local
//! servers have no `bucket.host` DNS) and compute checksums only when an API requires them
//! (many S3-compatible stores reject the newer defaults).

use std::io::{self, Read};
use std::sync::mpsc;

use aws_sdk_s3::error::DisplayErrorContext;
use bytes::Bytes;

/// Load the shared AWS configuration from the environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// True when S3 requests go to a non-AWS endpoint.
fn endpoint_override(cfg: &aws_config::SdkConfig) -> bool {
    cfg.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
}

/// An S3 client from the shared configuration.
pub fn s3_client(cfg: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let path_style = endpoint_override(cfg) || std::env::var("S3S_PATH_STYLE").is_ok_and(|v| v == "1" || v == "true");
    let conf = aws_sdk_s3::config::Builder::from(cfg)
        .force_path_style(path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// An SQS client from the shared configuration.
pub fn sqs_client(cfg: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(cfg)
}

/// Messages from the task that downloads a body.
enum Chunk {
    Data(Bytes),
    Done,
    Failed(String),
}

/// An S3 object body being downloaded by a task on `rt`, read synchronously in bounded chunks
/// (the download waits when the reader falls behind: flat memory).
pub struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Chunk>,
    cur: Bytes,
    done: bool,
}

/// Metadata of an object whose GET succeeded.
#[derive(Debug, Clone, Default)]
pub struct ObjectInfo {
    pub size: Option<i64>,
    pub etag: Option<String>,
    pub content_encoding: Option<String>,
}

/// Start `GET s3://bucket/key` and return a reader of its body once the response headers
/// arrived (so a missing object or denied access is reported here, with the cause).
pub fn get_object(
    rt: &tokio::runtime::Handle,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(ObjectInfo, BodyReader), String> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(16);
    let (head_tx, head_rx) = mpsc::sync_channel::<Result<ObjectInfo, String>>(1);
    let req = client.get_object().bucket(bucket).key(key);
    rt.spawn(async move {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let _ = head_tx.send(Err(describe_sdk_error(&e)));
                return;
            }
        };
        let info =
            ObjectInfo { size: resp.content_length, etag: resp.e_tag.clone(), content_encoding: resp.content_encoding.clone() };
        if head_tx.send(Ok(info)).is_err() {
            return;
        }
        let mut body = resp.body;
        loop {
            let msg = match body.next().await {
                Some(Ok(b)) => Chunk::Data(b),
                Some(Err(e)) => Chunk::Failed(format!("reading body: {}", DisplayErrorContext(&e))),
                None => Chunk::Done,
            };
            let last = !matches!(msg, Chunk::Data(_));
            if tx.send(msg).await.is_err() || last {
                return;
            }
        }
    });
    match head_rx.recv() {
        Ok(Ok(info)) => Ok((info, BodyReader { rx, cur: Bytes::new(), done: false })),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the download task stopped before a response".into()),
    }
}

/// The most useful one-line description of an SDK error (service code and message, or the
/// transport cause).
pub fn describe_sdk_error<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => format!("{}", DisplayErrorContext(e)),
            }
        }
        _ => format!("{}", DisplayErrorContext(e)),
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            if self.done {
                return Ok(0);
            }
            // The reader is a plain thread, outside the runtime: blocking here is fine.
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => self.cur = b,
                Some(Chunk::Done) => self.done = true,
                Some(Chunk::Failed(e)) => return Err(io::Error::other(e)),
                None => return Err(io::Error::other("the body stream stopped unexpectedly")),
            }
        }
        let n = self.cur.len().min(buf.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}
