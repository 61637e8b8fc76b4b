//! Server responses: OK (and OK-as-EOF), ERR, classic EOF, session-state changes, column
//! definitions and text rows.
//!
//! All parsers assume CLIENT_PROTOCOL_41, the only protocol this crate speaks.

use super::handshake::caps;
use super::packet::{PacketError, Reader, malformed, put_lenenc_bytes, put_lenenc_int};

/// Server status flags (SERVER_STATUS_*), carried in OK and EOF packets.
pub mod status {
    pub const IN_TRANS: u16 = 1;
    pub const AUTOCOMMIT: u16 = 2;
    pub const MORE_RESULTS_EXISTS: u16 = 8;
    pub const NO_GOOD_INDEX_USED: u16 = 0x10;
    pub const NO_INDEX_USED: u16 = 0x20;
    pub const CURSOR_EXISTS: u16 = 0x40;
    pub const LAST_ROW_SENT: u16 = 0x80;
    pub const DB_DROPPED: u16 = 0x100;
    pub const NO_BACKSLASH_ESCAPES: u16 = 0x200;
    pub const METADATA_CHANGED: u16 = 0x400;
    pub const QUERY_WAS_SLOW: u16 = 0x800;
    pub const PS_OUT_PARAMS: u16 = 0x1000;
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
    /// MariaDB: sql_mode has ANSI_QUOTES.
    pub const ANSI_QUOTES: u16 = 0x8000;
}

/// Column types (MYSQL_TYPE_*), as in column definitions and COM_STMT_EXECUTE type bytes.
pub mod column_type {
    pub const DECIMAL: u8 = 0x00;
    pub const TINY: u8 = 0x01;
    pub const SHORT: u8 = 0x02;
    pub const LONG: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const NULL: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const LONGLONG: u8 = 0x08;
    pub const INT24: u8 = 0x09;
    pub const DATE: u8 = 0x0a;
    pub const TIME: u8 = 0x0b;
    pub const DATETIME: u8 = 0x0c;
    pub const YEAR: u8 = 0x0d;
    pub const NEWDATE: u8 = 0x0e;
    pub const VARCHAR: u8 = 0x0f;
    pub const BIT: u8 = 0x10;
    pub const TIMESTAMP2: u8 = 0x11;
    pub const DATETIME2: u8 = 0x12;
    pub const TIME2: u8 = 0x13;
    pub const JSON: u8 = 0xf5;
    pub const NEWDECIMAL: u8 = 0xf6;
    pub const ENUM: u8 = 0xf7;
    pub const SET: u8 = 0xf8;
    pub const TINY_BLOB: u8 = 0xf9;
    pub const MEDIUM_BLOB: u8 = 0xfa;
    pub const LONG_BLOB: u8 = 0xfb;
    pub const BLOB: u8 = 0xfc;
    pub const VAR_STRING: u8 = 0xfd;
    pub const STRING: u8 = 0xfe;
    pub const GEOMETRY: u8 = 0xff;
}

/// Session-state-change entry types (SESSION_TRACK_*).
pub mod track {
    pub const SYSTEM_VARIABLES: u8 = 0;
    pub const SCHEMA: u8 = 1;
    pub const STATE_CHANGE: u8 = 2;
    pub const GTIDS: u8 = 3;
    pub const TRANSACTION_CHARACTERISTICS: u8 = 4;
    pub const TRANSACTION_STATE: u8 = 5;
}

/// OK packet (header 0x00, or 0xFE when it ends a result set under CLIENT_DEPRECATE_EOF).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
    pub info: Vec<u8>,
    /// The session-state-info block without its own length prefix; read it with
    /// [`session_changes`]. Empty unless the status has SESSION_STATE_CHANGED.
    pub session_state: Vec<u8>,
}

