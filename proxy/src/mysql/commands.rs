//! A client's commands: checked, answered by torpor when it may, or passed to the backend with
//! what the answer will need (the command, its statement, its text).

use bytes::BytesMut;
use protocols::mysql::command::{self, com};
use protocols::mysql::local::{self, View};
use protocols::mysql::packet::{MAX_PAYLOAD, write_packet};
use protocols::mysql::response::{OkPacket, err_packet};
use protocols::mysql::tracker::Command;

use super::conn::{payload, seq};
use super::connection_id::Ids;
use super::kill;
use super::session::My;
use crate::session::{Error, Session, Step, offload};

impl Session<My> {
    /// The first packet of a client's command, whole.
    pub(super) async fn on_client_packet(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        if seq(&packet) != 0 {
            // What the server does too: a client that lost count can't be followed further.
            return Err(Error::my(1156, "08S01", "Got packets out of order"));
        }
        self.p.reply_seq = 1;
        // The packets after a full one are large.rs's.
        let full = payload(&packet).len() == MAX_PAYLOAD;
        let Some(&cmd) = payload(&packet).first() else {
            return Err(Error::Protocol("empty command packet".into()));
        };
        if !full && self.answer_locally(cmd, &packet).await? {
            return Ok(Step::Continue);
        }
        match cmd {
            // A client saying goodbye is not activity: it must not wake the database.
            com::QUIT => return Ok(Step::Done),
            com::STMT_CLOSE => {
                self.p.tracker.note_change();
                let id = command::stmt_id(payload(&packet)).unwrap_or(0);
                if let (Some(st), Some(b)) =
                    (self.p.tracker.stmts.remove(id), self.p.backend.as_mut())
                {
                    command::set_stmt_id(&mut packet[4..], st.backend_id);
                    b.conn.send(&packet).await?;
                }
                return Ok(Step::Continue);
            }
            com::STMT_SEND_LONG_DATA => return self.p.on_long_data(packet).await,
            com::STMT_EXECUTE | com::STMT_FETCH | com::STMT_RESET => {
                let id = command::stmt_id(payload(&packet)).unwrap_or(0);
                if self.p.tracker.stmts.get(id).is_none() {
                    let name = match cmd {
                        com::STMT_EXECUTE => "mysqld_stmt_execute",
                        com::STMT_FETCH => "mysqld_stmt_fetch",
                        _ => "mysqld_stmt_reset",
                    };
                    return self
                        .p
                        .local_err(
                            1243,
                            "HY000",
                            &format!("Unknown prepared statement handler ({id}) given to {name}"),
                        )
                        .await;
                }
            }
            com::CHANGE_USER => return self.change_user(&packet).await,
            com::QUERY
            | com::INIT_DB
            | com::FIELD_LIST
            | com::PING
            | com::STATISTICS
            | com::PROCESS_INFO
            | com::PROCESS_KILL
            | com::DEBUG
            | com::REFRESH
            | com::CREATE_DB
            | com::DROP_DB
            | com::STMT_PREPARE
            | com::SET_OPTION
            | com::RESET_CONNECTION => {}
            _ => {
                return self.p.local_err(1047, "08S01", "Unknown command").await;
            }
        }
        if cmd == com::QUERY || cmd == com::PROCESS_KILL {
            match kill::route(
                &self.front,
                &self.p.user,
                self.member.id(),
                payload(&packet),
            ) {
                kill::Route::Forward => {}
                kill::Route::Rewrite(p) => {
                    let mut out = Vec::with_capacity(p.len() + 4);
                    write_packet(&mut out, 0, &p);
                    packet.clear();
                    packet.extend_from_slice(&out);
                }
                kill::Route::Done => {
                    let seq = self.p.reply_seq;
                    self.p.send_ok(seq).await?;
                    return Ok(Step::Continue);
                }
                kill::Route::Refuse(code, msg) => {
                    return self.p.local_err(code, "HY000", &msg).await;
                }
            }
        }
        self.forward_command(packet).await
    }

