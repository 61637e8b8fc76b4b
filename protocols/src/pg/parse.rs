//! Parsers over a message body (the bytes after tag and length). They borrow from the body where
//! they can, reject trailing bytes, and never panic: every read is bounds-checked.

use super::frame::FrameError;
use super::message::auth_code;

/// A bounds-checked cursor over a message body.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Malformed("message body too short"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.bytes(1)?[0])
    }

    fn i16(&mut self) -> Result<i16, FrameError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count field: Int16 that must not be negative.
    fn count(&mut self) -> Result<usize, FrameError> {
        usize::try_from(self.i16()?).map_err(|_| FrameError::Malformed("negative count"))
    }

    /// Int32 length then that many bytes; -1 means NULL.
    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, FrameError> {
        match self.i32()? {
            -1 => Ok(None),
            n => {
                let n = usize::try_from(n).map_err(|_| FrameError::Malformed("negative length"))?;
                self.bytes(n).map(Some)
            }
        }
    }

    fn cstr_bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let nul = self
            .buf
            .iter()
            .position(|&c| c == 0)
            .ok_or(FrameError::Malformed("missing NUL terminator"))?;
        let s = &self.buf[..nul];
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }

    fn cstr(&mut self) -> Result<&'a str, FrameError> {
        std::str::from_utf8(self.cstr_bytes()?).map_err(|_| FrameError::Malformed("invalid UTF-8"))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed("trailing bytes in message"))
        }
    }

    /// Reads `n` items without trusting `n` for the allocation: each item needs at least
    /// `min_item` bytes, so the remaining body bounds the capacity.
    fn list<T>(
        &mut self,
        n: usize,
        min_item: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, FrameError>,
    ) -> Result<Vec<T>, FrameError> {
        let mut v = Vec::with_capacity(n.min(self.buf.len() / min_item.max(1)));
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }
}

/// An 'R' message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    Ok,
    CleartextPassword,
    Md5Password {
        salt: [u8; 4],
    },
    Sasl {
        mechanisms: Vec<String>,
    },
    SaslContinue(Vec<u8>),
    SaslFinal(Vec<u8>),
    /// Kerberos, GSS, SSPI and anything newer: the request code as sent.
    Other(i32),
}

pub fn authentication(body: &[u8]) -> Result<Authentication, FrameError> {
    let mut r = Reader::new(body);
    let auth = match r.i32()? {
        auth_code::OK => Authentication::Ok,
        auth_code::CLEARTEXT_PASSWORD => Authentication::CleartextPassword,
        auth_code::MD5_PASSWORD => {
            let s = r.bytes(4)?;
            Authentication::Md5Password {
                salt: [s[0], s[1], s[2], s[3]],
            }
        }
        auth_code::SASL => {
            let mut mechanisms = Vec::new();
            loop {
                let m = r.cstr()?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m.to_owned());
            }
            Authentication::Sasl { mechanisms }
        }
        auth_code::SASL_CONTINUE => Authentication::SaslContinue(r.rest().to_vec()),
        auth_code::SASL_FINAL => Authentication::SaslFinal(r.rest().to_vec()),
        other => return Ok(Authentication::Other(other)),
    };
    r.finish()?;
    Ok(auth)
}

/// 'S' from the backend: (name, value).
pub fn parameter_status(body: &[u8]) -> Result<(String, String), FrameError> {
    let mut r = Reader::new(body);
    let name = r.cstr()?.to_owned();
    let value = r.cstr()?.to_owned();
    r.finish()?;
    Ok((name, value))
}

/// 'K': (pid, secret).
pub fn backend_key_data(body: &[u8]) -> Result<(i32, i32), FrameError> {
    let mut r = Reader::new(body);
    let pid = r.i32()?;
    let secret = r.i32()?;
    r.finish()?;
    Ok((pid, secret))
}

