//! Command phase: COM_* codes, builders for the commands the proxy sends itself, and the parts
//! of prepared-statement commands a proxy must read or rewrite (statement ids, bound types).

use super::packet::{PacketError, Reader, malformed};

/// Command bytes (the first payload byte of every command-phase client packet).
pub mod com {
    pub const SLEEP: u8 = 0x00;
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const CREATE_DB: u8 = 0x05;
    pub const DROP_DB: u8 = 0x06;
    pub const REFRESH: u8 = 0x07;
    pub const SHUTDOWN: u8 = 0x08;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const CONNECT: u8 = 0x0b;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const TIME: u8 = 0x0f;
    pub const DELAYED_INSERT: u8 = 0x10;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const TABLE_DUMP: u8 = 0x13;
    pub const CONNECT_OUT: u8 = 0x14;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const DAEMON: u8 = 0x1d;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MySQL 8 only.
    pub const CLONE: u8 = 0x20;
    /// MariaDB: array binding (STMT_BULK_OPERATIONS).
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
    /// MariaDB: several commands in one packet (obsolete).
    pub const MULTI: u8 = 0xfe;
}

/// COM_SET_OPTION arguments.
pub mod set_option {
    pub const MULTI_STATEMENTS_ON: u16 = 0;
    pub const MULTI_STATEMENTS_OFF: u16 = 1;
}

/// Cursor-type flags of COM_STMT_EXECUTE.
pub mod cursor {
    pub const NO_CURSOR: u8 = 0;
    pub const READ_ONLY: u8 = 1;
    pub const FOR_UPDATE: u8 = 2;
    pub const SCROLLABLE: u8 = 4;
}

/// MariaDB accepts this id in commands after a pipelined COM_STMT_PREPARE: "the statement
/// prepared last on this connection".
pub const LAST_PREPARED_STMT: u32 = 0xFFFF_FFFF;

fn carries_stmt_id(cmd: u8) -> bool {
    matches!(
        cmd,
        com::STMT_EXECUTE
            | com::STMT_SEND_LONG_DATA
            | com::STMT_CLOSE
            | com::STMT_RESET
            | com::STMT_FETCH
            | com::STMT_BULK_EXECUTE
    )
}

/// The statement id of a command that addresses a prepared statement.
pub fn stmt_id(payload: &[u8]) -> Option<u32> {
    match payload {
        [cmd, a, b, c, d, ..] if carries_stmt_id(*cmd) => {
            Some(u32::from_le_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

/// Overwrites the statement id in place (client id → backend id); false if the command has none.
pub fn set_stmt_id(payload: &mut [u8], id: u32) -> bool {
    match payload {
        [cmd, rest @ ..] if carries_stmt_id(*cmd) && rest.len() >= 4 => {
            rest[..4].copy_from_slice(&id.to_le_bytes());
            true
        }
        _ => false,
    }
}

/// COM_STMT_PREPARE_OK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareOk {
    pub stmt_id: u32,
    pub num_columns: u16,
    pub num_params: u16,
    pub warnings: u16,
}

impl PrepareOk {
    pub fn parse(payload: &[u8]) -> Result<PrepareOk, PacketError> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0x00 {
            return Err(malformed("COM_STMT_PREPARE_OK must start with 0x00"));
        }
        let stmt_id = r.u32()?;
        let num_columns = r.u16()?;
        let num_params = r.u16()?;
        r.skip(1)?;
        let warnings = r.u16()?;
        Ok(PrepareOk {
            stmt_id,
            num_columns,
            num_params,
            warnings,
        })
    }

    /// Appends the 12-byte payload.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0);
        out.extend_from_slice(&self.stmt_id.to_le_bytes());
        out.extend_from_slice(&self.num_columns.to_le_bytes());
        out.extend_from_slice(&self.num_params.to_le_bytes());
        out.push(0);
        out.extend_from_slice(&self.warnings.to_le_bytes());
    }
}

/// Overwrites the statement id of a COM_STMT_PREPARE_OK in place (backend id → client id).
pub fn set_prepare_ok_id(payload: &mut [u8], id: u32) -> bool {
    match payload {
        [0, rest @ ..] if rest.len() >= 11 => {
            rest[..4].copy_from_slice(&id.to_le_bytes());
            true
        }
        _ => false,
    }
}

/// The head of a COM_STMT_EXECUTE, up to the parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    pub stmt_id: u32,
    /// Cursor type ([`cursor`]).
    pub flags: u8,
    pub new_params_bound: bool,
    /// Two bytes per parameter (type, unsigned flag 0x80) when `new_params_bound`.
    pub types: Option<&'a [u8]>,
}

