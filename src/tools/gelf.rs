//! `s3s-gelf`: send `line` records to Graylog (or any GELF receiver) as GELF 1.1 messages,
//! over UDP (chunked, gzip/zlib-compressed) or TCP/TLS (NUL-framed), and forward the other
//! records only once the lines before them were handed over.
//!
//! Encoding (JSON, compression, the chunk count check) happens here on the stdin thread, so
//! that a message too big for 128 chunks is refused before it is queued; chunking itself, the
//! connection and reconnects are in [`crate::sink::net`]'s writer thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::aws::lease::Keeper;
use crate::cli::{Common, Status, UsageError};
use crate::dead_letter::DeadLetter;
use crate::scan::{self, quote_into};
use crate::sink::net::{self, Chunker, Link, Server, TransportArgs};
use crate::sink::{Line, PublishError, Publisher, SinkArgs, Stage, Ticket};

const TOOL: &str = "s3s-gelf";
/// GELF's limit on the chunks of one message.
pub const MAX_CHUNKS: usize = 128;
/// Bytes of a chunk's header: magic (2), message id (8), sequence number (1), count (1).
const CHUNK_HEADER: usize = 12;

/// Send `line` records to a GELF receiver (Graylog), one GELF 1.1 message per line, and pass
/// every other record on only once the lines before it were handed over.
///
/// Each message: version "1.1", host (--host, default this machine's name), short_message
/// (the line; for a record without one, s3s-parse --drop-line, its fields' JSON), timestamp
/// (the record's time when it has one, see --time-field, else the time of sending), level
/// (--level), and additional fields: _bucket, _key and _line (or _file), every --field, and the
/// members of the record's "fields" object (s3s-parse) each as _NAME.
///
/// Parsed fields: NAME keeps letters, digits, _, . and - (GELF's ^[\w\.\-]*$); any other
/// character becomes _ (cs(User-Agent) is sent as _cs_User-Agent_). "id" becomes _id_ (_id is
/// reserved by Graylog), and a name that is already taken (bucket, key, line, file, a --field)
/// becomes _fields.NAME. Strings and numbers are sent as they are, true and false as strings,
/// objects and arrays (CloudTrail's nested members, _extra) as their JSON text; null members
/// are left out.
///
/// udp://: one datagram per message, compressed (--compress, gzip by default), split into
/// GELF chunks when larger than --chunk-size. A message that would need more than 128 chunks
/// is never sent broken: it is reported on stderr and written to --dead-letter FILE (then it
/// counts as handled), or, without that file, fails: its object's end record is withheld and
/// the exit status is 1. UDP promises nothing beyond sending: a datagram may be lost without
/// anyone knowing, so an end record forwarded after UDP sends is no proof of arrival.
///
/// tcp:// and tls://: uncompressed JSON, each message ended by a NUL byte; an end record is
/// forwarded once the lines before it were written and flushed. A dropped connection is
/// reconnected with backoff (100 ms doubling to 5 s), and what was written in the last
/// --resend-window bytes before the break is sent again (duplicates, not losses).
#[derive(Debug, Parser)]
#[command(
    name = "s3s-gelf",
    version,
    after_long_help = "EXAMPLES:
    s3s-poll | s3s-cat | s3s-gelf --server udp://graylog:12201 | s3s-ack
    s3s-gelf --server udp://graylog:12201 --compress zlib --chunk-size 8154   # LAN, jumbo-free
    s3s-gelf --server tcp://graylog:12201 --field source=cloudfront --field env=prod
    s3s-gelf --server tls://graylog:12201 --tls-ca /etc/s3s/ca.pem
    s3s-gelf --server tls://graylog:12201 --tls-ca ca.pem --tls-cert me.pem --tls-key me.key
    s3s-gelf --server udp://graylog:12201 --dead-letter /var/spool/s3s/gelf-too-big.ndjson
    s3s-cat access.log | s3s-gelf --server udp://x:1 --dry-run 2>&1 >/dev/null | jq .

