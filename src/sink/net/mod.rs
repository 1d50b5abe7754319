//! The network side of the line-per-message publishers (`s3s-syslog`, `s3s-gelf`): a server URL
//! (here), the hand-over queue ([`link`]), the writer thread that owns the connection and keeps
//! the resend window (`writer`), and the connections themselves (`conn`).
//!
//! Why it exists: syslog and GELF share everything below the message format. A message is
//! encoded on the stdin thread (so that an unsendable line is rejected at once, see
//! [`crate::sink::PublishError::Rejected`]) and appended, already framed, to the [`Link`]'s queue; one
//! writer thread takes everything queued in one swap, writes it and only then reports each
//! message's ticket as delivered:
//!
//! - stream transports (`tcp://`, `tls://`, `unix://` stream sockets): delivered = written and
//!   flushed to the kernel (TLS: encrypted and written). A write that fails drops the
//!   connection; the writer reconnects with exponential backoff (100 ms doubling to 5 s, for
//!   ever, until the driver gives up at its drain timeout) and writes again, first the **resend
//!   window** (the last `--resend-window` bytes written on the broken connection, which the
//!   receiver may never have read: its socket buffer dies with it), then the batch that failed.
//!   Duplicates after a reconnect are possible, losses within the window are not.
//!   Each connection attempt made because the previous attempt failed or the connection broke
//!   (a failed write, the receiver closing it) counts as one retry
//!   (`s3s_publish_retries_total`); the first connect does not, and neither do datagrams.
//!   Before each batch the socket is peeked (non-blocking): a receiver never talks, so EOF or a
//!   reset there means the connection is dead before our bytes go into it.
//! - datagram transports (`udp://`, `unix://` datagram sockets such as /dev/log): delivered =
//!   `send(2)` returned. UDP promises nothing more; the man pages say so.
//!
//! Backpressure: `publish` waits while more than [`QUEUE_BYTES`] are queued.

mod conn;
mod link;
mod queue;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use crate::sink::Control;
use crate::sink::tls::TlsOptions;
pub use link::{Link, LinkControl};
pub use queue::{Chunker, LinkOptions};

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    Udp(String),
    Tcp(String),
    Tls(String),
    Unix(PathBuf),
}

