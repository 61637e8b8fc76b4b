//! Message builders. Each function appends exactly one complete message (tag, length, body) to
//! `out`, so callers can pipeline several messages into one buffer and write it once.

use bytes::{BufMut, BytesMut};

/// Message type bytes. Frontend and backend reuse some letters with different meanings, so the
/// shared values get one name per direction.
pub mod tag {
    // frontend → backend
    pub const QUERY: u8 = b'Q';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const DESCRIBE: u8 = b'D';
    pub const EXECUTE: u8 = b'E';
    pub const SYNC: u8 = b'S';
    pub const FLUSH: u8 = b'H';
    pub const CLOSE: u8 = b'C';
    pub const TERMINATE: u8 = b'X';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';
    pub const FUNCTION_CALL: u8 = b'F';
    /// PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse all use 'p'.
    pub const PASSWORD: u8 = b'p';

    // backend → frontend
    pub const AUTHENTICATION: u8 = b'R';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const PARSE_COMPLETE: u8 = b'1';
    pub const BIND_COMPLETE: u8 = b'2';
    pub const CLOSE_COMPLETE: u8 = b'3';
    pub const NO_DATA: u8 = b'n';
    pub const PORTAL_SUSPENDED: u8 = b's';
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    pub const BACKEND_COPY_DATA: u8 = b'd';
    pub const BACKEND_COPY_DONE: u8 = b'c';
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
}

/// Authentication request codes carried in the first Int32 of an 'R' message.
pub mod auth_code {
    pub const OK: i32 = 0;
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    pub const MD5_PASSWORD: i32 = 5;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

/// Startup-phase request codes (the Int32 where a protocol version would be).
pub mod request_code {
    pub const CANCEL: i32 = 80_877_102;
    pub const SSL: i32 = 80_877_103;
    pub const GSS: i32 = 80_877_104;
    /// Protocol 3.0 as sent in StartupMessage.
    pub const PROTOCOL_3_0: i32 = 196_608;
}

/// `pub fn name(out)` for each message that is only its tag and length.
macro_rules! bodiless {
    ($($name:ident = $tag:ident),* $(,)?) => {$(
        pub fn $name(out: &mut BytesMut) {
            tagged(out, tag::$tag, |_| {});
        }
    )*};
}

/// Writes `tag`, a length placeholder, runs `body`, then patches the length. The length field
/// counts itself but not the tag.
fn tagged(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let len_at = out.len();
    out.put_i32(0);
    body(out);
    patch_len(out, len_at);
}

/// Same as [`tagged`] for the untagged startup-phase packets.
fn untagged(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let len_at = out.len();
    out.put_i32(0);
    body(out);
    patch_len(out, len_at);
}

fn patch_len(out: &mut BytesMut, len_at: usize) {
    // Messages we build are small; saturate rather than wrap if a caller ever hands us >2 GiB.
    let len = i32::try_from(out.len() - len_at).unwrap_or(i32::MAX);
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// A C string: the bytes then NUL. Interior NULs would truncate the string on the other side, so
/// they are cut here, where the truncation is at least deterministic.
fn put_cstr(out: &mut BytesMut, s: &[u8]) {
    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
    out.put_slice(&s[..end]);
    out.put_u8(0);
}

fn put_len_i32(out: &mut BytesMut, n: usize) {
    out.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
}

// ---------------------------------------------------------------- backend → client

pub fn auth_ok(out: &mut BytesMut) {
    tagged(out, tag::AUTHENTICATION, |o| o.put_i32(auth_code::OK));
}

pub fn auth_cleartext_password(out: &mut BytesMut) {
    tagged(out, tag::AUTHENTICATION, |o| {
        o.put_i32(auth_code::CLEARTEXT_PASSWORD)
    });
}

pub fn auth_md5_password(out: &mut BytesMut, salt: [u8; 4]) {
    tagged(out, tag::AUTHENTICATION, |o| {
        o.put_i32(auth_code::MD5_PASSWORD);
        o.put_slice(&salt);
    });
}

pub fn auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    tagged(out, tag::AUTHENTICATION, |o| {
        o.put_i32(auth_code::SASL);
        for m in mechanisms {
            put_cstr(o, m.as_bytes());
        }
        o.put_u8(0);
    });
}

pub fn auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    tagged(out, tag::AUTHENTICATION, |o| {
        o.put_i32(auth_code::SASL_CONTINUE);
        o.put_slice(data);
    });
}

pub fn auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    tagged(out, tag::AUTHENTICATION, |o| {
        o.put_i32(auth_code::SASL_FINAL);
        o.put_slice(data);
    });
}

pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    tagged(out, tag::PARAMETER_STATUS, |o| {
        put_cstr(o, name.as_bytes());
        put_cstr(o, value.as_bytes());
    });
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    tagged(out, tag::BACKEND_KEY_DATA, |o| {
        o.put_i32(pid);
        o.put_i32(secret);
    });
}

