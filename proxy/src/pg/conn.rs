//! PostgreSQL framing over a connection's read buffer: whole messages.

use std::sync::Arc;

use bytes::BytesMut;
use protocols::pg::frame::{self, FrameError};
use protocols::pg::message;

pub(super) use crate::net::Conn;
use crate::net::budget::Budget;
use crate::session::{Error, Step};

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

/// Whether the client's next message may be held whole.
pub(super) enum Admit {
    /// It fits the proxy-wide budget, or there is no message yet.
    Fits,
    /// It didn't fit and what arrives of it is being dropped.
    Dropping,
    /// It didn't fit and is gone now: the client waits for an answer to a message of this
    /// type.
    Refused(u8),
}

/// Takes the budget for the message at the head of the client's buffer as soon as its length
/// is known, before it is read whole. One that doesn't fit is dropped as it arrives, so the
/// client, still writing it, can read the answer after.
pub(super) fn admit(client: &mut Conn, budget: &Arc<Budget>) -> Admit {
    let first = match client.refused {
        Some(first) => first,
        None => {
            if client.hold(budget, declared_len(&client.rbuf)) {
                return Admit::Fits;
            }
            client.skip = declared_len(&client.rbuf);
            let first = client.rbuf.first().copied().unwrap_or_default();
            client.refused = Some(first);
            first
        }
    };
    if !client.drop_skipped() {
        return Admit::Dropping;
    }
    client.refused = None;
    Admit::Refused(first)
}

/// The whole length of the message whose header starts the buffer; 0 until the header is
/// there, or when it is malformed (framing refuses it then).
fn declared_len(buf: &[u8]) -> usize {
    match buf.get(1..5) {
        Some(b) => {
            let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
            if (4..=MAX_CLIENT_MESSAGE).contains(&len) {
                len + 1
            } else {
                0
            }
        }
        None => 0,
    }
}

/// The client gets the server's out-of-memory error for a message over the budget; unless
/// `keep`, the session ends with it.
pub(super) async fn out_of_memory(client: &mut Conn, keep: bool) -> Result<Step, Error> {
    let message = "out of memory: the message is larger than what torpor may hold for its \
                   clients now ([proxy] max_buffered_bytes)";
    if !keep {
        return Err(Error::pg("53200", message));
    }
    let mut out = BytesMut::new();
    message::error_response(&mut out, "ERROR", "53200", message);
    message::ready_for_query(&mut out, b'I');
    client.send(&out).await?;
    Ok(Step::Continue)
}
