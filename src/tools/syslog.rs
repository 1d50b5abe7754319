//! `s3s-syslog`: send `line` records to a syslog server (RFC 5424 or RFC 3164, over UDP, TCP,
//! TLS or a unix socket), and forward the other records only once the lines before them were
//! handed over (see [`crate::sink::net`] for what "handed over" means per transport).
//!
//! Encoding lives here; the connection, reconnects, resending and the writer thread live in
//! [`crate::sink::net`]; ordering, failures, backpressure, dry runs and draining in
//! [`crate::sink`].
//!
//! The `syslog` crate: its `Facility` names and codes are used as they are. Its formatters are
//! not: `Formatter5424` takes a numeric MSGID, builds a `BTreeMap` of `String`s per message and
//! leaves SD-PARAM values' `]` unescaped, `Formatter3164` parses a format description and asks
//! for the local offset per message (which fails in a multi-threaded process), and its TCP
//! writer has neither octet-counting framing (RFC 6587) nor TLS, buffering or reconnects. So
//! the header is formatted here (into a reused buffer, the timestamp cached per second), and
//! the transport is ours (std sockets + rustls).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::aws::lease::Keeper;
use crate::cli::{Common, Status, UsageError};
use crate::scan::quote_into;
use crate::sink::net::{self, Link, Server, TransportArgs};
use crate::sink::severity::{parse_severity, severity_of};
use crate::sink::{Line, PublishError, Publisher, SinkArgs, Stage, Ticket};

const TOOL: &str = "s3s-syslog";

/// Send `line` records to a syslog server, one message per line, and pass every other record
/// on only once the lines before it were handed over.
///
/// Each `line` record becomes one syslog message whose MSG is the line's text (for a record
/// without `line`, s3s-parse --drop-line, its fields' JSON), stamped with the record's
/// `@timestamp` when it has one (s3s-parse: the line's own time), else the time of sending. RFC 5424
/// messages (the default) carry the line's origin as structured data:
/// [s3s@32473 bucket="B" key="K" line="N"] (file="PATH" for local files). Every other record
/// is written to stdout in input order once every line before it was handed over: written and
/// flushed to the connection on tcp:// and tls:// (and unix stream sockets), sent on udp:// and
/// unix datagram sockets. UDP promises nothing more than that: a datagram may be lost without
/// anyone knowing. Use TCP or TLS when lines must arrive.
///
/// A dropped TCP/TLS connection is reconnected with backoff (100 ms doubling to 5 s) for as
/// long as it takes; the batch that failed is written again, and so are the last
/// --resend-window bytes written before the break (the receiver may not have read them), so a
/// receiver restart can duplicate lines but loses none within that window.
///
/// Long lines: a message (header, structured data and MSG, without the framing) is at most
/// --max-message bytes. A longer line's MSG is cut at the last UTF-8 character boundary that
/// fits, and in RFC 5424 mode the structured data says so: truncated="ORIGINAL_BYTES". Lines
/// are never split over several messages. The number of truncated lines is reported on
/// stderr at the end.
#[derive(Debug, Parser)]
#[command(
    name = "s3s-syslog",
    version,
    after_long_help = "EXAMPLES:
    s3s-poll | s3s-cat | s3s-syslog --server tcp://logs:601 | s3s-ack
    s3s-syslog --server udp://127.0.0.1:514 --rfc 3164 --facility local3 --app-name cdn
    s3s-syslog --server tls://logs.example:6514 --tls-ca /etc/s3s/ca.pem
    s3s-syslog --server tls://logs.example:6514 --tls-ca ca.pem --tls-cert me.pem --tls-key me.key
    s3s-syslog --server unix:///dev/log --rfc 3164
    s3s-syslog --server tcp://logs:514 --framing lf          # for receivers without RFC 6587
    s3s-syslog --server tcp://logs:601 --severity-field level   # \"level\":\"warning\" per record
    s3s-cat access.log | s3s-syslog --server tcp://x:1 --dry-run 2>&1 >/dev/null | jq .