impl OkPacket {
    /// `capabilities` are the ones negotiated on the connection the packet came from.
    pub fn parse(payload: &[u8], capabilities: u32) -> Result<OkPacket, PacketError> {
        let mut r = Reader::new(payload);
        let header = r.u8()?;
        if header != 0x00 && header != 0xFE {
            return Err(malformed(format!("OK packet with header 0x{header:02x}")));
        }
        let mut ok = OkPacket {
            affected_rows: r.lenenc_int()?,
            last_insert_id: r.lenenc_int()?,
            status: r.u16()?,
            warnings: r.u16()?,
            ..OkPacket::default()
        };
        if capabilities & caps::SESSION_TRACK != 0 {
            if !r.is_empty() {
                ok.info = r.lenenc_bytes()?.to_vec();
            }
            if ok.status & status::SESSION_STATE_CHANGED != 0 && !r.is_empty() {
                ok.session_state = r.lenenc_bytes()?.to_vec();
            }
        } else {
            ok.info = r.rest().to_vec();
        }
        Ok(ok)
    }

    /// Appends the payload with `header` (0x00 or 0xFE) in the form a connection with
    /// `capabilities` expects. The session state is written only when the status carries
    /// SESSION_STATE_CHANGED and the connection has CLIENT_SESSION_TRACK.
    pub fn write(&self, header: u8, capabilities: u32, out: &mut Vec<u8>) {
        out.push(header);
        put_lenenc_int(out, self.affected_rows);
        put_lenenc_int(out, self.last_insert_id);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.warnings.to_le_bytes());
        if capabilities & caps::SESSION_TRACK != 0 {
            let changed = self.status & status::SESSION_STATE_CHANGED != 0;
            if changed || !self.info.is_empty() {
                put_lenenc_bytes(out, &self.info);
            }
            if changed {
                put_lenenc_bytes(out, &self.session_state);
            }
        } else {
            out.extend_from_slice(&self.info);
        }
    }
}

/// Rewrites an OK / OK-as-EOF payload from a connection with CLIENT_SESSION_TRACK into the form
/// a client without it expects: no session-state block, SESSION_STATE_CHANGED cleared, the info
/// as the rest of the packet. Copies the fixed head once; nothing is decoded beyond the offsets.
pub fn strip_session_track(payload: &[u8]) -> Result<Vec<u8>, PacketError> {
    let mut r = Reader::new(payload);
    let header = r.u8()?;
    if header != 0x00 && header != 0xFE {
        return Err(malformed(format!("OK packet with header 0x{header:02x}")));
    }
    r.lenenc_int()?;
    r.lenenc_int()?;
    let status = r.u16()?;
    r.u16()?;
    let head_len = payload.len() - r.remaining();
    let info = if r.is_empty() {
        &[][..]
    } else {
        r.lenenc_bytes()?
    };
    let mut out = Vec::with_capacity(head_len + info.len());
    out.extend_from_slice(&payload[..head_len]);
    let cleared = status & !status::SESSION_STATE_CHANGED;
    // The status sits just before the 2 warning bytes at the end of the head.
    out[head_len - 4..head_len - 2].copy_from_slice(&cleared.to_le_bytes());
    out.extend_from_slice(info);
    Ok(out)
}

/// One entry of a session-state-info block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionChange {
    SystemVariable {
        name: String,
        value: Vec<u8>,
    },
    Schema(String),
    /// Some state changed that has no tracker of its own (user variables, PREPARE, temp
    /// tables…); `true` for "1".
    StateChanged(bool),
    /// The GTID string (the encoding-specification byte is dropped).
    Gtids(Vec<u8>),
    TransactionCharacteristics(Vec<u8>),
    TransactionState(Vec<u8>),
    Other(u8, Vec<u8>),
}

