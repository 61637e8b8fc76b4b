//! A socket with a read buffer that yields whole protocol messages.

use bytes::BytesMut;
use protocols::pg::frame::{self, FrameError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Stream;
use crate::session::Error;

/// Largest message a client may send. PostgreSQL allows 1 GiB; a proxy that buffers whole
/// messages needs a tighter bound so one client can't take the machine's memory.
pub const MAX_CLIENT_MESSAGE: usize = 256 << 20;

pub struct Conn {
    pub io: Stream,
    pub rbuf: BytesMut,
    pub max: usize,
}

impl Conn {
    pub fn new(io: impl Into<Stream>, max: usize) -> Self {
        Conn {
            io: io.into(),
            rbuf: BytesMut::with_capacity(8192),
            max,
        }
    }

    /// Reads more bytes; Ok(0) at end of stream. Cancel-safe.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(8192);
        }
        self.io.read_buf(&mut self.rbuf).await
    }

    /// Splits one whole message (tag, length and body) off the buffer, if one is there.
    pub fn next_message(&mut self) -> Result<Option<(u8, BytesMut)>, FrameError> {
        match frame::message_len(&self.rbuf, self.max)? {
            Some((tag, len)) => Ok(Some((tag, self.rbuf.split_to(len)))),
            None => Ok(None),
        }
    }

    /// Waits for one whole message.
    pub async fn recv(&mut self) -> Result<(u8, BytesMut), Error> {
        loop {
            if let Some(m) = self.next_message()? {
                return Ok(m);
            }
            if self.fill().await? == 0 {
                return Err(Error::Closed);
            }
        }
    }

    /// Length of the prefix of the buffer made of whole messages, calling `each` for each one.
    pub fn whole_messages(&self, mut each: impl FnMut(u8, &[u8])) -> Result<usize, FrameError> {
        let mut off = 0;
        while let Some((tag, len)) = frame::message_len(&self.rbuf[off..], self.max)? {
            each(tag, &self.rbuf[off + 5..off + len]);
            off += len;
        }
        Ok(off)
    }

    pub async fn send(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.io.write_all(buf).await
    }
}

/// The body of a whole message as returned by [`Conn::next_message`].
pub fn body(msg: &[u8]) -> &[u8] {
    msg.get(5..).unwrap_or_default()
}
