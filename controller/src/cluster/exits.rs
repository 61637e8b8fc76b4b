//! A backend that ends without being asked to (killed, crashed, out of memory): the cluster
//! goes back to standby as soon as the driver notices, and says why in `last_error`, rather
//! than showing `running` until the next wake finds out.

use super::{Cluster, ClusterState};

impl Cluster {
    /// Watches the running backend for as long as it runs; the driver says when it exits.
    /// Runs until dropped.
    pub async fn watch_backend(&self) {
        let mut state_rx = self.state_tx.subscribe();
        loop {
            let running = state_rx
                .wait_for(|s| matches!(s, ClusterState::Running | ClusterState::Frozen))
                .await;
            if running.map(drop).is_err() {
                return;
            }
            let generation = self.lock().generation;
            tokio::select! {
                why = self.driver.exited() => self.backend_exited(generation, why),
                r = state_rx.changed() => if r.is_err() { return },
            }
        }
    }

    /// Why the backend last ended on its own or failed to start; cleared by a start.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// The backend of start number `generation` ended on its own: standby, unless a drain or
    /// another start came in between.
    pub(super) fn backend_exited(&self, generation: u64, why: String) {
        let mut inner = self.lock();
        let up = matches!(inner.state, ClusterState::Running | ClusterState::Frozen);
        if up && inner.generation == generation {
            tracing::error!(cluster = %self.name, %why, "backend exited on its own; the next client starts it again");
            inner.backend = None;
            inner.last_error = Some(why);
            self.frozen
                .store(false, std::sync::atomic::Ordering::SeqCst);
            self.set_state(&mut inner, ClusterState::Standby);
        }
    }
}
