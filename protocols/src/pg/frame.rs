//! Framing: where one packet ends in a byte stream, and the startup-phase packets.
//!
//! Every function here takes arbitrary bytes from an untrusted peer and never panics; lengths are
//! checked before anything is sliced.

use super::message::request_code;

/// Largest startup-phase packet accepted (PostgreSQL uses the same limit).
pub const MAX_STARTUP_LEN: usize = 10_000;
/// Largest tagged message accepted by default (PostgreSQL's own hard limit is 1 GiB).
pub const MAX_MESSAGE_LEN: usize = 1 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum FrameError {
    /// A length field smaller than the length field itself, or one that is negative as Int32.
    #[error("invalid message length {0}")]
    BadLength(u32),
    #[error("message length {len} exceeds the limit of {max} bytes")]
    TooLong { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    #[error("unsupported frontend protocol {major}.{minor}")]
    UnsupportedVersion { major: u16, minor: u16 },
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Untagged startup-phase packet: `Some(total_len)` (including the 4 length bytes) once the whole
/// packet is in `buf`, `None` if more bytes are needed.
pub fn startup_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(len) = be_u32(buf) else {
        return Ok(None);
    };
    // The smallest valid packet is SSLRequest: length + request code.
    if len < 8 || len > i32::MAX as u32 {
        return Err(FrameError::BadLength(len));
    }
    let len = len as usize;
    if len > MAX_STARTUP_LEN {
        return Err(FrameError::TooLong {
            len,
            max: MAX_STARTUP_LEN,
        });
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Tagged message: `Some((tag, total_len))` (including tag and length) once the whole message is
/// in `buf`, `None` if more bytes are needed. `max` bounds the length field so a peer cannot make
/// us buffer without limit.
pub fn message_len(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, FrameError> {
    let (Some(&tag), Some(len)) = (buf.first(), buf.get(1..).and_then(be_u32)) else {
        return Ok(None);
    };
    if len < 4 || len > i32::MAX as u32 {
        return Err(FrameError::BadLength(len));
    }
    let len = len as usize;
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    let total = len + 1;
    Ok((buf.len() >= total).then_some((tag, total)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Ssl,
    Gss,
    Cancel {
        pid: i32,
        secret: i32,
    },
    /// Protocol 3.x. A minor version above 0 is returned as sent; the caller decides whether to
    /// answer with NegotiateProtocolVersion.
    Startup {
        major: u16,
        minor: u16,
        params: Vec<(String, String)>,
    },
}

impl StartupPacket {
    /// The value of a startup parameter, e.g. "user" or "database".
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            StartupPacket::Startup { params, .. } => params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Parses a startup-phase packet. `body` is the packet without its 4-byte length.
pub fn parse_startup(body: &[u8]) -> Result<StartupPacket, FrameError> {
    let code = be_u32(body).ok_or(FrameError::Malformed("startup packet too short"))? as i32;
    let rest = &body[4..];
    match code {
        request_code::SSL | request_code::GSS => {
            if !rest.is_empty() {
                return Err(FrameError::Malformed(
                    "trailing bytes after encryption request",
                ));
            }
            Ok(if code == request_code::SSL {
                StartupPacket::Ssl
            } else {
                StartupPacket::Gss
            })
        }
        request_code::CANCEL => {
            if rest.len() != 8 {
                return Err(FrameError::Malformed("cancel request must be 16 bytes"));
            }
            let pid = be_u32(rest).unwrap_or_default() as i32;
            let secret = be_u32(&rest[4..]).unwrap_or_default() as i32;
            Ok(StartupPacket::Cancel { pid, secret })
        }
        _ => {
            let major = (code as u32 >> 16) as u16;
            let minor = (code as u32 & 0xffff) as u16;
            if major != 3 {
                return Err(FrameError::UnsupportedVersion { major, minor });
            }
            let params = startup_params(rest)?;
            match params.iter().find(|(k, _)| k == "user") {
                Some((_, v)) if !v.is_empty() => {}
                _ => return Err(FrameError::Malformed("no user name in startup packet")),
            }
            Ok(StartupPacket::Startup {
                major,
                minor,
                params,
            })
        }
    }
}

/// Name/value C-string pairs ending with an empty name; the terminator must be the last byte.
fn startup_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, FrameError> {
    let mut params = Vec::new();
    loop {
        let (name, after) = cstr(rest)?;
        if name.is_empty() {
            if !after.is_empty() {
                return Err(FrameError::Malformed(
                    "bytes after startup packet terminator",
                ));
            }
            return Ok(params);
        }
        let (value, after) = cstr(after)?;
        params.push((name.to_owned(), value.to_owned()));
        rest = after;
    }
}

fn cstr(b: &[u8]) -> Result<(&str, &[u8]), FrameError> {
    let nul = b
        .iter()
        .position(|&c| c == 0)
        .ok_or(FrameError::Malformed("missing NUL terminator"))?;
    let s = std::str::from_utf8(&b[..nul]).map_err(|_| FrameError::Malformed("invalid UTF-8"))?;
    Ok((s, &b[nul + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::message;
    use bytes::BytesMut;

    #[test]
    fn startup_len_edges() {
        assert_eq!(startup_len(&[]), Ok(None));
        assert_eq!(startup_len(&[0, 0, 0]), Ok(None));
        assert_eq!(startup_len(&[0, 0, 0, 3]), Err(FrameError::BadLength(3)));
        assert_eq!(startup_len(&[0, 0, 0, 7]), Err(FrameError::BadLength(7)));
        assert_eq!(startup_len(&[0, 0, 0, 8, 1, 2]), Ok(None));
        assert_eq!(startup_len(&[0, 0, 0, 8, 1, 2, 3, 4, 9]), Ok(Some(8)));
        assert_eq!(
            startup_len(&[0, 0, 0x27, 0x11]),
            Err(FrameError::TooLong {
                len: 10_001,
                max: MAX_STARTUP_LEN
            })
        );
        assert_eq!(
            startup_len(&[0xff, 0xff, 0xff, 0xff]),
            Err(FrameError::BadLength(u32::MAX))
        );
    }

    #[test]
    fn message_len_edges() {
        assert_eq!(message_len(&[], MAX_MESSAGE_LEN), Ok(None));
        assert_eq!(message_len(b"Q\0\0\0", MAX_MESSAGE_LEN), Ok(None));
        assert_eq!(
            message_len(b"Q\0\0\0\x03", MAX_MESSAGE_LEN),
            Err(FrameError::BadLength(3))
        );
        assert_eq!(
            message_len(b"Q\0\0\0\x00", MAX_MESSAGE_LEN),
            Err(FrameError::BadLength(0))
        );
        assert_eq!(
            message_len(b"S\0\0\0\x04", MAX_MESSAGE_LEN),
            Ok(Some((b'S', 5)))
        );
        assert_eq!(message_len(b"Q\0\0\0\x06a", MAX_MESSAGE_LEN), Ok(None));
        assert_eq!(
            message_len(b"Q\0\0\0\x06a\0S", MAX_MESSAGE_LEN),
            Ok(Some((b'Q', 7)))
        );
        assert_eq!(
            message_len(b"D\x40\0\0\x01", MAX_MESSAGE_LEN),
            Err(FrameError::TooLong {
                len: (1 << 30) + 1,
                max: MAX_MESSAGE_LEN
            })
        );
        assert_eq!(
            message_len(b"D\x80\0\0\0", usize::MAX),
            Err(FrameError::BadLength(0x8000_0000))
        );
        assert_eq!(
            message_len(b"D\0\0\0\x09", 8),
            Err(FrameError::TooLong { len: 9, max: 8 })
        );
    }

    #[test]
    fn every_builder_frames_to_its_own_length() {
        let mut b = BytesMut::new();
        message::query(&mut b, "select 1");
        message::parse(&mut b, "s", "select $1", &[25]);
        message::sync(&mut b);
        message::error_response(&mut b, "FATAL", "57P01", "bye");
        let mut at = 0;
        let mut tags = vec![];
        while let Some((tag, n)) = message_len(&b[at..], MAX_MESSAGE_LEN).unwrap() {
            tags.push(tag);
            at += n;
        }
        assert_eq!(at, b.len());
        assert_eq!(tags, b"QPSE");
    }

    fn body_of(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        f(&mut b);
        let n = startup_len(&b).unwrap().unwrap();
        assert_eq!(n, b.len());
        b[4..].to_vec()
    }

    #[test]
    fn startup_roundtrip() {
        let params = vec![
            ("user".to_string(), "alice".to_string()),
            ("database".to_string(), "db ü".to_string()),
            ("options".to_string(), String::new()),
        ];
        let body = body_of(|o| message::startup_message(o, &params));
        let p = parse_startup(&body).unwrap();
        assert_eq!(
            p,
            StartupPacket::Startup {
                major: 3,
                minor: 0,
                params: params.clone()
            }
        );
        assert_eq!(p.param("database"), Some("db ü"));
        assert_eq!(p.param("nope"), None);
    }

    #[test]
    fn special_requests() {
        assert_eq!(
            parse_startup(&80877103u32.to_be_bytes()),
            Ok(StartupPacket::Ssl)
        );
        assert_eq!(
            parse_startup(&80877104u32.to_be_bytes()),
            Ok(StartupPacket::Gss)
        );
        let body = body_of(|o| message::cancel_request(o, 4242, -7));
        assert_eq!(
            parse_startup(&body),
            Ok(StartupPacket::Cancel {
                pid: 4242,
                secret: -7
            })
        );
        assert!(matches!(
            parse_startup(&body[..11]),
            Err(FrameError::Malformed(_))
        ));
        let mut ssl_plus = 80877103u32.to_be_bytes().to_vec();
        ssl_plus.push(0);
        assert!(matches!(
            parse_startup(&ssl_plus),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn bad_startups() {
        assert!(matches!(parse_startup(&[]), Err(FrameError::Malformed(_))));
        assert!(matches!(
            parse_startup(&[0, 3]),
            Err(FrameError::Malformed(_))
        ));
        // protocol 2.0
        let mut v2 = 0x0002_0000u32.to_be_bytes().to_vec();
        v2.extend_from_slice(b"user\0a\0\0");
        assert_eq!(
            parse_startup(&v2),
            Err(FrameError::UnsupportedVersion { major: 2, minor: 0 })
        );
        // 3.2 is accepted and reported
        let mut v32 = 0x0003_0002u32.to_be_bytes().to_vec();
        v32.extend_from_slice(b"user\0a\0\0");
        assert!(matches!(
            parse_startup(&v32),
            Ok(StartupPacket::Startup { minor: 2, .. })
        ));

        let v3 = 0x0003_0000u32.to_be_bytes();
        let with = |tail: &[u8]| {
            let mut b = v3.to_vec();
            b.extend_from_slice(tail);
            parse_startup(&b)
        };
        // missing user, empty user
        assert!(matches!(
            with(b"database\0x\0\0"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(with(b"user\0\0\0"), Err(FrameError::Malformed(_))));
        assert!(matches!(with(b"\0"), Err(FrameError::Malformed(_))));
        // not NUL-terminated: no final terminator, value cut, name cut
        assert!(matches!(with(b"user\0a\0"), Err(FrameError::Malformed(_))));
        assert!(matches!(with(b"user\0a"), Err(FrameError::Malformed(_))));
        assert!(matches!(with(b"user"), Err(FrameError::Malformed(_))));
        assert!(matches!(with(b""), Err(FrameError::Malformed(_))));
        // bytes after the terminator
        assert!(matches!(
            with(b"user\0a\0\0x"),
            Err(FrameError::Malformed(_))
        ));
        // invalid UTF-8 in a value and in a name
        assert!(matches!(
            with(b"user\0\xff\0\0"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            with(b"us\xc3er\0a\0\0"),
            Err(FrameError::Malformed(_))
        ));
        assert!(with(b"user\0a\0\0").is_ok());
    }
}