/// Decodes [`OkPacket::session_state`].
pub fn session_changes(session_state: &[u8]) -> Result<Vec<SessionChange>, PacketError> {
    let mut r = Reader::new(session_state);
    let mut changes = Vec::new();
    while !r.is_empty() {
        let kind = r.u8()?;
        let data = r.lenenc_bytes()?;
        let mut d = Reader::new(data);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        changes.push(match kind {
            track::SYSTEM_VARIABLES => SessionChange::SystemVariable {
                name: text(d.lenenc_bytes()?),
                value: d.lenenc_bytes()?.to_vec(),
            },
            track::SCHEMA => SessionChange::Schema(text(d.lenenc_bytes()?)),
            track::STATE_CHANGE => SessionChange::StateChanged(d.lenenc_bytes()? == b"1"),
            track::GTIDS => {
                d.u8()?;
                SessionChange::Gtids(d.lenenc_bytes()?.to_vec())
            }
            track::TRANSACTION_CHARACTERISTICS => {
                SessionChange::TransactionCharacteristics(d.lenenc_bytes()?.to_vec())
            }
            track::TRANSACTION_STATE => SessionChange::TransactionState(d.lenenc_bytes()?.to_vec()),
            other => SessionChange::Other(other, data.to_vec()),
        });
    }
    Ok(changes)
}

/// Encodes session changes into a session-state-info block (the inverse of
/// [`session_changes`]; GTIDs are written with encoding specification 0).
pub fn write_session_changes(changes: &[SessionChange], out: &mut Vec<u8>) {
    for c in changes {
        let mut data = Vec::new();
        let kind = match c {
            SessionChange::SystemVariable { name, value } => {
                put_lenenc_bytes(&mut data, name.as_bytes());
                put_lenenc_bytes(&mut data, value);
                track::SYSTEM_VARIABLES
            }
            SessionChange::Schema(s) => {
                put_lenenc_bytes(&mut data, s.as_bytes());
                track::SCHEMA
            }
            SessionChange::StateChanged(b) => {
                put_lenenc_bytes(&mut data, if *b { b"1" } else { b"0" });
                track::STATE_CHANGE
            }
            SessionChange::Gtids(g) => {
                data.push(0);
                put_lenenc_bytes(&mut data, g);
                track::GTIDS
            }
            SessionChange::TransactionCharacteristics(t) => {
                put_lenenc_bytes(&mut data, t);
                track::TRANSACTION_CHARACTERISTICS
            }
            SessionChange::TransactionState(t) => {
                put_lenenc_bytes(&mut data, t);
                track::TRANSACTION_STATE
            }
            SessionChange::Other(k, d) => {
                data.extend_from_slice(d);
                *k
            }
        };
        out.push(kind);
        put_lenenc_bytes(out, &data);
    }
}

/// ERR packet (0xFF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    /// Five characters; "HY000" when the server sent none (errors before the handshake).
    pub sql_state: String,
    pub message: String,
}

impl ErrPacket {
    pub fn parse(payload: &[u8]) -> Result<ErrPacket, PacketError> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0xFF {
            return Err(malformed("ERR packet must start with 0xFF"));
        }
        let code = r.u16()?;
        let sql_state = if r.peek() == Some(b'#') {
            r.skip(1)?;
            String::from_utf8_lossy(r.bytes(5)?).into_owned()
        } else {
            "HY000".to_owned()
        };
        let message = String::from_utf8_lossy(r.rest()).into_owned();
        Ok(ErrPacket {
            code,
            sql_state,
            message,
        })
    }

    /// Appends the payload with the '#' SQLSTATE marker; the state is padded or cut to 5 bytes.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0xFF);
        out.extend_from_slice(&self.code.to_le_bytes());
        out.push(b'#');
        let mut state = [b'0'; 5];
        for (s, b) in state.iter_mut().zip(self.sql_state.bytes()) {
            *s = b;
        }
        out.extend_from_slice(&state);
        out.extend_from_slice(self.message.as_bytes());
    }
}

/// ERR payload, e.g. `err_packet(1045, "28000", "Access denied …")`.
pub fn err_packet(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + message.len());
    ErrPacket {
        code,
        sql_state: state.to_owned(),
        message: message.to_owned(),
    }
    .write(&mut out);
    out
}

/// MariaDB progress report: an ERR-headed packet with code 0xFFFF, sent mid-statement to clients
/// with the PROGRESS extended capability. It is not an error and does not end the statement.
pub fn is_progress_report(payload: &[u8]) -> bool {
    payload.starts_with(&[0xFF, 0xFF, 0xFF])
}

