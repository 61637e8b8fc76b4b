//! Where each backend response ends. MySQL has no ReadyForQuery: the end of a response follows
//! from the command that asked for it, the column count, the EOF/OK terminators and the
//! MORE_RESULTS flag. Reads only headers, counts and status flags; never row contents.

use std::collections::VecDeque;

use super::response::status;

/// What the backend will send back for a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// One OK, EOF or ERR packet (INIT_DB, PING, STMT_RESET, SET_OPTION, …).
    Single,
    /// COM_QUERY: OK or result sets, several while MORE_RESULTS_EXISTS is set.
    Query,
    /// COM_STMT_EXECUTE: like Query with binary rows; a cursor ends it after the metadata.
    Execute,
    /// COM_STMT_FETCH: rows up to a terminator.
    Fetch,
    /// COM_STMT_PREPARE: PrepareOk, parameter and column definitions.
    Prepare,
    /// COM_FIELD_LIST: column definitions up to a terminator.
    FieldList,
    /// COM_STATISTICS: one string packet.
    Text,
}

/// What one backend packet was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An OK packet, or under DEPRECATE_EOF an OK-shaped terminator (header 0xFE). Either may
    /// carry session-state tracking.
    Ok,
    /// A classic EOF packet.
    Eof,
    Err,
    /// The first packet of a successful COM_STMT_PREPARE answer.
    PrepareOk,
    /// Column definitions, rows, continuation packets, text.
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub kind: Kind,
    /// This packet ended the oldest outstanding response.
    pub done: bool,
    /// The command whose response this packet belongs to.
    pub reply: Option<Reply>,
    /// Status flags when the packet carries them (OK, EOF, terminators).
    pub status: Option<u16>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("the backend sent a packet nobody asked for")]
    Unexpected,
    #[error("malformed {0} packet from the backend")]
    Malformed(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first packet of a result (or of the next result).
    Start,
    Columns {
        left: u64,
    },
    /// The classic EOF after column definitions.
    ColumnsEof,
    Rows,
    Params {
        left: u16,
        columns: u16,
    },
    ParamsEof {
        columns: u16,
    },
    PrepareColumns {
        left: u16,
    },
    PrepareColumnsEof,
    /// Column definitions of COM_FIELD_LIST, up to a terminator.
    Fields,
}

/// The responses a backend connection owes, oldest first, and how far the oldest has come: a
/// session is at a safe point only when none is outstanding.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    deprecate_eof: bool,
    pending: VecDeque<Reply>,
    phase: Phase,
    /// The previous physical packet had the maximum size: this one continues it.
    continued: bool,
    status: u16,
}

const FULL: usize = 0xFF_FFFF;

impl ResponseTracker {
    /// `deprecate_eof`: whether CLIENT_DEPRECATE_EOF was negotiated with the backend.
    pub fn new(deprecate_eof: bool) -> ResponseTracker {
        ResponseTracker {
            deprecate_eof,
            pending: VecDeque::new(),
            phase: Phase::Start,
            continued: false,
            status: status::AUTOCOMMIT,
        }
    }

    /// A command was sent that the backend will answer.
    pub fn expect(&mut self, reply: Reply) {
        self.pending.push_back(reply);
    }

    /// A response is outstanding.
    pub fn busy(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Status flags from the last OK/EOF the backend sent.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Carries the session's status over to a new connection (or a change torpor answered
    /// for): what the next local answer reports until the backend says otherwise.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    pub fn in_transaction(&self) -> bool {
        self.status & status::IN_TRANS != 0
    }

