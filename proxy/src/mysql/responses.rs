//! The backend's answers, passed on to the client, and what they tell about the session:
//! statement ids, the schema, cursors, the transaction.

use protocols::mysql::command::{self};
use protocols::mysql::handshake::caps;
use protocols::mysql::packet::{self, MAX_PAYLOAD, write_packet};
use protocols::mysql::response::{
    OkPacket, SessionChange, session_changes, status, strip_session_track,
};
use protocols::mysql::response_tracker::Kind;

use super::conn::seq;
use super::session::My;
use crate::session::{Error, Session, offload};

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
            off += self.p.tracker.responses.rows_prefix(&b.conn.rbuf[off..]);
            let Some(len) = packet::packet_len(&b.conn.rbuf[off..], MAX_PAYLOAD)? else {
                break;
            };
            let body = off + 4..off + len;
            let seen = self
                .p
                .tracker
                .responses
                .backend_packet(&b.conn.rbuf[body.clone()])
                .map_err(|e| Error::Protocol(format!("from the database: {e}")))?;
            match seen.kind {
                Kind::Ok if seen.status.unwrap_or(0) & status::SESSION_STATE_CHANGED != 0 => {
                    let ok = OkPacket::parse(&b.conn.rbuf[body.clone()], b.capabilities)?;
                    for change in session_changes(&ok.session_state)? {
                        if let SessionChange::Schema(s) = change {
                            self.p.tracker.schema = (!s.is_empty()).then_some(s);
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
                    let current = &self.p.tracker.current;
                    let id = self.p.tracker.stmts.add(
                        ok.stmt_id,
                        current.text.clone(),
                        current.class,
                        self.p.tracker.schema.clone(),
                        ok.num_params,
                    );
                    command::set_prepare_ok_id(&mut b.conn.rbuf[body], id);
                }
                Kind::Err => self.p.tracker.current.failed = true,
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
            let text = self.p.tracker.current.text.len();
            let capabilities = self.p.hello.capabilities;
            self.p.hello.capabilities = offload::run(
                text,
                &mut self.p.tracker,
                &self.front.metrics.offloaded,
                move |t| {
                    let mut capabilities = capabilities;
                    t.complete(&seen, &mut capabilities);
                    capabilities
                },
            )
            .await?;
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
