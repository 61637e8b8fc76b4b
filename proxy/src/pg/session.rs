//! The PostgreSQL side of a session: framing and forwarding, what torpor answers itself, the
//! transaction block carried over a stop, capture and replay. The session engine does the rest.

use std::sync::Arc;

use bytes::BytesMut;
use controller::BackendInfo;
use protocols::auth::scram::ScramKeys;
use protocols::pg::frame;
use protocols::pg::local::{self, Effect, Outcome, Overlay};
use protocols::pg::message::{self, tag};
use protocols::pg::parse;
use protocols::pg::snapshot::PgSnapshot;
use protocols::pg::tracker::Tracker;
use state_store::StoreError;
use tokio::time::Instant;

use super::backend::{self, Backend};
use super::checkpoint::{self, Capture as PgCapture};
use super::conn::{Conn, MAX_CLIENT_MESSAGE, Messages};
use super::restore;
use super::unserved;
use crate::cluster_front::{ClusterFront, Params, User};
use crate::registry::{BackendKey, Holds};
use crate::room::{self, Handed, PoolKey};
use crate::session::{Capture, Error, Membership, Protocol, Session, Step, offload};

pub(super) struct Pg {
    client: Conn,
    user: Arc<User>,
    /// What the client's SCRAM proof revealed, when the user has only a `password_hash`:
    /// torpor logs in to the server with it. Gone with the session.
    keys: Option<Arc<ScramKeys>>,
    startup: Vec<(String, String)>,
    /// ParameterStatus values as the client knows them.
    /// Shared with the cluster's greeting cache and other sessions until it changes: most
    /// sessions never change it, and it is a few dozen strings.
    told: Arc<Params>,
    /// The values the client was told at startup: what a RESET goes back to.
    initial: Arc<Params>,
    /// What the client changed while torpor answered for it, for the next replay.
    overlay: Overlay,
    /// What is in flight on the backend is health-check probes only.
    probing: bool,
    /// The client is in a transaction block the backend doesn't hold (one carried over a
    /// stop, or one torpor answered BEGIN for while parked): the statement the next attach
    /// opens it with.
    reopen: Option<String>,
    /// How to reopen the backend's current transaction block, as the last checkpoint judged.
    carried: Option<String>,
    /// A wake failed while the client was in a transaction block the backend doesn't hold:
    /// the block failed ('E') and only its end is answered, by torpor.
    aborted: bool,
    /// A refused extended-protocol request is being dropped through its Sync.
    skipping: bool,
    /// The session LISTENs, as its last snapshot says.
    listens: bool,
    virtual_key: (i32, i32),
    tracker: Tracker,
    backend: Option<Backend>,
    /// The backend connection holds state beyond what its login set: a reset must come before
    /// another session takes it over.
    holds_state: bool,
}

/// A session for a client that has just authenticated.
pub(super) fn session(
    front: Arc<ClusterFront>,
    client: Conn,
    user: Arc<User>,
    keys: Option<Arc<ScramKeys>>,
    startup: Vec<(String, String)>,
) -> Session<Pg> {
    let (virtual_key, reg) = front.registry.register(&front.name);
    reg.entry
        .introduce_pg(&user.name, &startup, client.io.peer_addr());
    let database = startup
        .iter()
        .find(|(k, v)| k == "database" && !v.is_empty())
        .map_or(user.name.as_str(), |(_, v)| v.as_str());
    let member = Membership::new(front.clone(), reg, &user.name, Some(database));
    Session::new(
        front,
        member,
        Pg {
            client,
            user,
            keys,
            startup,
            told: Arc::default(),
            initial: Arc::default(),
            overlay: Overlay::default(),
            probing: false,
            reopen: None,
            carried: None,
            aborted: false,
            skipping: false,
            listens: false,
            virtual_key,
            tracker: Tracker::default(),
            backend: None,
            holds_state: false,
        },
    )
}

enum Local {
    Answered,
    Incomplete,
    Server,
}

impl Protocol for Pg {
    type Snapshot = PgSnapshot;

