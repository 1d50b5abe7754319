//! How a line becomes a Kafka message (s3s-kafka's encoder): value, key and headers, and the
//! dry-run description of it.

use super::{Args, PayloadFormat};
use crate::cli::UsageError;
use crate::scan::quote_into;
use crate::sink::Line;

pub(super) enum KeySource {
    None,
    Fixed(Vec<u8>),
    Field,
    Delimiter(Vec<u8>),
}

/// How a line becomes a message: everything but the transport (the encoder).
pub(super) struct Encoder {
    pub(super) topic: String,
    pub(super) partition: Option<i32>,
    pub(super) payload: PayloadFormat,
    pub(super) key: KeySource,
    pub(super) headers: Vec<(String, Vec<u8>)>,
    pub(super) source_headers: bool,
}

impl Encoder {
    pub(super) fn new(args: &Args) -> Result<Encoder, UsageError> {
        if args.topic.is_empty() {
            return Err(UsageError("the topic name is empty".into()));
        }
        let key = match (&args.key, &args.key_field, &args.key_delimiter) {
            (Some(k), _, _) => KeySource::Fixed(k.clone().into_bytes()),
            (_, Some(_), _) => KeySource::Field,
            (_, _, Some(d)) if d.is_empty() => return Err(UsageError("-K wants a non-empty delimiter".into())),
            (_, _, Some(d)) => KeySource::Delimiter(d.clone().into_bytes()),
            _ => KeySource::None,
        };
        let headers = args
            .headers
            .iter()
            .map(|h| match h.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.as_bytes().to_vec())),
                _ => Err(UsageError(format!("-H wants NAME=VALUE, got {h:?}"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Encoder {
            topic: args.topic.clone(),
            partition: args.partition,
            payload: args.payload,
            key,
            headers,
            source_headers: args.source_headers,
        })
    }

    /// The key and value of a line's message; the key may be decoded into `scratch`.
    #[inline]
    pub(super) fn key_value<'a>(&'a self, line: &Line<'a>, scratch: &'a mut Vec<u8>) -> (Option<&'a [u8]>, &'a [u8]) {
        let mut value = match self.payload {
            PayloadFormat::Raw => line.text,
            PayloadFormat::Json => line.record,
            PayloadFormat::Fields => line.fields.map_or(line.record, |f| f.json()),
        };
        let key = match &self.key {
            KeySource::None => None,
            KeySource::Fixed(k) => Some(k.as_slice()),
            KeySource::Field => line.field.filter(|f| !f.is_null()).map(|f| f.bytes(scratch)),
            KeySource::Delimiter(d) => match memchr::memmem::find(line.text, d) {
                Some(i) => {
                    if self.payload == PayloadFormat::Raw {
                        value = &line.text[i + d.len()..];
                    }
                    Some(&line.text[..i])
                }
                None => None,
            },
        };
        (key, value)
    }

    pub(super) fn wants_headers(&self) -> bool {
        !self.headers.is_empty() || self.source_headers
    }

    /// Every header of a line's message, in order, to `f(name, value)`.
    pub(super) fn each_header(&self, line: &Line<'_>, mut f: impl FnMut(&str, &[u8])) {
        for (name, value) in &self.headers {
            f(name, value);
        }
        if self.source_headers {
            let mut scratch = Vec::new();
            match (line.bucket, line.key, line.file) {
                (Some(b), Some(k), _) => {
                    f("s3s.bucket", b.bytes(&mut scratch));
                    f("s3s.key", k.bytes(&mut scratch));
                }
                (_, _, Some(file)) => f("s3s.file", file.bytes(&mut scratch)),
                _ => {}
            }
            if let Some(n) = line.n {
                f("s3s.line", n.bytes(&mut scratch));
            }
        }
    }

    /// The dry-run description of a line's message (one JSON object).
    pub(super) fn describe(&self, line: &Line<'_>, out: &mut Vec<u8>) {
        let mut scratch = Vec::new();
        let (key, value) = self.key_value(line, &mut scratch);
        out.extend_from_slice(br#"{"topic":"#);
        quote_into(self.topic.as_bytes(), out);
        if let Some(p) = self.partition {
            out.extend_from_slice(br#","partition":"#);
            out.extend_from_slice(itoa::Buffer::new().format(p).as_bytes());
        }
        out.extend_from_slice(br#","key":"#);
        match key {
            Some(k) => quote_into(k, out),
            None => out.extend_from_slice(b"null"),
        }
        if self.wants_headers() {
            out.extend_from_slice(br#","headers":["#);
            let mut first = true;
            self.each_header(line, |name, value| {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                out.push(b'[');
                quote_into(name.as_bytes(), out);
                out.push(b',');
                quote_into(value, out);
                out.push(b']');
            });
            out.push(b']');
        }
        out.extend_from_slice(br#","value":"#);
        quote_into(value, out);
        out.push(b'}');
    }
}