impl Server {
    /// Parse `udp://HOST:PORT`, `tcp://HOST:PORT`, `tls://HOST:PORT` or `unix:///PATH`.
    /// `default_port(scheme)` applies when `:PORT` is left out.
    pub fn parse(s: &str, default_port: fn(&str) -> u16) -> Result<Server, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?}: expected udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT or unix:///PATH"))?;
        let hostport = || -> Result<String, String> {
            if rest.is_empty() {
                return Err(format!("{s:?}: no host"));
            }
            // [v6]:port, host:port, or a bare host.
            let has_port = match rest.rfind(':') {
                Some(i) => rest.starts_with('[') && rest[..i].ends_with(']') || !rest.starts_with('['),
                None => false,
            };
            if has_port {
                let port = &rest[rest.rfind(':').unwrap_or(0) + 1..];
                port.parse::<u16>().map_err(|_| format!("{s:?}: bad port {port:?}"))?;
                Ok(rest.to_string())
            } else {
                Ok(format!("{rest}:{}", default_port(scheme)))
            }
        };
        match scheme {
            "udp" => Ok(Server::Udp(hostport()?)),
            "tcp" => Ok(Server::Tcp(hostport()?)),
            "tls" => Ok(Server::Tls(hostport()?)),
            "unix" if rest.starts_with('/') => Ok(Server::Unix(PathBuf::from(rest))),
            "unix" => Err(format!("{s:?}: want an absolute path, unix:///dev/log")),
            other => Err(format!("{s:?}: unknown scheme {other:?} (udp, tcp, tls, unix)")),
        }
    }

    /// True for transports that carry one message per datagram (UDP; a unix socket is decided
    /// when it is opened).
    pub fn is_udp(&self) -> bool {
        matches!(self, Server::Udp(_))
    }

    /// The host name of a `host:port`, for TLS server names.
    pub(super) fn host(&self) -> Option<&str> {
        match self {
            Server::Udp(a) | Server::Tcp(a) | Server::Tls(a) => {
                let h = &a[..a.rfind(':').unwrap_or(a.len())];
                Some(h.trim_start_matches('[').trim_end_matches(']'))
            }
            Server::Unix(_) => None,
        }
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Server::Udp(a) => write!(f, "udp://{a}"),
            Server::Tcp(a) => write!(f, "tcp://{a}"),
            Server::Tls(a) => write!(f, "tls://{a}"),
            Server::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// The transport flags `s3s-syslog` and `s3s-gelf` share (flattened into their `Args`, after
/// their own flags; `--server` stays with each tool: its default ports and variable differ).
// No doc comment on the struct itself: clap would take it for the tool's about text.
#[derive(Debug, Clone, clap::Args)]
pub struct TransportArgs {
    /// Bytes of already written messages kept to send again after a TCP/TLS reconnect. Lines
    /// are lost on a receiver restart only if more than this was unread (socket buffers at both
    /// ends, Linux: tcp_wmem's and the receiver's tcp_rmem's largest size).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub resend_window: usize,

    /// Send at most N messages per second (0: no limit); useful with UDP, whose receivers drop
    /// what they cannot keep up with.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_rate: u64,

    /// PEM file of the CA certificate(s) to trust for tls:// (default: the system's).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// Name to check the server's certificate against (default: the host in --server).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,

    /// PEM file of the client certificate (chain) to present on tls://, for receivers that
    /// require one; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of --tls-cert (PKCS#8, PKCS#1 or SEC1, unencrypted).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TransportArgs {
    /// The writer thread's options for `server`.
    pub fn link_options(&self, server: Server, tool: &'static str, chunker: Option<Chunker>) -> LinkOptions {
        LinkOptions {
            server,
            tls: TlsOptions {
                ca: self.tls_ca.clone(),
                server_name: self.tls_server_name.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                insecure: false,
            },
            resend_window: self.resend_window,
            max_rate: self.max_rate,
            tool,
            chunker,
        }
    }
}

/// Run a line-per-message publisher (`s3s-syslog`, `s3s-gelf`) with [`crate::sink::run`]:
/// `make` builds it around its [`Link`], or around none on a dry run (no server contacted).
pub fn run_publisher<P: crate::sink::Publisher>(
    stage: crate::sink::Stage<'_>,
    opts: LinkOptions,
    make: impl FnOnce(Option<Link>) -> P,
) -> anyhow::Result<crate::cli::Status> {
    let dry_run = stage.args.dry_run;
    crate::sink::run(stage, move |reporter| {
        if dry_run {
            return Ok((make(None), Arc::new(crate::sink::NoControl) as Arc<dyn Control>));
        }
        let (link, control) = Link::start(opts, reporter).map_err(crate::cli::UsageError)?;
        Ok((make(Some(link)), Arc::new(control) as Arc<dyn Control>))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_servers() {
        let port = |scheme: &str| if scheme == "tls" { 6514 } else { 601 };
        assert_eq!(Server::parse("udp://127.0.0.1:514", port).unwrap(), Server::Udp("127.0.0.1:514".into()));
        assert_eq!(Server::parse("tcp://logs", port).unwrap(), Server::Tcp("logs:601".into()));
        assert_eq!(Server::parse("tls://[::1]:6514", port).unwrap(), Server::Tls("[::1]:6514".into()));
        assert_eq!(Server::parse("tls://[::1]", port).unwrap(), Server::Tls("[::1]:6514".into()));
        assert_eq!(Server::parse("unix:///dev/log", port).unwrap(), Server::Unix("/dev/log".into()));
        assert!(Server::parse("udp://h:notaport", port).is_err());
        assert!(Server::parse("http://h:1", port).is_err());
        assert!(Server::parse("h:1", port).is_err());
        assert!(Server::parse("unix://dev/log", port).is_err());
        assert_eq!(Server::Tls("[::1]:6514".into()).host(), Some("::1"));
        assert_eq!(Server::Tls("logs.example:6514".into()).host(), Some("logs.example"));
    }
}
