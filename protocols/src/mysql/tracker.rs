//! Follows one MySQL session's commands and the backend's answers, sans-IO, to know when it is
//! at a safe point and what it may have changed: the answer in flight, the open transaction
//! and whether it could be dropped, the schema, the binary statements and their ids, LOCK
//! TABLES. The PostgreSQL counterpart is [`crate::pg::tracker::Tracker`].

use bytes::BytesMut;

use super::command::{self, com, cursor};
use super::handshake::caps;
use super::local;
use super::packet::{MAX_PAYLOAD, PacketError, write_packet};
use super::reads;
use super::response::status;
use super::response_tracker::{Reply, ResponseTracker, Seen};
use super::sql;
use super::statements::{Class, Statements};
use super::tracked::Tracked;
use super::txn::{self, TxnEffect};

#[derive(Debug)]
pub struct Tracker {
    /// Where the backend's answer to the current command ends.
    pub responses: ResponseTracker,
    /// What the statements passing by made that the server can't list.
    pub tracked: Tracked,
    /// Binary statements, by the ids the client was given.
    pub stmts: Statements,
    /// The command whose answer is outstanding.
    pub current: Current,
    /// Current schema, as the backend last reported it.
    pub schema: Option<String>,
    /// The open transaction was started on purpose (BEGIN), or has run something that may
    /// have written: it can't be dropped. A transaction that autocommit=0 opened for reads
    /// only can.
    txn_explicit: bool,
    txn_dirty: bool,
    /// The last client packet had the maximum size: the next one continues it.
    pub client_continues: bool,
    /// The client sent something since the last snapshot (or since the backend connection was
    /// made) that may have changed what the session holds.
    changed: bool,
    /// The session may have changed its session tracking or old_mode: torpor no longer knows
    /// what the server would report for a SET, or how it reads `utf8`.
    pub customised: bool,
}

#[derive(Debug, Default)]
pub struct Current {
    pub com: u8,
    /// The client-visible statement id of a statement command.
    pub stmt: u32,
    pub cursor: bool,
    pub failed: bool,
    /// Query text, prepared statement text or schema name; the buffer is reused.
    pub text: String,
    /// What the text of a COM_STMT_PREPARE tells about running it.
    pub class: Class,
}

/// What to do with a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Send it on; the tracker expects its answer.
    Send,
    /// An execute that must not reach the server: it crashes MariaDB 10.11 when the statement
    /// never had parameter types. The client gets error 1210 instead.
    RefuseExecute,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(None)
    }
}

impl Tracker {
    pub fn new(schema: Option<String>) -> Tracker {
        Tracker {
            responses: ResponseTracker::new(true),
            tracked: Tracked::default(),
            stmts: Statements::default(),
            current: Current::default(),
            schema,
            txn_explicit: false,
            txn_dirty: false,
            client_continues: false,
            changed: false,
            customised: false,
        }
    }

