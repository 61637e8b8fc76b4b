//! PostgreSQL framing over a connection's read buffer: whole messages.

use bytes::BytesMut;
use protocols::pg::frame::{self, FrameError};

pub(super) use crate::net::Conn;
use crate::session::Error;

/// Largest message a client may send. PostgreSQL allows 1 GiB; a proxy that buffers whole
/// messages needs a tighter bound so one client can't take the machine's memory.
pub(super) const MAX_CLIENT_MESSAGE: usize = 256 << 20;

/// Whole PostgreSQL messages out of a connection's buffer.
pub(super) trait Messages {
    /// Splits one whole message (tag, length and body) off the buffer, if one is there.
    fn next_message(&mut self) -> Result<Option<(u8, BytesMut)>, FrameError>;
    /// Waits for one whole message.
    async fn recv(&mut self) -> Result<(u8, BytesMut), Error>;
    /// Length of the prefix of the buffer made of whole messages, calling `each` for each one.
    fn whole_messages(&self, each: impl FnMut(u8, &[u8])) -> Result<usize, FrameError>;
}

impl Messages for Conn {
    fn next_message(&mut self) -> Result<Option<(u8, BytesMut)>, FrameError> {
        match frame::message_len(&self.rbuf, self.max)? {
            Some((tag, len)) => Ok(Some((tag, self.rbuf.split_to(len)))),
            None => Ok(None),
        }
    }

    async fn recv(&mut self) -> Result<(u8, BytesMut), Error> {
        loop {
            if let Some(m) = self.next_message()? {
                return Ok(m);
            }
            if self.fill().await? == 0 {
                return Err(Error::Closed);
            }
        }
    }

    fn whole_messages(&self, mut each: impl FnMut(u8, &[u8])) -> Result<usize, FrameError> {
        let mut off = 0;
        while let Some((tag, len)) = frame::message_len(&self.rbuf[off..], self.max)? {
            each(tag, &self.rbuf[off + 5..off + len]);
            off += len;
        }
        Ok(off)
    }
}

/// The body of a whole message as returned by [`Messages::next_message`].
pub(super) fn body(msg: &[u8]) -> &[u8] {
    msg.get(5..).unwrap_or_default()
}
