//! The byte stream under a protocol connection: TCP (or TLS over it) for clients, and for
//! backends a Unix socket when the driver runs the server on this machine. Per query, a Unix
//! socket costs the kernel less than loopback TCP, and the proxy hop is mostly kernel time.

pub(crate) mod budget;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use controller::BackendInfo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connection with a read buffer; each protocol frames what accumulates in it.
pub(crate) struct Conn {
    pub io: Stream,
    pub rbuf: BytesMut,
    /// Largest message accepted from the other end: bounds what a peer can make us buffer.
    pub max: usize,
    /// A client connection's share of the proxy-wide budget, for the message it is reading.
    pub held: budget::Held,
    /// What is left to drop, as it arrives, of a message refused before it was whole.
    pub skip: usize,
    /// The first byte of that message (PostgreSQL: its type).
    pub refused: Option<u8>,
}

impl Conn {
    pub(crate) fn new(io: impl Into<Stream>, max: usize) -> Self {
        Conn {
            io: io.into(),
            rbuf: BytesMut::with_capacity(4096),
            max,
            held: budget::Held::default(),
            skip: 0,
            refused: None,
        }
    }

    /// Drops what has arrived of a refused message; true once all of it is gone.
    pub(crate) fn drop_skipped(&mut self) -> bool {
        let n = self.skip.min(self.rbuf.len());
        self.rbuf.advance(n);
        self.skip -= n;
        self.skip == 0
    }

    /// Holds `bytes` of `budget` for the message at the head of the buffer, or nothing when
    /// it is small; false when the budget has no room for it.
    pub(crate) fn hold(&mut self, budget: &Arc<budget::Budget>, bytes: usize) -> bool {
        if bytes > budget::UNCOUNTED {
            return self.held.hold(budget, bytes);
        }
        self.release_held();
        true
    }

    /// The message held is gone: its share of the budget goes back.
    pub(crate) fn release_held(&mut self) {
        if self.held.bytes() > 0 {
            self.held.release();
            // A big message's allocation would stay with the buffer.
            if self.rbuf.is_empty() {
                self.rbuf = BytesMut::with_capacity(4096);
            }
        }
    }

    /// Reads more bytes; Ok(0) at end of stream. Cancel-safe.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        if self.rbuf.capacity() == 0 {
            // A connection whose buffer was given up while it waits (a parked session's)
            // gets one only when there is something to read.
            self.io.readable().await?;
        }
        if self.rbuf.capacity() - self.rbuf.len() < 2048 {
            self.rbuf.reserve(8192);
        }
        match self.io.read_buf(&mut self.rbuf).await {
            // Most clients hang up without TLS's close_notify; for a database protocol, whose
            // messages carry their own lengths, that is just the end of the connection.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            r => r,
        }
    }

    pub(crate) async fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.io.write_all(buf).await
    }
}

pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
    /// Midway through a TLS handshake that failed: nothing more can be read or written.
    Gone,
}

impl From<TcpStream> for Stream {
    fn from(io: TcpStream) -> Self {
        // Replies are whole messages: Nagle would only delay them.
        let _ = io.set_nodelay(true);
        Stream::Tcp(io)
    }
}

impl Stream {
    /// The address of the other end of a TCP connection; `None` for a Unix socket, or once
    /// the peer has gone.
    pub(crate) fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Tcp(s) => s.peer_addr().ok(),
            Stream::Tls(s) => s.get_ref().0.peer_addr().ok(),
            Stream::Unix(_) | Stream::Gone => None,
        }
    }

    /// Waits until a read would find bytes (or the end); at once for TLS, whose records
    /// must be read to know.
    async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
            Stream::Tls(_) | Stream::Gone => Ok(()),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl Conn {
    /// Runs the server side of a TLS handshake on this client connection. Bytes the client
    /// sent before the handshake and that are still unread are refused, not carried into the
    /// encrypted session (CVE-2021-23214).
    pub(crate) async fn start_tls(&mut self, tls: &crate::tls::Loaded) -> io::Result<()> {
        if !self.rbuf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the client sent data after its encryption request, before the TLS handshake",
            ));
        }
        let Stream::Tcp(tcp) = std::mem::replace(&mut self.io, Stream::Gone) else {
            return Err(io::Error::other("TLS asked for twice"));
        };
        let tls = crate::tls::accept(tls, tcp).await?;
        self.io = Stream::Tls(Box::new(tls.into()));
        Ok(())
    }

    /// Runs the client side of a TLS handshake with a database server. Bytes the server sent
    /// before it are refused, as libpq refuses them (CVE-2021-23222).
    pub(crate) async fn start_tls_client(
        &mut self,
        tls: &crate::tls::Client,
        addr: std::net::SocketAddr,
    ) -> io::Result<()> {
        if !self.rbuf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the database sent data before the TLS handshake",
            ));
        }
        let Stream::Tcp(tcp) = std::mem::replace(&mut self.io, Stream::Gone) else {
            return Err(io::Error::other("TLS needs a TCP connection"));
        };
        let tls = tls.connect(addr, tcp).await?;
        self.io = Stream::Tls(Box::new(tls.into()));
        Ok(())
    }

    /// The ALPN protocol the client and torpor agreed on, if any.
    pub(crate) fn alpn(&self) -> Option<&[u8]> {
        match &self.io {
            Stream::Tls(s) => s.get_ref().1.alpn_protocol(),
            _ => None,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed")
}

/// Opens a connection to the backend: its Unix socket if it has one, else TCP; always TCP
/// when the connection is to start TLS.
pub(crate) async fn connect(backend: &BackendInfo, tls: bool) -> io::Result<Stream> {
    match &backend.socket {
        Some(path) if !tls => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        _ => Ok(TcpStream::connect(backend.addr).await?.into()),
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Gone => Poll::Ready(Ok(())),
        }
    }
}
