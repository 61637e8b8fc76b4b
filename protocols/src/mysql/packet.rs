//! Physical packet framing and the primitive field encodings of the MySQL/MariaDB protocol.
//!
//! A packet is a 3-byte little-endian payload length, a 1-byte sequence id and the payload. A
//! logical payload of 0xFFFFFF bytes or more is split into several physical packets; one of
//! exactly 0xFFFFFF bytes is followed by one more (possibly empty) packet.
//!
//! Everything here reads untrusted bytes: lengths are checked before anything is sliced, and a
//! short or malformed input is a [`PacketError`], never a panic.

/// Largest payload of one physical packet; a longer logical payload continues in the next one.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    #[error("packet payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// The payload ended inside the named field.
    #[error("truncated packet: {0}")]
    Truncated(&'static str),
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// Well-formed but a variant this code does not speak (old protocol versions).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

pub(crate) fn malformed(what: impl Into<String>) -> PacketError {
    PacketError::Malformed(what.into())
}

/// Payload length and sequence id from the first 4 bytes of `buf`, if there are 4.
pub fn header(buf: &[u8]) -> Option<(usize, u8)> {
    let h = buf.get(..4)?;
    let len = h[0] as usize | (h[1] as usize) << 8 | (h[2] as usize) << 16;
    Some((len, h[3]))
}

/// Total size (4 + payload) of the first physical packet once all of it is in `buf`; `None` if
/// more bytes are needed. A payload length above `max_payload` is an error so a peer cannot make
/// the caller buffer without bound.
pub fn packet_len(buf: &[u8], max_payload: usize) -> Result<Option<usize>, PacketError> {
    let Some((len, _)) = header(buf) else {
        return Ok(None);
    };
    if len > max_payload {
        return Err(PacketError::TooLarge {
            len,
            max: max_payload,
        });
    }
    let total = 4 + len;
    Ok((buf.len() >= total).then_some(total))
}

/// One logical packet reassembled from the start of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logical {
    /// Bytes of the stream this packet used (all headers included).
    pub consumed: usize,
    /// Sequence id of the first physical packet.
    pub seq: u8,
    /// Sequence id the peer's next packet should carry.
    pub next_seq: u8,
    pub payload: Vec<u8>,
}

/// Reassembles the first logical packet in `buf` (joining 0xFFFFFF-byte continuations); `None`
/// until all of it has arrived. `max_len` bounds the joined payload.
pub fn logical_packet(buf: &[u8], max_len: usize) -> Result<Option<Logical>, PacketError> {
    let mut pos = 0;
    let mut payload = Vec::new();
    let mut first_seq = None;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some((len, seq)) = header(rest) else {
            return Ok(None);
        };
        if payload.len() + len > max_len {
            return Err(PacketError::TooLarge {
                len: payload.len() + len,
                max: max_len,
            });
        }
        let Some(body) = rest.get(4..4 + len) else {
            return Ok(None);
        };
        first_seq.get_or_insert(seq);
        payload.extend_from_slice(body);
        pos += 4 + len;
        if len < MAX_PAYLOAD {
            return Ok(Some(Logical {
                consumed: pos,
                seq: first_seq.unwrap_or(seq),
                next_seq: seq.wrapping_add(1),
                payload,
            }));
        }
    }
}

/// Appends `payload` as one logical packet starting at sequence id `seq`; returns the sequence id
/// of the packet that would follow.
pub fn write_packet(out: &mut Vec<u8>, seq: u8, payload: &[u8]) -> u8 {
    let mut seq = seq;
    let mut rest = payload;
    out.reserve(payload.len() + 4 * (payload.len() / MAX_PAYLOAD + 1));
    loop {
        let n = rest.len().min(MAX_PAYLOAD);
        out.extend_from_slice(&[n as u8, (n >> 8) as u8, (n >> 16) as u8, seq]);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        seq = seq.wrapping_add(1);
        if n < MAX_PAYLOAD {
            return seq;
        }
    }
}