DRY RUN:
    With --dry-run (and for line records marked \"dry_run\":true) nothing is sent and no server
    is contacted; each line that would be is described on stderr as one JSON object:
    {\"server\":URL,\"bytes\":B,\"chunks\":C,\"gelf\":{...}} with B the bytes on the wire
    (compressed, before chunking) and C the number of UDP chunks (1: not chunked).

ENVIRONMENT:
    S3S_GELF_SERVER (--server), S3S_DRAIN_TIMEOUT, S3S_LOG (log filter).

EXIT STATUS:
    0 every line handed over and every record forwarded (also when stdout was closed early);
    1 a message too large for 128 chunks without --dead-letter (its end record withheld),
    lines still unsent at the drain timeout, or malformed input lines; 2 usage error."
)]
pub struct Args {
    /// Where to send: udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT (default port 12201).
    #[arg(short = 's', long, value_name = "URL", env = "S3S_GELF_SERVER")]
    pub server: String,

    /// Compression of UDP messages (default gzip); TCP and TLS carry plain JSON (none).
    #[arg(long, value_enum, value_name = "ALGO")]
    pub compress: Option<Compress>,

    /// Largest UDP datagram in bytes, chunk header included; larger messages are chunked.
    #[arg(long, value_name = "BYTES", default_value_t = 1420, value_parser = clap::value_parser!(u32).range(64..=65_000))]
    pub chunk_size: u32,

    /// The host field (default: this machine's name).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,

    /// The level field: a syslog severity name or number (emerg .. debug, 0-7).
    #[arg(long, value_name = "LEVEL", default_value = "info", value_parser = crate::sink::severity::parse_severity)]
    pub level: u8,

    /// Add an additional field to every message: NAME=VALUE, sent as _NAME (repeatable).
    #[arg(long = "field", value_name = "NAME=VALUE")]
    pub fields: Vec<String>,

    /// The field of line records holding the event time (RFC 3339 text or Unix seconds): a
    /// top-level member, else a member of "fields" (default: "@timestamp", then "event_time").
    #[arg(long, value_name = "FIELD")]
    pub time_field: Option<String>,

    /// Append messages too large for 128 UDP chunks to FILE (one GELF JSON a line) instead of
    /// failing their object.
    #[arg(long, value_name = "FILE")]
    pub dead_letter: Option<PathBuf>,

    #[command(flatten)]
    pub transport: TransportArgs,

    #[command(flatten)]
    pub sink: SinkArgs,

    #[command(flatten)]
    pub common: Common,
}

/// Compression of UDP messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    Gzip,
    Zlib,
    None,
}

/// A field name fit for GELF (`^[\w\.\-]*$`); `id` is reserved by Graylog and becomes `id_`.
fn field_name(name: &[u8], out: &mut Vec<u8>) {
    out.push(b'_');
    for &b in name {
        out.push(if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-') { b } else { b'_' });
    }
    if name == b"id" {
        out.push(b'_');
    }
}

/// Seconds since the epoch with milliseconds, from RFC 3339 text or a number.
fn event_seconds(v: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().map(|_| s.to_string());
    }
    let ms = crate::clock::parse_ms(s.as_bytes())?;
    Some(format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000)))
}

fn now_seconds(out: &mut Vec<u8>) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    out.extend_from_slice(itoa::Buffer::new().format(d.as_secs()).as_bytes());
    let ms = d.subsec_millis();
    out.extend_from_slice(&[b'.', b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8]);
}

/// How a line becomes a GELF message: everything but the transport (the encoder).
struct Encoder {
    /// `{"version":"1.1","host":H,` (fixed per run).
    head: Vec<u8>,
    level: u8,
    /// `,"_name":"value"` of every --field.
    extra: Vec<u8>,
    /// Additional field names (without `_`) that parsed fields must not take.
    taken: Vec<Vec<u8>>,
    /// --time-field was given (else `@timestamp` comes first).
    time_field_given: bool,
    key_buf: Vec<u8>,
    compress: Compress,
    deflate: Option<flate2::Compress>,
    /// Largest payload that fits in 128 chunks; messages that fit one datagram go unchunked.
    udp: Option<(usize, usize)>,
    json: Vec<u8>,
    payload: Vec<u8>,
    scratch: Vec<u8>,
}