/// Offsets inside a COM_STMT_EXECUTE payload.
struct ExecuteLayout {
    stmt_id: u32,
    flags: u8,
    /// Index of the new-params-bound byte; `None` when the statement has no parameters.
    bound_at: Option<usize>,
    new_params_bound: bool,
}

// 1 command + 4 stmt id + 1 flags + 4 iteration count.
const EXECUTE_HEAD: usize = 10;

fn execute_layout(payload: &[u8], num_params: u16) -> Result<ExecuteLayout, PacketError> {
    let mut r = Reader::new(payload);
    if r.u8()? != com::STMT_EXECUTE {
        return Err(malformed("not a COM_STMT_EXECUTE"));
    }
    let stmt_id = r.u32()?;
    let flags = r.u8()?;
    r.u32()?;
    if num_params == 0 {
        return Ok(ExecuteLayout {
            stmt_id,
            flags,
            bound_at: None,
            new_params_bound: false,
        });
    }
    let bitmap = (num_params as usize).div_ceil(8);
    r.bytes(bitmap)
        .map_err(|_| PacketError::Truncated("execute null bitmap"))?;
    let bound = r
        .u8()
        .map_err(|_| PacketError::Truncated("execute new-params-bound flag"))?;
    Ok(ExecuteLayout {
        stmt_id,
        flags,
        bound_at: Some(EXECUTE_HEAD + bitmap),
        new_params_bound: bound == 1,
    })
}

/// Reads the head of a COM_STMT_EXECUTE for a statement with `num_params` parameters (from its
/// PrepareOk). Parameter values are not decoded.
pub fn parse_execute(payload: &[u8], num_params: u16) -> Result<Execute<'_>, PacketError> {
    let l = execute_layout(payload, num_params)?;
    let types = match l.bound_at {
        Some(at) if l.new_params_bound => {
            let start = at + 1;
            let n = 2 * num_params as usize;
            Some(
                payload
                    .get(start..start + n)
                    .ok_or(PacketError::Truncated("execute parameter types"))?,
            )
        }
        _ => None,
    };
    Ok(Execute {
        stmt_id: l.stmt_id,
        flags: l.flags,
        new_params_bound: l.new_params_bound,
        types,
    })
}

/// A COM_STMT_EXECUTE that carries its parameter types: unchanged if it already does (or has no
/// parameters), otherwise rewritten with new-params-bound = 1 and `types` inserted. A statement
/// re-prepared on a new backend has no types bound yet, so an execute that relies on types the
/// client bound earlier must carry them again.
pub fn execute_with_types(
    payload: &[u8],
    num_params: u16,
    types: &[u8],
) -> Result<Vec<u8>, PacketError> {
    let l = execute_layout(payload, num_params)?;
    let Some(at) = l.bound_at else {
        return Ok(payload.to_vec());
    };
    if l.new_params_bound {
        return Ok(payload.to_vec());
    }
    if types.len() != 2 * num_params as usize {
        return Err(malformed(format!(
            "{} type bytes for {num_params} parameters",
            types.len()
        )));
    }
    let mut out = Vec::with_capacity(payload.len() + types.len());
    out.extend_from_slice(&payload[..at]);
    out.push(1);
    out.extend_from_slice(types);
    out.extend_from_slice(&payload[at + 1..]);
    Ok(out)
}

