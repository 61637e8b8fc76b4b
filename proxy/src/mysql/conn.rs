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
    /// Reads one packet and not a byte more: a client may send its TLS ClientHello right
    /// behind an SSL request, and those bytes belong to the TLS handshake.
    async fn recv_exact(&mut self) -> Result<BytesMut, Error>;
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

    async fn recv_exact(&mut self) -> Result<BytesMut, Error> {
        if !self.rbuf.is_empty() {
            return self.recv().await;
        }
        let mut header = [0u8; 4];
        read_exact(self, &mut header).await?;
        let len = packet::header(&header).map_or(0, |(len, _)| len);
        if len > self.max {
            return Err(PacketError::TooLarge { len, max: self.max }.into());
        }
        let mut packet = BytesMut::zeroed(4 + len);
        packet[..4].copy_from_slice(&header);
        read_exact(self, &mut packet[4..]).await?;
        Ok(packet)
    }
}

async fn read_exact(conn: &mut Conn, buf: &mut [u8]) -> Result<(), Error> {
    use tokio::io::AsyncReadExt;
    match conn.io.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(Error::Closed),
        Err(e) => Err(e.into()),
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