    /// Forget outstanding responses (the backend connection is gone).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.phase = Phase::Start;
        self.continued = false;
    }

    /// How many bytes at the start of `buf` are whole row packets of the current result, so a
    /// caller can pass a run of rows on without classifying each one. Stops before the
    /// terminator, an ERR, a maximum-size packet or an incomplete one.
    pub fn rows_prefix(&self, buf: &[u8]) -> usize {
        if self.phase != Phase::Rows || self.continued {
            return 0;
        }
        let mut off = 0;
        while let Some(h) = buf.get(off..off + 5) {
            let len = usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16;
            if len == 0 || len >= FULL || h[4] == 0xFE || h[4] == 0xFF || buf.len() < off + 4 + len
            {
                break;
            }
            off += 4 + len;
        }
        off
    }

    /// Classifies one physical backend packet (its payload) and advances.
    pub fn backend_packet(&mut self, payload: &[u8]) -> Result<Seen, ResponseError> {
        let full = payload.len() == FULL;
        if std::mem::replace(&mut self.continued, full) {
            return Ok(self.seen(Kind::Data, false, None));
        }
        let Some(&reply) = self.pending.front() else {
            // The server announces a killed connection or shutdown with an ERR nobody asked for.
            if payload.first() == Some(&0xFF) {
                return Ok(Seen {
                    kind: Kind::Err,
                    done: false,
                    reply: None,
                    status: None,
                });
            }
            return Err(ResponseError::Unexpected);
        };
        let first = payload
            .first()
            .copied()
            .ok_or(ResponseError::Malformed("empty"))?;
        if first == 0xFF && !full {
            // ERR ends the whole response: also in the middle of rows or after earlier results.
            return Ok(self.finish(Kind::Err, None));
        }
        // An 0xFE packet shorter than the maximum is a terminator; a row can't be that short and
        // start with 0xFE (that prefix announces an 8-byte length).
        let terminator = first == 0xFE && !full;
        match (reply, self.phase) {
            (Reply::Single, _) => {
                let (kind, status) = match first {
                    0x00 => (Kind::Ok, ok_status(payload)),
                    0xFE => terminator_of(payload),
                    _ => (Kind::Data, None),
                };
                Ok(self.finish(kind, status))
            }
            (Reply::Text, _) => Ok(self.finish(Kind::Data, None)),
            (Reply::Prepare, Phase::Start) => {
                if first != 0x00 || payload.len() < 12 {
                    return Err(ResponseError::Malformed("prepare-ok"));
                }
                let columns = u16::from_le_bytes([payload[5], payload[6]]);
                let params = u16::from_le_bytes([payload[7], payload[8]]);
                if params > 0 {
                    self.phase = Phase::Params {
                        left: params,
                        columns,
                    };
                    return Ok(self.seen(Kind::PrepareOk, false, None));
                }
                Ok(self.columns_section(columns, Kind::PrepareOk))
            }
            (Reply::Prepare, Phase::Params { left, columns }) => {
                if left > 1 {
                    self.phase = Phase::Params {
                        left: left - 1,
                        columns,
                    };
                    return Ok(self.seen(Kind::Data, false, None));
                }
                if self.deprecate_eof {
                    return Ok(self.columns_section(columns, Kind::Data));
                }
                self.phase = Phase::ParamsEof { columns };
                Ok(self.seen(Kind::Data, false, None))
            }
            (Reply::Prepare, Phase::ParamsEof { columns }) => {
                expect_eof(payload)?;
                Ok(self.columns_section(columns, Kind::Eof))
            }
            (Reply::Prepare, Phase::PrepareColumns { left }) => {
                if left > 1 {
                    self.phase = Phase::PrepareColumns { left: left - 1 };
                    return Ok(self.seen(Kind::Data, false, None));
                }
                if self.deprecate_eof {
                    return Ok(self.finish(Kind::Data, None));
                }
                self.phase = Phase::PrepareColumnsEof;
                Ok(self.seen(Kind::Data, false, None))
            }
            (Reply::Prepare, Phase::PrepareColumnsEof) => {
                let status = expect_eof(payload)?;
                Ok(self.finish(Kind::Eof, Some(status)))
            }
            (Reply::FieldList, _) => {
                if terminator {
                    let (kind, status) = terminator_of(payload);
                    return Ok(self.finish(kind, status));
                }
                self.phase = Phase::Fields;
                Ok(self.seen(Kind::Data, false, None))
            }
            (Reply::Fetch, _) => {
                self.phase = Phase::Rows;
                if terminator {
                    let (kind, status) = terminator_of(payload);
                    return Ok(self.finish(kind, status));
                }
                Ok(self.seen(Kind::Data, false, None))
            }
            (Reply::Query | Reply::Execute, Phase::Start) => match first {
                0x00 => {
                    let status = ok_status(payload).ok_or(ResponseError::Malformed("OK"))?;
                    Ok(self.result_end(Kind::Ok, status))
                }
                0xFB => Err(ResponseError::Malformed(
                    "LOCAL INFILE request (not negotiated)",
                )),
                _ => {
                    let n = lenenc(payload).ok_or(ResponseError::Malformed("column count"))?;
                    if n == 0 {
                        return Err(ResponseError::Malformed("column count"));
                    }
                    self.phase = Phase::Columns { left: n };
                    Ok(self.seen(Kind::Data, false, None))
                }
            },
            (Reply::Query | Reply::Execute, Phase::Columns { left }) => {
                self.phase = match left {
                    0 | 1 if self.deprecate_eof => Phase::Rows,
                    0 | 1 => Phase::ColumnsEof,
                    _ => Phase::Columns { left: left - 1 },
                };
                Ok(self.seen(Kind::Data, false, None))
            }
            (Reply::Query | Reply::Execute, Phase::ColumnsEof) => {
                let status = expect_eof(payload)?;
                self.status = status;
                if status & status::CURSOR_EXISTS != 0 && reply == Reply::Execute {
                    return Ok(self.finish(Kind::Eof, Some(status)));
                }
                self.phase = Phase::Rows;
                Ok(self.seen(Kind::Eof, false, Some(status)))
            }
            (Reply::Query | Reply::Execute, Phase::Rows) => {
                if terminator {
                    let (kind, status) = terminator_of(payload);
                    let status = status.ok_or(ResponseError::Malformed("terminator"))?;
                    return Ok(self.result_end(kind, status));
                }
                Ok(self.seen(Kind::Data, false, None))
            }
            (_, _) => Err(ResponseError::Malformed("response")),
        }
    }

    fn seen(&self, kind: Kind, done: bool, status: Option<u16>) -> Seen {
        Seen {
            kind,
            done,
            reply: self.pending.front().copied(),
            status,
        }
    }

    fn finish(&mut self, kind: Kind, status: Option<u16>) -> Seen {
        if let Some(s) = status {
            self.status = s;
        }
        let reply = self.pending.pop_front();
        self.phase = Phase::Start;
        Seen {
            kind,
            done: true,
            reply,
            status,
        }
    }

    /// One result ended; another follows when MORE_RESULTS_EXISTS is set.
    fn result_end(&mut self, kind: Kind, status: u16) -> Seen {
        if status & status::MORE_RESULTS_EXISTS != 0 {
            self.status = status;
            self.phase = Phase::Start;
            return self.seen(kind, false, Some(status));
        }
        self.finish(kind, Some(status))
    }

    /// The column definitions of a prepare answer, or its end when there are none.
    fn columns_section(&mut self, columns: u16, kind: Kind) -> Seen {
        if columns == 0 {
            return self.finish(kind, None);
        }
        self.phase = Phase::PrepareColumns { left: columns };
        self.seen(kind, false, None)
    }
}

