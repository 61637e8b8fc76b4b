//! One MySQL client connection for its whole life: attached to a backend connection, or parked
//! with its state in the store while the database sleeps.

use std::sync::Arc;

use bytes::BytesMut;
use controller::{BackendInfo, CheckpointReply, DrainCmd, Resume};
use protocols::mysql::command::{self, com, cursor};
use protocols::mysql::flow::{Flow, Kind, Reply, Seen};
use protocols::mysql::handshake::caps;
use protocols::mysql::local::{self, Overlay, View};
use protocols::mysql::packet::{self, MAX_PAYLOAD, write_packet};
use protocols::mysql::response::{
    OkPacket, SessionChange, err_packet, session_changes, status, strip_session_track,
};
use protocols::mysql::snapshot::{ClientInfo, MySnapshot};
use protocols::mysql::tracked::Tracked;
use protocols::mysql::txn::{self, TxnEffect};
use state_store::StoreError;
use tokio_util::sync::CancellationToken;

use super::backend::{self, Backend};
use super::checkpoint::{self, Capture};
use super::conn::Packets;
use super::conn::{Conn, payload, seq};
use super::error::UNKNOWN;
use super::kill;
use super::restore;
use super::startup::Hello;
use super::statements::Statements;
use crate::registry::{BackendKey, Holds, Registration};
use crate::service::{Service, User};
use crate::session::Error;
use crate::session::error::Code;
use crate::session::{Ending, Membership};

/// While a response is outstanding, stop reading a client that keeps sending past this.
const CLIENT_BACKLOG: usize = 1 << 20;

/// How long a drain's checkpoint waits for probes in flight to be answered.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Session {
    service: Arc<Service>,
    client: Conn,
    user: Arc<User>,
    hello: Hello,
    member: Membership,
    backend: Option<Backend>,
    flow: Flow,
    tracked: Tracked,
    stmts: Statements,
    /// Current schema, as the backend last reported it.
    schema: Option<String>,
    /// The open transaction was started on purpose (BEGIN), or has run something that may
    /// have written: it can't be dropped. A transaction that autocommit=0 opened for reads
    /// only can.
    txn_explicit: bool,
    txn_dirty: bool,
    /// The command whose response is outstanding.
    current: Current,
    /// The last client packet had the maximum size: the next one continues it.
    client_continues: bool,
    /// Sequence id for torpor's own answer to the client's current command.
    reply_seq: u8,
    /// The client sent something since the last snapshot (or since the backend connection was
    /// made) that may have changed what the session holds.
    changed: bool,
    /// What the client set while torpor answered for it, for the next replay.
    overlay: Overlay,
    /// Everything in flight on the backend is health-check probes.
    probing: bool,
    /// The session may have changed its session tracking or old_mode: torpor no longer knows
    /// what the server would report for a SET, or how it reads `utf8`.
    customised: bool,
}

#[derive(Debug, Default)]
struct Current {
    com: u8,
    /// The client-visible statement id of a statement command.
    stmt: u32,
    cursor: bool,
    failed: bool,
    /// Query text, prepared statement text or schema name; the buffer is reused.
    text: String,
}

enum Event {
    Shutdown,
    Killed,
    Client(std::io::Result<usize>),
    Backend(std::io::Result<usize>),
    Cmd(Option<DrainCmd>),
    Quiet,
}

pub enum Step {
    Continue,
    Done,
}