MESSAGES:
    RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [s3s@32473 bucket=\"B\" key=\"K\" line=\"N\"] MSG
    RFC 3164: <PRI>Mmm dd hh:mm:ss HOSTNAME APP-NAME: MSG (no HOSTNAME on unix://, as
    syslog(3) does on /dev/log)
    PRI = facility * 8 + severity. TIMESTAMP is the record's @timestamp (s3s-parse), else the
    time of sending: UTC with microseconds (5424) or local time (3164, the local offset read at
    start). No BOM before MSG.
    On stream transports each message is framed by octet counting (\"LEN MSG\", RFC 6587,
    the default) or ended by LF (--framing lf; an LF inside a line is then sent as a space).

DRY RUN:
    With --dry-run (and for line records marked \"dry_run\":true) nothing is sent and no server
    is contacted; each line that would be is described on stderr as one JSON object:
    {\"server\":URL,\"message\":M} (M without the framing).

ENVIRONMENT:
    S3S_SYSLOG_SERVER (--server), S3S_DRAIN_TIMEOUT, S3S_LOG (log filter).

EXIT STATUS:
    0 every line handed over and every record forwarded (also when stdout was closed early);
    1 lines still unsent at the drain timeout (their end records withheld) or malformed input
    lines; 2 usage error."
)]
pub struct Args {
    /// Where to send: udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH
    /// (default ports: 514 for udp and tcp, 6514 for tls).
    #[arg(short = 's', long, value_name = "URL", env = "S3S_SYSLOG_SERVER")]
    pub server: String,

    /// Message format.
    #[arg(long, value_enum, value_name = "RFC", default_value_t = Rfc::R5424)]
    pub rfc: Rfc,

    /// Framing on stream transports: octet-counting (RFC 6587) or lf (a newline after each).
    #[arg(long, value_enum, value_name = "FRAMING", default_value_t = Framing::OctetCounting)]
    pub framing: Framing,

    /// Facility: kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp,
    /// ntp, audit, alert, clock_daemon, local0 .. local7, or its number 0-23.
    #[arg(long, value_name = "NAME", default_value = "user", value_parser = parse_facility)]
    pub facility: u8,

    /// Severity of every message: emerg, alert, crit, err, warning, notice, info, debug, or
    /// its number 0-7.
    #[arg(long, value_name = "NAME", default_value = "info", value_parser = parse_severity)]
    pub severity: u8,

    /// Take each message's severity from this field of its record (a top-level member, else a
    /// member of "fields"; a name or a number as for --severity); --severity applies when the
    /// field is missing or not a severity.
    #[arg(long, value_name = "FIELD")]
    pub severity_field: Option<String>,

    /// APP-NAME (the TAG in RFC 3164): up to 48 printable ASCII characters.
    #[arg(long, value_name = "NAME", default_value = "s3s")]
    pub app_name: String,

    /// HOSTNAME field (default: this machine's name).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// MSGID field (RFC 5424 only): up to 32 printable ASCII characters; - for none.
    #[arg(long, value_name = "ID", default_value = "-")]
    pub msgid: String,

    /// SD-ID of the structured data element naming each line's origin (RFC 5424). A name of
    /// your own needs @ and an enterprise number; 32473 is the number reserved for examples.
    #[arg(long, value_name = "SD-ID", default_value = "s3s@32473")]
    pub sd_id: String,

    /// Send no structured data (RFC 5424: "-").
    #[arg(long)]
    pub no_structured_data: bool,

    /// Longest message in bytes, framing excluded (default: 2048 on udp://, 8192 otherwise);
    /// longer lines are truncated by the rule above.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(480..=1_048_576))]
    pub max_message: Option<u32>,

    #[command(flatten)]
    pub transport: TransportArgs,

    #[command(flatten)]
    pub sink: SinkArgs,

    #[command(flatten)]
    pub common: Common,
}

/// Which syslog message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rfc {
    /// RFC 5424 (version 1, structured data).
    #[value(name = "5424")]
    R5424,
    /// RFC 3164 (BSD syslog).
    #[value(name = "3164")]
    R3164,
}

/// Stream framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// "LEN SP MSG" (RFC 6587 3.4.1).
    OctetCounting,
    /// "MSG LF" (RFC 6587 3.4.2).
    Lf,
}

/// Parse a facility name or number into its code (0-23).
pub fn parse_facility(s: &str) -> Result<u8, String> {
    if let Ok(n) = s.parse::<u8>() {
        return if n <= 23 { Ok(n) } else { Err(format!("facility {n} is not 0-23")) };
    }
    s.parse::<syslog::Facility>()
        .map(|f| (f as u32 >> 3) as u8)
        .map_err(|()| format!("unknown facility {s:?} (user, daemon, local0 .. local7, ...)"))
}