impl Encoder {
    fn new(args: &Args, server: &Server) -> Result<Encoder, UsageError> {
        let host = args.host.clone().unwrap_or_else(|| crate::host::name().unwrap_or_else(|| "-".into()));
        let mut head = br#"{"version":"1.1","host":"#.to_vec();
        quote_into(host.as_bytes(), &mut head);
        let mut extra = Vec::new();
        let mut taken: Vec<Vec<u8>> = [&b"bucket"[..], b"key", b"line", b"file"].iter().map(|n| n.to_vec()).collect();
        for f in &args.fields {
            match f.split_once('=') {
                Some((name, value)) if !name.is_empty() && !name.starts_with('_') => {
                    extra.push(b',');
                    let mut n = Vec::new();
                    field_name(name.as_bytes(), &mut n);
                    taken.push(n[1..].to_vec());
                    quote_into(&n, &mut extra);
                    extra.push(b':');
                    quote_into(value.as_bytes(), &mut extra);
                }
                _ => return Err(UsageError(format!("--field wants NAME=VALUE (NAME without a leading _), got {f:?}"))),
            }
        }
        let compress = match (args.compress, server.is_udp()) {
            (None, true) => Compress::Gzip,
            (None, false) | (Some(Compress::None), _) => Compress::None,
            (Some(c), true) => c,
            (Some(c), false) => {
                let name = if c == Compress::Gzip { "gzip" } else { "zlib" };
                return Err(UsageError(format!(
                    "--compress {name}: GELF over TCP/TLS is uncompressed JSON (use --compress none, or udp://)"
                )));
            }
        };
        let deflate = match compress {
            Compress::None => None,
            Compress::Gzip => Some(flate2::Compress::new(flate2::Compression::fast(), false)),
            Compress::Zlib => Some(flate2::Compress::new(flate2::Compression::fast(), true)),
        };
        let chunk = args.chunk_size as usize;
        let udp = server.is_udp().then_some((chunk, (chunk - CHUNK_HEADER) * MAX_CHUNKS));
        Ok(Encoder {
            head,
            level: args.level,
            extra,
            taken,
            time_field_given: args.time_field.is_some(),
            key_buf: Vec::new(),
            compress,
            deflate,
            udp,
            json: Vec::new(),
            payload: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The GELF JSON of `line` into `self.json`.
    fn encode_json(&mut self, line: &Line<'_>) {
        let out = &mut self.json;
        out.clear();
        out.extend_from_slice(&self.head);
        out.extend_from_slice(br#","short_message":"#);
        if line.text.is_empty() {
            // Graylog refuses an empty short_message.
            out.extend_from_slice(br#""(empty line)""#);
        } else {
            quote_into(line.text, out);
        }
        out.extend_from_slice(br#","timestamp":"#);
        let stamp = line.timestamp.filter(|_| !self.time_field_given).and_then(|t| event_seconds(t.bytes(&mut self.scratch)));
        match stamp.or_else(|| line.field.and_then(|f| event_seconds(f.bytes(&mut self.scratch)))) {
            Some(t) => out.extend_from_slice(t.as_bytes()),
            None => now_seconds(out),
        }
        out.extend_from_slice(br#","level":"#);
        out.extend_from_slice(itoa::Buffer::new().format(self.level).as_bytes());
        let mut scratch = Vec::new();
        let add = |name: &[u8], v: &[u8], string: bool, out: &mut Vec<u8>| {
            out.extend_from_slice(b",\"_");
            out.extend_from_slice(name);
            out.extend_from_slice(b"\":");
            if string {
                quote_into(v, out);
            } else {
                out.extend_from_slice(v);
            }
        };
        match (line.bucket, line.key, line.file) {
            (Some(b), Some(k), _) => {
                add(b"bucket", b.bytes(&mut scratch), true, out);
                add(b"key", k.bytes(&mut scratch), true, out);
            }
            (_, _, Some(f)) => add(b"file", f.bytes(&mut scratch), true, out),
            _ => {}
        }
        if let Some(n) = line.n {
            add(b"line", n.bytes(&mut scratch), !matches!(n.json().first(), Some(b'0'..=b'9')), out);
        }
        out.extend_from_slice(&self.extra);
        // Parsed fields: the members of the "fields" object, when the record has one.
        if let Some(f) = line.fields {
            let obj = f.json();
            let taken = &self.taken;
            let _ = scan::object_members(obj, &mut self.key_buf, |name, fv| {
                let raw = &obj[fv.start..fv.end];
                if raw == b"null" {
                    return true;
                }
                out.push(b',');
                out.push(b'"');
                let at = out.len();
                field_name(name, out);
                if taken.iter().any(|t| out[at + 1..] == t[..]) {
                    out.splice(at + 1..at + 1, b"fields.".iter().copied());
                }
                out.extend_from_slice(b"\":");
                match raw.first() {
                    // Strings and numbers as they are; anything else as its JSON text.
                    Some(b'"' | b'-' | b'0'..=b'9') => out.extend_from_slice(raw),
                    _ => quote_into(raw, out),
                }
                true
            });
        }
        out.push(b'}');
    }

    /// Compress `self.json` into `self.payload` (or copy it).
    fn compress(&mut self) {
        let json = &self.json;
        let out = &mut self.payload;
        out.clear();
        let Some(z) = self.deflate.as_mut() else {
            out.extend_from_slice(json);
            return;
        };
        z.reset();
        if self.compress == Compress::Gzip {
            out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        }
        out.reserve(json.len() / 2 + 64);
        loop {
            let before = z.total_in() as usize;
            let status = z.compress_vec(&json[before..], out, flate2::FlushCompress::Finish).expect("deflate into a Vec");
            if status == flate2::Status::StreamEnd {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if self.compress == Compress::Gzip {
            let mut crc = flate2::Crc::new();
            crc.update(json);
            out.extend_from_slice(&crc.sum().to_le_bytes());
            out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        }
    }

    /// Chunks `payload` needs on UDP (1: none).
    fn chunks(&self) -> usize {
        match self.udp {
            Some((chunk, _)) if self.payload.len() > chunk => self.payload.len().div_ceil(chunk - CHUNK_HEADER),
            _ => 1,
        }
    }
}

/// The writer thread's splitter: GELF chunks of at most `chunk` bytes, header included.
fn chunker(chunk: usize) -> Chunker {
    // Message ids: a per-process random start, then a counter (unique per sender is enough).
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.write_u32(std::process::id());
        h.finish()
    };
    let mut counter = 0u64;
    let mut dgram = Vec::with_capacity(chunk);
    Box::new(move |msg, send| {
        if msg.len() <= chunk {
            return send(msg);
        }
        let data = chunk - CHUNK_HEADER;
        let count = msg.len().div_ceil(data);
        debug_assert!(count <= MAX_CHUNKS, "checked before queueing");
        counter = counter.wrapping_add(1);
        let id = (seed ^ counter.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
        for (i, part) in msg.chunks(data).enumerate() {
            dgram.clear();
            dgram.extend_from_slice(&[0x1e, 0x0f]);
            dgram.extend_from_slice(&id);
            dgram.extend_from_slice(&[i as u8, count as u8]);
            dgram.extend_from_slice(part);
            send(&dgram)?;
        }
        Ok(())
    })
}

struct GelfPublisher {
    encoder: Encoder,
    server: String,
    stream: bool,
    link: Option<Link>,
    dead_letter: Option<Arc<DeadLetter>>,
    dead: Arc<AtomicU64>,
}

impl GelfPublisher {
    /// A message too large for 128 chunks: into the dead-letter file, or refused.
    #[cold]
    fn too_big(&mut self, line: &Line<'_>, chunks: usize) -> Result<bool, PublishError> {
        self.dead.fetch_add(1, Ordering::Relaxed);
        let why = format!(
            "stdin line {}: GELF message of {} bytes would need {chunks} UDP chunks (at most {MAX_CHUNKS})",
            line.input_line,
            self.encoder.payload.len()
        );
        let Some(dl) = &self.dead_letter else {
            return Err(PublishError::Rejected(why));
        };
        let mut rec = self.encoder.json.clone();
        rec.push(b'\n');
        match dl.append(&rec) {
            Ok(()) => {
                eprintln!("{TOOL}: {why}: written to {}", dl.path().display());
                Ok(true)
            }
            Err(e) => Err(PublishError::Rejected(format!("{why}; dead-letter file {}: {e}", dl.path().display()))),
        }
    }
}

impl Publisher for GelfPublisher {
    #[inline]
    fn publish(&mut self, line: &Line<'_>, ticket: Ticket) -> Result<(), PublishError> {
        self.encoder.encode_json(line);
        self.encoder.compress();
        let chunks = self.encoder.chunks();
        if chunks > MAX_CHUNKS {
            self.too_big(line, chunks)?;
            // Handled by the dead-letter file: an empty message marks the ticket delivered
            // in order with the others.
            let link = self.link.as_ref().expect("not a dry run");
            return if link.send_nothing(ticket) { Ok(()) } else { Err(PublishError::Rejected("sending was given up".into())) };
        }
        let link = self.link.as_ref().expect("a dry-run publisher is never asked to publish");
        let payload = &self.encoder.payload;
        let stream = self.stream;
        let queued = link.send(ticket, |buf| {
            buf.extend_from_slice(payload);
            if stream {
                buf.push(0);
            }
        });
        if queued { Ok(()) } else { Err(PublishError::Rejected("sending was given up".into())) }
    }

    fn describe(&mut self, line: &Line<'_>, out: &mut Vec<u8>) {
        self.encoder.encode_json(line);
        self.encoder.compress();
        out.extend_from_slice(br#"{"server":"#);
        quote_into(self.server.as_bytes(), out);
        out.extend_from_slice(br#","bytes":"#);
        out.extend_from_slice(itoa::Buffer::new().format(self.encoder.payload.len()).as_bytes());
        out.extend_from_slice(br#","chunks":"#);
        out.extend_from_slice(itoa::Buffer::new().format(self.encoder.chunks()).as_bytes());
        out.extend_from_slice(br#","gelf":"#);
        out.extend_from_slice(&self.encoder.json);
        out.push(b'}');
    }
}

/// Run `s3s-gelf`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let server = Server::parse(&args.server, |_| 12201).map_err(UsageError)?;
    if matches!(server, Server::Unix(_)) {
        return Err(UsageError("GELF goes over udp://, tcp:// or tls://, not unix://".into()).into());
    }
    let encoder = Encoder::new(&args, &server)?;
    let dead_letter = match &args.dead_letter {
        Some(p) => Some(Arc::new(DeadLetter::open("--dead-letter", p)?)),
        None => None,
    };
    let dead = Arc::new(AtomicU64::new(0));
    let time_field = args.time_field.clone().unwrap_or_else(|| "event_time".into());
    if time_field.is_empty() {
        return Err(UsageError("--time-field: empty name".into()).into());
    }
    let stage = Stage { tool: TOOL, args: &args.sink, hold: Some(Arc::new(Keeper::new())), field: Some(time_field) };
    let link_opts = args.transport.link_options(server.clone(), TOOL, server.is_udp().then(|| chunker(args.chunk_size as usize)));
    let stream = !server.is_udp();
    let server = server.to_string();
    let status = net::run_publisher(stage, link_opts, |link| GelfPublisher {
        encoder,
        server,
        stream,
        link,
        dead_letter,
        dead: dead.clone(),
    })?;
    let d = dead.load(Ordering::Relaxed);
    if d > 0 {
        eprintln!("{TOOL}: {d} message{} too large for {MAX_CHUNKS} chunks", if d == 1 { "" } else { "s" });
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times() {
        assert_eq!(event_seconds(b"2026-11-28T17:00:00.123Z").as_deref(), Some("1795885200.123"));
        assert_eq!(event_seconds(b"1795885200.5").as_deref(), Some("1795885200.5"));
        assert_eq!(event_seconds(b"yesterday"), None);
    }

    #[test]
    fn field_names() {
        let mut o = Vec::new();
        field_name(b"a b/c", &mut o);
        assert_eq!(o, b"_a_b_c");
        o.clear();
        field_name(b"id", &mut o);
        assert_eq!(o, b"_id_");
    }

    #[test]
    fn chunks_split_and_number() {
        let mut c = chunker(100);
        let msg: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let mut got = Vec::new();
        c(&msg, &mut |d| {
            got.push(d.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|d| d.len() <= 100 && d[..2] == [0x1e, 0x0f] && d[11] == 3));
        assert_eq!(got.iter().map(|d| d[10]).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(got[0][2..10], got[2][2..10]);
        let joined: Vec<u8> = got.iter().flat_map(|d| d[12..].to_vec()).collect();
        assert_eq!(joined, msg);
        let mut one = Vec::new();
        c(b"small", &mut |d| {
            one.push(d.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(one, [b"small".to_vec()]);
    }
}
