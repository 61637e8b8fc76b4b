//! One client connection for its whole life: attached to a backend connection, or parked with
//! its state in the store while the database sleeps.

use std::sync::Arc;

use bytes::BytesMut;
use controller::{BackendInfo, CheckpointReply, DrainCmd, Rejoin, Resume};
use protocols::pg::frame;
use protocols::pg::local::{self, Effect, Outcome, Overlay};
use protocols::pg::message::{self, tag};
use protocols::pg::parse;
use protocols::pg::snapshot::PgSnapshot;
use protocols::pg::tracker::Tracker;
use state_store::StoreError;
use tokio_util::sync::CancellationToken;

use super::backend::{self, Backend};
use super::checkpoint::{self, Capture};
use super::conn::Conn;
use super::conn::Messages;
use super::restore;
use crate::registry::{BackendKey, Holds};
use crate::service::{Service, User};
use crate::session::Error;
use crate::session::error::Code;
use crate::session::{Ending, Membership};

pub struct Session {
    service: Arc<Service>,
    client: Conn,
    user: Arc<User>,
    startup: Vec<(String, String)>,
    /// ParameterStatus values as the client knows them.
    told: Vec<(String, String)>,
    /// The values the client was told at startup: what a RESET goes back to.
    initial: Vec<(String, String)>,
    /// What the client changed while torpor answered for it, for the next replay.
    overlay: Overlay,
    /// Everything in flight on the backend is health-check probes.
    probing: bool,
    /// The client is in a transaction block the backend doesn't hold (one carried over a
    /// stop, or one torpor answered BEGIN for while parked): the statement the next attach
    /// opens it with.
    reopen: Option<String>,
    /// How to reopen the backend's current transaction block, as the last checkpoint judged.
    carried: Option<String>,
    /// The session LISTENs (as its last snapshot says): while parked it asks to be attached
    /// whenever the backend starts.
    listens: bool,
    virtual_key: (i32, i32),
    member: Membership,
    tracker: Tracker,
    backend: Option<Backend>,
}

enum Event {
    Shutdown,
    Client(std::io::Result<usize>),
    Backend(std::io::Result<usize>),
    Cmd(Option<DrainCmd>),
    Quiet,
    Rejoin(Rejoin),
}

enum Flow {
    Continue,
    Done,
}

enum Local {
    Answered,
    Incomplete,
    Server,
}