/// Cursor over one payload. Every read checks the remaining length first.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The next byte without consuming it.
    pub fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        if n > self.buf.len() {
            return Err(PacketError::Truncated("fixed-length field"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), PacketError> {
        self.bytes(n).map(|_| ())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PacketError> {
        let Some((head, tail)) = self.buf.split_first_chunk::<N>() else {
            return Err(PacketError::Truncated(what));
        };
        self.buf = tail;
        Ok(*head)
    }

    pub fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.array::<1>("u8")?[0])
    }

    pub fn u16(&mut self) -> Result<u16, PacketError> {
        Ok(u16::from_le_bytes(self.array("u16")?))
    }

    pub fn u24(&mut self) -> Result<u32, PacketError> {
        let [a, b, c] = self.array("u24")?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    pub fn u32(&mut self) -> Result<u32, PacketError> {
        Ok(u32::from_le_bytes(self.array("u32")?))
    }

    pub fn u64(&mut self) -> Result<u64, PacketError> {
        Ok(u64::from_le_bytes(self.array("u64")?))
    }

    /// Length-encoded integer; `None` for the 0xFB NULL marker (only meaningful in rows).
    pub fn lenenc_opt(&mut self) -> Result<Option<u64>, PacketError> {
        let first = self
            .u8()
            .map_err(|_| PacketError::Truncated("lenenc int"))?;
        let short = |_| PacketError::Truncated("lenenc int");
        Ok(Some(match first {
            0..=0xFA => first as u64,
            0xFB => return Ok(None),
            0xFC => self.u16().map_err(short)? as u64,
            0xFD => self.u24().map_err(short)? as u64,
            0xFE => self.u64().map_err(short)?,
            0xFF => return Err(malformed("0xFF is not a length-encoded integer")),
        }))
    }

    /// Length-encoded integer where NULL is not allowed.
    pub fn lenenc_int(&mut self) -> Result<u64, PacketError> {
        self.lenenc_opt()?
            .ok_or_else(|| malformed("unexpected NULL (0xFB) length-encoded integer"))
    }

    /// Length-encoded string; the length is checked against what is left before slicing.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], PacketError> {
        let n = self.lenenc_int()?;
        self.lenenc_body(n)
    }

    /// Length-encoded string or the 0xFB NULL marker (text rows).
    pub fn lenenc_bytes_opt(&mut self) -> Result<Option<&'a [u8]>, PacketError> {
        match self.lenenc_opt()? {
            None => Ok(None),
            Some(n) => self.lenenc_body(n).map(Some),
        }
    }

    fn lenenc_body(&mut self, n: u64) -> Result<&'a [u8], PacketError> {
        match usize::try_from(n) {
            Ok(n) if n <= self.buf.len() => self.bytes(n),
            _ => Err(PacketError::Truncated("lenenc string")),
        }
    }

    /// Bytes up to a NUL; the NUL is consumed and not returned.
    pub fn nul_bytes(&mut self) -> Result<&'a [u8], PacketError> {
        let Some(nul) = self.buf.iter().position(|&b| b == 0) else {
            return Err(PacketError::Truncated("NUL-terminated string"));
        };
        let s = &self.buf[..nul];
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }

    /// Everything that is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Appends a length-encoded string.
pub fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends `b` and a NUL terminator.
pub fn put_nul_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b);
    out.push(0);
}

