//! One backend database and its lifecycle: standby → waking → running → draining → stopping,
//! with a frozen tier between running and draining where the driver can freeze.
//!
//! Sessions take part in a drain through a channel of [`DrainCmd`]s, so this module never needs
//! to know which wire protocol they speak.
//!
//! - `state`: the lifecycle states and how the cluster moves between them;
//! - `wake`: starting the backend, and attaching watching sessions before anyone else runs;
//! - `drain`: the two-phase drain (checkpoint everywhere, then stop) and shutdown;
//! - `idle`: what counts as activity, and the loop that freezes and drains an idle cluster;
//! - `freeze`: the frozen tier;
//! - `hold`: what keeps the cluster up besides its sessions (rules), with a reason;
//! - `exits`: a backend that ends on its own;
//! - `check`: what the proxy says against a drain or freeze (the database's own work).

mod check;
mod drain;
mod exits;
mod freeze;
mod hold;
mod idle;
mod state;
mod wake;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::driver::{BackendInfo, Driver, DriverError};

pub use check::DrainCheck;
pub use drain::{CheckpointReply, DrainCmd, Participant, Resume, SleepError};
pub use hold::Hold;
pub use idle::BusyGuard;
pub use state::ClusterState;
pub use wake::{Rejoin, WakeCause};

struct Inner {
    state: ClusterState,
    backend: Option<BackendInfo>,
    /// How many backends have been started: what the driver reports about one is applied
    /// only while it is still the current one.
    generation: u64,
    /// Set when anything needs the backend while phase 1 of a drain is running.
    drain_aborted: bool,
    participants: HashMap<u64, mpsc::UnboundedSender<DrainCmd>>,
    /// Parked sessions that must be attached again whenever the backend starts, before
    /// anything else runs on it (a session that LISTENs would miss notifications).
    watchers: HashMap<u64, mpsc::UnboundedSender<Box<Rejoin>>>,
    /// Why the backend last ended on its own or failed to start, for operators.
    last_error: Option<String>,
    /// Why the last drain check refused a drain: see `check`.
    check_blocker: Option<String>,
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub wakes: AtomicU64,
    pub wake_failures: AtomicU64,
    pub drains: AtomicU64,
    pub drains_refused: AtomicU64,
    pub drains_aborted: AtomicU64,
    pub freezes: AtomicU64,
    pub thaws: AtomicU64,
}

pub struct Cluster {
    name: String,
    idle_timeout: Duration,
    /// None: never frozen (not asked for, or the driver can't).
    freeze_after: Option<Duration>,
    driver: Box<dyn Driver>,
    /// Asked before every drain and freeze; none by default.
    drain_check: OnceLock<Box<dyn DrainCheck>>,
    inner: Mutex<Inner>,
    state_tx: watch::Sender<ClusterState>,
    /// Sessions with a query in flight, an open transaction or a COPY.
    busy: AtomicUsize,
    /// Sessions whose only work in flight is health-check probes.
    probing: AtomicUsize,
    /// The backend is frozen or being frozen: see `freeze`.
    frozen: AtomicBool,
    /// Why something other than a session keeps the cluster up, by hold id: see `hold`.
    holds: Mutex<BTreeMap<u64, String>>,
    hold_ids: AtomicU64,
    last_activity: Mutex<Instant>,
    activity_tx: watch::Sender<u64>,
    /// Bumped whenever a participant leaves, for phase 2 to wait on.
    parked_tx: watch::Sender<u64>,
    /// Serialises drains and wakes' driver calls against each other.
    lifecycle: tokio::sync::Mutex<()>,
    /// Mirrors `state == Draining` for the per-message check on the hot path.
    draining: AtomicBool,
    pub stats: ClusterStats,
    /// Time from a wake request to the backend being ready, one per [`WakeCause`].
    wake_seconds: [metrics::Histogram; WakeCause::ALL.len()],
}

impl Cluster {
    pub fn new(name: impl Into<String>, idle_timeout: Duration, driver: Box<dyn Driver>) -> Self {
        let (state_tx, _) = watch::channel(ClusterState::Standby);
        let (activity_tx, _) = watch::channel(0);
        let (parked_tx, _) = watch::channel(0);
        Cluster {
            name: name.into(),
            idle_timeout,
            freeze_after: None,
            driver,
            drain_check: OnceLock::new(),
            inner: Mutex::new(Inner {
                state: ClusterState::Standby,
                backend: None,
                generation: 0,
                drain_aborted: false,
                participants: HashMap::new(),
                watchers: HashMap::new(),
                last_error: None,
                check_blocker: None,
            }),
            state_tx,
            busy: AtomicUsize::new(0),
            probing: AtomicUsize::new(0),
            frozen: AtomicBool::new(false),
            holds: Mutex::new(BTreeMap::new()),
            hold_ids: AtomicU64::new(0),
            last_activity: Mutex::new(Instant::now()),
            activity_tx,
            parked_tx,
            lifecycle: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            stats: ClusterStats::default(),
            wake_seconds: WakeCause::ALL.map(|_| metrics::Histogram::noop()),
        }
    }

    /// Where the wake latency of each cause is recorded; none by default.
    pub fn with_wake_histograms(
        mut self,
        histogram: impl Fn(WakeCause) -> metrics::Histogram,
    ) -> Self {
        self.wake_seconds = WakeCause::ALL.map(histogram);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    pub async fn prepare(&self) -> Result<(), DriverError> {
        self.driver.prepare().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update; the state is still
        // the best we have.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