    /// Why this session can't be checkpointed right now.
    pub fn blocker(&self) -> Option<&'static str> {
        if self.in_flight() {
            Some("query in progress")
        } else if self.responses.in_transaction() && (self.txn_explicit || self.txn_dirty) {
            Some("open transaction")
        } else if self.tracked.table_locks() {
            Some("LOCK TABLES")
        } else if self.stmts.any_cursor_open() {
            Some("open cursor")
        } else {
            None
        }
    }

    /// An answer is outstanding, or the client is midway through a command.
    pub fn in_flight(&self) -> bool {
        self.responses.busy() || self.client_continues
    }

    /// Something may have changed what the session holds since [`Tracker::mark_saved`].
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The session's state is now what the store holds (a snapshot was put, or restored).
    pub fn mark_saved(&mut self) {
        self.changed = false;
    }

    /// Something changed the session outside a command (long data, a statement closed, what
    /// torpor answered while parked).
    pub fn note_change(&mut self) {
        self.changed = true;
    }

    /// A whole command on its way to the backend (statement ids still the client's): maps
    /// statement ids, records what its answer will tell, and expects that answer. `probe`: a
    /// health check, which changes nothing.
    pub fn command(&mut self, packet: &mut BytesMut, probe: bool) -> Result<Command, PacketError> {
        let body = payload(packet);
        let cmd = body.first().copied().unwrap_or_default();
        self.current.com = cmd;
        self.current.failed = false;
        self.current.cursor = false;
        self.current.stmt = 0;
        self.current.text.clear();
        // One large command must not keep its buffer's size for the rest of the session.
        self.current.text.shrink_to(64 * 1024);
        let reply = match cmd {
            com::QUERY | com::STMT_PREPARE | com::INIT_DB => {
                let text = body.get(1..).unwrap_or_default();
                self.current.text.push_str(&String::from_utf8_lossy(text));
                if cmd != com::INIT_DB
                    && sql::worth_scanning(&self.current.text)
                    && local::may_customise(text)
                {
                    self.customised = true;
                }
                match cmd {
                    com::QUERY => Reply::Query,
                    com::STMT_PREPARE => {
                        self.current.class = Class::of(&self.current.text);
                        Reply::Prepare
                    }
                    _ => Reply::Single,
                }
            }
            com::STMT_EXECUTE => {
                if !self.rewrite_execute(packet)? {
                    return Ok(Command::RefuseExecute);
                }
                Reply::Execute
            }
            com::STMT_FETCH => {
                self.remap_stmt(packet);
                Reply::Fetch
            }
            com::STMT_RESET => {
                self.remap_stmt(packet);
                Reply::Single
            }
            com::FIELD_LIST => Reply::FieldList,
            com::STATISTICS => Reply::Text,
            com::PROCESS_INFO => Reply::Query,
            com::SET_OPTION => {
                self.current.stmt = u32::from(body.get(1).copied().unwrap_or(0));
                Reply::Single
            }
            _ => Reply::Single,
        };
        self.changed |= match cmd {
            com::QUERY => !probe && !self.reads(&self.current.text),
            com::STMT_EXECUTE => !self.stmts.get(self.current.stmt).is_some_and(|s| s.plain),
            com::STMT_FETCH | com::PING | com::FIELD_LIST | com::STATISTICS | com::PROCESS_INFO => {
                false
            }
            _ => true,
        };
        self.responses.expect(reply);
        self.client_continues = payload(packet).len() == MAX_PAYLOAD;
        Ok(Command::Send)
    }

    /// A query that changes nothing the session holds: a plain read, or the EXECUTE of a SQL
    /// prepared plain read.
    fn reads(&self, sql: &str) -> bool {
        reads::plainly_reads(sql)
            || reads::executed(sql).is_some_and(|name| self.tracked.prepared_reads(name))
    }

    fn remap_stmt(&mut self, packet: &mut BytesMut) {
        let id = command::stmt_id(payload(packet)).unwrap_or(0);
        self.current.stmt = id;
        if let Some(st) = self.stmts.get(id) {
            command::set_stmt_id(&mut packet[4..], st.backend_id);
        }
    }

    /// Maps the statement id, remembers bound types, and re-sends them to a backend statement
    /// that hasn't seen them (one prepared again by a restore). False when the execute must not
    /// reach the backend: MariaDB 10.11 crashes on an execute without types for a statement
    /// that never had any.
    fn rewrite_execute(&mut self, packet: &mut BytesMut) -> Result<bool, PacketError> {
        let id = command::stmt_id(payload(packet)).unwrap_or(0);
        self.current.stmt = id;
        let Some(st) = self.stmts.get_mut(id) else {
            return Ok(true);
        };
        let exec = command::parse_execute(payload(packet), st.num_params)?;
        self.current.cursor = exec.flags & cursor::READ_ONLY != 0;
        if let Some(types) = exec.types {
            st.types = Some(types.to_vec());
            st.types_unsent = false;
        } else if st.num_params > 0 && st.types_unsent {
            let Some(types) = &st.types else {
                return Ok(false);
            };
            let rewritten = command::execute_with_types(payload(packet), st.num_params, types)?;
            if rewritten.len() >= MAX_PAYLOAD {
                return Ok(false);
            }
            let s = packet.get(3).copied().unwrap_or_default();
            let mut out = Vec::with_capacity(rewritten.len() + 4);
            write_packet(&mut out, s, &rewritten);
            packet.clear();
            packet.extend_from_slice(&out);
            st.types_unsent = false;
        }
        // The server forgets long data once the statement runs.
        st.long_data.clear();
        command::set_stmt_id(&mut packet[4..], st.backend_id);
        Ok(true)
    }

    /// The answer to the current command has ended: record what it changed. `capabilities`
    /// are the client's, which COM_SET_OPTION changes for the next backend connection.
    pub fn complete(&mut self, seen: &Seen, capabilities: &mut u32) {
        let ok = !self.current.failed;
        let st = seen.status.unwrap_or(0);
        self.note_transaction();
        match self.current.com {
            com::QUERY => self
                .tracked
                .observe(&self.current.text, self.schema.as_deref(), ok),
            com::INIT_DB if ok => self.schema = Some(self.current.text.clone()),
            com::STMT_PREPARE if ok => self
                .tracked
                .observe_prepared(&self.current.text, self.schema.as_deref()),
            com::STMT_EXECUTE => {
                if let Some(s) = self.stmts.get_mut(self.current.stmt) {
                    s.cursor_open = ok && self.current.cursor && st & status::CURSOR_EXISTS != 0;
                }
            }
            com::STMT_FETCH => {
                if let Some(s) = self.stmts.get_mut(self.current.stmt)
                    && (!ok || st & status::LAST_ROW_SENT != 0)
                {
                    s.cursor_open = false;
                }
            }
            com::STMT_RESET if ok => {
                if let Some(s) = self.stmts.get_mut(self.current.stmt) {
                    s.cursor_open = false;
                    s.long_data.clear();
                }
            }
            com::RESET_CONNECTION if ok => {
                self.tracked.reset();
                self.stmts.clear();
                self.customised = false;
            }
            com::SET_OPTION if ok => {
                // COM_SET_OPTION 0 turns multi-statements on, 1 off; a new backend connection
                // must start the same way.
                if self.current.stmt == 0 {
                    *capabilities |= caps::MULTI_STATEMENTS;
                } else {
                    *capabilities &= !caps::MULTI_STATEMENTS;
                }
            }
            _ => {}
        }
    }

    /// Keeps `txn_explicit`/`txn_dirty` in step with the transaction the backend reports.
    fn note_transaction(&mut self) {
        if !self.responses.in_transaction() {
            self.txn_explicit = false;
            self.txn_dirty = false;
            return;
        }
        let effect = match self.current.com {
            com::QUERY => txn::effect(&self.current.text),
            com::STMT_EXECUTE => match self.stmts.get(self.current.stmt) {
                Some(s) if !s.writes => TxnEffect::Reads,
                _ => TxnEffect::Writes,
            },
            com::STMT_FETCH
            | com::STMT_PREPARE
            | com::STMT_RESET
            | com::PING
            | com::INIT_DB
            | com::FIELD_LIST
            | com::STATISTICS
            | com::SET_OPTION => TxnEffect::Reads,
            _ => TxnEffect::Writes,
        };
        match effect {
            TxnEffect::Reads => {}
            TxnEffect::Writes => self.txn_dirty = true,
            TxnEffect::Begins => self.txn_explicit = true,
        }
    }

    /// The session starts over as a fresh one (COM_CHANGE_USER): nothing of the old one
    /// carries.
    pub fn reset(&mut self, schema: Option<String>) {
        self.tracked.reset();
        self.stmts.clear();
        self.customised = false;
        self.schema = schema;
    }
}