    fn conns(&mut self) -> (&mut Conn, Option<&mut Conn>) {
        (&mut self.client, self.backend.as_mut().map(|b| &mut b.conn))
    }

    async fn greet(s: &mut Session<Self>) -> Result<(), Error> {
        let cached = s.front.cached_status(&s.p.startup);
        match cached {
            Some(status) if s.front.cluster.running_backend().is_none() || s.front.room.full() => {
                // The cluster sleeps, or has no connection free, and we know what it would
                // say: answer without waking it or waiting.
                s.p.told = status;
            }
            _ => {
                s.attach().await?;
                if let Some(b) = &s.p.backend {
                    s.p.told = Arc::new(b.status.clone());
                    s.front.remember_status(&s.p.startup, &b.status);
                }
            }
        }
        s.p.initial = s.p.told.clone();
        let mut out = BytesMut::new();
        for (k, v) in s.p.told.iter() {
            message::parameter_status(&mut out, k, v);
        }
        message::backend_key_data(&mut out, s.p.virtual_key.0, s.p.virtual_key.1);
        message::ready_for_query(&mut out, b'I');
        s.p.client.send(&out).await?;
        Ok(())
    }

    async fn on_client(s: &mut Session<Self>) -> Result<Option<Step>, Error> {
        match super::conn::admit(&mut s.p.client, &s.front.budget) {
            super::conn::Admit::Fits => {}
            super::conn::Admit::Dropping => return Ok(None),
            super::conn::Admit::Refused(tag) => {
                // A query at rest keeps the session, as the server would; anywhere else torpor
                // can't answer for the backend's state, and the session ends.
                let t = &s.p.tracker;
                let at_rest = !t.in_flight() && t.txn_status() == b'I' && s.p.reopen.is_none();
                let keep = tag == tag::QUERY && at_rest;
                return super::conn::out_of_memory(&mut s.p.client, keep)
                    .await
                    .map(Some);
            }
        }
        if frame::message_len(&s.p.client.rbuf, MAX_CLIENT_MESSAGE)?.is_none() {
            return Ok(None);
        }
        if s.p.client.rbuf.first() == Some(&tag::TERMINATE) {
            // A client saying goodbye is not activity: it must not wake the database or call
            // off a drain.
            return Ok(Some(Step::Done));
        }
        if s.p.skipping {
            let status = s.p.parked_status();
            s.p.skipping = unserved::skip_to_sync(&mut s.p.client, status).await?;
            return Ok(Some(Step::Continue));
        }
        match answer_locally(s).await? {
            Local::Answered => Ok(Some(Step::Continue)),
            // Part of a batch torpor can answer: read the rest before deciding.
            Local::Incomplete => Ok(None),
            Local::Server if s.p.aborted && s.p.backend.is_none() => {
                let e = Error::pg(
                    "25P02",
                    "current transaction is aborted, commands ignored until end of transaction block",
                );
                Self::refuse(s, &e).await?;
                Ok(Some(Step::Continue))
            }
            Local::Server => {
                if s.p.backend.is_none() {
                    s.attach().await?;
                }
                forward(s).await.map(Some)
            }
        }
    }