/// COM_STMT_SEND_LONG_DATA: `(stmt_id, param_index, data)`.
pub fn parse_long_data(payload: &[u8]) -> Result<(u32, u16, &[u8]), PacketError> {
    let mut r = Reader::new(payload);
    if r.u8()? != com::STMT_SEND_LONG_DATA {
        return Err(malformed("not a COM_STMT_SEND_LONG_DATA"));
    }
    let stmt = r.u32()?;
    let param = r.u16()?;
    Ok((stmt, param, r.rest()))
}

pub fn long_data(stmt: u32, param: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + data.len());
    out.push(com::STMT_SEND_LONG_DATA);
    out.extend_from_slice(&stmt.to_le_bytes());
    out.extend_from_slice(&param.to_le_bytes());
    out.extend_from_slice(data);
    out
}

fn with_text(cmd: u8, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + text.len());
    out.push(cmd);
    out.extend_from_slice(text);
    out
}

fn with_id(cmd: u8, id: u32) -> Vec<u8> {
    let mut out = vec![cmd];
    out.extend_from_slice(&id.to_le_bytes());
    out
}

pub fn query(sql: &str) -> Vec<u8> {
    with_text(com::QUERY, sql.as_bytes())
}

pub fn init_db(name: &str) -> Vec<u8> {
    with_text(com::INIT_DB, name.as_bytes())
}

pub fn stmt_prepare(sql: &str) -> Vec<u8> {
    with_text(com::STMT_PREPARE, sql.as_bytes())
}

pub fn stmt_close(id: u32) -> Vec<u8> {
    with_id(com::STMT_CLOSE, id)
}

pub fn stmt_reset(id: u32) -> Vec<u8> {
    with_id(com::STMT_RESET, id)
}

pub fn ping() -> Vec<u8> {
    vec![com::PING]
}

pub fn quit() -> Vec<u8> {
    vec![com::QUIT]
}

pub fn reset_connection() -> Vec<u8> {
    vec![com::RESET_CONNECTION]
}

pub fn set_option(option: u16) -> Vec<u8> {
    let mut out = vec![com::SET_OPTION];
    out.extend_from_slice(&option.to_le_bytes());
    out
}