impl Session {
    pub fn new(
        service: Arc<Service>,
        client: Conn,
        user: Arc<User>,
        hello: Hello,
        reg: Registration,
        reply_seq: u8,
    ) -> Self {
        let schema = hello.database.clone();
        Session {
            member: Membership::new(service.clone(), reg),
            service,
            client,
            user,
            hello,
            backend: None,
            flow: Flow::new(true),
            tracked: Tracked::default(),
            stmts: Statements::default(),
            schema,
            txn_explicit: false,
            txn_dirty: false,
            current: Current::default(),
            client_continues: false,
            reply_seq,
            changed: false,
            overlay: Overlay::default(),
            probing: false,
            customised: false,
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let result = self.serve(&shutdown).await;
        if let Err(e) = &result {
            if let Some((code, state, msg)) = super::error::client_report(e) {
                super::error::report(&mut self.client, self.reply_seq, code, state, &msg).await;
            }
            match e {
                Error::Closed => {}
                Error::Fatal {
                    code: Code::Mysql { errno, .. },
                    ..
                } if *errno == super::error::SHUTDOWN => {}
                other => {
                    tracing::info!(cluster = %self.service.name, session = self.member.id(), error = %other, "session ended")
                }
            }
        }
        self.cleanup().await;
    }

    async fn serve(&mut self, shutdown: &CancellationToken) -> Result<(), Error> {
        let key = self.connect_key();
        let known = self.service.cached_status(&key).is_some();
        if !(known && self.service.cluster.running_backend().is_none()) {
            // The first login with this user and schema goes to the backend, which may refuse
            // the schema; later ones are answered from memory while the database sleeps.
            self.attach().await?;
            self.service.remember_status(&key, &[]);
        }
        let seq = self.reply_seq;
        self.send_ok(seq).await?;

        // Made once: a cancellation future registers and unregisters itself each time one is
        // created, under a lock every session shares.
        let mut stop = Ending::new(shutdown, &self.member.reg.entry.kill);
        while let Step::Continue = self.step(&mut stop).await? {}
        Ok(())
    }

    fn connect_key(&self) -> Vec<(String, String)> {
        vec![
            ("user".into(), self.user.name.clone()),
            (
                "database".into(),
                self.hello.database.clone().unwrap_or_default(),
            ),
        ]
    }

    async fn step(&mut self, stop: &mut Ending) -> Result<Step, Error> {
        if (!self.flow.busy() || self.client_continues)
            && let Some(len) = self.client.whole_packet()?
        {
            let packet = self.client.rbuf.split_to(len);
            return self.on_client_packet(packet).await;
        }
        let read_client = !self.flow.busy() || self.client.rbuf.len() < CLIENT_BACKLOG;
        let early = self
            .member
            .wants_early_snapshot(self.backend.is_some() && !self.flow.busy(), self.changed);
        let event = tokio::select! {
            _ = stop.shutdown.as_mut() => Event::Shutdown,
            _ = stop.killed.as_mut() => Event::Killed,
            r = self.client.fill(), if read_client => Event::Client(r),
            r = fill(self.backend.as_mut()) => Event::Backend(r),
            c = self.member.cmd_rx.recv() => Event::Cmd(c),
            _ = self.member.early.elapsed(&self.service.cluster), if early => Event::Quiet,
        };
        match event {
            Event::Shutdown => Err(Error::my(
                super::error::SHUTDOWN,
                "70100",
                "Connection was killed: the proxy is shutting down",
            )),
            Event::Killed => Err(Error::my(
                super::error::SHUTDOWN,
                "70100",
                "Connection was killed",
            )),
            Event::Client(r) => {
                if r? == 0 {
                    return Ok(Step::Done);
                }
                Ok(Step::Continue)
            }
            Event::Backend(r) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) if self.member.prepared => {
                        tracing::debug!(error = %e, "backend closed during drain");
                        0
                    }
                    Err(e) => return Err(e.into()),
                };
                if n == 0 {
                    if self.member.prepared {
                        self.park();
                        return Ok(Step::Continue);
                    }
                    return Err(Error::my(2013, "HY000", "Lost connection to the database"));
                }
                self.on_backend_bytes().await
            }
            Event::Cmd(Some(cmd)) if self.backend.is_some() => self.on_cmd(cmd).await,
            Event::Cmd(_) => Ok(Step::Continue),
            Event::Quiet => {
                let answer = self.checkpoint().await;
                if answer.as_ref().is_err_and(Error::is_disconnect) {
                    return answer.map(|_| Step::Continue);
                }
                self.member.early_result(answer.map_err(|e| e.to_string()));
                Ok(Step::Continue)
            }
        }
    }

    /// One whole packet from the client: a command, or the continuation of a big one.
    async fn on_client_packet(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        let expected = if self.client_continues {
            self.reply_seq
        } else {
            0
        };
        if seq(&packet) != expected {
            // What the server does too: a client that lost count can't be followed further.
            return Err(Error::my(1156, "08S01", "Got packets out of order"));
        }
        self.reply_seq = seq(&packet).wrapping_add(1);
        let full = payload(&packet).len() == MAX_PAYLOAD;
        if std::mem::replace(&mut self.client_continues, full) {
            if let Some(b) = self.backend.as_mut() {
                b.conn.send(&packet).await?;
            }
            return Ok(Step::Continue);
        }
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
                self.changed = true;
                let id = command::stmt_id(payload(&packet)).unwrap_or(0);
                if let (Some(st), Some(b)) = (self.stmts.remove(id), self.backend.as_mut()) {
                    command::set_stmt_id(&mut packet[4..], st.backend_id);
                    b.conn.send(&packet).await?;
                }
                return Ok(Step::Continue);
            }
            com::STMT_SEND_LONG_DATA => return self.on_long_data(packet).await,
            com::STMT_EXECUTE | com::STMT_FETCH | com::STMT_RESET => {
                let id = command::stmt_id(payload(&packet)).unwrap_or(0);
                if self.stmts.get(id).is_none() {
                    let name = match cmd {
                        com::STMT_EXECUTE => "mysqld_stmt_execute",
                        com::STMT_FETCH => "mysqld_stmt_fetch",
                        _ => "mysqld_stmt_reset",
                    };
                    return self
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
                return self.local_err(1047, "08S01", "Unknown command").await;
            }
        }
        if cmd == com::QUERY || cmd == com::PROCESS_KILL {
            match kill::route(&self.service, payload(&packet)) {
                kill::Route::Forward => {}
                kill::Route::Rewrite(p) => {
                    let mut out = Vec::with_capacity(p.len() + 4);
                    write_packet(&mut out, 0, &p);
                    packet.clear();
                    packet.extend_from_slice(&out);
                }
                kill::Route::Done => {
                    let seq = self.reply_seq;
                    self.send_ok(seq).await?;
                    return Ok(Step::Continue);
                }
            }
        }
        self.forward_command(packet).await
    }

    /// Answers the command without the server when it may: while parked (probes and SETs), or
    /// while the backend is being drained (probes only, so they don't call the drain off).
    async fn answer_locally(&mut self, cmd: u8, packet: &[u8]) -> Result<bool, Error> {
        let probes_only = if self.backend.is_none() {
            false
        } else if !self.flow.busy() && (self.member.prepared || self.service.cluster.is_draining())
        {
            true
        } else {
            return Ok(false);
        };
        let status = self.flow.status();
        let reply = match cmd {
            com::PING if self.service.my_probes.ping() => {
                local::ok_packet(self.reply_seq, status, self.hello.capabilities)
            }
            com::QUERY => {
                let catalog = if probes_only {
                    None
                } else {
                    self.service.my_catalog()
                };
                let view = View {
                    capabilities: self.hello.capabilities,
                    status,
                    catalog: catalog.as_deref(),
                    plain_session: !self.customised,
                    probes: &self.service.my_probes,
                };
                let Some(answer) = local::answer(&payload(packet)[1..], self.reply_seq, &view)
                else {
                    return Ok(false);
                };
                self.flow.set_status(answer.status);
                self.overlay.record(&answer.changes);
                answer.reply
            }
            _ => return Ok(false),
        };
        self.service
            .local_answers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.client.send(&reply).await?;
        Ok(true)
    }

    async fn forward_command(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        if self.backend.is_none() {
            self.attach().await?;
        }
        // Probes reach a running server but are not activity: they neither call a drain off
        // nor keep the database up.
        let body = payload(&packet);
        let probes = &self.service.my_probes;
        let probe = (body[0] == com::PING && probes.ping())
            || (body[0] == com::QUERY && local::is_probe(&body[1..], probes));
        let probing = probe && !self.member.prepared && !self.service.cluster.is_draining();
        self.probing = probing && (self.probing || !self.flow.busy());
        if !probing && self.member.activity() == Resume::Parked {
            // Too late to call the drain off: our snapshot is durable, so park and wake
            // again; the command goes to the new backend.
            self.park();
            self.attach().await?;
        }
        let body = payload(&packet);
        let cmd = body[0];
        self.current.com = cmd;
        self.current.failed = false;
        self.current.cursor = false;
        self.current.stmt = 0;
        self.current.text.clear();
        let reply = match cmd {
            com::QUERY | com::STMT_PREPARE | com::INIT_DB => {
                self.current
                    .text
                    .push_str(&String::from_utf8_lossy(&body[1..]));
                if cmd != com::INIT_DB
                    && protocols::mysql::sql::worth_scanning(&self.current.text)
                    && local::may_customise(&body[1..])
                {
                    self.customised = true;
                }
                match cmd {
                    com::QUERY => Reply::Query,
                    com::STMT_PREPARE => Reply::Prepare,
                    _ => Reply::Single,
                }
            }
            com::STMT_EXECUTE => {
                if !self.rewrite_execute(&mut packet)? {
                    return self
                        .local_err(
                            1210,
                            "HY000",
                            "Incorrect arguments to mysqld_stmt_execute: no parameter types were ever bound",
                        )
                        .await;
                }
                Reply::Execute
            }
            com::STMT_FETCH => {
                self.remap_stmt(&mut packet);
                Reply::Fetch
            }
            com::STMT_RESET => {
                self.remap_stmt(&mut packet);
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
            com::QUERY => !probe && !txn::plainly_reads(&self.current.text),
            com::STMT_EXECUTE => !self.stmts.get(self.current.stmt).is_some_and(|s| s.plain),
            com::STMT_FETCH | com::PING | com::FIELD_LIST | com::STATISTICS | com::PROCESS_INFO => {
                false
            }
            _ => true,
        };
        self.flow.expect(reply);
        self.client_continues = payload(&packet).len() == MAX_PAYLOAD;
        // Busy before the backend can answer, so nobody sees a stale idle state.
        self.update_busy();
        if let Some(b) = self.backend.as_mut() {
            b.conn.send(&packet).await?;
        }
        Ok(Step::Continue)
    }

    fn remap_stmt(&mut self, packet: &mut BytesMut) {
        let id = command::stmt_id(payload(packet)).unwrap_or(0);
        self.current.stmt = id;
        if let Some(st) = self.stmts.get(id) {
            command::set_stmt_id(&mut packet[4..], st.backend_id);
        }
    }

    /// Maps the statement id, remembers bound types, and re-sends them to a backend statement
    /// that hasn't seen them (one prepared again by a restore). Returns false when the execute
    /// must not reach the backend: MariaDB 10.11 crashes on an execute without types for a
    /// statement that never had any.
    fn rewrite_execute(&mut self, packet: &mut BytesMut) -> Result<bool, Error> {
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
            let s = seq(packet);
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

    async fn on_long_data(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        let (id, param, data) = command::parse_long_data(payload(&packet))?;
        self.changed = true;
        let Some(st) = self.stmts.get_mut(id) else {
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

    /// Passes whole backend packets on. Most go out as they came, in one write straight from
    /// the read buffer; a PrepareOk gets the client's statement id in place, and an OK carrying
    /// session tracking the client didn't ask for is re-encoded without it.
    async fn on_backend_bytes(&mut self) -> Result<Step, Error> {
        let Some(b) = self.backend.as_mut() else {
            return Ok(Step::Continue);
        };
        let strip = self.hello.capabilities & caps::SESSION_TRACK == 0;
        // (offset, length, new packet) of the packets that change size.
        let mut replaced: Vec<(usize, usize, Vec<u8>)> = Vec::new();
        let mut finished = None;
        let mut off = 0;
        loop {
            // Runs of plain rows need no look at each one.
            off += self.flow.rows_prefix(&b.conn.rbuf[off..]);
            let Some(len) = packet::packet_len(&b.conn.rbuf[off..], MAX_PAYLOAD)? else {
                break;
            };
            let body = off + 4..off + len;
            let seen = self
                .flow
                .backend_packet(&b.conn.rbuf[body.clone()])
                .map_err(|e| Error::Protocol(format!("from the database: {e}")))?;
            match seen.kind {
                Kind::Ok if seen.status.unwrap_or(0) & status::SESSION_STATE_CHANGED != 0 => {
                    let ok = OkPacket::parse(&b.conn.rbuf[body.clone()], b.capabilities)?;
                    for change in session_changes(&ok.session_state)? {
                        if let SessionChange::Schema(s) = change {
                            self.schema = (!s.is_empty()).then_some(s);
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
                    let id = self.stmts.add(
                        ok.stmt_id,
                        self.current.text.clone(),
                        self.schema.clone(),
                        ok.num_params,
                    );
                    command::set_prepare_ok_id(&mut b.conn.rbuf[body], id);
                }
                Kind::Err => self.current.failed = true,
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
            self.complete(&seen);
            // Idle before the client learns its command is done, so what it asks next (the
            // admin API, a drain) sees the state it was told.
            self.update_busy();
        }
        if replaced.is_empty() {
            self.client.send(&chunk).await?;
            return Ok(Step::Continue);
        }
        let mut out = Vec::with_capacity(chunk.len());
        let mut from = 0;
        for (at, len, packet) in &replaced {
            out.extend_from_slice(&chunk[from..*at]);
            out.extend_from_slice(packet);
            from = at + len;
        }
        out.extend_from_slice(&chunk[from..]);
        self.client.send(&out).await?;
        Ok(Step::Continue)
    }

    /// The response to the current command has ended: record what it changed.
    fn complete(&mut self, seen: &Seen) {
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

    /// Lets the probes in flight finish, so a drain need not be refused for them.
    async fn finish_probes(&mut self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        while self.probing && self.flow.busy() {
            let Some(b) = self.backend.as_mut() else {
                return Ok(());
            };
            match tokio::time::timeout_at(deadline, b.conn.fill()).await {
                Err(_) => return Ok(()),
                Ok(r) => {
                    if r? == 0 {
                        return Err(Error::my(2013, "HY000", "Lost connection to the database"));
                    }
                }
            }
            self.on_backend_bytes().await?;
        }
        Ok(())
    }

    async fn on_cmd(&mut self, cmd: DrainCmd) -> Result<Step, Error> {
        if matches!(cmd, DrainCmd::Checkpoint(_)) {
            self.finish_probes().await?;
        }
        match cmd {
            DrainCmd::Checkpoint(reply) => match self.checkpoint().await {
                Ok(answer) => self.member.answer(reply, Ok(answer)),
                Err(e) => {
                    // The capture failed; the session itself is still fine unless the
                    // connection broke.
                    self.member.answer(reply, Err(e.to_string()));
                    if e.is_disconnect() {
                        return Err(e);
                    }
                }
            },
            DrainCmd::Commit => {
                if self.member.prepared {
                    self.park();
                }
            }
            DrainCmd::Abort => self.member.prepared = false,
        }
        Ok(Step::Continue)
    }

    /// Keeps `txn_explicit`/`txn_dirty` in step with the transaction the backend reports.
    fn note_transaction(&mut self) {
        if !self.flow.in_transaction() {
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

    fn blocker(&self) -> Option<&'static str> {
        self.backend.as_ref()?;
        if self.flow.busy() || self.client_continues {
            Some("query in progress")
        } else if self.flow.in_transaction() && (self.txn_explicit || self.txn_dirty) {
            Some("open transaction")
        } else if self.tracked.table_locks() {
            Some("LOCK TABLES")
        } else if self.stmts.any_cursor_open() {
            Some("open cursor")
        } else {
            None
        }
    }

    /// Captures this session's state and puts it durably, or says why it can't.
    async fn checkpoint(&mut self) -> Result<CheckpointReply, Error> {
        if let Some(why) = self.blocker() {
            return Ok(CheckpointReply::Blocked(format!(
                "{}: {why}",
                self.member.label()
            )));
        }
        let Some(b) = self.backend.as_mut() else {
            return Ok(CheckpointReply::Ready);
        };
        if !self.changed {
            // Only plain reads since the last snapshot (or since connecting, when there is
            // none): what the store holds, or a fresh connection, is still this session.
            return Ok(CheckpointReply::Ready);
        }
        let mut snap = match checkpoint::capture(b, &self.tracked).await? {
            Capture::Blocked(why) => {
                let why = format!("{}: {}", self.member.label(), why.join(", "));
                self.member.reg.entry.set_found_blocker(Some(why.clone()));
                return Ok(CheckpointReply::Blocked(why));
            }
            Capture::Snapshot(s) => s,
        };
        snap.client = ClientInfo {
            capabilities: self.hello.capabilities,
            charset: self.hello.charset,
            user: self.user.name.clone(),
            database: self.hello.database.clone(),
        };
        snap.statements = self.stmts.snapshot();
        self.service
            .store
            .put(&self.member.key, &*snap)
            .await
            .map_err(|e| Error::my(UNKNOWN, "HY000", format!("snapshot put failed: {e}")))?;
        self.member.reg.entry.set_holds(Holds::of_mysql(&snap));
        self.member.saved = true;
        self.changed = false;
        Ok(CheckpointReply::Ready)
    }

    /// Drops the backend connection; the snapshot in the store now holds the session.
    fn park(&mut self) {
        self.backend = None;
        self.flow.reset();
        // A transaction autocommit=0 opened for reads is not carried over: the session the
        // client gets back has none.
        self.flow
            .set_status(self.flow.status() & local::SESSION_STATUS & !status::IN_TRANS);
        self.member.leave();
        self.update_busy();
    }

    /// Wakes the cluster if needed, connects, and restores the snapshot if there is one.
    async fn attach(&mut self) -> Result<(), Error> {
        let (at, snap) = self.member.wake_and_load::<MySnapshot>().await;
        let at = at.map_err(|e| {
            Error::my(
                UNKNOWN,
                "08S01",
                format!("could not wake the database: {e}"),
            )
        })?;
        let result = self.connect_and_restore(&at, snap).await;
        if result.is_err() {
            self.member.leave();
        }
        result
    }

    async fn connect_and_restore(
        &mut self,
        at: &BackendInfo,
        snap: Option<Result<MySnapshot, StoreError>>,
    ) -> Result<(), Error> {
        let snap = match snap {
            Some(loaded) => Some(loaded.map_err(|e| {
                Error::my(
                    UNKNOWN,
                    "HY000",
                    format!(
                        "torpor could not restore this session after the database woke up: snapshot unavailable: {e}"
                    ),
                )
            })?),
            // Only what torpor answered for: the replay is those settings, in the session's
            // schema.
            None if !self.overlay.is_empty() => Some(MySnapshot {
                schema: self.schema.clone(),
                ..MySnapshot::default()
            }),
            None => None,
        };
        // A restore sets the schema itself; a first connection starts in the client's.
        let database = if snap.is_some() {
            None
        } else {
            self.schema.clone()
        };
        let mut b = backend::connect(
            at,
            &self.hello,
            &self.user.name,
            &self.user.password,
            database.as_deref(),
        )
        .await?;
        self.service.remember_greeting(b.greeting.clone());
        // What the client set while torpor answered for it goes on top of what the store held;
        // the store is behind the session until the next snapshot.
        let overlaid = !self.overlay.is_empty();
        let mut status = b.status;
        if let Some(mut snap) = snap {
            self.overlay.apply(&mut snap);
            status = restore::restore(&mut b, &snap, &mut self.stmts).await?;
            self.tracked.after_replay();
        }
        self.overlay.clear();
        self.flow = Flow::new(b.capabilities & caps::DEPRECATE_EOF != 0);
        self.flow.set_status(status);
        // A fresh connection holds the snapshot's state, or none if there is no snapshot.
        self.changed = overlaid;
        self.member.reg.entry.set_backend(Some(BackendKey {
            addr: b.addr,
            pid: b.id as i32,
            secret: 0,
        }));
        self.backend = Some(b);
        Ok(())
    }

    /// COM_CHANGE_USER: check the new user's password here, then start over on a fresh
    /// backend connection as that user (the server would reset the session the same way).
    async fn change_user(&mut self, packet: &[u8]) -> Result<Step, Error> {
        let req = super::change_user::parse(payload(packet), self.hello.capabilities)?;
        let seq = self.reply_seq;
        let (user, next) = super::change_user::authenticate(
            &mut self.client,
            &self.service,
            &req,
            seq,
            &self.hello.host,
        )
        .await?;
        self.reply_seq = next;
        if let Some(b) = self.backend.as_mut() {
            let mut out = Vec::new();
            write_packet(&mut out, 0, &command::quit());
            let _ = b.conn.send(&out).await;
        }
        self.park();
        // The server would reset the session: nothing of the old one is restored.
        self.member.forget_snapshot().await;
        self.tracked.reset();
        self.stmts.clear();
        self.overlay.clear();
        self.customised = false;
        self.user = user;
        self.hello.database = req.database.clone();
        if let Some(cs) = req.charset {
            self.hello.charset = cs;
        }
        self.schema = req.database;
        self.member
            .reg
            .entry
            .set_user(&self.user.name, self.hello.database.as_deref());
        self.attach().await?;
        let seq = self.reply_seq;
        self.send_ok(seq).await?;
        Ok(Step::Continue)
    }

    async fn send_ok(&mut self, seq: u8) -> Result<(), Error> {
        let ok = OkPacket {
            status: self.flow.status() & local::SESSION_STATUS,
            ..OkPacket::default()
        };
        let mut body = Vec::new();
        ok.write(0x00, self.hello.capabilities, &mut body);
        let mut out = Vec::new();
        write_packet(&mut out, seq, &body);
        self.client.send(&out).await?;
        Ok(())
    }

    async fn local_err(&mut self, code: u16, state: &str, msg: &str) -> Result<Step, Error> {
        let mut out = Vec::new();
        write_packet(&mut out, self.reply_seq, &err_packet(code, state, msg));
        self.client.send(&out).await?;
        Ok(Step::Continue)
    }

    fn update_busy(&mut self) {
        let blocker = self.blocker();
        if blocker.is_none() {
            self.probing = false;
        }
        self.member.publish(blocker, self.probing);
    }

    async fn cleanup(&mut self) {
        if let Some(b) = self.backend.as_mut() {
            let mut out = Vec::new();
            write_packet(&mut out, 0, &command::quit());
            let _ = b.conn.send(&out).await;
        }
        self.park();
        self.member.forget_snapshot().await;
    }
}

/// Reads from the backend, or never completes while parked.
async fn fill(backend: Option<&mut Backend>) -> std::io::Result<usize> {
    match backend {
        Some(b) => b.conn.fill().await,
        None => std::future::pending().await,
    }
}
