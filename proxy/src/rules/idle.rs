//! `idle_metric`: while the metric is above its threshold the cluster counts as busy. So does a
//! metric that can't be read or isn't there: nothing is stopped on a guess. The endpoint is
//! read only while the cluster is up (a stopped database has nothing to finish), from the
//! moment it wakes, and until the first answer the cluster is held.

use std::sync::Arc;

use controller::{Cluster, ClusterState, Hold};

use super::Seen;
use super::scrape::Target;

pub(super) async fn run(cluster: Arc<Cluster>, target: Target) {
    let series = target.series();
    let name = cluster.name().to_string();
    let mut state = cluster.subscribe_state();
    let mut hold: Option<Hold> = None;
    let mut seen: Option<Seen> = None;
    loop {
        if *state.borrow_and_update() == ClusterState::Standby {
            hold = None;
            seen = None;
            if state.changed().await.is_err() {
                return;
            }
            continue;
        }
        if seen.is_none() && hold.is_none() {
            hold = Some(cluster.hold(format!("metric {series}: not read yet")));
        }
        let (now, reason) = match target.read().await {
            Ok(v) if v > target.above => (
                Seen::Above,
                Some(format!("metric {series}={v} > {}", target.above)),
            ),
            Ok(v) => {
                if seen.as_ref().is_some_and(|s| *s != Seen::Below) {
                    tracing::info!(cluster = %name, metric = %series, value = v, above = target.above, "idle_metric lets the cluster go: it may stop after idle_timeout");
                }
                (Seen::Below, None)
            }
            Err(e) => (
                Seen::Unreadable(e.to_string()),
                Some(format!("metric {series}: {e}")),
            ),
        };
        match reason {
            Some(reason) => {
                if seen.as_ref() != Some(&now) {
                    match &now {
                        Seen::Unreadable(_) => {
                            tracing::warn!(cluster = %name, %reason, "idle_metric can't be read: the cluster counts as busy")
                        }
                        _ => {
                            tracing::info!(cluster = %name, %reason, "idle_metric holds the cluster up")
                        }
                    }
                }
                match &hold {
                    Some(h) => h.set_reason(reason),
                    None => hold = Some(cluster.hold(reason)),
                }
            }
            None => hold = None,
        }
        seen = Some(now);
        tokio::select! {
            _ = tokio::time::sleep(target.interval) => {}
            r = state.changed() => if r.is_err() { return },
        }
    }
}