/// The SQL text of a COM_QUERY or COM_STMT_PREPARE (the bytes after the command byte).
pub fn command_text(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((&(com::QUERY | com::STMT_PREPARE | com::INIT_DB), text)) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An execute for 2 parameters, both VAR_STRING, values "ab" and NULL.
    fn execute(bound: bool) -> Vec<u8> {
        let mut p = vec![com::STMT_EXECUTE, 7, 0, 0, 0, cursor::NO_CURSOR, 1, 0, 0, 0];
        p.push(0b10); // second parameter NULL
        p.push(bound as u8);
        if bound {
            p.extend_from_slice(&[0xfd, 0, 0xfd, 0]);
        }
        p.extend_from_slice(&[2, b'a', b'b']);
        p
    }

    #[test]
    fn stmt_ids() {
        let mut p = execute(true);
        assert_eq!(stmt_id(&p), Some(7));
        assert!(set_stmt_id(&mut p, 0x01020304));
        assert_eq!(stmt_id(&p), Some(0x01020304));
        assert_eq!(stmt_id(&stmt_close(9)), Some(9));
        assert_eq!(stmt_id(&stmt_reset(9)), Some(9));
        assert_eq!(stmt_id(&long_data(5, 1, b"x")), Some(5));
        assert_eq!(stmt_id(&query("select 1")), None);
        assert_eq!(stmt_id(&[com::STMT_CLOSE, 1, 2, 3]), None);
        assert!(!set_stmt_id(&mut [com::STMT_CLOSE, 1, 2, 3], 1));
        assert!(!set_stmt_id(&mut [], 1));
        assert!(!set_stmt_id(&mut query("x"), 1));
    }

    #[test]
    fn prepare_ok() {
        let ok = PrepareOk {
            stmt_id: 3,
            num_columns: 1,
            num_params: 2,
            warnings: 0,
        };
        let mut out = Vec::new();
        ok.write(&mut out);
        assert_eq!(out.len(), 12);
        assert_eq!(PrepareOk::parse(&out).unwrap(), ok);
        assert!(set_prepare_ok_id(&mut out, 77));
        assert_eq!(PrepareOk::parse(&out).unwrap().stmt_id, 77);
        for cut in 0..out.len() {
            assert!(PrepareOk::parse(&out[..cut]).is_err());
            assert!(!set_prepare_ok_id(&mut out.clone()[..cut], 1));
        }
        out[0] = 0xFF;
        assert!(PrepareOk::parse(&out).is_err());
        assert!(!set_prepare_ok_id(&mut out, 1));
    }

    #[test]
    fn execute_parse_and_rebind() {
        let with = execute(true);
        let e = parse_execute(&with, 2).unwrap();
        assert_eq!(e.stmt_id, 7);
        assert!(e.new_params_bound);
        assert_eq!(e.types, Some(&[0xfd, 0, 0xfd, 0][..]));

        let without = execute(false);
        let e = parse_execute(&without, 2).unwrap();
        assert!(!e.new_params_bound);
        assert_eq!(e.types, None);

        assert_eq!(
            execute_with_types(&without, 2, &[0xfd, 0, 0xfd, 0]).unwrap(),
            with
        );
        assert_eq!(execute_with_types(&with, 2, &[1, 2, 3, 4]).unwrap(), with);
        assert!(execute_with_types(&without, 2, &[0xfd, 0]).is_err());

        // No parameters: no bitmap, no flag.
        let none = [com::STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0];
        let e = parse_execute(&none, 0).unwrap();
        assert!(!e.new_params_bound && e.types.is_none());
        assert_eq!(execute_with_types(&none, 0, &[]).unwrap(), none);

        for cut in 0..with.len() {
            let _ = parse_execute(&with[..cut], 2);
            let _ = execute_with_types(&with[..cut], 2, &[0; 4]);
            let _ = execute_with_types(&without[..cut.min(without.len())], 2, &[0; 4]);
        }
        assert!(parse_execute(&with[..12], 2).is_err());
        assert!(parse_execute(&with[..11], 2).is_err());
        // A lying parameter count (from a confused caller) is an error, not a panic.
        assert!(parse_execute(&with, u16::MAX).is_err());
        assert!(execute_with_types(&without, u16::MAX, &[]).is_err());
        assert!(parse_execute(&query("x"), 0).is_err());
    }

    #[test]
    fn long_data_round_trip() {
        let p = long_data(4, 1, b"chunk");
        assert_eq!(parse_long_data(&p).unwrap(), (4, 1, &b"chunk"[..]));
        for cut in 0..7 {
            assert!(parse_long_data(&p[..cut]).is_err());
        }
        assert!(parse_long_data(&query("x")).is_err());
    }

    #[test]
    fn builders() {
        assert_eq!(query("SELECT 1"), b"\x03SELECT 1");
        assert_eq!(init_db("db"), b"\x02db");
        assert_eq!(stmt_prepare("SELECT ?"), b"\x16SELECT ?");
        assert_eq!(stmt_close(0x0102), [0x19, 2, 1, 0, 0]);
        assert_eq!(ping(), [0x0e]);
        assert_eq!(quit(), [0x01]);
        assert_eq!(reset_connection(), [0x1f]);
        assert_eq!(set_option(set_option::MULTI_STATEMENTS_OFF), [0x1b, 1, 0]);
        assert_eq!(command_text(&query("x")), Some(&b"x"[..]));
        assert_eq!(command_text(&ping()), None);
    }
}