/// The fields of an 'E' or 'N' message that the proxy acts on or passes along.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// The non-localized severity ('V') when sent, else the localized one ('S').
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub fn error_fields(body: &[u8]) -> Result<ErrorFields, FrameError> {
    let mut r = Reader::new(body);
    let mut f = ErrorFields::default();
    let mut have_v = false;
    loop {
        let kind = r.u8()?;
        if kind == 0 {
            break;
        }
        // Servers may send text in a non-UTF-8 client_encoding; don't fail the whole message.
        let value = String::from_utf8_lossy(r.cstr_bytes()?).into_owned();
        match kind {
            b'V' => {
                f.severity = value;
                have_v = true;
            }
            b'S' if !have_v => f.severity = value,
            b'C' => f.code = value,
            b'M' => f.message = value,
            b'D' => f.detail = Some(value),
            b'H' => f.hint = Some(value),
            _ => {}
        }
    }
    r.finish()?;
    Ok(f)
}

/// 'D': column values, `None` for NULL.
pub fn data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, FrameError> {
    let mut r = Reader::new(body);
    let n = r.count()?;
    let row = r.list(n, 4, |r| r.nullable_bytes())?;
    r.finish()?;
    Ok(row)
}

/// 'C' from the backend: the command tag, e.g. "INSERT 0 1".
pub fn command_complete(body: &[u8]) -> Result<&str, FrameError> {
    let mut r = Reader::new(body);
    let tag = r.cstr()?;
    r.finish()?;
    Ok(tag)
}

/// 'A': (pid, channel, payload).
pub fn notification_response(body: &[u8]) -> Result<(i32, &str, &str), FrameError> {
    let mut r = Reader::new(body);
    let pid = r.i32()?;
    let channel = r.cstr()?;
    let payload = r.cstr()?;
    r.finish()?;
    Ok((pid, channel, payload))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    pub name: &'a str,
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    pub format: i16,
}

/// 'T': one entry per result column.
pub fn row_description(body: &[u8]) -> Result<Vec<FieldDescription<'_>>, FrameError> {
    let mut r = Reader::new(body);
    let n = r.count()?;
    let fields = r.list(n, 19, |r| {
        Ok(FieldDescription {
            name: r.cstr()?,
            table_oid: r.i32()? as u32,
            column: r.i16()?,
            type_oid: r.i32()? as u32,
            type_size: r.i16()?,
            type_modifier: r.i32()?,
            format: r.i16()?,
        })
    })?;
    r.finish()?;
    Ok(fields)
}

/// 't': parameter type OIDs of a described statement.
pub fn parameter_description(body: &[u8]) -> Result<Vec<u32>, FrameError> {
    let mut r = Reader::new(body);
    let n = r.count()?;
    let types = r.list(n, 4, |r| Ok(r.i32()? as u32))?;
    r.finish()?;
    Ok(types)
}

/// 'Z': the transaction status byte, b'I', b'T' or b'E'.
pub fn ready_for_query(body: &[u8]) -> Result<u8, FrameError> {
    let mut r = Reader::new(body);
    let s = r.u8()?;
    r.finish()?;
    match s {
        b'I' | b'T' | b'E' => Ok(s),
        _ => Err(FrameError::Malformed("unknown transaction status")),
    }
}

/// Frontend 'P'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMessage<'a> {
    pub name: &'a str,
    pub query: &'a str,
    pub param_types: Vec<u32>,
}

pub fn parse_message(body: &[u8]) -> Result<ParseMessage<'_>, FrameError> {
    let mut r = Reader::new(body);
    let name = r.cstr()?;
    let query = r.cstr()?;
    let n = r.count()?;
    let param_types = r.list(n, 4, |r| Ok(r.i32()? as u32))?;
    r.finish()?;
    Ok(ParseMessage {
        name,
        query,
        param_types,
    })
}

/// Frontend 'B'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMessage<'a> {
    pub portal: &'a str,
    pub statement: &'a str,
    pub param_formats: Vec<i16>,
    pub params: Vec<Option<&'a [u8]>>,
    pub result_formats: Vec<i16>,
}