    async fn on_backend(s: &mut Session<Self>) -> Result<(), Error> {
        let Some(b) = s.p.backend.as_mut() else {
            return Ok(());
        };
        let tracker = &mut s.p.tracker;
        let told = &mut s.p.told;
        let entry = &s.member.reg.entry;
        let mut bad_status = None;
        let mut fatal = false;
        let n = b.conn.whole_messages(|t, body| {
            tracker.backend_message(t, body);
            if t == tag::ERROR_RESPONSE {
                fatal |= parse::error_fields(body)
                    .is_ok_and(|f| matches!(f.severity.as_str(), "FATAL" | "PANIC"));
            }
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
        s.update_busy();
        s.p.client.send(&chunk).await?;
        if fatal {
            // The server closes after a FATAL, which the client now has: a second error
            // ("connection lost") would only bury the server's reason.
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn attached(&self) -> bool {
        self.backend.is_some()
    }

    fn blocker(&self) -> Option<&'static str> {
        self.tracker.blocker()
    }

    fn in_flight(&self) -> bool {
        self.tracker.in_flight()
    }

    fn probing(&self) -> bool {
        self.probing && self.tracker.in_flight()
    }

    fn changed(&self) -> bool {
        self.tracker.changed()
    }

    fn saved(&mut self) {
        self.holds_state |= self.tracker.changed();
        self.tracker.mark_saved();
    }

    fn holds(snap: &PgSnapshot) -> Holds {
        Holds::of_pg(snap)
    }

    fn settled(&self) -> bool {
        self.backend.is_some() && self.tracker.is_idle() && self.tracker.txn_status() == b'I'
    }

    fn listens(&self) -> bool {
        self.listens
    }

    fn room_rest(&self) -> Option<bool> {
        let at_rest = self.backend.is_some()
            && self.tracker.is_idle()
            && self.tracker.txn_status() == b'I'
            && self.tracker.blocker().is_none()
            && self.reopen.is_none();
        // A LISTEN shows in the snapshot, which pins the session (see `pins`).
        at_rest.then(|| !self.tracker.changed())
    }

    fn pool_key(&self) -> PoolKey {
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&self.startup, &mut h);
        std::hash::Hasher::finish(&h)
    }

    fn pins(snap: &PgSnapshot) -> Option<&'static str> {
        if !snap.advisory_locks.is_empty() {
            Some("advisory locks")
        } else if !snap.listen.is_empty() {
            Some("LISTEN")
        } else {
            None
        }
    }

    async fn hand_off(s: &mut Session<Self>) -> Option<Handed> {
        let p = &mut s.p;
        let mut b = p.backend.take()?;
        if (std::mem::take(&mut p.holds_state) || p.tracker.changed())
            && let Err(e) = restore::reset(&mut b).await
        {
            tracing::debug!(error = %e, "a backend connection could not be reset; closing it");
            goodbye(&mut b).await;
            return None;
        }
        Some(Box::new(b))
    }

    async fn close(conn: Handed) {
        if let Ok(mut b) = conn.downcast::<Backend>() {
            goodbye(&mut b).await;
        }
    }

    async fn capture(s: &mut Session<Self>) -> Result<Capture<PgSnapshot>, Error> {
        let Some(b) = s.p.backend.as_mut() else {
            return Err(Self::lost_backend());
        };
        let mut to_client = BytesMut::new();
        let captured = checkpoint::capture(b, &s.p.tracker, &mut to_client).await;
        if !to_client.is_empty() {
            s.p.client.send(&to_client).await?;
        }
        match captured? {
            PgCapture::Blocked(why) => {
                // A transaction the backend refused stays refused until it ends: until then
                // the session is busy, and drains needn't ask again.
                s.p.tracker.note_uncarriable();
                s.update_busy();
                Ok(Capture::Blocked(why))
            }
            PgCapture::Snapshot(mut snap, reopen) => {
                s.p.carried = reopen;
                s.p.listens = !snap.listen.is_empty();
                snap.startup_params = s.p.startup.clone();
                snap.parameter_status = s.p.told.to_vec();
                Ok(Capture::Snapshot(snap))
            }
        }
    }

    async fn connect_and_restore(
        s: &mut Session<Self>,
        at: &BackendInfo,
        snap: Option<PgSnapshot>,
        deadline: Instant,
        handed: Option<Handed>,
    ) -> Result<(), Error> {
        if let Some(snap) = &snap {
            let owner = snap.startup_params.iter().find(|(k, _)| k == "user");
            state_store::check_owner(owner.map(|(_, v)| v.as_str()), &s.p.user.name)
                .map_err(Self::snapshot_lost)?;
        }
        let mut b = match room::unwrap::<Backend>(handed) {
            Some(b) => b,
            None => {
                backend::connect(
                    at,
                    s.front.backend_tls.as_deref(),
                    &s.p.startup,
                    backend::Login {
                        user: &s.p.user,
                        keys: s.p.keys.as_deref(),
                    },
                    deadline,
                )
                .await?
            }
        };
        let p = &mut s.p;
        p.holds_state = snap.is_some() || !p.overlay.is_empty() || p.reopen.is_some();
        let snap = match snap {
            Some(snap) => Some(snap),
            None if !p.overlay.is_empty() => Some(PgSnapshot {
                startup_params: p.startup.clone(),
                ..PgSnapshot::default()
            }),
            None => None,
        };
        // What the client changed while torpor answered for it goes on top of what the store
        // held; the store is behind the session until the next snapshot.
        let overlaid = !p.overlay.is_empty();
        if let Some(mut snap) = snap {
            p.overlay.apply(&mut snap);
            let mut to_client = BytesMut::new();
            let replay = &s.front.metrics.replay;
            let snap = restore::restore(&mut b, snap, &p.user.name, &mut to_client, replay)
                .await
                .map_err(Self::went_away)?;
            if !to_client.is_empty() {
                p.client.send(&to_client).await?;
            }
            p.tracker.restored(&snap);
            p.listens = !snap.listen.is_empty();
        } else {
            p.listens = false;
        }
        p.overlay.clear();
        p.tracker.reset_to_idle();
        if let Some(sql) = p.reopen.take() {
            restore::begin(&mut b, &sql).await?;
            p.tracker.reopened(b'T');
            p.carried = Some(sql);
        }
        // A fresh connection holds the snapshot's state, or none if there is no snapshot.
        p.tracker.mark_saved();
        if overlaid {
            p.tracker.note_local_changes();
        }
        s.member.reg.entry.set_backend(Some(BackendKey {
            addr: b.addr,
            pid: b.pid,
            secret: b.secret,
        }));
        s.p.backend = Some(b);
        Ok(())
    }

    /// A transaction block the checkpoint found carriable is reopened at the next attach.
    fn detach(&mut self) {
        if self.backend.take().is_some() && self.tracker.txn_status() == b'T' {
            self.reopen = Some(self.carried.clone().unwrap_or_else(|| "BEGIN".into()));
        }
        self.tracker.reset_to_idle();
    }

    async fn goodbye(&mut self) {
        if let Some(b) = self.backend.as_mut() {
            goodbye(b).await;
        }
    }

    fn lost_backend() -> Error {
        Error::pg("57P01", "the connection to the database was lost")
    }

    fn ended(_killed: bool) -> Error {
        Error::pg(
            "57P01",
            "terminating connection due to administrator command",
        )
    }

    fn wake_failed(why: String) -> Error {
        super::error::unavailable(why)
    }

    fn snapshot_lost(e: StoreError) -> Error {
        Error::pg(
            "58000",
            format!(
                "torpor could not restore this session after the database woke up: snapshot unavailable: {e}"
            ),
        )
    }

    /// A transaction block the backend doesn't hold fails with the request.
    async fn refuse(s: &mut Session<Self>, e: &Error) -> Result<(), Error> {
        let Some((code, message)) = super::error::client_report(e) else {
            return Ok(());
        };
        if s.p.reopen.take().is_some() {
            s.p.aborted = true;
        }
        let status = s.p.parked_status();
        s.p.skipping = unserved::refuse(&mut s.p.client, code, &message, status).await?;
        Ok(())
    }

    fn put_failed(why: String) -> Error {
        Error::pg("58030", format!("snapshot put failed: {why}"))
    }

    async fn report(&mut self, e: &Error) {
        if let Some((code, msg)) = super::error::client_report(e) {
            super::error::report(&mut self.client, code, &msg).await;
        }
    }
}

/// Answers the client's next request without the server when it may: while parked (probes
/// and SETs), or while the backend is being drained or is frozen (probes only, so they don't
/// call the drain off or thaw it).
async fn answer_locally(s: &mut Session<Pg>) -> Result<Local, Error> {
    let p = &mut s.p;
    let probes_only = if p.backend.is_none() {
        !p.overlay.has_room()
    } else if p.tracker.is_idle()
        && (s.member.prepared || s.front.cluster.is_draining() || s.front.cluster.is_frozen())
    {
        true
    } else {
        return Ok(Local::Server);
    };
    let catalog = s.front.pg_catalog();
    let txn = match &p.backend {
        Some(_) => p.tracker.txn_status(),
        None => p.parked_status(),
    };
    let view = local::View {
        txn,
        told: &p.told,
        initial: &p.initial,
        canned: p.tracker.canned(),
        catalog: catalog.as_deref(),
        probes: &s.front.pg_probes,
        probes_only,
    };
    let answer = match local::answer(&p.client.rbuf, &view) {
        Outcome::Answered(a) => a,
        Outcome::Incomplete => return Ok(Local::Incomplete),
        Outcome::Server => return Ok(Local::Server),
    };
    let probe = local::is_probe_traffic(
        &p.client.rbuf[..answer.consumed],
        p.tracker.canned(),
        &s.front.pg_probes,
    );
    let _ = p.client.rbuf.split_to(answer.consumed);
    for e in &answer.effects {
        match e {
            Effect::Reported { name, value } => {
                if name == "application_name" {
                    s.member.reg.entry.set_application_name(value);
                }
                set_status(&mut p.told, name.clone(), value.clone())
            }
            Effect::UnlistenAll => {
                p.listens = false;
                s.member.unwatch();
            }
            Effect::Begin => p.reopen = Some("BEGIN".into()),
            Effect::End => {
                p.reopen = None;
                p.aborted = false;
            }
            _ => {}
        }
    }
    p.tracker.apply(&answer.effects);
    p.overlay.record(&answer.effects);
    s.front
        .local_answers
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if probe {
        s.front.metrics.probes_answered.increment(1);
    }
    p.client.send(&answer.reply).await?;
    Ok(Local::Answered)
}

/// Passes the client's whole messages on to the backend.
async fn forward(s: &mut Session<Pg>) -> Result<Step, Error> {
    // Probes reach a running server but are not activity: they neither call a drain off nor
    // keep the database up.
    let probing =
        local::is_probe_traffic(&s.p.client.rbuf, s.p.tracker.canned(), &s.front.pg_probes)
            && !s.member.prepared
            && !s.front.cluster.is_draining();
    s.p.probing = probing && (s.p.probing || !s.p.tracker.in_flight());
    if !probing {
        s.activity().await?;
    }
    let n = s.p.client.whole_messages(|_, _| {})?;
    let chunk = s.p.client.rbuf.split_to(n).freeze();
    let messages = chunk.clone();
    let terminate = offload::run(n, &mut s.p.tracker, &s.front.metrics.offloaded, move |t| {
        track_client(t, &messages)
    })
    .await?;
    // Busy before the backend can answer, so nobody sees a stale idle state.
    s.update_busy();
    s.thaw_before_send().await?;
    if let Some(b) = s.p.backend.as_mut() {
        b.conn.send(&chunk).await?;
    }
    if terminate {
        return Ok(Step::Done);
    }
    Ok(Step::Continue)
}

/// Shows the tracker the client's whole messages in `buf`; true when one is a Terminate.
fn track_client(tracker: &mut Tracker, mut buf: &[u8]) -> bool {
    let mut terminate = false;
    while let Ok(Some((t, len))) = frame::message_len(buf, usize::MAX) {
        terminate |= t == tag::TERMINATE;
        tracker.client_message(t, &buf[5..len]);
        buf = &buf[len..];
    }
    terminate
}

impl Pg {
    /// The transaction status a parked session tells its client.
    fn parked_status(&self) -> u8 {
        match (self.aborted, &self.reopen) {
            (true, _) => b'E',
            (false, Some(_)) => b'T',
            (false, None) => b'I',
        }
    }
}

/// Tells the server the connection is closing, so it doesn't log a lost client.
async fn goodbye(b: &mut Backend) {
    let mut out = BytesMut::new();
    message::terminate(&mut out);
    let _ = b.conn.send(&out).await;
}

fn set_status(told: &mut Arc<Params>, k: String, v: String) {
    if told.iter().any(|(name, value)| *name == k && *value == v) {
        return;
    }
    let told = Arc::make_mut(told);
    match told.iter_mut().find(|(name, _)| *name == k) {
        Some(entry) => entry.1 = v,
        None => told.push((k, v)),
    }
}