/// `status` is b'I' (idle), b'T' (in transaction) or b'E' (failed transaction).
pub fn ready_for_query(out: &mut BytesMut, status: u8) {
    tagged(out, tag::READY_FOR_QUERY, |o| o.put_u8(status));
}

fn notice_fields(out: &mut BytesMut, tag: u8, severity: &str, code: &str, message: &str) {
    tagged(out, tag, |o| {
        // 'S' is localized, 'V' never is; we send the same English word in both.
        o.put_u8(b'S');
        put_cstr(o, severity.as_bytes());
        o.put_u8(b'V');
        put_cstr(o, severity.as_bytes());
        o.put_u8(b'C');
        put_cstr(o, code.as_bytes());
        o.put_u8(b'M');
        put_cstr(o, message.as_bytes());
        o.put_u8(0);
    });
}

/// 'E' with fields S and V (both `severity`), C (SQLSTATE) and M.
pub fn error_response(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    notice_fields(out, tag::ERROR_RESPONSE, severity, code, message);
}

/// 'N' with the same fields as [`error_response`].
pub fn notice_response(out: &mut BytesMut, severity: &str, code: &str, message: &str) {
    notice_fields(out, tag::NOTICE_RESPONSE, severity, code, message);
}

pub fn command_complete(out: &mut BytesMut, command_tag: &str) {
    tagged(out, tag::COMMAND_COMPLETE, |o| {
        put_cstr(o, command_tag.as_bytes())
    });
}

bodiless!(
    empty_query_response = EMPTY_QUERY_RESPONSE,
    parse_complete = PARSE_COMPLETE,
    bind_complete = BIND_COMPLETE,
    portal_suspended = PORTAL_SUSPENDED,
    no_data = NO_DATA,
    close_complete = CLOSE_COMPLETE,
);

/// ParameterDescription with these type oids.
pub fn parameter_description(out: &mut BytesMut, types: &[u32]) {
    tagged(out, tag::PARAMETER_DESCRIPTION, |o| {
        o.put_i16(i16::try_from(types.len()).unwrap_or(i16::MAX));
        for t in types {
            o.put_u32(*t);
        }
    });
}

/// One RowDescription field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a str,
    pub table_oid: u32,
    pub column: i16,
    pub type_oid: u32,
    pub type_len: i16,
    pub type_mod: i32,
    pub format: i16,
}