/// RFC 5424 header fields: printable US-ASCII without spaces, at most `max` characters.
fn check_header_field(what: &str, s: &str, max: usize) -> Result<(), UsageError> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| (33..=126).contains(&b)) {
        return Err(UsageError(format!("{what} {s:?}: want 1 to {max} printable ASCII characters without spaces")));
    }
    Ok(())
}

/// The machine's name, made fit for the HOSTNAME field.
fn default_hostname() -> String {
    let h = crate::host::name().unwrap_or_default();
    let h: String = h.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if h.is_empty() { "-".into() } else { h }
}

/// Seconds-resolution timestamp text, recomputed when the second changes.
struct Clock {
    rfc: Rfc,
    /// Local offset for RFC 3164, read once at start (single-threaded then).
    offset: time::UtcOffset,
    second: i64,
    text: Vec<u8>,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

impl Clock {
    fn new(rfc: Rfc) -> Clock {
        let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
        Clock { rfc, offset, second: i64::MIN, text: Vec::new() }
    }

    /// Append the timestamp of `now` to `out`.
    fn write(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs() as i64;
        if secs != self.second {
            self.second = secs;
            self.text.clear();
            let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            use std::io::Write;
            let _ = match self.rfc {
                Rfc::R5424 => write!(
                    self.text,
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                    t.year(),
                    t.month() as u8,
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ),
                Rfc::R3164 => {
                    let t = t.to_offset(self.offset);
                    write!(
                        self.text,
                        "{} {:>2} {:02}:{:02}:{:02}",
                        MONTHS[t.month() as usize - 1],
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second()
                    )
                }
            };
        }
        out.extend_from_slice(&self.text);
        if self.rfc == Rfc::R5424 {
            let micros = d.subsec_micros();
            let mut b = *b".000000Z";
            let mut m = micros;
            for i in (1..7).rev() {
                b[i] = b'0' + (m % 10) as u8;
                m /= 10;
            }
            out.extend_from_slice(&b);
        }
    }
}

/// The time of RFC 3339 text (`@timestamp`), to the microsecond; `None` when it is no date or
/// before 1970.
fn event_time(t: &[u8]) -> Option<SystemTime> {
    let ms = crate::clock::parse_ms(t)?;
    let secs = u64::try_from(ms.div_euclid(1000)).ok()?;
    // The fraction's digits past the millisecond that parse_ms cuts off.
    let mut micros = ms.rem_euclid(1000) as u64 * 1000;
    if t.get(19) == Some(&b'.') {
        let digits = t[20..].iter().take_while(|b| b.is_ascii_digit()).count().min(6);
        if digits > 3 {
            let extra = t[23..20 + digits].iter().fold(0u64, |a, &d| a * 10 + u64::from(d - b'0'));
            micros += extra * 10u64.pow(6 - digits as u32);
        }
    }
    Some(UNIX_EPOCH + std::time::Duration::from_secs(secs) + std::time::Duration::from_micros(micros))
}

/// Where a line came from, decoded.
struct Origin<'a> {
    bucket: Option<&'a [u8]>,
    key: Option<&'a [u8]>,
    file: Option<&'a [u8]>,
    n: Option<&'a [u8]>,
}

/// How a line becomes a syslog message: everything but the transport (the encoder).
struct Encoder {
    rfc: Rfc,
    framing: Framing,
    facility: u8,
    severity: u8,
    severity_field: bool,
    hostname: String,
    app_name: String,
    msgid: String,
    sd_id: Option<String>,
    max_message: usize,
    /// A unix socket: RFC 3164 messages carry no HOSTNAME (the /dev/log convention).
    local: bool,
    clock: Clock,
    truncated: Arc<AtomicU64>,
    /// The structured data of the message being encoded (reused: no allocation per line).
    sd: Vec<u8>,
}

