//! The backend's answers, passed on to the client, and what they tell about the session:
//! statement ids, the schema, cursors, the transaction.

use protocols::mysql::command::{self, com};
use protocols::mysql::handshake::caps;
use protocols::mysql::packet::{self, MAX_PAYLOAD, write_packet};
use protocols::mysql::response::{
    OkPacket, SessionChange, session_changes, status, strip_session_track,
};
use protocols::mysql::response_tracker::{Kind, Seen};
use protocols::mysql::txn::{self, TxnEffect};

use super::conn::seq;
use super::session::My;
use crate::session::{Error, Session};

impl Session<My> {
    /// Passes whole backend packets on. Most go out as they came, in one write straight from
    /// the read buffer; a PrepareOk gets the client's statement id in place, and an OK carrying
    /// session tracking the client didn't ask for is re-encoded without it.
    pub(super) async fn on_backend_bytes(&mut self) -> Result<(), Error> {
        let Some(b) = self.p.backend.as_mut() else {
            return Ok(());
        };
        let strip = self.p.hello.capabilities & caps::SESSION_TRACK == 0;
        // (offset, length, new packet) of the packets that change size.
        let mut replaced: Vec<(usize, usize, Vec<u8>)> = Vec::new();
        let mut finished = None;
        let mut off = 0;
        loop {
            // Runs of plain rows need no look at each one.
            off += self.p.responses.rows_prefix(&b.conn.rbuf[off..]);
            let Some(len) = packet::packet_len(&b.conn.rbuf[off..], MAX_PAYLOAD)? else {
                break;
            };
            let body = off + 4..off + len;
            let seen = self
                .p
                .responses
                .backend_packet(&b.conn.rbuf[body.clone()])
                .map_err(|e| Error::Protocol(format!("from the database: {e}")))?;
            match seen.kind {
                Kind::Ok if seen.status.unwrap_or(0) & status::SESSION_STATE_CHANGED != 0 => {
                    let ok = OkPacket::parse(&b.conn.rbuf[body.clone()], b.capabilities)?;
                    for change in session_changes(&ok.session_state)? {
                        if let SessionChange::Schema(s) = change {
                            self.p.schema = (!s.is_empty()).then_some(s);
                        }
                    }
                    if strip {
                        let new = strip_session_track(&b.conn.rbuf[body.clone()])?;
                        let mut packet = Vec::with_capacity(new.len() + 4);
                        write_packet(&mut packet, seq(&b.conn.rbuf[off..]), &new);
                        replaced.push((off, len, packet));
                    }
                }
                Kind::PrepareOk => {
                    let ok = command::PrepareOk::parse(&b.conn.rbuf[body.clone()])?;
                    let id = self.p.stmts.add(
                        ok.stmt_id,
                        self.p.current.text.clone(),
                        self.p.schema.clone(),
                        ok.num_params,
                    );
                    command::set_prepare_ok_id(&mut b.conn.rbuf[body], id);
                }
                Kind::Err => self.p.current.failed = true,
                _ => {}
            }
            if seen.done {
                // One command at a time: at most one response ends per read.
                finished = Some(seen);
            }
            off += len;
        }
        let chunk = b.conn.rbuf.split_to(off);
        if let Some(seen) = finished {
            self.p.complete(&seen);
            // Idle before the client learns its command is done, so what it asks next (the
            // admin API, a drain) sees the state it was told.
            self.update_busy();
        }
        if replaced.is_empty() {
            self.p.client.send(&chunk).await?;
            return Ok(());
        }
        let mut out = Vec::with_capacity(chunk.len());
        let mut from = 0;
        for (at, len, packet) in &replaced {
            out.extend_from_slice(&chunk[from..*at]);
            out.extend_from_slice(packet);
            from = at + len;
        }
        out.extend_from_slice(&chunk[from..]);
        self.p.client.send(&out).await?;
        Ok(())
    }
}

impl My {
    /// The response to the current command has ended: record what it changed.
    pub(super) fn complete(&mut self, seen: &Seen) {
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
                    self.hello.capabilities |= caps::MULTI_STATEMENTS;
                } else {
                    self.hello.capabilities &= !caps::MULTI_STATEMENTS;
                }
            }
            _ => {}
        }
    }

    /// Keeps `txn_explicit`/`txn_dirty` in step with the transaction the backend reports.
    pub(super) fn note_transaction(&mut self) {
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
}
