//! The MySQL side of a session: commands and their responses, statement ids, KILL, change of
//! user, what torpor answers itself, capture and replay. The session engine does the rest.

use std::sync::Arc;

use controller::BackendInfo;
use protocols::mysql::command;
use protocols::mysql::handshake::caps;
use protocols::mysql::local::{self, Overlay};
use protocols::mysql::packet::write_packet;
use protocols::mysql::response::status;
use protocols::mysql::response_tracker::ResponseTracker;
use protocols::mysql::snapshot::{ClientInfo, MySnapshot};
use state_store::StoreError;

use super::backend::{self, Backend};
use super::checkpoint::{self, Capture as MyCapture};
use super::conn::Conn;
use super::error::UNKNOWN;
use super::large::Admit;
use super::restore;
use super::startup::Hello;
use crate::cluster_front::{ClusterFront, User};
use crate::registry::{BackendKey, Holds, Registration};
use crate::room::{self, Handed, PoolKey};
use crate::session::{Capture, Error, Membership, Protocol, Session, Step};
use protocols::mysql::tracker::Tracker;

/// While a response is outstanding, stop reading a client that keeps sending past this, unless
/// it is midway through a command: the response can't come before the command's end.
const CLIENT_BACKLOG: usize = 1 << 20;

pub(crate) struct My {
    pub(super) client: Conn,
    pub(super) user: Arc<User>,
    pub(super) hello: Hello,
    pub(super) backend: Option<Backend>,
    /// What the session's commands and their answers tell: in flight, transaction, changed.
    pub(super) tracker: Tracker,
    /// Sequence id for torpor's own answer to the client's current command.
    pub(super) reply_seq: u8,
    /// What the client set while torpor answered for it, for the next replay.
    pub(super) overlay: Overlay,
    /// What is in flight on the backend is health-check probes only.
    pub(super) probing: bool,
    /// The client's command past its first packet.
    pub(super) large: super::large::Large,
}

/// A session for a client that has just logged in.
pub(super) fn session(
    front: Arc<ClusterFront>,
    client: Conn,
    user: Arc<User>,
    hello: Hello,
    reg: Registration,
    reply_seq: u8,
) -> Session<My> {
    let schema = hello.database.clone();
    let member = Membership::new(front.clone(), reg, &user.name, hello.database.as_deref());
    Session::new(
        front,
        member,
        My {
            client,
            user,
            hello,
            backend: None,
            tracker: Tracker::new(schema),
            reply_seq,
            overlay: Overlay::default(),
            probing: false,
            large: super::large::Large::default(),
        },
    )
}

impl Protocol for My {
    type Snapshot = MySnapshot;

    fn conns(&mut self) -> (&mut Conn, Option<&mut Conn>) {
        (&mut self.client, self.backend.as_mut().map(|b| &mut b.conn))
    }

    fn reads_client(&self) -> bool {
        self.large.active()
            || !self.tracker.responses.busy()
            || self.client.rbuf.len() < CLIENT_BACKLOG
    }

    async fn greet(s: &mut Session<Self>) -> Result<(), Error> {
        let key = s.p.connect_key();
        let known = s.front.cached_status(&key).is_some();
        let sleeps_or_full = s.front.cluster.running_backend().is_none() || s.front.room.full();
        if !(known && sleeps_or_full) {
            // The first login with this user and schema goes to the backend, which may refuse
            // the schema; later ones are answered from memory while the database sleeps.
            s.attach().await?;
            s.front.remember_status(&key, &[]);
        }
        let seq = s.p.reply_seq;
        s.p.send_ok(seq).await
    }