/// Append an SD-PARAM value with `"`, `\` and `]` escaped (RFC 5424 6.3.3).
fn sd_escape(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a UTF-8 character boundary.
fn utf8_prefix(s: &[u8], max: usize) -> &[u8] {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    // Back up over continuation bytes (10xxxxxx) to the start of the cut character.
    while end > 0 && (s[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &s[..end]
}

impl Encoder {
    fn new(args: &Args, server: &Server) -> Result<Encoder, UsageError> {
        let hostname = args.hostname.clone().unwrap_or_else(default_hostname);
        check_header_field("--hostname", &hostname, 255)?;
        check_header_field("--app-name", &args.app_name, 48)?;
        check_header_field("--msgid", &args.msgid, 32)?;
        let sd_id = if args.no_structured_data || args.rfc == Rfc::R3164 {
            None
        } else {
            check_header_field("--sd-id", &args.sd_id, 32)?;
            if args.sd_id.bytes().any(|b| matches!(b, b'=' | b']' | b'"')) {
                return Err(UsageError(format!("--sd-id {:?}: no =, ] or \" allowed", args.sd_id)));
            }
            Some(args.sd_id.clone())
        };
        let max_message = args.max_message.map_or(if server.is_udp() { 2048 } else { 8192 }, |m| m as usize);
        Ok(Encoder {
            rfc: args.rfc,
            framing: args.framing,
            facility: args.facility,
            severity: args.severity,
            severity_field: args.severity_field.is_some(),
            hostname,
            app_name: args.app_name.clone(),
            msgid: args.msgid.clone(),
            sd_id,
            max_message,
            local: matches!(server, Server::Unix(_)),
            clock: Clock::new(args.rfc),
            truncated: Arc::new(AtomicU64::new(0)),
            sd: Vec::with_capacity(256),
        })
    }

    /// Append the message for one line (no framing) to `out`.
    fn encode(&mut self, line: &Line<'_>, now: SystemTime, out: &mut Vec<u8>) {
        let mut sc = [Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        let [s1, s2, s3, s4, s5] = &mut sc;
        let origin = Origin {
            bucket: line.bucket.map(|v| v.bytes(s1)),
            key: line.key.map(|v| v.bytes(s2)),
            file: line.file.map(|v| v.bytes(s3)),
            n: line.n.map(|v| v.bytes(s5)),
        };
        let severity = line.field.filter(|_| self.severity_field).and_then(|v| severity_of(v.bytes(s4)));
        // The line's own time (s3s-parse's @timestamp) when it has one.
        let now = line.timestamp.and_then(|t| event_time(t.bytes(s4))).unwrap_or(now);
        self.encode_parts(&origin, severity, line.text, now, out);
    }

    /// Append the message for a line of `origin` with text `text` (no framing) to `out`.
    fn encode_parts(&mut self, origin: &Origin<'_>, severity: Option<u8>, text: &[u8], now: SystemTime, out: &mut Vec<u8>) {
        let start = out.len();
        let pri = u32::from(self.facility) * 8 + u32::from(severity.unwrap_or(self.severity));
        out.push(b'<');
        out.extend_from_slice(itoa::Buffer::new().format(pri).as_bytes());
        out.push(b'>');
        match self.rfc {
            Rfc::R5424 => {
                out.extend_from_slice(b"1 ");
                self.clock.write(now, out);
                out.push(b' ');
                out.extend_from_slice(self.hostname.as_bytes());
                out.push(b' ');
                out.extend_from_slice(self.app_name.as_bytes());
                out.extend_from_slice(b" - ");
                out.extend_from_slice(self.msgid.as_bytes());
                out.push(b' ');
            }
            Rfc::R3164 => {
                self.clock.write(now, out);
                out.push(b' ');
                if !self.local {
                    out.extend_from_slice(self.hostname.as_bytes());
                    out.push(b' ');
                }
                out.extend_from_slice(self.app_name.as_bytes());
                out.extend_from_slice(b": ");
            }
        }
        // The structured data, without its closing bracket until we know about truncation.
        let mut sd_buf = std::mem::take(&mut self.sd);
        let sd_open = self.sd_id.as_ref().map(|id| {
            let s = &mut sd_buf;
            s.clear();
            s.push(b'[');
            s.extend_from_slice(id.as_bytes());
            let mut param = |name: &[u8], v: &[u8]| {
                s.push(b' ');
                s.extend_from_slice(name);
                s.extend_from_slice(b"=\"");
                sd_escape(v, s);
                s.push(b'"');
            };
            match (origin.bucket, origin.key, origin.file) {
                (Some(b), Some(k), _) => {
                    param(b"bucket", b);
                    param(b"key", k);
                }
                (_, _, Some(f)) => param(b"file", f),
                _ => {}
            }
            if let Some(n) = origin.n {
                param(b"line", n);
            }
        });
        let fixed = out.len() - start + sd_open.map_or(if self.rfc == Rfc::R5424 { 2 } else { 0 }, |()| sd_buf.len() + 2);
        let mut msg = text;
        if fixed + text.len() > self.max_message {
            // Room for the truncation note too.
            let note_len = if sd_open.is_some() { 14 + 20 } else { 0 };
            let room = self.max_message.saturating_sub(fixed + note_len);
            msg = utf8_prefix(text, room);
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
        match sd_open {
            Some(()) => {
                out.extend_from_slice(&sd_buf);
                if msg.len() < text.len() {
                    out.extend_from_slice(b" truncated=\"");
                    out.extend_from_slice(itoa::Buffer::new().format(text.len()).as_bytes());
                    out.push(b'"');
                }
                out.extend_from_slice(b"] ");
            }
            None if self.rfc == Rfc::R5424 => out.extend_from_slice(b"- "),
            None => {}
        }
        self.sd = sd_buf;
        let body = out.len();
        out.extend_from_slice(msg);
        if self.framing == Framing::Lf {
            for b in &mut out[body..] {
                if *b == b'\n' {
                    *b = b' ';
                }
            }
        }
    }
}

struct SyslogPublisher {
    encoder: Encoder,
    server: String,
    link: Option<Link>,
    msg: Vec<u8>,
}

impl Publisher for SyslogPublisher {
    #[inline]
    fn publish(&mut self, line: &Line<'_>, ticket: Ticket) -> Result<(), PublishError> {
        let link = self.link.as_ref().expect("a dry-run publisher is never asked to publish");
        self.msg.clear();
        self.encoder.encode(line, SystemTime::now(), &mut self.msg);
        let msg = &self.msg;
        let framing = if link.is_stream() { Some(self.encoder.framing) } else { None };
        let queued = link.send(ticket, |buf| match framing {
            Some(Framing::OctetCounting) => {
                buf.extend_from_slice(itoa::Buffer::new().format(msg.len()).as_bytes());
                buf.push(b' ');
                buf.extend_from_slice(msg);
            }
            Some(Framing::Lf) => {
                buf.extend_from_slice(msg);
                buf.push(b'\n');
            }
            None => buf.extend_from_slice(msg),
        });
        if queued { Ok(()) } else { Err(PublishError::Rejected("sending was given up".into())) }
    }

    fn describe(&mut self, line: &Line<'_>, out: &mut Vec<u8>) {
        self.msg.clear();
        self.encoder.encode(line, SystemTime::now(), &mut self.msg);
        out.extend_from_slice(br#"{"server":"#);
        quote_into(self.server.as_bytes(), out);
        out.extend_from_slice(br#","message":"#);
        // The message is the line's text (valid UTF-8 from s3s-cat) behind an ASCII header.
        let text = String::from_utf8_lossy(&self.msg);
        quote_into(text.as_bytes(), out);
        out.push(b'}');
    }
}

/// The port when --server names none: 6514 for tls, 514 otherwise.
fn default_port(scheme: &str) -> u16 {
    if scheme == "tls" { 6514 } else { 514 }
}

/// Run `s3s-syslog`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    let server = Server::parse(&args.server, default_port).map_err(UsageError)?;
    let encoder = Encoder::new(&args, &server)?;
    let truncated = encoder.truncated.clone();
    let max_message = encoder.max_message;
    let stage = Stage { tool: TOOL, args: &args.sink, hold: Some(Arc::new(Keeper::new())), field: args.severity_field.clone() };
    let link_opts = args.transport.link_options(server.clone(), TOOL, None);
    let status = net::run_publisher(stage, link_opts, |link| SyslogPublisher {
        encoder,
        server: server.to_string(),
        link,
        msg: Vec::with_capacity(1024),
    })?;
    let t = truncated.load(Ordering::Relaxed);
    if t > 0 {
        eprintln!("{TOOL}: {t} line{} truncated to --max-message {max_message} bytes", if t == 1 { "" } else { "s" });
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_to_the_microsecond() {
        let at = |us: u64| Some(UNIX_EPOCH + std::time::Duration::from_micros(us));
        assert_eq!(event_time(b"2019-12-04T21:02:32.123456Z"), at(1_575_493_352_123_456));
        assert_eq!(event_time(b"2019-12-04T21:02:32.1234Z"), at(1_575_493_352_123_400));
        assert_eq!(event_time(b"2019-12-04T21:02:32.5Z"), at(1_575_493_352_500_000));
        assert_eq!(event_time(b"2019-12-04T21:02:32Z"), at(1_575_493_352_000_000));
        assert_eq!(event_time(b"2019-12-04T22:02:32.000001+01:00"), at(1_575_493_352_000_001));
        assert_eq!(event_time(b"1969-12-31T23:59:59Z"), None);
        assert_eq!(event_time(b"yesterday"), None);
    }

    #[test]
    fn facilities_and_severities() {
        assert_eq!(parse_facility("local3"), Ok(19));
        assert_eq!(parse_facility("user"), Ok(1));
        assert_eq!(parse_facility("LOG_DAEMON"), Ok(3));
        assert_eq!(parse_facility("23"), Ok(23));
        assert!(parse_facility("24").is_err());
        assert!(parse_facility("nope").is_err());
        assert_eq!(parse_severity("Warning"), Ok(4));
        assert_eq!(parse_severity("err"), Ok(3));
        assert_eq!(parse_severity("7"), Ok(7));
        assert!(parse_severity("8").is_err());
    }

    #[test]
    fn utf8_cuts() {
        assert_eq!(utf8_prefix("héllo".as_bytes(), 2), b"h");
        assert_eq!(utf8_prefix("héllo".as_bytes(), 3), "hé".as_bytes());
        assert_eq!(utf8_prefix(b"abc", 5), b"abc");
    }

    /// Encode a line of `origin` (bucket, key, file, n) with the given flags, at a fixed time.
    fn encode(extra: &[&str], origin: [Option<&str>; 4], severity: Option<&str>, text: &str) -> String {
        let mut v = vec!["s3s-syslog", "--server", "tcp://h:1", "--hostname", "host"];
        v.extend_from_slice(extra);
        let args = Args::try_parse_from(v).unwrap();
        let server = Server::parse(&args.server, default_port).unwrap();
        let mut f = Encoder::new(&args, &server).unwrap();
        let [bucket, key, file, n] = origin.map(|o| o.map(str::as_bytes));
        let origin = Origin { bucket, key, file, n };
        let mut out = Vec::new();
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_764_352_234_000_042);
        f.encode_parts(&origin, severity.and_then(|s| severity_of(s.as_bytes())), text.as_bytes(), t, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rfc5424_messages() {
        let m = encode(&[], [Some("b"), Some("a]\"k"), None, Some("7")], None, "GET /x");
        assert_eq!(m, r#"<14>1 2025-11-28T17:50:34.000042Z host s3s - - [s3s@32473 bucket="b" key="a\]\"k" line="7"] GET /x"#);
        let m = encode(&["--facility", "local0", "--msgid", "CF"], [None, None, Some("/f"), Some("1")], Some("err"), "x");
        assert_eq!(m, r#"<131>1 2025-11-28T17:50:34.000042Z host s3s - CF [s3s@32473 file="/f" line="1"] x"#);
        let m = encode(&["--no-structured-data"], [None, None, None, Some("1")], None, "x");
        assert_eq!(m, r#"<14>1 2025-11-28T17:50:34.000042Z host s3s - - - x"#);
    }

    #[test]
    fn truncation_rule() {
        let long = "é".repeat(400);
        let origin = [Some("b"), Some("k"), None, Some("1")];
        let m = encode(&["--max-message", "480"], origin, None, &long);
        assert!(m.len() <= 480, "{}", m.len());
        assert!(m.contains(r#" truncated="800"] "#), "{m}");
        assert!(std::str::from_utf8(m.as_bytes()).is_ok());
        let m = encode(&["--max-message", "480", "--rfc", "3164"], origin, None, &long);
        assert!(m.len() <= 480 && m.len() > 470, "{}", m.len());
    }

    #[test]
    fn rfc3164_messages() {
        let m = encode(&["--rfc", "3164", "--app-name", "cdn"], [None; 4], None, "x y");
        // Local time: only the shape is fixed.
        assert!(m.starts_with("<14>Nov "), "{m}");
        assert!(m.ends_with(" host cdn: x y"), "{m}");
    }
}