pub fn bind_message(body: &[u8]) -> Result<BindMessage<'_>, FrameError> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let statement = r.cstr()?;
    let n = r.count()?;
    let param_formats = r.list(n, 2, |r| r.i16())?;
    let n = r.count()?;
    let params = r.list(n, 4, |r| r.nullable_bytes())?;
    let n = r.count()?;
    let result_formats = r.list(n, 2, |r| r.i16())?;
    r.finish()?;
    Ok(BindMessage {
        portal,
        statement,
        param_formats,
        params,
        result_formats,
    })
}

/// b'S' or b'P' then a name: the body of frontend Close and Describe.
fn kind_and_name(body: &[u8]) -> Result<(u8, &str), FrameError> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    if kind != b'S' && kind != b'P' {
        return Err(FrameError::Malformed("expected 'S' or 'P'"));
    }
    let name = r.cstr()?;
    r.finish()?;
    Ok((kind, name))
}

/// Frontend 'C': (b'S' statement | b'P' portal, name).
pub fn close_message(body: &[u8]) -> Result<(u8, &str), FrameError> {
    kind_and_name(body)
}

/// Frontend 'D': (b'S' statement | b'P' portal, name).
pub fn describe_message(body: &[u8]) -> Result<(u8, &str), FrameError> {
    kind_and_name(body)
}

/// Frontend 'E': (portal, max_rows).
pub fn execute_message(body: &[u8]) -> Result<(&str, i32), FrameError> {
    let mut r = Reader::new(body);
    let portal = r.cstr()?;
    let max_rows = r.i32()?;
    r.finish()?;
    Ok((portal, max_rows))
}

/// Frontend 'Q': the SQL text.
pub fn query_message(body: &[u8]) -> Result<&str, FrameError> {
    let mut r = Reader::new(body);
    let sql = r.cstr()?;
    r.finish()?;
    Ok(sql)
}

/// Frontend 'p' during cleartext or md5 auth: the password bytes without the NUL.
pub fn password_message(body: &[u8]) -> Result<&[u8], FrameError> {
    let mut r = Reader::new(body);
    let p = r.cstr_bytes()?;
    r.finish()?;
    Ok(p)
}