    async fn on_client(s: &mut Session<Self>) -> Result<Option<Step>, Error> {
        if s.p.large.active() {
            return s.pass().await;
        }
        // One command at a time: the next waits in the buffer until this one's answer ends.
        if s.p.tracker.responses.busy() {
            return Ok(None);
        }
        let len = match s.admit() {
            Admit::First(len) => len,
            Admit::Wait => return Ok(None),
            Admit::Pass => return s.pass().await,
        };
        let packet = s.p.client.rbuf.split_to(len);
        let full = len - 4 == protocols::mysql::packet::MAX_PAYLOAD;
        let step = s.on_client_packet(packet).await;
        if !full {
            // Passed on, answered or dropped: no longer held.
            s.p.client.release_held();
        } else {
            // The rest goes where the first packet went: to the backend, or nowhere (also when
            // a wake failed and the session stays parked).
            let forwarded = step.is_ok() && s.p.tracker.client_continues;
            s.p.large.begin(s.p.reply_seq, forwarded);
        }
        step.map(Some)
    }

    async fn on_backend(s: &mut Session<Self>) -> Result<(), Error> {
        s.on_backend_bytes().await
    }

    fn attached(&self) -> bool {
        self.backend.is_some()
    }

    fn blocker(&self) -> Option<&'static str> {
        self.backend.as_ref()?;
        self.tracker.blocker()
    }

    fn in_flight(&self) -> bool {
        self.tracker.in_flight()
    }

    fn probing(&self) -> bool {
        self.probing && self.tracker.responses.busy()
    }

    fn changed(&self) -> bool {
        self.tracker.changed()
    }

    fn settled(&self) -> bool {
        self.backend.is_some() && !self.tracker.responses.busy()
    }

    fn room_rest(&self) -> Option<bool> {
        let at_rest = self.backend.is_some()
            && !self.tracker.responses.busy()
            && !self.large.active()
            && self.tracker.blocker().is_none()
            && self.tracker.responses.status() & status::IN_TRANS == 0;
        at_rest.then(|| !self.tracker.changed())
    }

    fn pool_key(&self) -> PoolKey {
        let mut h = std::hash::DefaultHasher::new();
        let hello = &self.hello;
        std::hash::Hash::hash(
            &(
                &self.user.name,
                &hello.database,
                hello.capabilities,
                hello.charset,
            ),
            &mut h,
        );
        std::hash::Hasher::finish(&h)
    }

    fn pins(snap: &MySnapshot) -> Option<&'static str> {
        (!snap.named_locks.is_empty()).then_some("GET_LOCK")
    }

    async fn hand_off(s: &mut Session<Self>) -> Option<Handed> {
        let p = &mut s.p;
        let mut b = p.backend.take()?;
        // MariaDB's reset puts back the character set the connection logged in with, MySQL's
        // the server's default: unless that is the client's, it is set again by name, which
        // the catalog knows once learned.
        let catalog = s.front.my_catalog();
        let names = if b.greeting.charset == p.hello.charset {
            None
        } else {
            match catalog.as_deref().and_then(|c| c.names_of(p.hello.charset)) {
                Some(names) => Some(names),
                None => {
                    close(&mut b).await;
                    return None;
                }
            }
        };
        match restore::reset(&mut b, p.hello.database.as_deref(), names).await {
            Ok(status) => {
                b.status = status;
                Some(Box::new(b))
            }
            Err(e) => {
                tracing::debug!(error = %e, "a backend connection could not be reset; closing it");
                close(&mut b).await;
                None
            }
        }
    }

    async fn close(conn: Handed) {
        if let Ok(mut b) = conn.downcast::<Backend>() {
            close(&mut b).await;
        }
    }

    async fn capture(s: &mut Session<Self>) -> Result<Capture<MySnapshot>, Error> {
        let p = &mut s.p;
        let Some(b) = p.backend.as_mut() else {
            return Err(Self::lost_backend());
        };
        let mut snap = match checkpoint::capture(b, &p.tracker.tracked).await? {
            MyCapture::Blocked(why) => return Ok(Capture::Blocked(why)),
            MyCapture::Snapshot(s) => s,
        };
        snap.client = ClientInfo {
            capabilities: p.hello.capabilities,
            charset: p.hello.charset,
            user: p.user.name.clone(),
            database: p.hello.database.clone(),
        };
        snap.statements = p.tracker.stmts.snapshot();
        Ok(Capture::Snapshot(snap))
    }

    fn holds(snap: &MySnapshot) -> Holds {
        Holds::of_mysql(snap)
    }

    fn saved(&mut self) {
        self.tracker.mark_saved();
    }

    async fn connect_and_restore(
        s: &mut Session<Self>,
        at: &BackendInfo,
        snap: Option<MySnapshot>,
        deadline: tokio::time::Instant,
        handed: Option<Handed>,
    ) -> Result<(), Error> {
        let p = &mut s.p;
        if let Some(snap) = &snap {
            state_store::check_owner(Some(&snap.client.user), &p.user.name)
                .map_err(Self::snapshot_lost)?;
        }
        let snap = match snap {
            Some(snap) => Some(snap),
            // Only what torpor answered for: the replay is those settings, in the session's
            // schema.
            None if !p.overlay.is_empty() => Some(MySnapshot {
                schema: p.tracker.schema.clone(),
                ..MySnapshot::default()
            }),
            None => None,
        };
        // A restore sets the schema itself; a first connection starts in the client's.
        let database = if snap.is_some() {
            None
        } else {
            p.tracker.schema.clone()
        };
        let mut b = match room::unwrap::<Backend>(handed) {
            Some(b) => b,
            None => {
                backend::connect(
                    at,
                    s.front.backend_tls.as_deref(),
                    &p.hello,
                    &p.user.name,
                    p.user.password.as_deref(),
                    database.as_deref(),
                    deadline,
                )
                .await?
            }
        };
        s.front.remember_greeting(b.greeting.clone());
        // What the client set while torpor answered for it goes on top of what the store held;
        // the store is behind the session until the next snapshot.
        let overlaid = !p.overlay.is_empty();
        let mut status = b.status;
        if let Some(mut snap) = snap {
            p.overlay.apply(&mut snap);
            status = restore::restore(
                &mut b,
                snap,
                &mut p.tracker.stmts,
                p.hello.connection_id,
                &s.front.metrics.replay,
            )
            .await
            .map_err(Self::went_away)?;
            p.tracker.tracked.after_replay();
        }
        p.overlay.clear();
        p.tracker.responses = ResponseTracker::new(b.capabilities & caps::DEPRECATE_EOF != 0);
        p.tracker.responses.set_status(status);
        // A fresh connection holds the snapshot's state, or none if there is no snapshot.
        if overlaid {
            p.tracker.note_change();
        } else {
            p.tracker.mark_saved();
        }
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
        self.tracker.responses.reset();
        // A transaction autocommit=0 opened for reads is not carried over: the session the
        // client gets back has none.
        self.tracker.responses.set_status(
            self.tracker.responses.status() & local::SESSION_STATUS & !status::IN_TRANS,
        );
    }

    async fn goodbye(&mut self) {
        // Midway through a command the backend would read a goodbye as part of it.
        if let Some(b) = self.backend.as_mut().filter(|_| !self.large.active()) {
            close(b).await;
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
        super::error::unavailable(why)
    }

    fn snapshot_lost(e: StoreError) -> Error {
        Error::my(
            UNKNOWN,
            "HY000",
            format!(
                "torpor could not restore this session after the database woke up: snapshot unavailable: {e}"
            ),
        )
    }

    /// The command's answer is the error; the client may send the next.
    async fn refuse(s: &mut Session<Self>, e: &Error) -> Result<(), Error> {
        if let Some((code, state, message)) = super::error::client_report(e) {
            s.p.local_err(code, state, &message).await?;
        }
        Ok(())
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

/// Tells the server the connection is closing, so it doesn't count an aborted connection.
async fn close(b: &mut Backend) {
    let mut out = Vec::new();
    write_packet(&mut out, 0, &command::quit());
    let _ = b.conn.send(&out).await;
}

impl My {
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
