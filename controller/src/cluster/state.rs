//! The lifecycle states, and the one place the cluster moves between them.

use std::sync::atomic::Ordering;

use serde::Serialize;
use tokio::sync::watch;

use super::{Cluster, Inner};
use crate::driver::{BackendInfo, DriverStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    Standby,
    Waking,
    Running,
    /// Running, but its processes frozen: sessions stay attached, the next query thaws it.
    Frozen,
    Draining,
    Stopping,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Standby => "standby",
            ClusterState::Waking => "waking",
            ClusterState::Running => "running",
            ClusterState::Frozen => "frozen",
            ClusterState::Draining => "draining",
            ClusterState::Stopping => "stopping",
        }
    }
}

impl Cluster {
    pub fn state(&self) -> ClusterState {
        self.lock().state
    }

    /// Whether a drain is in its first phase: sessions are checkpointing.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Every lifecycle state change, for whoever must act on wakes.
    pub fn subscribe_state(&self) -> watch::Receiver<ClusterState> {
        self.state_tx.subscribe()
    }

    /// What the driver observes of the backend now, with its own details (the process
    /// driver's pid) for operators.
    pub async fn backend_status(&self) -> DriverStatus {
        self.driver.status().await
    }

    /// The backend's address, if it is up, not frozen and not going away.
    pub fn running_backend(&self) -> Option<BackendInfo> {
        let inner = self.lock();
        match inner.state {
            ClusterState::Running | ClusterState::Draining => inner.backend.clone(),
            _ => None,
        }
    }

    pub(super) fn set_state(&self, inner: &mut Inner, state: ClusterState) {
        inner.state = state;
        if state == ClusterState::Standby {
            // Nothing runs on a stopped server: the next one is asked anew.
            inner.check_blocker = None;
        }
        self.draining
            .store(state == ClusterState::Draining, Ordering::SeqCst);
        self.state_tx.send_replace(state);
    }
}