fn payload(packet: &[u8]) -> &[u8] {
    packet.get(4..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::packet::write_packet;

    fn command(payload: &[u8]) -> BytesMut {
        let mut out = Vec::new();
        write_packet(&mut out, 0, payload);
        BytesMut::from(&out[..])
    }

    fn query(t: &mut Tracker, sql: &str) {
        let mut body = vec![com::QUERY];
        body.extend_from_slice(sql.as_bytes());
        assert_eq!(t.command(&mut command(&body), false), Ok(Command::Send));
    }

    /// The OK that ends a command, with these status flags.
    fn ok(t: &mut Tracker, status_flags: u16) {
        let mut body = vec![0u8, 0, 0];
        body.extend_from_slice(&status_flags.to_le_bytes());
        body.extend_from_slice(&[0, 0]);
        let seen = t.responses.backend_packet(&body).unwrap();
        assert!(seen.done);
        let mut caps = 0;
        t.complete(&seen, &mut caps);
    }

    #[test]
    fn a_read_in_an_autocommit_off_transaction_can_be_dropped_a_begin_cannot() {
        let mut t = Tracker::new(None);
        query(&mut t, "SELECT * FROM t");
        assert_eq!(t.blocker(), Some("query in progress"));
        ok(&mut t, status::IN_TRANS);
        assert_eq!(t.blocker(), None);
        assert!(!t.changed());
        query(&mut t, "BEGIN");
        ok(&mut t, status::IN_TRANS);
        assert_eq!(t.blocker(), Some("open transaction"));
        assert!(t.changed());
        query(&mut t, "COMMIT");
        ok(&mut t, status::AUTOCOMMIT);
        assert_eq!(t.blocker(), None);
    }

    #[test]
    fn a_write_in_an_implicit_transaction_blocks() {
        let mut t = Tracker::new(None);
        query(&mut t, "UPDATE t SET x = 1");
        ok(&mut t, status::IN_TRANS);
        assert_eq!(t.blocker(), Some("open transaction"));
    }

    #[test]
    fn a_probe_changes_nothing() {
        let mut t = Tracker::new(None);
        let mut body = vec![com::QUERY];
        body.extend_from_slice(b"SELECT 1");
        assert_eq!(t.command(&mut command(&body), true), Ok(Command::Send));
        ok(&mut t, status::AUTOCOMMIT);
        assert!(!t.changed());
        t.note_change();
        assert!(t.changed());
        t.mark_saved();
        assert!(!t.changed());
    }
}
