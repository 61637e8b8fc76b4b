//! What the session engine needs from a wire protocol: framing the client's requests and the
//! backend's answers, when the session is at a safe point and what it changed, capture and
//! replay, and how its client is told an error. The engine does the rest.

use controller::BackendInfo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use state_store::StoreError;
use tokio::time::Instant;

use super::{Error, Session};
use crate::net::Conn;
use crate::registry::Holds;
use crate::room::{Handed, PoolKey};

/// What the loop does next.
pub(crate) enum Step {
    Continue,
    /// The client left, or asked to: end quietly.
    Done,
}

/// What a capture found.
pub(crate) enum Capture<S> {
    Snapshot(Box<S>),
    /// State that can't be carried over, named for operators.
    Blocked(Vec<String>),
}

pub(crate) trait Protocol: Sized + Send + 'static {
    type Snapshot: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The client's connection, and the backend's while attached.
    fn conns(&mut self) -> (&mut Conn, Option<&mut Conn>);
    /// Whether to read more from the client now: not while an answer is outstanding and the
    /// client's next requests pile up.
    fn reads_client(&self) -> bool {
        true
    }

    /// Ends the client's startup: tells it the session is ready, attaching first if needed.
    async fn greet(s: &mut Session<Self>) -> Result<(), Error>;
    /// Handles what the client has sent. None when nothing can be done until more arrives.
    async fn on_client(s: &mut Session<Self>) -> Result<Option<Step>, Error>;
    /// Passes on what the backend sent.
    async fn on_backend(s: &mut Session<Self>) -> Result<(), Error>;

    fn attached(&self) -> bool;
    /// Why this session can't be checkpointed now, from what passed on the wire.
    fn blocker(&self) -> Option<&'static str>;
    /// A request is waiting for the backend's answer.
    fn in_flight(&self) -> bool;
    /// Everything in flight is health-check probes: not activity.
    fn probing(&self) -> bool;
    /// Something may have changed what the session holds since its last snapshot.
    fn changed(&self) -> bool;
    /// Attached, idle and outside any transaction: an early snapshot may be taken.
    fn settled(&self) -> bool;
    /// While parked, attach whenever the backend starts (LISTEN).
    fn listens(&self) -> bool {
        false
    }

    /// Whether the session may be parked to make room for another now: `Some(true)` at once
    /// (nothing changed since its last snapshot, or it never changed anything), `Some(false)`
    /// once it has been quiet for `park_idle_after` (a capture must say), `None` not at all (a
    /// request in flight, a transaction, a LISTEN).
    fn room_rest(&self) -> Option<bool> {
        None
    }
    /// Sessions with the same key may take over each other's backend connection after a reset.
    fn pool_key(&self) -> PoolKey {
        0
    }
    /// What a snapshot holds that ties the session to its backend connection (a lock another
    /// session could take meanwhile, channels it would miss notifications on).
    fn pins(_snap: &Self::Snapshot) -> Option<&'static str> {
        None
    }
    /// Takes the backend connection off the parking session, reset to how a fresh login of the
    /// same key leaves it, for another session. None when it can't be (it is closed instead).
    async fn hand_off(_s: &mut Session<Self>) -> Option<Handed> {
        None
    }
    /// Closes a connection [`Protocol::hand_off`] made that nobody took.
    async fn close(_conn: Handed) {}

    /// Asks the backend what the session holds, on its own connection, at a safe point.
    async fn capture(s: &mut Session<Self>) -> Result<Capture<Self::Snapshot>, Error>;
    /// What a snapshot holds, counted for operators.
    fn holds(snap: &Self::Snapshot) -> Holds;
    /// The session's state is what the store now holds.
    fn saved(&mut self);

    /// Connects to the backend and gives it the session's state: the snapshot's (if any),
    /// and what the client changed while torpor answered for it. A backend that is full
    /// (too many connections) is tried again until `deadline`. `handed`: a connection another
    /// session of the same key gave up, reset, to use instead of a new one.
    async fn connect_and_restore(
        s: &mut Session<Self>,
        at: &BackendInfo,
        snap: Option<Self::Snapshot>,
        deadline: Instant,
        handed: Option<Handed>,
    ) -> Result<(), Error>;
    /// Drops the backend connection: the session is parked.
    fn detach(&mut self);
    /// Tells the backend the session is leaving, if attached.
    async fn goodbye(&mut self);

    /// The error a client is told when the backend connection was lost.
    fn lost_backend() -> Error;
    /// The error for a session ended from outside: torpor shutting down, or a KILL.
    fn ended(killed: bool) -> Error;
    /// The error for a wake that failed (the database, or the store, could not be reached in
    /// time): [`Error::Unavailable`], the session is kept.
    fn wake_failed(why: String) -> Error;
    /// The error for a snapshot that can never load: the session ends.
    fn snapshot_lost(e: StoreError) -> Error;
    /// An error from a backend connection during a wake: one that broke (the server went away
    /// meanwhile) keeps the session, to try again on the server the next wake finds or starts.
    fn went_away(e: Error) -> Error {
        if e.is_disconnect() {
            Self::wake_failed(format!("it went away: {e}"))
        } else {
            e
        }
    }
    /// Answers the client's request that could not be served with `e`, which keeps the
    /// session, as the server answers a request that fails.
    async fn refuse(s: &mut Session<Self>, e: &Error) -> Result<(), Error>;
    /// The error for a snapshot that could not be stored.
    fn put_failed(why: String) -> Error;
    /// Tells the client why its session ends.
    async fn report(&mut self, e: &Error);
}
