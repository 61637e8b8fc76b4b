//! The loop every client session runs, whatever its protocol: attached to a backend connection
//! or parked with its state in the store; checkpointing for drains and early snapshots;
//! parking, waking and restoring; attaching when the backend starts if it listens.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use controller::driver::DriverError;
use controller::{CheckpointReply, DrainCmd, Rejoin, Resume};
use tokio::sync::futures::OwnedNotified;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::protocol::{Capture, Protocol, Step};
use super::{Backoff, Ending, Error, Membership};
use crate::cluster_front::ClusterFront;
use crate::net::Conn;
use crate::room::{Grant, Quiet, Seat};

/// How long a drain's checkpoint waits for probes in flight to be answered.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// One client connection for its whole life.
pub(crate) struct Session<P: Protocol> {
    pub front: Arc<ClusterFront>,
    pub member: Membership,
    /// The protocol's own state: connections, trackers, what the client was told.
    pub p: P,
    /// The session was ended from outside (shutdown, KILL): nothing to log.
    ended: bool,
    /// The backend connection slot held while attached.
    pub(super) seat: Option<Seat>,
    /// Whether, and since when, the usher may ask this session to park for room.
    pub(super) quiet: Arc<Quiet>,
    /// The latest snapshot when only memory holds it (taken to park for room): a drain puts
    /// it in the store.
    pub(super) kept: Option<P::Snapshot>,
    /// What the latest snapshot holds that keeps the session on its connection.
    pub(super) pinned: Option<&'static str>,
    /// A capture for room found state that can't move: not asked again until the client acts.
    pub(super) room_held: bool,
    /// Parked for room, counted in the room's stats.
    pub(super) parked_for_room: bool,
}

enum Event {
    Ended {
        killed: bool,
    },
    Client(std::io::Result<usize>),
    Backend(std::io::Result<usize>),
    Drain(Option<DrainCmd>),
    Early,
    Rejoin(Box<Rejoin>),
    /// The usher asks this session to park for room.
    Ask,
}

impl<P: Protocol> Session<P> {
    pub(crate) fn new(front: Arc<ClusterFront>, member: Membership, p: P) -> Self {
        Session {
            front,
            member,
            p,
            ended: false,
            seat: None,
            quiet: Arc::default(),
            kept: None,
            pinned: None,
            room_held: false,
            parked_for_room: false,
        }
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let result = self.serve(&shutdown).await;
        if let Err(e) = &result {
            self.p.report(e).await;
            if !self.ended && !matches!(e, Error::Closed) {
                tracing::info!(cluster = %self.front.name, session = self.member.id(), error = %e, "session ended");
            }
        }
        self.cleanup().await;
    }

    async fn serve(&mut self, shutdown: &CancellationToken) -> Result<(), Error> {
        // Boxed here and for each rare, large step below (a wake, a capture, a drain): a
        // session's task is sized for its largest await, and thousands of them sit parked.
        Box::pin(P::greet(self)).await?;
        // Made once: a cancellation future registers and unregisters itself each time one is
        // created, under a lock every session shares.
        let mut ending = Ending::new(shutdown, &self.member.reg.entry.kill);
        let mut asked = Box::pin(self.quiet.ask.clone().notified_owned());
        while let Step::Continue = self.step(&mut ending, &mut asked).await? {}
        Ok(())
    }