pub fn row_description(out: &mut BytesMut, fields: &[Field<'_>]) {
    tagged(out, tag::ROW_DESCRIPTION, |o| {
        o.put_i16(i16::try_from(fields.len()).unwrap_or(i16::MAX));
        for f in fields {
            put_cstr(o, f.name.as_bytes());
            o.put_u32(f.table_oid);
            o.put_i16(f.column);
            o.put_u32(f.type_oid);
            o.put_i16(f.type_len);
            o.put_i32(f.type_mod);
            o.put_i16(f.format);
        }
    });
}

pub fn notification_response(out: &mut BytesMut, pid: i32, channel: &str, payload: &str) {
    tagged(out, tag::NOTIFICATION_RESPONSE, |o| {
        o.put_i32(pid);
        put_cstr(o, channel.as_bytes());
        put_cstr(o, payload.as_bytes());
    });
}

/// A DataRow; `None` is SQL NULL.
pub fn data_row(out: &mut BytesMut, values: &[Option<&[u8]>]) {
    tagged(out, tag::DATA_ROW, |o| {
        o.put_i16(i16::try_from(values.len()).unwrap_or(i16::MAX));
        for v in values {
            match v {
                Some(b) => {
                    put_len_i32(o, b.len());
                    o.put_slice(b);
                }
                None => o.put_i32(-1),
            }
        }
    });
}

// ---------------------------------------------------------------- client → backend

/// StartupMessage for protocol 3.0. `params` must include "user".
pub fn startup_message(out: &mut BytesMut, params: &[(String, String)]) {
    untagged(out, |o| {
        o.put_i32(request_code::PROTOCOL_3_0);
        for (k, v) in params {
            put_cstr(o, k.as_bytes());
            put_cstr(o, v.as_bytes());
        }
        o.put_u8(0);
    });
}

pub fn ssl_request(out: &mut BytesMut) {
    untagged(out, |o| o.put_i32(request_code::SSL));
}

pub fn cancel_request(out: &mut BytesMut, pid: i32, secret: i32) {
    untagged(out, |o| {
        o.put_i32(request_code::CANCEL);
        o.put_i32(pid);
        o.put_i32(secret);
    });
}

/// PasswordMessage for cleartext or md5 auth: the password as a C string.
pub fn password_message(out: &mut BytesMut, password: &[u8]) {
    tagged(out, tag::PASSWORD, |o| put_cstr(o, password));
}

pub fn sasl_initial_response(out: &mut BytesMut, mechanism: &str, data: &[u8]) {
    tagged(out, tag::PASSWORD, |o| {
        put_cstr(o, mechanism.as_bytes());
        put_len_i32(o, data.len());
        o.put_slice(data);
    });
}

pub fn sasl_response(out: &mut BytesMut, data: &[u8]) {
    tagged(out, tag::PASSWORD, |o| o.put_slice(data));
}

pub fn query(out: &mut BytesMut, sql: &str) {
    tagged(out, tag::QUERY, |o| put_cstr(o, sql.as_bytes()));
}

/// Parse; a `param_types` entry of 0 leaves that parameter's type to the server.
pub fn parse(out: &mut BytesMut, name: &str, sql: &str, param_types: &[u32]) {
    tagged(out, tag::PARSE, |o| {
        put_cstr(o, name.as_bytes());
        put_cstr(o, sql.as_bytes());
        o.put_i16(i16::try_from(param_types.len()).unwrap_or(i16::MAX));
        for t in param_types.iter().take(i16::MAX as usize) {
            o.put_u32(*t);
        }
    });
}

/// Bind with all parameters and results in text format; `None` is SQL NULL.
pub fn bind_text(out: &mut BytesMut, portal: &str, statement: &str, params: &[Option<&[u8]>]) {
    tagged(out, tag::BIND, |o| {
        put_cstr(o, portal.as_bytes());
        put_cstr(o, statement.as_bytes());
        o.put_i16(0); // no parameter format codes: all text
        o.put_i16(i16::try_from(params.len()).unwrap_or(i16::MAX));
        for p in params.iter().take(i16::MAX as usize) {
            match p {
                Some(b) => {
                    put_len_i32(o, b.len());
                    o.put_slice(b);
                }
                None => o.put_i32(-1),
            }
        }
        o.put_i16(0); // no result format codes: all text
    });
}

/// Describe; `kind` is b'S' (statement) or b'P' (portal).
pub fn describe(out: &mut BytesMut, kind: u8, name: &str) {
    tagged(out, tag::DESCRIBE, |o| {
        o.put_u8(kind);
        put_cstr(o, name.as_bytes());
    });
}

/// Execute; `max_rows` 0 means no limit.
pub fn execute(out: &mut BytesMut, portal: &str, max_rows: i32) {
    tagged(out, tag::EXECUTE, |o| {
        put_cstr(o, portal.as_bytes());
        o.put_i32(max_rows);
    });
}

/// Close; `kind` is b'S' (statement) or b'P' (portal).
pub fn close(out: &mut BytesMut, kind: u8, name: &str) {
    tagged(out, tag::CLOSE, |o| {
        o.put_u8(kind);
        put_cstr(o, name.as_bytes());
    });
}

bodiless!(
    sync = SYNC,
    flush = FLUSH,
    terminate = TERMINATE,
    copy_done = COPY_DONE,
);

/// CopyData; the same bytes are valid in both directions.
pub fn copy_data(out: &mut BytesMut, data: &[u8]) {
    tagged(out, tag::COPY_DATA, |o| o.put_slice(data));
}

pub fn copy_fail(out: &mut BytesMut, msg: &str) {
    tagged(out, tag::COPY_FAIL, |o| put_cstr(o, msg.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut b = BytesMut::new();
        f(&mut b);
        b.to_vec()
    }

    #[test]
    fn exact_bytes_of_simple_messages() {
        assert_eq!(build(sync), b"S\0\0\0\x04");
        assert_eq!(build(auth_ok), b"R\0\0\0\x08\0\0\0\0");
        assert_eq!(build(|o| ready_for_query(o, b'I')), b"Z\0\0\0\x05I");
        assert_eq!(build(|o| query(o, "select 1")), b"Q\0\0\0\x0dselect 1\0");
        assert_eq!(
            build(|o| cancel_request(o, 7, -1)),
            b"\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x07\xff\xff\xff\xff"
        );
        assert_eq!(
            build(|o| auth_sasl(o, &["SCRAM-SHA-256"])),
            b"R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"
        );
    }

    #[test]
    fn messages_append_without_disturbing_earlier_ones() {
        let mut b = BytesMut::new();
        parse(&mut b, "s1", "select $1", &[23]);
        sync(&mut b);
        let first_len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        assert_eq!(b[0], b'P');
        assert_eq!(&b[1 + first_len..], b"S\0\0\0\x04");
        assert_eq!(&b[5..1 + first_len], b"s1\0select $1\0\0\x01\0\0\0\x17");
    }

    #[test]
    fn interior_nul_is_cut() {
        assert_eq!(build(|o| query(o, "a\0b")), b"Q\0\0\0\x06a\0");
    }

    #[test]
    fn startup_has_version_and_terminator() {
        let p = vec![("user".to_string(), "bob".to_string())];
        assert_eq!(
            build(|o| startup_message(o, &p)),
            b"\0\0\0\x12\0\x03\0\0user\0bob\0\0"
        );
    }
}
