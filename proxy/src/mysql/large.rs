//! Commands larger than one packet, and commands torpor won't hold. A command over 16 MiB comes
//! as several packets; while the session is attached, the packets after the first are passed
//! on as they arrive rather than held whole. A parked session must hold the whole command
//! before it wakes the database. A command over the backend's `max_allowed_packet` (while
//! parked, over `[proxy] max_buffered_bytes` too) gets the server's 1153 and the session
//! ends, as the server ends it; one the proxy-wide budget has no room for gets 1041 and the
//! session goes on. Either way the command is first dropped as it arrives, so the client,
//! still writing it, can read the answer after.

use protocols::mysql::packet::{MAX_PAYLOAD, header};

use super::session::My;
use crate::net::budget::UNCOUNTED;
use crate::session::{Error, Session, Step};

/// Where the client is in its current command, past its first packet.
#[derive(Debug, Default)]
pub(super) struct Large {
    /// Bytes of the current packet still to pass on (or drop), header included.
    left: usize,
    /// Another packet of the command follows the current one.
    more: bool,
    /// The sequence id the next packet must have.
    seq: u8,
    /// Payload bytes of the command so far.
    payload: usize,
    /// The command is being dropped; at its end the client gets this answer.
    refused: Option<Refused>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// ER_NET_PACKET_TOO_LARGE, then the connection closes.
    TooLarge,
    /// ER_OUT_OF_RESOURCES; the session goes on.
    OutOfMemory,
    /// The first packet was answered by torpor: nothing more to say.
    Answered,
}

/// What to do with the command at the head of the client's buffer.
pub(super) enum Admit {
    /// Its first packet is whole and this long: handle it.
    First(usize),
    /// Wait for more of it.
    Wait,
    /// It is being dropped, or being passed on: [`pass`] takes it from here.
    Pass,
}

impl Large {
    /// Midway through a command, past its first packet, or dropping one.
    pub(super) fn active(&self) -> bool {
        self.left > 0 || self.more || self.refused.is_some()
    }

    /// The first packet of a command over one packet was handled; the rest follows, to be
    /// passed on if that packet was, else dropped.
    pub(super) fn begin(&mut self, next_seq: u8, forwarded: bool) {
        *self = Large {
            more: true,
            seq: next_seq,
            payload: MAX_PAYLOAD,
            refused: (!forwarded).then_some(Refused::Answered),
            ..Large::default()
        };
    }

    fn refuse(&mut self, why: Refused) {
        *self = Large {
            more: true,
            refused: Some(why),
            ..Large::default()
        };
    }
}

impl Session<My> {
    /// The largest command the backend takes: its `max_allowed_packet` as last learned, and
    /// while parked no more than the whole proxy-wide budget either.
    fn command_limit(&self) -> usize {
        let server = self
            .front
            .my_catalog()
            .and_then(|c| c.global("max_allowed_packet")?.parse().ok())
            .unwrap_or(usize::MAX);
        if self.p.backend.is_some() {
            server
        } else {
            server.min(self.front.budget.limit())
        }
    }

    /// Looks at the command at the head of the client's buffer before it is handled, and
    /// holds the budget for what must be held of it.
    pub(super) fn admit(&mut self) -> Admit {
        let rbuf = &self.p.client.rbuf;
        let Some((len, _)) = header(rbuf) else {
            self.p.client.release_held();
            return Admit::Wait;
        };
        let parked = self.p.backend.is_none();
        // Parked, the whole command is needed before waking; attached, only its first packet.
        let (held, payload, whole) = if parked && len == MAX_PAYLOAD {
            whole_command(rbuf)
        } else {
            (4 + len, len, rbuf.len() >= 4 + len)
        };
        // Below the budget's threshold the server's own check is enough.
        let refused = if payload > UNCOUNTED && payload > self.command_limit() {
            Refused::TooLarge
        } else if !self.p.client.hold(&self.front.budget, held) {
            Refused::OutOfMemory
        } else if whole {
            return Admit::First(4 + len);
        } else {
            return Admit::Wait;
        };
        self.p.client.release_held();
        self.p.large.refuse(refused);
        Admit::Pass
    }

    /// Passes on (or drops) what has arrived of the current command past its first packet.
    /// `None` while more is to come.
    pub(super) async fn pass(&mut self) -> Result<Option<Step>, Error> {
        let limit = self.command_limit();
        loop {
            let large = &mut self.p.large;
            let rbuf = &mut self.p.client.rbuf;
            if large.left == 0 {
                if !large.more {
                    return self.command_passed().await.map(Some);
                }
                let Some((len, seq)) = header(rbuf) else {
                    return Ok(None);
                };
                if seq != large.seq {
                    return Err(Error::my(1156, "08S01", "Got packets out of order"));
                }
                large.seq = seq.wrapping_add(1);
                large.more = len == MAX_PAYLOAD;
                large.left = 4 + len;
                large.payload += len;
                self.p.reply_seq = large.seq;
                self.p.tracker.client_continues = large.more;
                if large.refused.is_none() && large.payload > limit {
                    large.refused = Some(Refused::TooLarge);
                }
                continue;
            }
            let n = large.left.min(rbuf.len());
            if n == 0 {
                return Ok(None);
            }
            let chunk = rbuf.split_to(n);
            large.left -= n;
            if large.refused.is_none()
                && let Some(b) = self.p.backend.as_mut()
            {
                b.conn.send(&chunk).await?;
            }
        }
    }

    async fn command_passed(&mut self) -> Result<Step, Error> {
        self.p.tracker.client_continues = false;
        self.p.client.release_held();
        match self.p.large.refused.take() {
            None | Some(Refused::Answered) => Ok(Step::Continue),
            Some(Refused::OutOfMemory) => {
                self.p
                    .local_err(
                        1041,
                        "HY000",
                        "Out of memory: the command is larger than what torpor may hold for its \
                         clients now ([proxy] max_buffered_bytes)",
                    )
                    .await
            }
            Some(Refused::TooLarge) => {
                // The backend got part of the command at most: that connection can't go on.
                self.p.backend = None;
                Err(Error::my(
                    1153,
                    "08S01",
                    "Got a packet bigger than 'max_allowed_packet' bytes",
                ))
            }
        }
    }
}

/// For a command at the head of `buf`: the bytes of the packets whose headers have arrived,
/// its payload so far, and whether all of it is there.
fn whole_command(buf: &[u8]) -> (usize, usize, bool) {
    let (mut at, mut payload) = (0, 0);
    while let Some((len, _)) = buf.get(at..).and_then(header) {
        at += 4 + len;
        payload += len;
        if len < MAX_PAYLOAD {
            return (at, payload, buf.len() >= at);
        }
    }
    (at, payload, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(len: usize, seq: u8) -> Vec<u8> {
        let mut p = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
        p.resize(4 + len, b'x');
        p
    }

    #[test]
    fn a_command_is_whole_once_a_packet_under_the_maximum_ends_it() {
        let mut buf = packet(MAX_PAYLOAD, 0);
        assert_eq!(
            whole_command(&buf[..100]),
            (4 + MAX_PAYLOAD, MAX_PAYLOAD, false)
        );
        let first = buf.len();
        assert_eq!(whole_command(&buf), (first, MAX_PAYLOAD, false));
        buf.extend(packet(10, 1));
        assert_eq!(
            whole_command(&buf[..first + 5]),
            (first + 14, MAX_PAYLOAD + 10, false)
        );
        assert_eq!(whole_command(&buf), (first + 14, MAX_PAYLOAD + 10, true));
    }
}