    /// Answers the command without the server when it may: while parked (probes and SETs), or
    /// while the backend is being drained or is frozen (probes only, so they don't call the
    /// drain off or thaw it).
    pub(super) async fn answer_locally(&mut self, cmd: u8, packet: &[u8]) -> Result<bool, Error> {
        let probes_only = if self.p.backend.is_none() {
            false
        } else if !self.p.tracker.responses.busy()
            && (self.member.prepared
                || self.front.cluster.is_draining()
                || self.front.cluster.is_frozen())
        {
            true
        } else {
            return Ok(false);
        };
        let status = self.p.tracker.responses.status();
        let (reply, probe) = match cmd {
            com::PING if self.front.my_probes.ping() => (
                local::ok_packet(self.p.reply_seq, status, self.p.hello.capabilities),
                true,
            ),
            com::QUERY => {
                let catalog = if probes_only {
                    None
                } else {
                    self.front.my_catalog()
                };
                let view = View {
                    capabilities: self.p.hello.capabilities,
                    status,
                    catalog: catalog.as_deref(),
                    plain_session: !self.p.tracker.customised,
                    probes: &self.front.my_probes,
                };
                let Some(answer) = local::answer(&payload(packet)[1..], self.p.reply_seq, &view)
                else {
                    return Ok(false);
                };
                self.p.tracker.responses.set_status(answer.status);
                self.p.overlay.record(&answer.changes);
                let probe = local::is_probe(&payload(packet)[1..], &self.front.my_probes);
                (answer.reply, probe)
            }
            _ => return Ok(false),
        };
        self.front
            .local_answers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if probe {
            self.front.metrics.probes_answered.increment(1);
        }
        self.p.client.send(&reply).await?;
        Ok(true)
    }

    pub(super) async fn forward_command(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        if self.p.backend.is_none() {
            self.attach().await?;
        }
        // Probes reach a running server but are not activity: they neither call a drain off
        // nor keep the database up.
        let body = payload(&packet);
        let probes = &self.front.my_probes;
        let probe = (body[0] == com::PING && probes.ping())
            || (body[0] == com::QUERY && local::is_probe(&body[1..], probes));
        let probing = probe && !self.member.prepared && !self.front.cluster.is_draining();
        self.p.probing = probing && (self.p.probing || !self.p.tracker.responses.busy());
        if !probing {
            self.activity().await?;
        }
        // The tracker reads the client's text; the backend gets the client's connection id.
        let ids = self.p.backend.as_ref().map(|b| {
            Ids::new(
                self.p.hello.connection_id,
                b.id,
                self.p.tracker.responses.status(),
            )
        });
        let size = packet.len();
        let (packet, command) = offload::run(
            size,
            &mut self.p.tracker,
            &self.front.metrics.offloaded,
            move |t| {
                let command = t.command(&mut packet, probe);
                if let Some(ids) = ids {
                    ids.packet(&mut packet);
                }
                (packet, command)
            },
        )
        .await?;
        if command? == Command::RefuseExecute {
            return self
                .p
                .local_err(
                    1210,
                    "HY000",
                    "Incorrect arguments to mysqld_stmt_execute: no parameter types were ever bound",
                )
                .await;
        }
        // Busy before the backend can answer, so nobody sees a stale idle state.
        self.update_busy();
        self.thaw_before_send().await?;
        if let Some(b) = self.p.backend.as_mut() {
            b.conn.send(&packet).await?;
        }
        Ok(Step::Continue)
    }
}

impl My {
    /// COM_STMT_SEND_LONG_DATA: kept for a restore, passed on while attached.
    pub(super) async fn on_long_data(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        let (id, param, data) = command::parse_long_data(payload(&packet))?;
        self.tracker.note_change();
        let Some(st) = self.tracker.stmts.get_mut(id) else {
            // The server ignores long data for unknown statements until the execute fails.
            return Ok(Step::Continue);
        };
        st.long_data.push((param, data.to_vec()));
        let backend_id = st.backend_id;
        // No answer is due, and a restore re-sends what was recorded: no need to wake.
        if let Some(b) = self.backend.as_mut() {
            command::set_stmt_id(&mut packet[4..], backend_id);
            b.conn.send(&packet).await?;
        }
        Ok(Step::Continue)
    }

    pub(super) async fn send_ok(&mut self, seq: u8) -> Result<(), Error> {
        let ok = OkPacket {
            status: self.tracker.responses.status() & local::SESSION_STATUS,
            ..OkPacket::default()
        };
        let mut body = Vec::new();
        ok.write(0x00, self.hello.capabilities, &mut body);
        let mut out = Vec::new();
        write_packet(&mut out, seq, &body);
        self.client.send(&out).await?;
        Ok(())
    }

    pub(super) async fn local_err(
        &mut self,
        code: u16,
        state: &str,
        msg: &str,
    ) -> Result<Step, Error> {
        let mut out = Vec::new();
        write_packet(&mut out, self.reply_seq, &err_packet(code, state, msg));
        self.client.send(&out).await?;
        Ok(Step::Continue)
    }
}