/// How long a drain's checkpoint waits for probes in flight to be answered.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Session {
    pub fn new(
        service: Arc<Service>,
        client: Conn,
        user: Arc<User>,
        startup: Vec<(String, String)>,
    ) -> Self {
        let (virtual_key, reg) = service.registry.register(&service.name);
        reg.entry
            .introduce_pg(&user.name, &startup, client.io.peer_addr());
        Session {
            member: Membership::new(service.clone(), reg),
            service,
            client,
            user,
            startup,
            told: Vec::new(),
            initial: Vec::new(),
            overlay: Overlay::default(),
            probing: false,
            reopen: None,
            carried: None,
            listens: false,
            virtual_key,
            tracker: Tracker::default(),
            backend: None,
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        let result = self.serve(&shutdown).await;
        if let Err(e) = &result {
            if let Some((code, msg)) = super::error::client_report(e) {
                super::error::report(&mut self.client, code, &msg).await;
            }
            match e {
                Error::Closed => {}
                Error::Fatal {
                    code: Code::Sqlstate("57P01"),
                    ..
                } => {}
                other => {
                    tracing::info!(cluster = %self.service.name, session = self.member.id(), error = %other, "session ended")
                }
            }
        }
        self.cleanup().await;
    }

    async fn serve(&mut self, shutdown: &CancellationToken) -> Result<(), Error> {
        let cached = self.service.cached_status(&self.startup);
        match cached {
            Some(status) if self.service.cluster.running_backend().is_none() => {
                // The cluster sleeps and we know what it would say: answer without waking it.
                self.told = status;
            }
            _ => {
                self.attach().await?;
                if let Some(b) = &self.backend {
                    self.told = b.status.clone();
                    self.service.remember_status(&self.startup, &b.status);
                }
            }
        }
        self.initial = self.told.clone();
        let mut out = BytesMut::new();
        for (k, v) in &self.told {
            message::parameter_status(&mut out, k, v);
        }
        message::backend_key_data(&mut out, self.virtual_key.0, self.virtual_key.1);
        message::ready_for_query(&mut out, b'I');
        self.client.send(&out).await?;

        // Made once: a cancellation future registers and unregisters itself each time one is
        // created, under a lock every session shares.
        let mut stop = Ending::new(shutdown, &self.member.reg.entry.kill);
        while let Flow::Continue = self.step(&mut stop).await? {}
        Ok(())
    }

    async fn step(&mut self, stop: &mut Ending) -> Result<Flow, Error> {
        // Whole client messages go first, including ones that arrived while parked or waking.
        if has_whole_message(&self.client.rbuf)? {
            if self.client.rbuf.first() == Some(&tag::TERMINATE) {
                // A client saying goodbye is not activity: it must not wake the database or
                // call off a drain.
                return Ok(Flow::Done);
            }
            match self.answer_locally().await? {
                Local::Answered => return Ok(Flow::Continue),
                // Part of a batch torpor can answer: read the rest before deciding.
                Local::Incomplete => {}
                Local::Server => {
                    if self.backend.is_none() {
                        self.attach().await?;
                    }
                    return self.on_client_bytes().await;
                }
            }
        }
        let early = self.member.wants_early_snapshot(
            self.backend.is_some() && self.tracker.is_idle() && self.tracker.txn_status() == b'I',
            self.tracker.changed(),
        );
        let event = tokio::select! {
            _ = stop.shutdown.as_mut() => Event::Shutdown,
            r = self.client.fill() => Event::Client(r),
            r = fill(self.backend.as_mut()) => Event::Backend(r),
            c = self.member.cmd_rx.recv() => Event::Cmd(c),
            _ = self.member.early.elapsed(&self.service.cluster), if early => Event::Quiet,
            Some(rj) = self.member.rejoin_rx.recv(), if self.backend.is_none() => Event::Rejoin(rj),
        };
        match event {
            Event::Shutdown => Err(shutting_down()),
            Event::Client(r) => {
                if r? == 0 {
                    return Ok(Flow::Done);
                }
                Ok(Flow::Continue)
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
                        // The drain committed and the backend went away before our Commit came.
                        self.park();
                        return Ok(Flow::Continue);
                    }
                    return Err(Error::pg(
                        "57P01",
                        "the connection to the database was lost",
                    ));
                }
                self.on_backend_bytes().await
            }
            Event::Cmd(Some(cmd)) if self.backend.is_some() => self.on_cmd(cmd).await,
            // Stale drain commands from before we parked.
            Event::Cmd(_) => Ok(Flow::Continue),
            Event::Rejoin(rj) => {
                // The backend started for someone else: be listening before they run anything.
                let (at, snap) = self.member.rejoin::<PgSnapshot>(rj).await;
                let result = self.connect_and_restore(&at, snap).await;
                self.member.attached();
                if let Err(e) = result {
                    // The client hasn't asked for anything: it learns of this when it does.
                    tracing::info!(cluster = %self.service.name, session = self.member.id(), error = %e, "could not attach a listening session at the wake");
                    self.member.leave();
                }
                Ok(Flow::Continue)
            }
            Event::Quiet => {
                let answer = self.checkpoint().await;
                if answer.as_ref().is_err_and(Error::is_disconnect) {
                    return answer.map(|_| Flow::Continue);
                }
                self.member.early_result(answer.map_err(|e| e.to_string()));
                Ok(Flow::Continue)
            }
        }
    }

    /// Answers the client's next request without the server when it may: while parked (probes
    /// and SETs), or while the backend is being drained (probes only, so they don't call the
    /// drain off).
    async fn answer_locally(&mut self) -> Result<Local, Error> {
        let probes_only = if self.backend.is_none() {
            !self.overlay.has_room()
        } else if self.tracker.is_idle()
            && (self.member.prepared || self.service.cluster.is_draining())
        {
            true
        } else {
            return Ok(Local::Server);
        };
        let catalog = self.service.pg_catalog();
        let txn = match (&self.backend, &self.reopen) {
            (Some(_), _) => self.tracker.txn_status(),
            (None, Some(_)) => b'T',
            (None, None) => b'I',
        };
        let view = local::View {
            txn,
            told: &self.told,
            initial: &self.initial,
            canned: self.tracker.canned(),
            catalog: catalog.as_deref(),
            probes: &self.service.pg_probes,
            probes_only,
        };
        let answer = match local::answer(&self.client.rbuf, &view) {
            Outcome::Answered(a) => a,
            Outcome::Incomplete => return Ok(Local::Incomplete),
            Outcome::Server => return Ok(Local::Server),
        };
        let _ = self.client.rbuf.split_to(answer.consumed);
        for e in &answer.effects {
            match e {
                Effect::Reported { name, value } => {
                    if name == "application_name" {
                        self.member.reg.entry.set_application_name(value);
                    }
                    set_status(&mut self.told, name.clone(), value.clone())
                }
                Effect::UnlistenAll => {
                    self.listens = false;
                    self.member.unwatch();
                }
                Effect::Begin => self.reopen = Some("BEGIN".into()),
                Effect::End => self.reopen = None,
                _ => {}
            }
        }
        self.tracker.apply(&answer.effects);
        self.overlay.record(&answer.effects);
        self.service
            .local_answers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.client.send(&answer.reply).await?;
        Ok(Local::Answered)
    }

    async fn on_client_bytes(&mut self) -> Result<Flow, Error> {
        // Probes reach a running server but are not activity: they neither call a drain off
        // nor keep the database up.
        let probing = local::is_probe_traffic(
            &self.client.rbuf,
            self.tracker.canned(),
            &self.service.pg_probes,
        ) && !self.member.prepared
            && !self.service.cluster.is_draining();
        self.probing = probing && (self.probing || self.tracker.is_idle());
        if !probing && self.member.activity() == Resume::Parked {
            // Too late to call the drain off: our snapshot is durable, so park and wake again
            // with these bytes still buffered.
            self.park();
            return Ok(Flow::Continue);
        }
        let mut terminate = false;
        let tracker = &mut self.tracker;
        let n = self.client.whole_messages(|t, body| {
            if t == tag::TERMINATE {
                terminate = true;
            }
            tracker.client_message(t, body);
        })?;
        // Busy before the backend can answer, so nobody sees a stale idle state.
        self.update_busy();
        let chunk = self.client.rbuf.split_to(n);
        if let Some(b) = self.backend.as_mut() {
            b.conn.send(&chunk).await?;
        }
        if terminate {
            return Ok(Flow::Done);
        }
        Ok(Flow::Continue)
    }

    async fn on_backend_bytes(&mut self) -> Result<Flow, Error> {
        let Some(b) = self.backend.as_mut() else {
            return Ok(Flow::Continue);
        };
        let tracker = &mut self.tracker;
        let told = &mut self.told;
        let entry = &self.member.reg.entry;
        let mut bad_status = None;
        let n = b.conn.whole_messages(|t, body| {
            tracker.backend_message(t, body);
            if t == tag::PARAMETER_STATUS {
                match parse::parameter_status(body) {
                    Ok((k, v)) => {
                        if k == "application_name" {
                            entry.set_application_name(&v);
                        }
                        set_status(told, k, v)
                    }
                    Err(e) => bad_status = Some(e),
                }
            }
        })?;
        if let Some(e) = bad_status {
            return Err(Error::Protocol(format!("from backend: {e}")));
        }
        let chunk = b.conn.rbuf.split_to(n);
        // Idle before the client learns its query is done, so what it asks next (the admin
        // API, a drain) sees the state it was told.
        self.update_busy();
        self.client.send(&chunk).await?;
        Ok(Flow::Continue)
    }

    /// Lets the probes in flight finish, so a drain need not be refused for them.
    async fn finish_probes(&mut self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        while self.probing && !self.tracker.is_idle() {
            let Some(b) = self.backend.as_mut() else {
                return Ok(());
            };
            match tokio::time::timeout_at(deadline, b.conn.fill()).await {
                Err(_) => return Ok(()),
                Ok(r) => {
                    if r? == 0 {
                        return Err(Error::pg(
                            "57P01",
                            "the connection to the database was lost",
                        ));
                    }
                }
            }
            self.on_backend_bytes().await?;
        }
        Ok(())
    }

    async fn on_cmd(&mut self, cmd: DrainCmd) -> Result<Flow, Error> {
        if matches!(cmd, DrainCmd::Checkpoint(_)) {
            self.finish_probes().await?;
        }
        match cmd {
            DrainCmd::Checkpoint(reply) => match self.checkpoint().await {
                Ok(answer) => self.member.answer(reply, Ok(answer)),
                Err(e) => {
                    // The capture failed (e.g. a role without privileges); the session itself
                    // is still fine unless the connection broke.
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
        Ok(Flow::Continue)
    }

    /// Captures this session's state and puts it durably, or says why it can't.
    async fn checkpoint(&mut self) -> Result<CheckpointReply, Error> {
        // No whole client message is buffered here: `step` forwards those before it looks at
        // drain commands.
        if let Some(why) = self.tracker.blocker() {
            return Ok(CheckpointReply::Blocked(format!(
                "{}: {why}",
                self.member.label()
            )));
        }
        let Some(b) = self.backend.as_mut() else {
            return Ok(CheckpointReply::Ready);
        };
        if !self.tracker.changed() {
            // Only reads since the last snapshot (or since connecting, when there is none):
            // what the store holds, or a fresh connection, is still this session.
            return Ok(CheckpointReply::Ready);
        }
        let mut to_client = BytesMut::new();
        let captured = checkpoint::capture(b, &self.tracker, &mut to_client).await;
        if !to_client.is_empty() {
            self.client.send(&to_client).await?;
        }
        let mut snap = match captured? {
            Capture::Blocked(why) => {
                // A transaction the backend refused stays refused until it ends: until then
                // the session is busy, and drains needn't ask again.
                self.tracker.note_uncarriable();
                self.update_busy();
                let why = format!("{}: {}", self.member.label(), why.join(", "));
                self.member.reg.entry.set_found_blocker(Some(why.clone()));
                return Ok(CheckpointReply::Blocked(why));
            }
            Capture::Snapshot(s, reopen) => {
                self.carried = reopen;
                self.listens = !s.listen.is_empty();
                s
            }
        };
        snap.startup_params = self.startup.clone();
        snap.parameter_status = self.told.clone();
        self.service
            .store
            .put(&self.member.key, &*snap)
            .await
            .map_err(|e| Error::pg("58030", format!("snapshot put failed: {e}")))?;
        self.member.reg.entry.set_holds(Holds::of_pg(&snap));
        self.member.saved = true;
        self.tracker.mark_saved();
        Ok(CheckpointReply::Ready)
    }

    /// Drops the backend connection; the snapshot in the store now holds the session. A
    /// transaction block the checkpoint found carriable is reopened at the next attach.
    fn park(&mut self) {
        if self.backend.is_some() && self.tracker.txn_status() == b'T' {
            self.reopen = Some(self.carried.clone().unwrap_or_else(|| "BEGIN".into()));
        }
        self.backend = None;
        self.member.leave();
        if self.listens {
            self.member.watch();
        }
        self.tracker.reset_flow();
        self.update_busy();
    }

    /// Wakes the cluster if needed, connects, and restores the snapshot if there is one.
    async fn attach(&mut self) -> Result<(), Error> {
        let (at, snap) = self.member.wake_and_load::<PgSnapshot>().await;
        let at = at.map_err(|e| Error::pg("08006", format!("could not wake the database: {e}")))?;
        let result = self.connect_and_restore(&at, snap).await;
        self.member.attached();
        if result.is_err() {
            self.member.leave();
        }
        result
    }

    async fn connect_and_restore(
        &mut self,
        at: &BackendInfo,
        snap: Option<Result<PgSnapshot, StoreError>>,
    ) -> Result<(), Error> {
        let mut b = backend::connect(at, &self.startup, &self.user).await?;
        let snap = match snap {
            Some(loaded) => Some(loaded.map_err(|e| {
                Error::pg(
                    "58000",
                    format!(
                        "torpor could not restore this session after the database woke up: snapshot unavailable: {e}"
                    ),
                )
            })?),
            None if !self.overlay.is_empty() => Some(PgSnapshot {
                startup_params: self.startup.clone(),
                ..PgSnapshot::default()
            }),
            None => None,
        };
        // What the client changed while torpor answered for it goes on top of what the store
        // held; the store is behind the session until the next snapshot.
        let overlaid = !self.overlay.is_empty();
        if let Some(mut snap) = snap {
            self.overlay.apply(&mut snap);
            let mut to_client = BytesMut::new();
            restore::restore(&mut b, &snap, &mut to_client).await?;
            if !to_client.is_empty() {
                self.client.send(&to_client).await?;
            }
            self.tracker.restored(&snap);
            self.listens = !snap.listen.is_empty();
        } else {
            self.listens = false;
        }
        self.overlay.clear();
        self.tracker.reset_flow();
        if let Some(sql) = self.reopen.take() {
            restore::begin(&mut b, &sql).await?;
            self.tracker.reopened(b'T');
            self.carried = Some(sql);
        }
        // A fresh connection holds the snapshot's state, or none if there is no snapshot.
        self.tracker.mark_saved();
        if overlaid {
            self.tracker.note_local_changes();
        }
        self.member.reg.entry.set_backend(Some(BackendKey {
            addr: b.addr,
            pid: b.pid,
            secret: b.secret,
        }));
        self.backend = Some(b);
        Ok(())
    }

    fn update_busy(&mut self) {
        let blocker = if self.backend.is_some() {
            self.tracker.blocker()
        } else {
            None
        };
        if blocker.is_none() {
            self.probing = false;
        }
        self.member.publish(blocker, self.probing);
    }

    async fn cleanup(&mut self) {
        if let Some(b) = self.backend.as_mut() {
            let mut out = BytesMut::new();
            message::terminate(&mut out);
            let _ = b.conn.send(&out).await;
        }
        self.park();
        self.member.unwatch();
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

fn shutting_down() -> Error {
    Error::pg(
        "57P01",
        "terminating connection due to administrator command",
    )
}

fn has_whole_message(buf: &[u8]) -> Result<bool, Error> {
    Ok(frame::message_len(buf, super::conn::MAX_CLIENT_MESSAGE)?.is_some())
}

fn set_status(told: &mut Vec<(String, String)>, k: String, v: String) {
    match told.iter_mut().find(|(name, _)| *name == k) {
        Some(entry) => entry.1 = v,
        None => told.push((k, v)),
    }
}
