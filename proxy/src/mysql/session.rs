//! The MySQL side of a session: commands and their responses, statement ids, KILL, change of
//! user, what torpor answers itself, capture and replay. The session engine does the rest.

use std::sync::Arc;

use bytes::BytesMut;
use controller::BackendInfo;
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

use super::backend::{self, Backend};
use super::checkpoint::{self, Capture as MyCapture};
use super::conn::Packets;
use super::conn::{Conn, payload, seq};
use super::error::UNKNOWN;
use super::kill;
use super::restore;
use super::startup::Hello;
use super::statements::Statements;
use crate::registry::{BackendKey, Holds, Registration};
use crate::service::{Service, User};
use crate::session::{Capture, Error, Membership, Protocol, Session, Step};

/// While a response is outstanding, stop reading a client that keeps sending past this.
const CLIENT_BACKLOG: usize = 1 << 20;

pub struct My {
    client: Conn,
    user: Arc<User>,
    hello: Hello,
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
    /// What is in flight on the backend is health-check probes only.
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

/// A session for a client that has just logged in.
pub fn session(
    service: Arc<Service>,
    client: Conn,
    user: Arc<User>,
    hello: Hello,
    reg: Registration,
    reply_seq: u8,
) -> Session<My> {
    let schema = hello.database.clone();
    let member = Membership::new(service.clone(), reg);
    Session::new(
        service,
        member,
        My {
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
        },
    )
}

impl Protocol for My {
    type Snapshot = MySnapshot;

    fn conns(&mut self) -> (&mut Conn, Option<&mut Conn>) {
        (&mut self.client, self.backend.as_mut().map(|b| &mut b.conn))
    }

    fn reads_client(&self) -> bool {
        !self.flow.busy() || self.client.rbuf.len() < CLIENT_BACKLOG
    }

    async fn greet(s: &mut Session<Self>) -> Result<(), Error> {
        let key = s.p.connect_key();
        let known = s.service.cached_status(&key).is_some();
        if !(known && s.service.cluster.running_backend().is_none()) {
            // The first login with this user and schema goes to the backend, which may refuse
            // the schema; later ones are answered from memory while the database sleeps.
            s.attach().await?;
            s.service.remember_status(&key, &[]);
        }
        let seq = s.p.reply_seq;
        s.p.send_ok(seq).await
    }

    async fn on_client(s: &mut Session<Self>) -> Result<Option<Step>, Error> {
        // One command at a time: the next waits in the buffer until this one's answer ends.
        if s.p.flow.busy() && !s.p.client_continues {
            return Ok(None);
        }
        let Some(len) = s.p.client.whole_packet()? else {
            return Ok(None);
        };
        let packet = s.p.client.rbuf.split_to(len);
        s.on_client_packet(packet).await.map(Some)
    }

    async fn on_backend(s: &mut Session<Self>) -> Result<(), Error> {
        s.on_backend_bytes().await
    }

    fn attached(&self) -> bool {
        self.backend.is_some()
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

    fn in_flight(&self) -> bool {
        self.flow.busy() || self.client_continues
    }

    fn probing(&self) -> bool {
        self.probing && self.flow.busy()
    }

    fn changed(&self) -> bool {
        self.changed
    }

    fn settled(&self) -> bool {
        self.backend.is_some() && !self.flow.busy()
    }

    async fn capture(s: &mut Session<Self>) -> Result<Capture<MySnapshot>, Error> {
        let p = &mut s.p;
        let Some(b) = p.backend.as_mut() else {
            return Err(Self::lost_backend());
        };
        let mut snap = match checkpoint::capture(b, &p.tracked).await? {
            MyCapture::Blocked(why) => return Ok(Capture::Blocked(why)),
            MyCapture::Snapshot(s) => s,
        };
        snap.client = ClientInfo {
            capabilities: p.hello.capabilities,
            charset: p.hello.charset,
            user: p.user.name.clone(),
            database: p.hello.database.clone(),
        };
        snap.statements = p.stmts.snapshot();
        Ok(Capture::Snapshot(snap))
    }

    fn holds(snap: &MySnapshot) -> Holds {
        Holds::of_mysql(snap)
    }

    fn saved(&mut self) {
        self.changed = false;
    }

    async fn connect_and_restore(
        s: &mut Session<Self>,
        at: &BackendInfo,
        snap: Option<Result<MySnapshot, StoreError>>,
    ) -> Result<(), Error> {
        let p = &mut s.p;
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
            None if !p.overlay.is_empty() => Some(MySnapshot {
                schema: p.schema.clone(),
                ..MySnapshot::default()
            }),
            None => None,
        };
        // A restore sets the schema itself; a first connection starts in the client's.
        let database = if snap.is_some() {
            None
        } else {
            p.schema.clone()
        };
        let mut b = backend::connect(
            at,
            &p.hello,
            &p.user.name,
            &p.user.password,
            database.as_deref(),
        )
        .await?;
        s.service.remember_greeting(b.greeting.clone());
        // What the client set while torpor answered for it goes on top of what the store held;
        // the store is behind the session until the next snapshot.
        let overlaid = !p.overlay.is_empty();
        let mut status = b.status;
        if let Some(mut snap) = snap {
            p.overlay.apply(&mut snap);
            status = restore::restore(&mut b, &snap, &mut p.stmts).await?;
            p.tracked.after_replay();
        }
        p.overlay.clear();
        p.flow = Flow::new(b.capabilities & caps::DEPRECATE_EOF != 0);
        p.flow.set_status(status);
        // A fresh connection holds the snapshot's state, or none if there is no snapshot.
        p.changed = overlaid;
        s.member.reg.entry.set_backend(Some(BackendKey {
            addr: b.addr,
            pid: b.id as i32,
            secret: 0,
        }));
        p.backend = Some(b);
        Ok(())
    }

