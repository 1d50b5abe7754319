//! S3 object bodies, downloaded by a task on a tokio runtime and read synchronously in bounded
//! chunks (the download waits when the reader falls behind: flat memory).

use std::io::{self, Read};
use std::sync::mpsc;

use aws_sdk_s3::error::DisplayErrorContext;
use bytes::Bytes;

use super::describe_sdk_error;

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
