//! What operators see of a cluster's backend connections on `/metrics`.

use std::sync::atomic::Ordering;

use metrics::Label;

use super::Room;
use crate::metrics::{Scrape, label};

impl Room {
    pub fn scrape(&self, m: &mut Scrape, cluster: &Label) {
        let of_cluster = std::slice::from_ref(cluster);
        let cap = self.capacity();
        let used = self.in_use();
        m.gauge(
            "torpor_backend_connections_max",
            "backend connections the sessions may hold (max_backend_connections, or learned from the server; 0: not known yet, no limit)",
            of_cluster,
            cap as f64,
        );
        for (state, n) in [("in_use", used), ("free", cap.saturating_sub(used))] {
            m.gauge(
                "torpor_backend_connections",
                "backend connections held by sessions, and free under the limit",
                &[cluster.clone(), label("state", state)],
                n as f64,
            );
        }
        m.gauge(
            "torpor_backend_queue",
            "sessions waiting for a backend connection",
            of_cluster,
            self.queued() as f64,
        );
        m.gauge(
            "torpor_sessions_parked_for_room",
            "sessions parked so that another could have their backend connection",
            of_cluster,
            self.stats.parked.load(Ordering::Relaxed) as f64,
        );
        for (name, help, value) in [
            (
                "torpor_room_parks_total",
                "sessions parked to make room for another",
                &self.stats.parks,
            ),
            (
                "torpor_room_restores_total",
                "sessions parked for room that attached again",
                &self.stats.restores,
            ),
            (
                "torpor_room_handovers_total",
                "backend connections passed from one session to another without a reconnect",
                &self.stats.handovers,
            ),
            (
                "torpor_room_timeouts_total",
                "requests that got no backend connection within the wake timeout",
                &self.stats.timeouts,
            ),
        ] {
            m.counter(name, help, of_cluster, value.load(Ordering::Relaxed));
        }
    }
}