/// Frontend 'p' as SASLInitialResponse: (mechanism, initial data). A length of -1 means no
/// initial data and is returned as an empty slice.
pub fn sasl_initial_response(body: &[u8]) -> Result<(&str, &[u8]), FrameError> {
    let mut r = Reader::new(body);
    let mechanism = r.cstr()?;
    let data = r.nullable_bytes()?.unwrap_or_default();
    r.finish()?;
    Ok((mechanism, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::frame::{MAX_MESSAGE_LEN, message_len};
    use crate::pg::message::{self, tag};
    use bytes::BytesMut;

    /// Builds one message, checks its framing and tag, and returns the body.
    fn body(expect_tag: u8, f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        f(&mut b);
        let (t, n) = message_len(&b, MAX_MESSAGE_LEN).unwrap().unwrap();
        assert_eq!((t, n), (expect_tag, b.len()));
        b[5..].to_vec()
    }

    #[test]
    fn authentication_roundtrips() {
        let b = body(tag::AUTHENTICATION, message::auth_ok);
        assert_eq!(authentication(&b), Ok(Authentication::Ok));
        let b = body(tag::AUTHENTICATION, message::auth_cleartext_password);
        assert_eq!(authentication(&b), Ok(Authentication::CleartextPassword));
        let b = body(tag::AUTHENTICATION, |o| {
            message::auth_md5_password(o, [1, 2, 3, 4])
        });
        assert_eq!(
            authentication(&b),
            Ok(Authentication::Md5Password { salt: [1, 2, 3, 4] })
        );
        let b = body(tag::AUTHENTICATION, |o| {
            message::auth_sasl(o, &["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"])
        });
        assert_eq!(
            authentication(&b),
            Ok(Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-256-PLUS".into()]
            })
        );
        let b = body(tag::AUTHENTICATION, |o| {
            message::auth_sasl_continue(o, b"r=x")
        });
        assert_eq!(
            authentication(&b),
            Ok(Authentication::SaslContinue(b"r=x".to_vec()))
        );
        let b = body(tag::AUTHENTICATION, |o| message::auth_sasl_final(o, b"v=y"));
        assert_eq!(
            authentication(&b),
            Ok(Authentication::SaslFinal(b"v=y".to_vec()))
        );
        assert_eq!(
            authentication(&7i32.to_be_bytes()),
            Ok(Authentication::Other(7))
        );
    }

    #[test]
    fn authentication_rejects_bad_bodies() {
        assert!(authentication(&[0, 0, 0]).is_err());
        assert!(authentication(&[0, 0, 0, 0, 1]).is_err()); // Ok with trailing byte
        assert!(authentication(&[0, 0, 0, 5, 1, 2, 3]).is_err()); // short salt
        assert!(authentication(&[0, 0, 0, 10, b'S', 0]).is_err()); // no list terminator
        assert!(authentication(&[0, 0, 0, 10, b'S']).is_err());
    }

    #[test]
    fn backend_messages_roundtrip() {
        let b = body(tag::PARAMETER_STATUS, |o| {
            message::parameter_status(o, "TimeZone", "UTC")
        });
        assert_eq!(
            parameter_status(&b),
            Ok(("TimeZone".to_string(), "UTC".to_string()))
        );
        let b = body(tag::BACKEND_KEY_DATA, |o| {
            message::backend_key_data(o, 99, i32::MIN)
        });
        assert_eq!(backend_key_data(&b), Ok((99, i32::MIN)));
        assert!(backend_key_data(&b[..7]).is_err());

        for s in [b'I', b'T', b'E'] {
            let b = body(tag::READY_FOR_QUERY, |o| message::ready_for_query(o, s));
            assert_eq!(ready_for_query(&b), Ok(s));
        }
        assert!(ready_for_query(b"X").is_err());
        assert!(ready_for_query(b"").is_err());
        assert!(ready_for_query(b"II").is_err());

        let b = body(tag::COMMAND_COMPLETE, |o| {
            message::command_complete(o, "INSERT 0 1")
        });
        assert_eq!(command_complete(&b), Ok("INSERT 0 1"));

        let b = body(tag::NOTIFICATION_RESPONSE, |o| {
            message::notification_response(o, 5, "ch", "hi")
        });
        assert_eq!(notification_response(&b), Ok((5, "ch", "hi")));

        let row: Vec<Option<&[u8]>> = vec![Some(b"1"), None, Some(b"")];
        let b = body(tag::DATA_ROW, |o| message::data_row(o, &row));
        assert_eq!(data_row(&b), Ok(row));
    }

    #[test]
    fn error_and_notice_fields() {
        let b = body(tag::ERROR_RESPONSE, |o| {
            message::error_response(o, "FATAL", "57P01", "terminating")
        });
        assert_eq!(
            error_fields(&b),
            Ok(ErrorFields {
                severity: "FATAL".into(),
                code: "57P01".into(),
                message: "terminating".into(),
                detail: None,
                hint: None,
            })
        );
        let b = body(tag::NOTICE_RESPONSE, |o| {
            message::notice_response(o, "NOTICE", "00000", "hello")
        });
        assert_eq!(error_fields(&b).unwrap().message, "hello");

        // localized S before V, plus detail and hint and an unknown field
        let raw = b"SFEHLER\0VERROR\0C42P01\0Mno table\0Dd\0Hh\0Wctx\0\0";
        let f = error_fields(raw).unwrap();
        assert_eq!(f.severity, "ERROR");
        assert_eq!(f.detail.as_deref(), Some("d"));
        assert_eq!(f.hint.as_deref(), Some("h"));
        assert!(error_fields(b"SERROR\0").is_err()); // no terminator
        assert!(error_fields(b"SERROR").is_err());
        assert!(error_fields(b"\0x").is_err());
    }

    #[test]
    fn data_row_rejects_bad_lengths() {
        assert!(data_row(&[0xff, 0xff]).is_err()); // negative count
        assert!(data_row(&[0, 1, 0xff, 0xff, 0xff, 0xfe]).is_err()); // length -2
        assert!(data_row(&[0, 1, 0, 0, 0, 5, b'a']).is_err()); // short value
        assert!(data_row(&[0, 2, 0xff, 0xff, 0xff, 0xff]).is_err()); // missing column
        assert!(data_row(&[0, 0, 1]).is_err()); // trailing
        assert_eq!(data_row(&[0, 0]), Ok(vec![]));
        // a huge claimed count with a tiny body must fail, not allocate
        assert!(data_row(&[0x7f, 0xff]).is_err());
    }

    #[test]
    fn row_and_parameter_description() {
        let mut raw = vec![0, 1];
        raw.extend_from_slice(b"id\0");
        raw.extend_from_slice(&16384u32.to_be_bytes());
        raw.extend_from_slice(&1i16.to_be_bytes());
        raw.extend_from_slice(&23u32.to_be_bytes());
        raw.extend_from_slice(&4i16.to_be_bytes());
        raw.extend_from_slice(&(-1i32).to_be_bytes());
        raw.extend_from_slice(&0i16.to_be_bytes());
        let f = row_description(&raw).unwrap();
        assert_eq!(
            f,
            vec![FieldDescription {
                name: "id",
                table_oid: 16384,
                column: 1,
                type_oid: 23,
                type_size: 4,
                type_modifier: -1,
                format: 0
            }]
        );
        assert!(row_description(&raw[..raw.len() - 1]).is_err());
        assert_eq!(
            parameter_description(&[0, 2, 0, 0, 0, 23, 0, 0, 0, 25]),
            Ok(vec![23, 25])
        );
        assert!(parameter_description(&[0, 2, 0, 0, 0, 23]).is_err());
    }

    #[test]
    fn frontend_messages_roundtrip() {
        let b = body(tag::QUERY, |o| message::query(o, "select 'ü'"));
        assert_eq!(query_message(&b), Ok("select 'ü'"));
        assert!(query_message(b"select").is_err());
        assert!(query_message(b"a\0b").is_err());
        assert!(query_message(b"\xff\0").is_err());

        let b = body(tag::PARSE, |o| {
            message::parse(o, "st", "select $1, $2", &[23, 0])
        });
        assert_eq!(
            parse_message(&b),
            Ok(ParseMessage {
                name: "st",
                query: "select $1, $2",
                param_types: vec![23, 0]
            })
        );
        assert!(parse_message(&b[..b.len() - 2]).is_err());
        assert!(parse_message(b"s\0q\0\xff\xff").is_err());

        let b = body(tag::BIND, |o| {
            message::bind_text(o, "p", "st", &[Some(b"42"), None])
        });
        assert_eq!(
            bind_message(&b),
            Ok(BindMessage {
                portal: "p",
                statement: "st",
                param_formats: vec![],
                params: vec![Some(&b"42"[..]), None],
                result_formats: vec![],
            })
        );

        for kind in [b'S', b'P'] {
            let b = body(tag::CLOSE, |o| message::close(o, kind, "x"));
            assert_eq!(close_message(&b), Ok((kind, "x")));
            let b = body(tag::DESCRIBE, |o| message::describe(o, kind, ""));
            assert_eq!(describe_message(&b), Ok((kind, "")));
        }
        assert!(close_message(b"Qx\0").is_err());
        assert!(close_message(b"").is_err());

        let b = body(tag::EXECUTE, |o| message::execute(o, "", 10));
        assert_eq!(execute_message(&b), Ok(("", 10)));

        let b = body(tag::PASSWORD, |o| message::password_message(o, b"md5abc"));
        assert_eq!(password_message(&b), Ok(&b"md5abc"[..]));
    }

    #[test]
    fn sasl_initial_response_forms() {
        let b = body(tag::PASSWORD, |o| {
            message::sasl_initial_response(o, "SCRAM-SHA-256", b"n,,n=,r=abc")
        });
        assert_eq!(
            sasl_initial_response(&b),
            Ok(("SCRAM-SHA-256", &b"n,,n=,r=abc"[..]))
        );
        let minus_one = b"SCRAM-SHA-256\0\xff\xff\xff\xff";
        assert_eq!(
            sasl_initial_response(minus_one),
            Ok(("SCRAM-SHA-256", &b""[..]))
        );
        assert!(sasl_initial_response(b"SCRAM-SHA-256\0\0\0\0\x05abc").is_err());
        assert!(sasl_initial_response(b"SCRAM-SHA-256\0\xff\xff\xff\xfe").is_err());
        assert!(sasl_initial_response(b"SCRAM-SHA-256\0\0\0\0\x01ab").is_err());
        assert!(sasl_initial_response(b"SCRAM-SHA-256").is_err());

        let b = body(tag::PASSWORD, |o| message::sasl_response(o, b"c=biws"));
        assert_eq!(b, b"c=biws");
    }

    /// Random bytes into every parser and framer: errors are fine, panics are not. Half the
    /// inputs start from a valid message body so the parsers get past their first field.
    #[test]
    fn random_bytes_never_panic() {
        use crate::pg::frame::{message_len, parse_startup, startup_len};
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x70_72_6f_74);
        let seeds: Vec<Vec<u8>> = vec![
            body(tag::PARSE, |o| message::parse(o, "s", "select $1", &[23])),
            body(tag::BIND, |o| {
                message::bind_text(o, "", "s", &[Some(b"1"), None])
            }),
            body(tag::DATA_ROW, |o| message::data_row(o, &[Some(b"x"), None])),
            body(tag::ERROR_RESPONSE, |o| {
                message::error_response(o, "ERROR", "XX000", "m")
            }),
            body(tag::AUTHENTICATION, |o| {
                message::auth_sasl(o, &["SCRAM-SHA-256"])
            }),
            vec![0, 3, 0, 0, b'u', b's', b'e', b'r', 0, b'a', 0, 0],
        ];
        for i in 0..100_000 {
            let mut input = if i % 2 == 0 {
                seeds[i % seeds.len()].clone()
            } else {
                Vec::new()
            };
            let len = rng.random_range(0..32);
            input.extend((0..len).map(|_| rng.random::<u8>()));
            if !input.is_empty() && rng.random_bool(0.5) {
                let at = rng.random_range(0..input.len());
                input[at] = rng.random();
                input.truncate(rng.random_range(0..=input.len()));
            }
            let b = &input[..];
            let _ = authentication(b);
            let _ = parameter_status(b);
            let _ = backend_key_data(b);
            let _ = error_fields(b);
            let _ = data_row(b);
            let _ = command_complete(b);
            let _ = notification_response(b);
            let _ = row_description(b);
            let _ = parameter_description(b);
            let _ = ready_for_query(b);
            let _ = parse_message(b);
            let _ = bind_message(b);
            let _ = close_message(b);
            let _ = describe_message(b);
            let _ = execute_message(b);
            let _ = query_message(b);
            let _ = password_message(b);
            let _ = sasl_initial_response(b);
            let _ = parse_startup(b);
            let _ = startup_len(b);
            let _ = message_len(b, MAX_MESSAGE_LEN);
            let _ = message_len(b, 16);
            if let Ok(Some((_, n))) = message_len(b, usize::MAX) {
                assert!(n <= b.len());
            }
            if let Ok(Some(n)) = startup_len(b) {
                assert!(n <= b.len());
            }
        }
    }
}