/// A classic EOF packet: `(warnings, status)`. An OK-as-EOF is never 5 bytes, so this does not
/// mistake one for an EOF; the 1-byte pre-4.1 form gives zeros.
pub fn eof(payload: &[u8]) -> Option<(u16, u16)> {
    match payload {
        [0xFE] => Some((0, 0)),
        [0xFE, w0, w1, s0, s1] => Some((
            u16::from_le_bytes([*w0, *w1]),
            u16::from_le_bytes([*s0, *s1]),
        )),
        _ => None,
    }
}

/// Payload of a classic EOF.
pub fn write_eof(warnings: u16, status: u16, out: &mut Vec<u8>) {
    out.push(0xFE);
    out.extend_from_slice(&warnings.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
}

/// The column count that starts a result set. MariaDB's CACHE_METADATA adds a byte after it
/// ("metadata follows"), which is ignored here.
pub fn column_count(payload: &[u8]) -> Result<u64, PacketError> {
    Reader::new(payload).lenenc_int()
}

/// ColumnDefinition41.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Column {
    pub schema: String,
    pub table: String,
    pub org_table: String,
    pub name: String,
    pub org_name: String,
    pub charset: u16,
    pub length: u32,
    pub column_type: u8,
    pub flags: u16,
    pub decimals: u8,
}

impl Column {
    /// Names are decoded lossily as UTF-8.
    pub fn parse(payload: &[u8]) -> Result<Column, PacketError> {
        Self::parse_with(payload, false)
    }

    /// `extended_type_info`: the connection negotiated MariaDB's EXTENDED_TYPE_INFO, which puts a
    /// length-encoded block (skipped here) before the fixed fields.
    pub fn parse_with(payload: &[u8], extended_type_info: bool) -> Result<Column, PacketError> {
        let mut r = Reader::new(payload);
        let mut text = || -> Result<String, PacketError> {
            Ok(String::from_utf8_lossy(r.lenenc_bytes()?).into_owned())
        };
        let _catalog = text()?;
        let schema = text()?;
        let table = text()?;
        let org_table = text()?;
        let name = text()?;
        let org_name = text()?;
        if extended_type_info {
            r.lenenc_bytes()?;
        }
        let fixed_len = r.lenenc_int()?;
        if fixed_len < 10 {
            return Err(malformed(format!(
                "column definition fixed part of {fixed_len} bytes"
            )));
        }
        Ok(Column {
            schema,
            table,
            org_table,
            name,
            org_name,
            charset: r.u16()?,
            length: r.u32()?,
            column_type: r.u8()?,
            flags: r.u16()?,
            decimals: r.u8()?,
        })
    }

