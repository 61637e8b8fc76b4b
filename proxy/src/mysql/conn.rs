//! A socket with a read buffer that yields whole MySQL packets.

use bytes::BytesMut;
use protocols::mysql::packet::{self, PacketError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::Stream;
use crate::session::Error;

pub struct Conn {
    pub io: Stream,
    pub rbuf: BytesMut,
}

impl Conn {
    pub fn new(io: impl Into<Stream>) -> Self {
        Conn {
            io: io.into(),
            rbuf: BytesMut::with_capacity(4096),
        }
    }

    /// Reads more bytes; Ok(0) at end of stream. Cancel-safe.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < 2048 {
            self.rbuf.reserve(8192);
        }
        self.io.read_buf(&mut self.rbuf).await
    }

    /// Length (header included) of the first whole physical packet in the buffer.
    pub fn whole_packet(&self) -> Result<Option<usize>, PacketError> {
        packet::packet_len(&self.rbuf, packet::MAX_PAYLOAD)
    }

    /// Splits one whole packet (header and payload) off the buffer, if one is there.
    pub fn next_packet(&mut self) -> Result<Option<BytesMut>, PacketError> {
        Ok(self.whole_packet()?.map(|len| self.rbuf.split_to(len)))
    }

    /// Waits for one whole packet (header and payload).
    pub async fn recv(&mut self) -> Result<BytesMut, Error> {
        loop {
            if let Some(p) = self.next_packet()? {
                return Ok(p);
            }
            if self.fill().await? == 0 {
                return Err(Error::Closed);
            }
        }
    }

    pub async fn send(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.io.write_all(buf).await
    }
}

/// The payload of a whole packet.
pub fn payload(packet: &[u8]) -> &[u8] {
    packet.get(4..).unwrap_or_default()
}

/// The sequence id of a whole packet.
pub fn seq(packet: &[u8]) -> u8 {
    packet.get(3).copied().unwrap_or_default()
}