/// A packet starting with 0xFE that ends something: a classic EOF (5 bytes) or, under
/// DEPRECATE_EOF, an OK-shaped one.
fn terminator_of(p: &[u8]) -> (Kind, Option<u16>) {
    if p.len() == 5 {
        (Kind::Eof, eof_status(p))
    } else {
        (Kind::Ok, ok_status(p))
    }
}

fn expect_eof(payload: &[u8]) -> Result<u16, ResponseError> {
    match terminator_of(payload) {
        (_, Some(status)) if payload.first() == Some(&0xFE) => Ok(status),
        _ => Err(ResponseError::Malformed("EOF")),
    }
}

/// Status flags of a classic EOF packet: 0xFE, warnings, status.
fn eof_status(p: &[u8]) -> Option<u16> {
    if p.len() == 5 && p[0] == 0xFE {
        Some(u16::from_le_bytes([p[3], p[4]]))
    } else {
        None
    }
}

/// Status flags of an OK packet (header 0x00 or 0xFE): after two length-encoded integers.
pub fn ok_status(p: &[u8]) -> Option<u16> {
    let mut off = 1;
    for _ in 0..2 {
        off += lenenc_size(*p.get(off)?)?;
    }
    let b = p.get(off..off + 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn lenenc_size(first: u8) -> Option<usize> {
    match first {
        0..=0xFA => Some(1),
        0xFC => Some(3),
        0xFD => Some(4),
        0xFE => Some(9),
        _ => None,
    }
}

fn lenenc(p: &[u8]) -> Option<u64> {
    let first = *p.first()?;
    let size = lenenc_size(first)?;
    if size == 1 {
        return Some(first as u64);
    }
    let bytes = p.get(1..size)?;
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate() {
        v |= (*b as u64) << (8 * i);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = &[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
    const OK_MORE: &[u8] = &[0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x00];
    const ERR: &[u8] = &[0xFF, 0x15, 0x04, b'#', b'2', b'8', b'0', b'0', b'0', b'x'];
    const EOF: &[u8] = &[0xFE, 0x00, 0x00, 0x02, 0x00];
    const EOF_TXN: &[u8] = &[0xFE, 0x00, 0x00, 0x03, 0x00];
    const TERM: &[u8] = &[0xFE, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00];
    const COL: &[u8] = &[0x03, b'd', b'e', b'f', 0x00];
    const ROW: &[u8] = &[0x01, b'1'];

    fn feed(tracker: &mut ResponseTracker, packets: &[&[u8]]) -> Vec<bool> {
        packets
            .iter()
            .map(|p| tracker.backend_packet(p).unwrap().done)
            .collect()
    }

    #[test]
    fn classic_result_set_ends_at_the_second_eof() {
        let mut f = ResponseTracker::new(false);
        f.expect(Reply::Query);
        let done = feed(&mut f, &[&[0x02], COL, COL, EOF, ROW, ROW, EOF_TXN]);
        assert_eq!(done, [false, false, false, false, false, false, true]);
        assert!(!f.busy());
        assert!(f.in_transaction());
    }

    #[test]
    fn deprecate_eof_result_set_ends_at_the_ok_terminator() {
        let mut f = ResponseTracker::new(true);
        f.expect(Reply::Query);
        let done = feed(&mut f, &[&[0x01], COL, ROW, TERM]);
        assert_eq!(done, [false, false, false, true]);
        assert!(!f.in_transaction());
    }

    #[test]
    fn more_results_keep_the_response_open() {
        let mut f = ResponseTracker::new(true);
        f.expect(Reply::Query);
        let done = feed(&mut f, &[OK_MORE, &[0x01], COL, ROW, TERM]);
        assert_eq!(done, [false, false, false, false, true]);
    }

    #[test]
    fn err_ends_everything() {
        let mut f = ResponseTracker::new(false);
        f.expect(Reply::Query);
        f.expect(Reply::Single);
        let done = feed(&mut f, &[&[0x01], COL, EOF, ROW, ERR, OK]);
        assert_eq!(done, [false, false, false, false, true, true]);
        assert!(!f.busy());
    }

    #[test]
    fn prepare_sections() {
        for (deprecate, packets, expected) in [
            (
                false,
                vec![
                    &[0x00, 1, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0][..],
                    COL,
                    COL,
                    EOF,
                    COL,
                    EOF,
                ],
                vec![false, false, false, false, false, true],
            ),
            (
                true,
                vec![&[0x00, 1, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0][..], COL, COL, COL],
                vec![false, false, false, true],
            ),
            (
                false,
                vec![&[0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]],
                vec![true],
            ),
            (
                false,
                vec![&[0x00, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0][..], COL, EOF],
                vec![false, false, true],
            ),
        ] {
            let mut f = ResponseTracker::new(deprecate);
            f.expect(Reply::Prepare);
            assert_eq!(
                feed(&mut f, &packets),
                expected,
                "deprecate_eof={deprecate}"
            );
        }
    }

    #[test]
    fn cursor_execute_ends_after_metadata() {
        let mut f = ResponseTracker::new(false);
        f.expect(Reply::Execute);
        let cursor_eof: &[u8] = &[0xFE, 0, 0, 0x42, 0];
        let done = feed(&mut f, &[&[0x01], COL, cursor_eof]);
        assert_eq!(done, [false, false, true]);
        f.expect(Reply::Fetch);
        let last: &[u8] = &[0xFE, 0, 0, 0xC2, 0];
        assert_eq!(feed(&mut f, &[&[0x00, 0x00, 0x01], last]), [false, true]);
    }

    #[test]
    fn rows_prefix_covers_whole_rows_only() {
        let mut f = ResponseTracker::new(true);
        f.expect(Reply::Query);
        assert_eq!(f.rows_prefix(&[1, 0, 0, 0, 0x31]), 0, "not in rows yet");
        feed(&mut f, &[&[0x01], COL]);
        let mut buf = Vec::new();
        for row in [ROW, ROW, &[0xFB][..]] {
            buf.extend_from_slice(&[row.len() as u8, 0, 0, 0]);
            buf.extend_from_slice(row);
        }
        let rows = buf.len();
        buf.extend_from_slice(&[TERM.len() as u8, 0, 0, 0]);
        buf.extend_from_slice(TERM);
        assert_eq!(f.rows_prefix(&buf), rows);
        assert_eq!(
            f.rows_prefix(&buf[..rows - 1]),
            rows - 5,
            "incomplete last row"
        );
        assert_eq!(f.rows_prefix(&buf[rows..]), 0, "the terminator is left");
        assert!(f.backend_packet(TERM).unwrap().done);
    }

    #[test]
    fn a_full_size_packet_is_continued() {
        let mut f = ResponseTracker::new(true);
        f.expect(Reply::Query);
        let mut big = vec![0xFC, 0xFF, 0xFF];
        big.resize(FULL, 0xFE);
        let done = feed(&mut f, &[&[0x01], COL, &big, &[0xFE, 1, 2], TERM]);
        assert_eq!(done, [false, false, false, false, true]);
    }

    #[test]
    fn unsolicited_err_is_passed_on_and_anything_else_is_refused() {
        let mut f = ResponseTracker::new(false);
        assert_eq!(f.backend_packet(ERR).unwrap().kind, Kind::Err);
        assert_eq!(f.backend_packet(OK), Err(ResponseError::Unexpected));
        f.expect(Reply::Query);
        assert!(f.backend_packet(&[]).is_err());
        assert!(f.backend_packet(&[0xFB, b'f']).is_err());
    }
}