pub(crate) fn utf8(b: &[u8], what: &str) -> Result<String, PacketError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed(format!("{what} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_len() {
        assert_eq!(header(&[1, 0, 0]), None);
        assert_eq!(header(&[1, 2, 3, 9]), Some((0x030201, 9)));
        assert_eq!(packet_len(&[], MAX_PAYLOAD), Ok(None));
        assert_eq!(packet_len(&[2, 0, 0, 0, 1], MAX_PAYLOAD), Ok(None));
        assert_eq!(packet_len(&[2, 0, 0, 0, 1, 2, 3], MAX_PAYLOAD), Ok(Some(6)));
        assert_eq!(packet_len(&[0, 0, 0, 7], MAX_PAYLOAD), Ok(Some(4)));
        assert_eq!(
            packet_len(&[0xff, 0xff, 0xff, 0], 1000),
            Err(PacketError::TooLarge {
                len: MAX_PAYLOAD,
                max: 1000
            })
        );
    }

    #[test]
    fn write_splits_at_max_payload() {
        let mut out = Vec::new();
        assert_eq!(write_packet(&mut out, 3, b""), 4);
        assert_eq!(out, [0, 0, 0, 3]);

        for (len, packets) in [
            (MAX_PAYLOAD - 1, 1),
            (MAX_PAYLOAD, 2),
            (MAX_PAYLOAD + 1, 2),
            (2 * MAX_PAYLOAD, 3),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            let next = write_packet(&mut out, 255, &payload);
            assert_eq!(next, 255u8.wrapping_add(packets as u8), "len {len}");
            assert_eq!(out.len(), len + 4 * packets);
            let l = logical_packet(&out, usize::MAX).unwrap().unwrap();
            assert_eq!(l.consumed, out.len());
            assert_eq!(l.seq, 255);
            assert_eq!(l.next_seq, next);
            assert!(l.payload == payload);
            // Every prefix is incomplete, never an error.
            for cut in [0, 3, 4, MAX_PAYLOAD + 3, out.len() - 1] {
                if cut < out.len() {
                    assert!(matches!(logical_packet(&out[..cut], usize::MAX), Ok(None)));
                }
            }
            assert!(matches!(
                logical_packet(&out, len - 1),
                Err(PacketError::TooLarge { .. })
            ));
        }
    }

    #[test]
    fn lenenc_round_trip_and_edges() {
        for v in [
            0u64,
            1,
            0xFA,
            0xFB,
            0xFC,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_lenenc_int(&mut out, v);
            let mut r = Reader::new(&out);
            assert_eq!(r.lenenc_int(), Ok(v));
            assert!(r.is_empty());
            for cut in 0..out.len() {
                assert!(Reader::new(&out[..cut]).lenenc_int().is_err());
            }
        }
        assert!(matches!(
            Reader::new(&[0xFF]).lenenc_int(),
            Err(PacketError::Malformed(_))
        ));
        assert!(Reader::new(&[0xFB]).lenenc_int().is_err());
        assert_eq!(Reader::new(&[0xFB]).lenenc_opt(), Ok(None));
        assert_eq!(Reader::new(&[0xFB]).lenenc_bytes_opt(), Ok(None));
        // A length that lies: claims 2^64-1 bytes.
        let mut lie = vec![0xFE];
        lie.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            Reader::new(&lie).lenenc_bytes(),
            Err(PacketError::Truncated("lenenc string"))
        );
        assert_eq!(
            Reader::new(&[3, b'a', b'b']).lenenc_bytes(),
            Err(PacketError::Truncated("lenenc string"))
        );
    }

    #[test]
    fn reader_fields() {
        let buf = [
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, b'h', b'i', 0, b'z',
        ];
        let mut r = Reader::new(&buf);
        assert_eq!(r.u8(), Ok(1));
        assert_eq!(r.u16(), Ok(0x0302));
        assert_eq!(r.u24(), Ok(0x060504));
        assert_eq!(r.u32(), Ok(0x0a090807));
        assert_eq!(r.u64(), Ok(0x1211100f0e0d0c0b));
        assert_eq!(r.nul_bytes(), Ok(&b"hi"[..]));
        assert_eq!(r.remaining(), 1);
        assert!(r.nul_bytes().is_err());
        assert!(r.bytes(2).is_err());
        assert_eq!(r.rest(), b"z");
        assert!(r.u8().is_err() && r.u16().is_err() && r.u64().is_err());
    }
}
