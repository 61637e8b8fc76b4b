//! MySQL framing over a connection's read buffer: whole packets.

use bytes::BytesMut;
use protocols::mysql::packet::{self, PacketError};

pub(super) use crate::net::Conn;
use crate::session::Error;

/// A connection for MySQL packets of any size the protocol allows.
pub(super) fn conn(io: impl Into<crate::net::Stream>) -> Conn {
    Conn::new(io, packet::MAX_PAYLOAD)
}

/// Whole MySQL packets out of a connection's buffer.
pub(super) trait Packets {
    /// Length (header included) of the first whole physical packet in the buffer.
    fn whole_packet(&self) -> Result<Option<usize>, PacketError>;
    /// Splits one whole packet (header and payload) off the buffer, if one is there.
    fn next_packet(&mut self) -> Result<Option<BytesMut>, PacketError>;
    /// Waits for one whole packet (header and payload).
    async fn recv(&mut self) -> Result<BytesMut, Error>;
}

impl Packets for Conn {
    fn whole_packet(&self) -> Result<Option<usize>, PacketError> {
        packet::packet_len(&self.rbuf, self.max)
    }

    fn next_packet(&mut self) -> Result<Option<BytesMut>, PacketError> {
        Ok(self.whole_packet()?.map(|len| self.rbuf.split_to(len)))
    }

    async fn recv(&mut self) -> Result<BytesMut, Error> {
        loop {
            if let Some(p) = self.next_packet()? {
                return Ok(p);
            }
            if self.fill().await? == 0 {
                return Err(Error::Closed);
            }
        }
    }
}

/// The payload of a whole packet.
pub(super) fn payload(packet: &[u8]) -> &[u8] {
    packet.get(4..).unwrap_or_default()
}

/// The sequence id of a whole packet.
pub(super) fn seq(packet: &[u8]) -> u8 {
    packet.get(3).copied().unwrap_or_default()
}
