//! The connections of the syslog/GELF writer: TCP, TLS (rustls), UDP and unix sockets (stream
//! or datagram, found out at connect), with the checks that tell a dead connection early.

use std::io::{self, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use super::Server;

/// A write that blocks this long counts as a dropped connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An open connection.
pub(super) enum Conn {
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    UnixStream(UnixStream),
    Udp(UdpSocket),
    UnixDgram(UnixDatagram),
}

impl Conn {
    pub(super) fn is_datagram(&self) -> bool {
        matches!(self, Conn::Udp(_) | Conn::UnixDgram(_))
    }

    /// True when the peer closed or reset a stream connection (a receiver never sends, so
    /// anything readable on a plain socket means EOF or an error).
    pub(super) fn peer_gone(&self) -> bool {
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

    pub(super) fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(buf),
            Conn::Tls(s) => s.write_all(buf),
            Conn::UnixStream(s) => s.write_all(buf),
            Conn::Udp(s) => s.send(buf).map(drop),
            Conn::UnixDgram(s) => s.send(buf).map(drop),
        }
    }

    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }

    pub(super) fn close(&mut self) {
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

pub(super) fn open(
    server: &Server,
    tls: Option<&(Arc<rustls::ClientConfig>, rustls_pki_types::ServerName<'static>)>,
) -> io::Result<Conn> {
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