    fn detach(&mut self) {
        self.backend = None;
        self.flow.reset();
        // A transaction autocommit=0 opened for reads is not carried over: the session the
        // client gets back has none.
        self.flow
            .set_status(self.flow.status() & local::SESSION_STATUS & !status::IN_TRANS);
    }

    async fn goodbye(&mut self) {
        if let Some(b) = self.backend.as_mut() {
            let mut out = Vec::new();
            write_packet(&mut out, 0, &command::quit());
            let _ = b.conn.send(&out).await;
        }
    }

    fn lost_backend() -> Error {
        Error::my(2013, "HY000", "Lost connection to the database")
    }

    fn ended(killed: bool) -> Error {
        let message = if killed {
            "Connection was killed"
        } else {
            "Connection was killed: the proxy is shutting down"
        };
        Error::my(super::error::SHUTDOWN, "70100", message)
    }

    fn wake_failed(why: String) -> Error {
        Error::my(
            UNKNOWN,
            "08S01",
            format!("could not wake the database: {why}"),
        )
    }

    fn put_failed(why: String) -> Error {
        Error::my(UNKNOWN, "HY000", format!("snapshot put failed: {why}"))
    }

    async fn report(&mut self, e: &Error) {
        if let Some((code, state, msg)) = super::error::client_report(e) {
            super::error::report(&mut self.client, self.reply_seq, code, state, &msg).await;
        }
    }
}

impl Session<My> {
    /// One whole packet from the client: a command, or the continuation of a big one.
    async fn on_client_packet(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        let expected = if self.p.client_continues {
            self.p.reply_seq
        } else {
            0
        };
        if seq(&packet) != expected {
            // What the server does too: a client that lost count can't be followed further.
            return Err(Error::my(1156, "08S01", "Got packets out of order"));
        }
        self.p.reply_seq = seq(&packet).wrapping_add(1);
        let full = payload(&packet).len() == MAX_PAYLOAD;
        if std::mem::replace(&mut self.p.client_continues, full) {
            if let Some(b) = self.p.backend.as_mut() {
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
                self.p.changed = true;
                let id = command::stmt_id(payload(&packet)).unwrap_or(0);
                if let (Some(st), Some(b)) = (self.p.stmts.remove(id), self.p.backend.as_mut()) {
                    command::set_stmt_id(&mut packet[4..], st.backend_id);
                    b.conn.send(&packet).await?;
                }
                return Ok(Step::Continue);
            }
            com::STMT_SEND_LONG_DATA => return self.p.on_long_data(packet).await,
            com::STMT_EXECUTE | com::STMT_FETCH | com::STMT_RESET => {
                let id = command::stmt_id(payload(&packet)).unwrap_or(0);
                if self.p.stmts.get(id).is_none() {
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
            match kill::route(&self.service, payload(&packet)) {
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
            }
        }
        self.forward_command(packet).await
    }

    /// Answers the command without the server when it may: while parked (probes and SETs), or
    /// while the backend is being drained (probes only, so they don't call the drain off).
    async fn answer_locally(&mut self, cmd: u8, packet: &[u8]) -> Result<bool, Error> {
        let probes_only = if self.p.backend.is_none() {
            false
        } else if !self.p.flow.busy()
            && (self.member.prepared || self.service.cluster.is_draining())
        {
            true
        } else {
            return Ok(false);
        };
        let status = self.p.flow.status();
        let reply = match cmd {
            com::PING if self.service.my_probes.ping() => {
                local::ok_packet(self.p.reply_seq, status, self.p.hello.capabilities)
            }
            com::QUERY => {
                let catalog = if probes_only {
                    None
                } else {
                    self.service.my_catalog()
                };
                let view = View {
                    capabilities: self.p.hello.capabilities,
                    status,
                    catalog: catalog.as_deref(),
                    plain_session: !self.p.customised,
                    probes: &self.service.my_probes,
                };
                let Some(answer) = local::answer(&payload(packet)[1..], self.p.reply_seq, &view)
                else {
                    return Ok(false);
                };
                self.p.flow.set_status(answer.status);
                self.p.overlay.record(&answer.changes);
                answer.reply
            }
            _ => return Ok(false),
        };
        self.service
            .local_answers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.p.client.send(&reply).await?;
        Ok(true)
    }

    async fn forward_command(&mut self, mut packet: BytesMut) -> Result<Step, Error> {
        if self.p.backend.is_none() {
            self.attach().await?;
        }
        // Probes reach a running server but are not activity: they neither call a drain off
        // nor keep the database up.
        let body = payload(&packet);
        let probes = &self.service.my_probes;
        let probe = (body[0] == com::PING && probes.ping())
            || (body[0] == com::QUERY && local::is_probe(&body[1..], probes));
        let probing = probe && !self.member.prepared && !self.service.cluster.is_draining();
        self.p.probing = probing && (self.p.probing || !self.p.flow.busy());
        if !probing {
            self.activity().await?;
        }
        let body = payload(&packet);
        let cmd = body[0];
        self.p.current.com = cmd;
        self.p.current.failed = false;
        self.p.current.cursor = false;
        self.p.current.stmt = 0;
        self.p.current.text.clear();
        let reply = match cmd {
            com::QUERY | com::STMT_PREPARE | com::INIT_DB => {
                self.p
                    .current
                    .text
                    .push_str(&String::from_utf8_lossy(&body[1..]));
                if cmd != com::INIT_DB
                    && protocols::mysql::sql::worth_scanning(&self.p.current.text)
                    && local::may_customise(&body[1..])
                {
                    self.p.customised = true;
                }
                match cmd {
                    com::QUERY => Reply::Query,
                    com::STMT_PREPARE => Reply::Prepare,
                    _ => Reply::Single,
                }
            }
            com::STMT_EXECUTE => {
                if !self.p.rewrite_execute(&mut packet)? {
                    return self.p
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
                self.p.remap_stmt(&mut packet);
                Reply::Fetch
            }
            com::STMT_RESET => {
                self.p.remap_stmt(&mut packet);
                Reply::Single
            }
            com::FIELD_LIST => Reply::FieldList,
            com::STATISTICS => Reply::Text,
            com::PROCESS_INFO => Reply::Query,
            com::SET_OPTION => {
                self.p.current.stmt = u32::from(body.get(1).copied().unwrap_or(0));
                Reply::Single
            }
            _ => Reply::Single,
        };
        self.p.changed |= match cmd {
            com::QUERY => !probe && !txn::plainly_reads(&self.p.current.text),
            com::STMT_EXECUTE => !self
                .p
                .stmts
                .get(self.p.current.stmt)
                .is_some_and(|s| s.plain),
            com::STMT_FETCH | com::PING | com::FIELD_LIST | com::STATISTICS | com::PROCESS_INFO => {
                false
            }
            _ => true,
        };
        self.p.flow.expect(reply);
        self.p.client_continues = payload(&packet).len() == MAX_PAYLOAD;
        // Busy before the backend can answer, so nobody sees a stale idle state.
        self.update_busy();
        if let Some(b) = self.p.backend.as_mut() {
            b.conn.send(&packet).await?;
        }
        Ok(Step::Continue)
    }

    /// Passes whole backend packets on. Most go out as they came, in one write straight from
    /// the read buffer; a PrepareOk gets the client's statement id in place, and an OK carrying
    /// session tracking the client didn't ask for is re-encoded without it.
    async fn on_backend_bytes(&mut self) -> Result<(), Error> {
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
            off += self.p.flow.rows_prefix(&b.conn.rbuf[off..]);
            let Some(len) = packet::packet_len(&b.conn.rbuf[off..], MAX_PAYLOAD)? else {
                break;
            };
            let body = off + 4..off + len;
            let seen = self
                .p
                .flow
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

    /// COM_CHANGE_USER: check the new user's password here, then start over on a fresh
    /// backend connection as that user (the server would reset the session the same way).
    async fn change_user(&mut self, packet: &[u8]) -> Result<Step, Error> {
        let req = super::change_user::parse(payload(packet), self.p.hello.capabilities)?;
        let seq = self.p.reply_seq;
        let (user, next) = super::change_user::authenticate(
            &mut self.p.client,
            &self.service,
            &req,
            seq,
            &self.p.hello.host,
        )
        .await?;
        self.p.reply_seq = next;
        if let Some(b) = self.p.backend.as_mut() {
            let mut out = Vec::new();
            write_packet(&mut out, 0, &command::quit());
            let _ = b.conn.send(&out).await;
        }
        self.park();
        // The server would reset the session: nothing of the old one is restored.
        self.member.forget_snapshot().await;
        self.p.tracked.reset();
        self.p.stmts.clear();
        self.p.overlay.clear();
        self.p.customised = false;
        self.p.user = user;
        self.p.hello.database = req.database.clone();
        if let Some(cs) = req.charset {
            self.p.hello.charset = cs;
        }
        self.p.schema = req.database;
        self.member
            .reg
            .entry
            .set_user(&self.p.user.name, self.p.hello.database.as_deref());
        self.attach().await?;
        let seq = self.p.reply_seq;
        self.p.send_ok(seq).await?;
        Ok(Step::Continue)
    }
}

impl My {
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

    fn connect_key(&self) -> Vec<(String, String)> {
        vec![
            ("user".into(), self.user.name.clone()),
            (
                "database".into(),
                self.hello.database.clone().unwrap_or_default(),
            ),
        ]
    }
}
