//! The network side of the line-per-message publishers (`s3s-syslog`, `s3s-gelf`): a server URL,
//! a writer thread that owns the connection, and the hand-over queue between the two.
//!
//! Why it exists: syslog and GELF share everything below the message format. A message is
//! encoded on the stdin thread (so that an unsendable line is rejected at once, see
//! [`crate::sink::PublishError::Rejected`]) and appended, already framed, to a [`Queue`]; one
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

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::events;
use crate::sink::{Control, Reporter, Ticket};

/// Bytes queued for the writer before `publish` waits.
pub const QUEUE_BYTES: usize = 4 << 20;
/// How many emptied resend-window buffers are kept for reuse.
const SPARE_BUFFERS: usize = 4;
/// A write that blocks this long counts as a dropped connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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
    fn host(&self) -> Option<&str> {
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
            },
            resend_window: self.resend_window,
            max_rate: self.max_rate,
            tool,
            chunker,
        }
    }
}

/// TLS settings (`tls://` only).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of CA certificates to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// Name to verify the server's certificate against (default: the URL's host).
    pub server_name: Option<String>,
    /// PEM files of the client certificate chain and its key (both or neither).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The CA certificates of a PEM file, as roots to trust; errors name `flag` and the file.
/// Shared with `s3s-es` (`--ca-cert`).
pub fn load_roots(flag: &str, path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(flag, path)? {
        roots.add(c).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The certificates of a PEM file (at least one).
fn load_certs(flag: &str, path: &std::path::Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{flag} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// Build a rustls client configuration (aws-lc-rs, the provider the AWS SDK already uses).
pub fn tls_config(opts: &TlsOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    let roots = match &opts.ca {
        Some(path) => load_roots("--tls-ca", path)?,
        None => {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err("no system CA certificates found: give --tls-ca FILE".into());
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs("--tls-cert", cert)?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
                rustls_pki_types::pem::Error::NoItemsFound => format!("--tls-key {}: no private key in it", key.display()),
                e => format!("--tls-key {}: {e}", key.display()),
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => format!("--tls-key does not belong to --tls-cert {}", cert.display()),
                e => format!("--tls-cert {} with --tls-key: {e}", cert.display()),
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    Ok(Arc::new(config))
}

/// An open connection.
enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    UnixStream(UnixStream),
    Udp(UdpSocket),
    UnixDgram(UnixDatagram),
}

impl Conn {
    fn is_datagram(&self) -> bool {
        matches!(self, Conn::Udp(_) | Conn::UnixDgram(_))
    }

    /// True when the peer closed or reset a stream connection (a receiver never sends, so
    /// anything readable on a plain socket means EOF or an error).
    fn peer_gone(&self) -> bool {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::UnixStream(s) => s.as_raw_fd(),
            // TLS peers do send (session tickets): rely on write errors and the resend window.
            _ => return false,
        };
        let mut b = [0u8; 1];
        // SAFETY: a valid fd we own and a one-byte buffer; MSG_PEEK leaves the data in place.
        let n = unsafe { libc::recv(fd, b.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        match n {
            0 => true,
            n if n > 0 => false,
            _ => io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock,
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(buf),
            Conn::Tls(s) => s.write_all(buf),
            Conn::UnixStream(s) => s.write_all(buf),
            Conn::Udp(s) => s.send(buf).map(drop),
            Conn::UnixDgram(s) => s.send(buf).map(drop),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }

    fn close(&mut self) {
        if let Conn::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
    }
}

fn connect_tcp(addr: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{addr}: no address"));
    for a in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn open(server: &Server, tls: Option<&(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>) -> io::Result<Conn> {
    match server {
        Server::Tcp(a) => Ok(Conn::Tcp(connect_tcp(a)?)),
        Server::Tls(a) => {
            let (config, name) = tls.expect("a TLS config for tls://");
            let tcp = connect_tcp(a)?;
            let conn = rustls::ClientConnection::new(config.clone(), name.clone()).map_err(io::Error::other)?;
            let mut s = rustls::StreamOwned::new(conn, tcp);
            // Handshake now, so that certificate errors show as connect errors.
            while s.conn.is_handshaking() {
                s.conn.complete_io(&mut s.sock)?;
            }
            if s.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
                settle_tls13(&mut s)?;
            }
            Ok(Conn::Tls(Box::new(s)))
        }
        Server::Udp(a) => {
            let addrs: Vec<_> = a.to_socket_addrs()?.collect();
            let first = addrs.first().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{a}: no address")))?;
            let sock = UdpSocket::bind(if first.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
            sock.connect(&addrs[..])?;
            Ok(Conn::Udp(sock))
        }
        Server::Unix(p) => {
            let d = UnixDatagram::unbound()?;
            match d.connect(p) {
                Ok(()) => Ok(Conn::UnixDgram(d)),
                // A stream socket (EPROTOTYPE).
                Err(e) if e.raw_os_error() == Some(91) => {
                    let s = UnixStream::connect(p)?;
                    s.set_write_timeout(Some(WRITE_TIMEOUT))?;
                    Ok(Conn::UnixStream(s))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// How long to wait after a TLS 1.3 handshake for the server's verdict on our certificate.
const TLS13_SETTLE: Duration = Duration::from_millis(500);

/// In TLS 1.3 the client's handshake ends before the server has checked the client's
/// certificate (or noticed there is none): a refusal comes as an alert afterwards, and would
/// otherwise surface only as a broken pipe some writes later. So wait briefly for the server's
/// first record: session tickets (OpenSSL sends them once it accepted the client) mean the
/// connection stands; an alert becomes this connect's error ("received fatal alert:
/// CertificateRequired"); silence until [`TLS13_SETTLE`] is taken as acceptance.
fn settle_tls13(s: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> io::Result<()> {
    s.sock.set_read_timeout(Some(TLS13_SETTLE))?;
    let result = match s.conn.read_tls(&mut s.sock) {
        Ok(0) => {
            Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the server closed the connection after the TLS handshake"))
        }
        Ok(_) => s
            .conn
            .process_new_packets()
            .map(drop)
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, format!("TLS: {e}"))),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Ok(()),
        Err(e) => Err(e),
    };
    s.sock.set_read_timeout(None)?;
    result
}

/// One batch of messages: their bytes back to back, each message's end offset and ticket.
#[derive(Default)]
pub struct Batch {
    pub buf: Vec<u8>,
    pub msgs: Vec<(usize, Ticket)>,
}

impl Batch {
    fn clear(&mut self) {
        self.buf.clear();
        self.msgs.clear();
    }
}

/// What `publish` and the writer thread share.
struct State {
    queued: Batch,
    /// The writer holds a batch it has not reported yet.
    busy: bool,
    /// No more messages will come (the publisher was dropped).
    closed: bool,
    /// Give up: write nothing more, report nothing more.
    abort: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when messages are queued, on close and on abort.
    work: Condvar,
    /// Signalled when room frees up and when the writer goes idle.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Splits one datagram message into the datagrams that carry it (GELF chunking).
pub type Chunker = Box<dyn FnMut(&[u8], &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> + Send>;

/// Options of the writer thread.
pub struct LinkOptions {
    pub server: Server,
    pub tls: TlsOptions,
    /// Bytes of already written messages kept to resend after a reconnect.
    pub resend_window: usize,
    /// At most this many messages per second (0: no limit).
    pub max_rate: u64,
    /// The tool's name, for messages.
    pub tool: &'static str,
    /// Split a datagram message into several datagrams (GELF chunking); None: send as is.
    pub chunker: Option<Chunker>,
}

/// The publisher's end of a writer thread: queue messages, flush, abort.
pub struct Link {
    shared: Arc<Shared>,
    stream: bool,
}

/// The driver's [`Control`] of a link.
pub struct LinkControl(Arc<Shared>);

impl Link {
    /// Start the writer thread. `stream` tells the encoder whether to frame messages for a
    /// stream socket; for `unix://` it is found out by trying the socket once now.
    pub fn start(opts: LinkOptions, reporter: Reporter) -> Result<(Link, LinkControl), String> {
        let tls = match &opts.server {
            Server::Tls(_) => {
                let config = tls_config(&opts.tls)?;
                let host = opts.tls.server_name.clone().or_else(|| opts.server.host().map(str::to_string)).unwrap_or_default();
                let name =
                    rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("TLS server name {host:?}: {e}"))?;
                Some((config, name))
            }
            _ => None,
        };
        let stream = match &opts.server {
            Server::Udp(_) => false,
            Server::Tcp(_) | Server::Tls(_) => true,
            Server::Unix(p) => match open(&opts.server, None) {
                Ok(c) => !c.is_datagram(),
                Err(e) => return Err(format!("{}: {e}", p.display())),
            },
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State { queued: Batch::default(), busy: false, closed: false, abort: false }),
            work: Condvar::new(),
            room: Condvar::new(),
        });
        let writer = Writer {
            opts,
            tls,
            shared: shared.clone(),
            reporter,
            conn: None,
            window: VecDeque::new(),
            window_bytes: 0,
            spare: Vec::new(),
            rate: Rate::default(),
            warned_udp: false,
            last_warn: None,
            broken: false,
        };
        std::thread::Builder::new()
            .name("writer".into())
            .spawn(move || writer.run())
            .map_err(|e| format!("starting the writer thread: {e}"))?;
        Ok((Link { shared: shared.clone(), stream }, LinkControl(shared)))
    }

    /// True when messages travel on a stream socket and need framing.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Queue one message: `encode` appends its bytes (framing included) to the buffer.
    /// Waits while the queue is full; false when the link was aborted (nothing queued).
    pub fn send(&self, ticket: Ticket, encode: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut st = self.shared.lock();
        while st.queued.buf.len() >= QUEUE_BYTES && !st.abort {
            st = self.shared.room.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.abort {
            return false;
        }
        let was_empty = st.queued.msgs.is_empty();
        encode(&mut st.queued.buf);
        let end = st.queued.buf.len();
        st.queued.msgs.push((end, ticket));
        if was_empty {
            self.shared.work.notify_one();
        }
        true
    }
}

impl Link {
    /// Queue a message of no bytes: its ticket is reported in order with the others, nothing
    /// is sent (for a message handled otherwise, e.g. dead-lettered).
    pub fn send_nothing(&self, ticket: Ticket) -> bool {
        self.send(ticket, |_| {})
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        self.shared.work.notify_all();
    }
}

impl Control for LinkControl {
    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.0.lock();
        loop {
            if st.abort || (!st.busy && st.queued.msgs.is_empty()) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self.0.room.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn abort(&self) {
        let mut st = self.0.lock();
        st.abort = true;
        self.0.work.notify_all();
        self.0.room.notify_all();
    }
}

/// Run a line-per-message publisher (`s3s-syslog`, `s3s-gelf`) with [`crate::sink::run`]:
/// `make` builds it around its [`Link`], or around none on a dry run (no server contacted).
pub fn run_publisher<P: crate::sink::Publisher>(
    driver: crate::sink::Driver<'_>,
    opts: LinkOptions,
    make: impl FnOnce(Option<Link>) -> P,
) -> anyhow::Result<crate::cli::Status> {
    let dry_run = driver.args.dry_run;
    crate::sink::run(driver, move |reporter| {
        if dry_run {
            return Ok((make(None), Arc::new(crate::sink::NoControl) as Arc<dyn Control>));
        }
        let (link, control) = Link::start(opts, reporter).map_err(crate::cli::UsageError)?;
        Ok((make(Some(link)), Arc::new(control) as Arc<dyn Control>))
    })
}

/// A token bucket for `--max-rate`.
#[derive(Default)]
struct Rate {
    start: Option<Instant>,
    sent: u64,
}

impl Rate {
    fn pace(&mut self, max: u64) {
        if max == 0 {
            return;
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        self.sent += 1;
        let due = start + Duration::from_secs_f64(self.sent as f64 / max as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > Duration::from_secs(1) {
            // Fell behind (a reconnect): no burst to catch up.
            self.start = Some(now);
            self.sent = 0;
        }
    }
}

struct Writer {
    opts: LinkOptions,
    tls: Option<(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
    shared: Arc<Shared>,
    reporter: Reporter,
    conn: Option<Conn>,
    /// Batches written on the current connection, newest last, at most `resend_window` bytes.
    window: VecDeque<Vec<u8>>,
    window_bytes: usize,
    /// Buffers the window let go, for its next copies.
    spare: Vec<Vec<u8>>,
    rate: Rate,
    warned_udp: bool,
    /// When a connect failure was last logged at warn level.
    last_warn: Option<Instant>,
    /// The last connect failed or the connection broke: the next connect is a retry.
    broken: bool,
}

impl Writer {
    fn run(mut self) {
        let mut batch = Batch::default();
        loop {
            {
                let mut st = self.shared.lock();
                st.busy = false;
                self.shared.room.notify_all();
                while st.queued.msgs.is_empty() && !st.closed && !st.abort {
                    st = self.shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                if st.abort || (st.closed && st.queued.msgs.is_empty()) {
                    break;
                }
                // The cleared buffers go back to the queue: no allocation once warmed up.
                batch.clear();
                std::mem::swap(&mut batch, &mut st.queued);
                st.busy = true;
                self.shared.room.notify_all();
            }
            if !self.write_batch(&batch) {
                break;
            }
            for &(_, ticket) in &batch.msgs {
                self.reporter.delivered(ticket);
            }
        }
        if let Some(c) = self.conn.as_mut() {
            c.close();
        }
    }

    fn aborted(&self) -> bool {
        self.shared.lock().abort
    }

    /// Write one batch, reconnecting as often as it takes; false when aborted.
    fn write_batch(&mut self, batch: &Batch) -> bool {
        let mut backoff = BACKOFF_MIN;
        loop {
            if self.conn.as_ref().is_some_and(|c| c.peer_gone()) {
                tracing::warn!("{}: the receiver closed the connection; reconnecting", self.opts.server);
                self.conn = None;
                self.broken = true;
            }
            if self.conn.is_none() {
                if self.broken {
                    // One retry: a connection attempt made because the last one failed or the
                    // connection broke (see `s3s_publish_retries_total` in s3s(7)).
                    events::publish_retries(1);
                }
                match self.reconnect() {
                    Ok(()) => {
                        backoff = BACKOFF_MIN;
                        self.last_warn = None;
                        self.broken = false;
                    }
                    Err(e) => {
                        self.broken = true;
                        // A server that stays away: say so at first, then every 30 s.
                        let now = Instant::now();
                        if self.last_warn.is_none_or(|t| now - t >= Duration::from_secs(30)) {
                            self.last_warn = Some(now);
                            tracing::warn!("{}: {e}; retrying with backoff (up to {BACKOFF_MAX:?})", self.opts.server);
                        } else {
                            tracing::debug!("{}: {e}; retrying in {backoff:?}", self.opts.server);
                        }
                        if !self.sleep(backoff) {
                            return false;
                        }
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            let conn = self.conn.as_mut().expect("connected");
            let result = if conn.is_datagram() {
                self.send_datagrams(batch)
            } else {
                if self.opts.max_rate == 0 {
                    conn.write_all(&batch.buf).and_then(|()| conn.flush())
                } else {
                    let mut start = 0;
                    let mut r = Ok(());
                    for &(end, _) in &batch.msgs {
                        self.rate.pace(self.opts.max_rate);
                        r = conn.write_all(&batch.buf[start..end]).and_then(|()| conn.flush());
                        if r.is_err() {
                            break;
                        }
                        start = end;
                    }
                    r
                }
            };
            match result {
                Ok(()) => {
                    if self.conn.as_ref().is_some_and(|c| !c.is_datagram()) {
                        self.remember(&batch.buf);
                    }
                    return true;
                }
                Err(e) => {
                    tracing::warn!("{}: {e}; reconnecting", self.opts.server);
                    self.conn = None;
                    self.broken = true;
                    if self.aborted() {
                        return false;
                    }
                }
            }
        }
    }

    fn send_datagrams(&mut self, batch: &Batch) -> io::Result<()> {
        let conn = self.conn.as_mut().expect("connected");
        let mut start = 0;
        for &(end, _) in &batch.msgs {
            self.rate.pace(self.opts.max_rate);
            let msg = &batch.buf[start..end];
            start = end;
            if msg.is_empty() {
                continue;
            }
            let mut send = |d: &[u8]| -> io::Result<()> {
                match conn.write_all(d) {
                    // An ICMP port-unreachable from an earlier datagram: the receiver is not
                    // there (yet). UDP promises nothing: say so once, send again, go on.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        if !self.warned_udp {
                            tracing::warn!("{}: {e} (nobody listening?); UDP goes on regardless", self.opts.server);
                            self.warned_udp = true;
                        }
                        match conn.write_all(d) {
                            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
                            r => r,
                        }
                    }
                    r => r,
                }
            };
            match &mut self.opts.chunker {
                Some(chunk) => chunk(msg, &mut send)?,
                None => send(msg)?,
            }
        }
        Ok(())
    }

    /// Keep a copy of a written batch in the resend window. The copy goes into a buffer the
    /// window let go earlier (kept in `spare`), so once warm this allocates nothing; and it is
    /// made here on the writer thread, not where the publisher encodes (whose queue buffers
    /// stay the same two, swapped back and forth).
    fn remember(&mut self, buf: &[u8]) {
        if self.opts.resend_window == 0 {
            return;
        }
        // The newest batch is kept even when it alone is larger than the window.
        while self.window_bytes + buf.len() > self.opts.resend_window && !self.window.is_empty() {
            let old = self.window.pop_front().expect("non-empty");
            self.window_bytes -= old.len();
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(old);
            }
        }
        let mut copy = self.spare.pop().unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(buf);
        self.window.push_back(copy);
        self.window_bytes += buf.len();
    }

    fn reconnect(&mut self) -> io::Result<()> {
        let mut conn = open(&self.opts.server, self.tls.as_ref())?;
        if !self.window.is_empty() {
            tracing::warn!(
                "{}: reconnected; resending the last {} bytes written before the connection broke",
                self.opts.server,
                self.window_bytes
            );
            for b in &self.window {
                conn.write_all(b)?;
            }
            conn.flush()?;
            self.window.clear();
            self.window_bytes = 0;
        } else if self.last_warn.is_some() {
            tracing::warn!("{}: connected", self.opts.server);
        } else {
            tracing::info!("{}: connected", self.opts.server);
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Sleep, waking early on abort; false when aborted.
    fn sleep(&self, d: Duration) -> bool {
        let st = self.shared.lock();
        let (st, _) = self.shared.work.wait_timeout_while(st, d, |s| !s.abort).unwrap_or_else(|e| e.into_inner());
        !st.abort
    }
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