    /// Appends a ColumnDefinition41 payload (catalog "def", no MariaDB extended info).
    pub fn write(&self, out: &mut Vec<u8>) {
        for s in [
            "def",
            &self.schema,
            &self.table,
            &self.org_table,
            &self.name,
            &self.org_name,
        ] {
            put_lenenc_bytes(out, s.as_bytes());
        }
        out.push(0x0c);
        out.extend_from_slice(&self.charset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.push(self.column_type);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.push(self.decimals);
        out.extend_from_slice(&[0, 0]);
    }
}

/// A text-protocol row of `ncols` values; 0xFB is NULL. Extra or missing values are errors.
pub fn text_row(payload: &[u8], ncols: usize) -> Result<Vec<Option<Vec<u8>>>, PacketError> {
    let mut r = Reader::new(payload);
    // Every value takes at least one byte, so the payload bounds the allocation.
    let mut row = Vec::with_capacity(ncols.min(payload.len()));
    for _ in 0..ncols {
        row.push(r.lenenc_bytes_opt()?.map(<[u8]>::to_vec));
    }
    if !r.is_empty() {
        return Err(malformed(format!("text row has more than {ncols} values")));
    }
    Ok(row)
}

/// Appends a text-protocol row.
pub fn write_text_row(values: &[Option<&[u8]>], out: &mut Vec<u8>) {
    for v in values {
        match v {
            Some(b) => put_lenenc_bytes(out, b),
            None => out.push(0xFB),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACK: u32 = caps::PROTOCOL_41 | caps::SESSION_TRACK;
    const PLAIN: u32 = caps::PROTOCOL_41;

    fn tracked_ok() -> OkPacket {
        let mut state = Vec::new();
        write_session_changes(
            &[
                SessionChange::SystemVariable {
                    name: "sql_mode".into(),
                    value: b"ANSI".to_vec(),
                },
                SessionChange::Schema("shop".into()),
                SessionChange::StateChanged(true),
            ],
            &mut state,
        );
        OkPacket {
            affected_rows: 300,
            last_insert_id: 70_000,
            status: status::AUTOCOMMIT | status::SESSION_STATE_CHANGED,
            warnings: 2,
            info: b"Rows matched: 1".to_vec(),
            session_state: state,
        }
    }

    #[test]
    fn ok_round_trips() {
        let cases = [
            (tracked_ok(), TRACK),
            (
                OkPacket {
                    status: status::AUTOCOMMIT,
                    session_state: vec![],
                    ..tracked_ok()
                },
                TRACK,
            ),
            (
                OkPacket {
                    status: status::IN_TRANS,
                    ..OkPacket::default()
                },
                TRACK,
            ),
            (
                OkPacket {
                    status: status::AUTOCOMMIT,
                    session_state: vec![],
                    ..tracked_ok()
                },
                PLAIN,
            ),
        ];
        for (ok, caps) in cases {
            for header in [0x00, 0xFE] {
                let mut out = Vec::new();
                ok.write(header, caps, &mut out);
                assert_eq!(OkPacket::parse(&out, caps).unwrap(), ok);
                assert_eq!(eof(&out), None);
                for cut in 0..out.len() {
                    let _ = OkPacket::parse(&out[..cut], caps);
                    let _ = strip_session_track(&out[..cut]);
                }
            }
        }
        assert!(OkPacket::parse(&[0xFF, 0, 0, 0, 0, 0, 0], PLAIN).is_err());
        assert!(OkPacket::parse(&[0x00, 0, 0, 2, 0], PLAIN).is_err());
    }

    #[test]
    fn ok_minimal_forms() {
        // MariaDB sends no info byte at all when there is no info and no state change.
        let ok = OkPacket::parse(&[0, 1, 0, 2, 0, 0, 0], TRACK).unwrap();
        assert_eq!(ok.affected_rows, 1);
        assert_eq!(ok.status, status::AUTOCOMMIT);
        assert!(ok.info.is_empty() && ok.session_state.is_empty());
        assert_eq!(
            strip_session_track(&[0, 1, 0, 2, 0, 0, 0]).unwrap(),
            [0, 1, 0, 2, 0, 0, 0]
        );
    }

    #[test]
    fn strip_session_track_gives_plain_ok() {
        let ok = tracked_ok();
        let mut out = Vec::new();
        ok.write(0xFE, TRACK, &mut out);
        let stripped = strip_session_track(&out).unwrap();
        let plain = OkPacket::parse(&stripped, PLAIN).unwrap();
        assert_eq!(
            plain,
            OkPacket {
                status: status::AUTOCOMMIT,
                session_state: vec![],
                ..ok
            }
        );
        assert_eq!(stripped[0], 0xFE);
        // A lying info length is an error, not a panic.
        let mut bad = out.clone();
        bad[12] = 0xFA;
        assert!(strip_session_track(&bad).is_err());
    }

    #[test]
    fn session_changes_decode() {
        let ok = tracked_ok();
        let changes = session_changes(&ok.session_state).unwrap();
        assert_eq!(
            changes,
            [
                SessionChange::SystemVariable {
                    name: "sql_mode".into(),
                    value: b"ANSI".to_vec()
                },
                SessionChange::Schema("shop".into()),
                SessionChange::StateChanged(true),
            ]
        );
        let all = vec![
            SessionChange::Gtids(b"0-1-5".to_vec()),
            SessionChange::TransactionCharacteristics(b"START TRANSACTION;".to_vec()),
            SessionChange::TransactionState(b"T_______".to_vec()),
            SessionChange::StateChanged(false),
            SessionChange::Other(9, b"xyz".to_vec()),
        ];
        let mut block = Vec::new();
        write_session_changes(&all, &mut block);
        assert_eq!(session_changes(&block).unwrap(), all);
        for cut in 0..block.len() {
            let _ = session_changes(&block[..cut]);
        }
        assert!(session_changes(&[0, 5, 9, b'a']).is_err());
        assert!(session_changes(&[1]).is_err());
    }

    #[test]
    fn err_round_trip() {
        let p = err_packet(1045, "28000", "Access denied for user 't'");
        let e = ErrPacket::parse(&p).unwrap();
        assert_eq!(e.code, 1045);
        assert_eq!(e.sql_state, "28000");
        assert_eq!(e.message, "Access denied for user 't'");
        let mut out = Vec::new();
        e.write(&mut out);
        assert_eq!(out, p);
        // Without the marker (errors sent before the handshake).
        let e = ErrPacket::parse(b"\xff\x6a\x04Host is not allowed").unwrap();
        assert_eq!((e.code, e.sql_state.as_str()), (1130, "HY000"));
        assert_eq!(e.message, "Host is not allowed");
        for cut in 0..p.len() {
            let _ = ErrPacket::parse(&p[..cut]);
        }
        assert!(ErrPacket::parse(&[0xFF, 1]).is_err());
        assert!(ErrPacket::parse(&[0xFF, 1, 0, b'#', b'4']).is_err());
        assert!(ErrPacket::parse(&[0x00, 1, 0]).is_err());
        assert!(is_progress_report(&[0xFF, 0xFF, 0xFF, 1]));
        assert!(!is_progress_report(&p));
    }

    #[test]
    fn eof_forms() {
        let mut out = Vec::new();
        write_eof(3, status::MORE_RESULTS_EXISTS, &mut out);
        assert_eq!(eof(&out), Some((3, status::MORE_RESULTS_EXISTS)));
        assert_eq!(eof(&[0xFE]), Some((0, 0)));
        assert_eq!(eof(&[0xFE, 0, 0]), None);
        assert_eq!(eof(&[0x00, 0, 0, 0, 0]), None);
        assert_eq!(eof(&[]), None);
    }

    #[test]
    fn column_and_rows() {
        let c = Column {
            schema: "shop".into(),
            table: "o".into(),
            org_table: "orders".into(),
            name: "n".into(),
            org_name: "name".into(),
            charset: 45,
            length: 1020,
            column_type: column_type::VAR_STRING,
            flags: 1,
            decimals: 0,
        };
        let mut out = Vec::new();
        c.write(&mut out);
        assert_eq!(Column::parse(&out).unwrap(), c);
        for cut in 0..out.len() - 2 {
            assert!(Column::parse(&out[..cut]).is_err(), "cut {cut}");
        }
        // With MariaDB's extended type info block before the fixed part.
        let mut ext = Vec::new();
        let fixed_at = out.len() - 13;
        ext.extend_from_slice(&out[..fixed_at]);
        put_lenenc_bytes(&mut ext, b"\x00\x04json");
        ext.extend_from_slice(&out[fixed_at..]);
        assert_eq!(Column::parse_with(&ext, true).unwrap(), c);

        let mut row = Vec::new();
        write_text_row(&[Some(b"1"), None, Some(b"")], &mut row);
        assert_eq!(
            text_row(&row, 3).unwrap(),
            [Some(b"1".to_vec()), None, Some(vec![])]
        );
        assert!(text_row(&row, 2).is_err());
        assert!(text_row(&row, 4).is_err());
        assert!(text_row(&[0xFC, 0xFF, 0xFF], 1).is_err());
        assert!(text_row(&[], usize::MAX).is_err());
        assert_eq!(column_count(&[3]), Ok(3));
        assert!(column_count(&[]).is_err());
    }
}
