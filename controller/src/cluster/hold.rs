//! Holds: something other than a client session keeps the cluster up, with a reason operators
//! can read (a metric above its threshold, a wake rule). A held cluster counts as busy: the
//! idle loop neither freezes nor drains it, and a drain asked for is refused with the reasons.
//! The idle clock starts again when the last hold is released, so the cluster stays up at least
//! `idle_timeout` after that.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Cluster, ClusterState};

/// Keeps its cluster up until dropped. See [`Cluster::hold`].
pub struct Hold {
    cluster: Arc<Cluster>,
    id: u64,
}

impl Cluster {
    /// Keeps the cluster up for `reason` until the returned [`Hold`] is dropped. A drain in its
    /// first phase is called off, as a wake would.
    pub fn hold(self: &Arc<Self>, reason: impl Into<String>) -> Hold {
        let id = self.hold_ids.fetch_add(1, Ordering::Relaxed);
        self.holds_map().insert(id, reason.into());
        {
            let mut inner = self.lock();
            if inner.state == ClusterState::Draining {
                inner.drain_aborted = true;
            }
        }
        // Wakes the idle loop, which would otherwise drain at the deadline it is sleeping to.
        self.touch();
        Hold {
            cluster: self.clone(),
            id,
        }
    }

    /// Why the cluster is held up now, oldest hold first.
    pub fn holds(&self) -> Vec<String> {
        self.holds_map().values().cloned().collect()
    }

    pub fn is_held(&self) -> bool {
        !self.holds_map().is_empty()
    }

    fn holds_map(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, String>> {
        // Poisoned only if a thread panicked mid-insert; the map is still usable.
        self.holds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Hold {
    /// What operators see as the reason from now on.
    pub fn set_reason(&self, reason: impl Into<String>) {
        if let Some(r) = self.cluster.holds_map().get_mut(&self.id) {
            *r = reason.into();
        }
    }

    pub fn reason(&self) -> String {
        self.cluster
            .holds_map()
            .get(&self.id)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let now_free = {
            let mut holds = self.cluster.holds_map();
            holds.remove(&self.id);
            holds.is_empty()
        };
        if now_free {
            // The idle clock starts now: idle_timeout more before a drain.
            self.cluster.touch();
        }
    }
}