    async fn step(
        &mut self,
        ending: &mut Ending,
        asked: &mut Pin<Box<OwnedNotified>>,
    ) -> Result<Step, Error> {
        // Whole client requests go first, including ones that arrived while parked or waking.
        let handled = match P::on_client(self).await {
            Err(e) if e.keeps_session() => {
                tracing::info!(cluster = %self.front.name, session = self.member.id(), error = %e, "the session stays parked");
                P::refuse(self, &e).await?;
                Some(Step::Continue)
            }
            handled => handled?,
        };
        if let Some(step) = handled {
            return Ok(step);
        }
        if self.front.room.wanted() && self.may_park_for_room(true) {
            // Sessions wait for a connection and this one can go at once: transaction pooling
            // for the sessions that hold no state.
            Box::pin(self.park_for_room()).await?;
            return Ok(Step::Continue);
        }
        let read_client = self.p.reads_client();
        let attached = self.p.attached();
        let early = self
            .member
            .wants_early_snapshot(self.p.settled(), self.p.changed());
        let (client, backend) = self.p.conns();
        if !attached && client.rbuf.is_empty() && client.rbuf.capacity() > 0 {
            // A parked session may wait for days: its read buffer is allocated again when
            // its client next speaks.
            client.rbuf = bytes::BytesMut::new();
        }
        let event = tokio::select! {
            _ = ending.shutdown.as_mut() => Event::Ended { killed: false },
            _ = ending.killed.as_mut() => Event::Ended { killed: true },
            r = client.fill(), if read_client => Event::Client(r),
            r = fill(backend) => Event::Backend(r),
            c = self.member.cmd_rx.recv() => Event::Drain(c),
            _ = self.member.early.elapsed(&self.front.cluster), if early => Event::Early,
            Some(rj) = self.member.rejoin_rx.recv(), if !attached => Event::Rejoin(rj),
            _ = asked.as_mut(), if attached => Event::Ask,
        };
        match event {
            Event::Ended { killed } => {
                self.ended = true;
                Err(P::ended(killed))
            }
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
                        // The drain committed and the backend went away before our Commit came.
                        self.park();
                        return Ok(Step::Continue);
                    }
                    return Err(P::lost_backend());
                }
                P::on_backend(self).await?;
                Ok(Step::Continue)
            }
            Event::Ask => {
                asked.set(self.quiet.ask.clone().notified_owned());
                self.quiet.answered();
                if self.may_park_for_room(false) {
                    Box::pin(self.park_for_room()).await?;
                } else {
                    self.front.room.call.notify_one();
                }
                Ok(Step::Continue)
            }
            // A session parked for room with its snapshot in memory takes part in drains too.
            Event::Drain(Some(cmd)) if attached || self.member.prepared || self.kept.is_some() => {
                Box::pin(self.on_drain(cmd)).await?;
                Ok(Step::Continue)
            }
            // Stale drain commands from before we parked.
            Event::Drain(_) => Ok(Step::Continue),
            Event::Early => {
                let answer = Box::pin(self.checkpoint()).await;
                if answer.as_ref().is_err_and(Error::is_disconnect) {
                    return answer.map(|_| Step::Continue);
                }
                self.member.early_result(answer.map_err(|e| e.to_string()));
                Ok(Step::Continue)
            }
            Event::Rejoin(rj) => {
                // The backend started for someone else: be attached (and listening) before
                // they run anything.
                let deadline = Instant::now() + self.front.wake_timeout;
                let load = self.kept.is_none();
                let (at, snap) =
                    Box::pin(self.member.rejoin::<P::Snapshot>(rj, load, deadline)).await;
                let result = match snap.transpose() {
                    Ok(snap) => Box::pin(self.connect(&at, snap, deadline)).await,
                    Err(e) => Err(P::snapshot_lost(e)),
                };
                self.member.attached();
                if let Err(e) = result {
                    // The client hasn't asked for anything: it learns of this when it does.
                    tracing::info!(cluster = %self.front.name, session = self.member.id(), error = %e, "could not attach a listening session at the wake");
                    self.park();
                }
                Ok(Step::Continue)
            }
        }
    }

    async fn on_drain(&mut self, cmd: DrainCmd) -> Result<(), Error> {
        match cmd {
            DrainCmd::Checkpoint(reply) => {
                self.finish_probes().await?;
                match self.checkpoint().await {
                    Ok(answer) => self.member.answer(reply, Ok(answer)),
                    Err(e) => {
                        // The capture failed (e.g. a role without privileges); the session
                        // itself is still fine unless the connection broke.
                        self.member.answer(reply, Err(e.to_string()));
                        if e.is_disconnect() {
                            return Err(e);
                        }
                    }
                }
            }
            DrainCmd::Commit => {
                if self.member.prepared {
                    self.park();
                    self.not_parked_for_room(false);
                }
            }
            DrainCmd::Abort => {
                self.member.prepared = false;
                if !self.p.attached() {
                    // Parked for room and its snapshot is in the store now: nothing to drain.
                    self.member.leave();
                }
            }
        }
        Ok(())
    }

    /// Lets the probes in flight finish, so a drain need not be refused for them.
    async fn finish_probes(&mut self) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        while self.p.probing() && self.p.in_flight() {
            let (_, Some(backend)) = self.p.conns() else {
                return Ok(());
            };
            match tokio::time::timeout_at(deadline, backend.fill()).await {
                Err(_) => return Ok(()),
                Ok(r) => {
                    if r? == 0 {
                        return Err(P::lost_backend());
                    }
                }
            }
            P::on_backend(self).await?;
        }
        Ok(())
    }

    /// Captures this session's state and puts it durably, or says why it can't.
    pub(crate) async fn checkpoint(&mut self) -> Result<CheckpointReply, Error> {
        // No whole client request is buffered here: `step` hands those on before it looks
        // at drain commands.
        if let Some(why) = self.p.blocker() {
            return Ok(CheckpointReply::Blocked(format!(
                "{}: {why}",
                self.member.label()
            )));
        }
        if !self.p.attached() || !self.p.changed() {
            // Parked, or only plain reads since the last snapshot (or since connecting, when
            // there is none): what the store holds, or a fresh connection, is this session.
            // Unless that snapshot is only in memory.
            if let Some(snap) = self.kept.take()
                && let Err(e) = self.put(std::sync::Arc::new(snap.clone())).await
            {
                self.kept = Some(snap);
                return Err(e);
            }
            return Ok(CheckpointReply::Ready);
        }
        let started = Instant::now();
        let snap = match P::capture(self).await? {
            Capture::Blocked(why) => {
                let why = format!("{}: {}", self.member.label(), why.join(", "));
                self.member.reg.entry.set_found_blocker(Some(why.clone()));
                return Ok(CheckpointReply::Blocked(why));
            }
            Capture::Snapshot(s) => std::sync::Arc::<P::Snapshot>::from(s),
        };
        self.front.metrics.checkpoint.record(started.elapsed());
        self.pinned = P::pins(&snap);
        self.put(snap).await?;
        self.kept = None;
        self.p.saved();
        Ok(CheckpointReply::Ready)
    }

    async fn put(&mut self, snap: std::sync::Arc<P::Snapshot>) -> Result<(), Error> {
        let metrics = &self.front.metrics;
        let started = Instant::now();
        let bytes = self
            .front
            .store
            .put(&self.member.key, snap.clone())
            .await
            .map_err(|e| P::put_failed(e.to_string()))?;
        metrics.snapshot_put.record(started.elapsed());
        metrics.snapshot_bytes.record(bytes as f64);
        self.member.reg.entry.set_holds(P::holds(&snap));
        self.member.saved = true;
        Ok(())
    }

    /// Drops the backend connection; the snapshot in the store now holds the session.
    pub(crate) fn park(&mut self) {
        self.p.detach();
        // After the connection is gone: a waiter may open another at once.
        self.seat = None;
        self.front.room.leave(self.member.id());
        self.quiet.busy();
        self.member.leave();
        if self.p.listens() {
            self.member.watch();
        }
        self.update_busy();
    }

    /// Wakes the cluster if needed, connects, and restores the snapshot if there is one. What
    /// fails before `[proxy] wake_timeout` is tried again; past it the session stays parked
    /// with its snapshot ([`Error::Unavailable`]), unless the snapshot can never load.
    pub(crate) async fn attach(&mut self) -> Result<(), Error> {
        Box::pin(self.wake_and_attach()).await
    }

    async fn wake_and_attach(&mut self) -> Result<(), Error> {
        // Busy while connecting: the backend must be neither frozen nor drained under a
        // login and restore that no drain command can reach yet.
        let _busy = self.front.cluster.busy_while();
        let deadline = Instant::now() + self.front.wake_timeout;
        let mut backoff = Backoff::until(deadline);
        let mut trusting = true;
        loop {
            let load = self.kept.is_none();
            let (at, snap) = self
                .member
                .wake_and_load::<P::Snapshot>(load, std::mem::take(&mut trusting), deadline)
                .await;
            // A start that would only fail the same way again reaches the client at once.
            let again = at.as_ref().err().is_none_or(DriverError::is_retryable);
            let result = match (at, snap.transpose()) {
                (_, Err(e)) if !e.is_retryable() => Err(P::snapshot_lost(e)),
                (_, Err(e)) => Err(P::wake_failed(format!(
                    "its snapshot could not be read: {e}"
                ))),
                (Err(e), _) => Err(P::wake_failed(format!("the database did not start: {e}"))),
                (Ok(at), Ok(snap)) => self.connect(&at, snap, deadline).await,
            };
            self.member.attached();
            let Err(e) = result else {
                return Ok(());
            };
            self.park();
            // A server that refused the connection may have exited since the wake handed it
            // out: the next wake sees that and starts another.
            if !(e.keeps_session() && again && backoff.wait().await) {
                return Err(e);
            }
        }
    }

    /// Takes a backend connection slot, waiting for room if the backend has none free, and
    /// connects (or takes over the connection a session of the same key gave up) and restores
    /// the session's state: the snapshot read from the store, or the one in memory.
    async fn connect(
        &mut self,
        at: &controller::BackendInfo,
        snap: Option<P::Snapshot>,
        deadline: Instant,
    ) -> Result<(), Error> {
        let snap = match (&self.kept, snap) {
            (Some(kept), _) => Some(kept.clone()),
            (None, snap) => snap,
        };
        let room = self.front.room.clone();
        let Grant { seat, handed } = room
            .acquire(self.p.pool_key(), deadline)
            .await
            .map_err(|e| P::wake_failed(e.to_string()))?;
        let pinned = snap.as_ref().and_then(P::pins);
        P::connect_and_restore(self, at, snap, deadline, handed).await?;
        self.seat = Some(seat);
        self.pinned = pinned;
        self.not_parked_for_room(true);
        room.enter(self.member.id(), self.quiet.clone());
        Ok(())
    }

    /// Client bytes are about to go to the backend. During the first phase of a drain they
    /// call it off; once this session's snapshot is durable it is too late, and then the
    /// session parks and wakes again with the bytes still buffered.
    pub(crate) async fn activity(&mut self) -> Result<(), Error> {
        self.room_held = false;
        if self.member.activity() == Resume::Parked {
            self.park();
            self.attach().await?;
        } else if self.p.attached() && self.front.cluster.thaw().await.is_err() {
            // The backend is frozen and stays so: every session saved its snapshot before the
            // freeze, so this one parks, and attaches as a parked session does, trying the
            // thaw again until the wake timeout.
            self.park();
            self.attach().await?;
        }
        Ok(())
    }

    /// Bytes are about to go to the backend, with this session already counted as busy or
    /// probing: a freeze that began since the last look has to be undone first (see
    /// controller's `cluster::freeze`).
    pub(crate) async fn thaw_before_send(&mut self) -> Result<(), Error> {
        if self.front.cluster.is_frozen() && self.front.cluster.thaw().await.is_err() {
            // The request is tracked as sent already: the connection can't be followed.
            return Err(P::lost_backend());
        }
        Ok(())
    }

    /// Shows what keeps this session from being parked now, and tells the cluster when it
    /// turns busy or idle.
    pub(crate) fn update_busy(&mut self) {
        let blocker = if self.p.attached() {
            self.p.blocker()
        } else {
            None
        };
        self.member.publish(blocker, self.p.probing());
        match self.room_rest() {
            Some(at_once) => self.quiet.rest(at_once),
            None => {
                if self.quiet.busy() {
                    // Asked and can't go: the usher asks someone else.
                    self.front.room.call.notify_one();
                }
            }
        }
    }

    async fn cleanup(&mut self) {
        self.p.goodbye().await;
        self.park();
        self.not_parked_for_room(false);
        self.member.unwatch();
        self.member.forget_snapshot().await;
    }
}

/// Reads from the backend, or never completes while parked.
async fn fill(backend: Option<&mut Conn>) -> std::io::Result<usize> {
    match backend {
        Some(b) => b.fill().await,
        None => std::future::pending().await,
    }
}
