//! Rules that decide idle and wake besides clients: `idle_metric` (a metric above its threshold
//! keeps the cluster up), `wake_metric` (one above its threshold wakes it and keeps it up) and
//! `wake_at` (cron times that wake it). Each keeps the cluster up through a
//! [`controller::Hold`], whose reason shows among the drain's blockers, and logs its
//! transitions, not every reading.
//!
//! - `scrape`: reading one metric from a Prometheus text endpoint;
//! - `idle`: the idle_metric rule;
//! - `wake`: the wake_metric rule;
//! - `schedule`: wake_at, over a [`Clock`] a test can set.

mod clock;
mod idle;
pub mod schedule;
mod scrape;
mod wake;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use controller::Cluster;

use crate::config::ClusterConfig;
pub use clock::Clock;

/// A rule's loop, run until torpor shuts down.
pub type RuleTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The loops of every rule `c` has, for `cluster`.
pub fn tasks(
    c: &ClusterConfig,
    cluster: &Arc<Cluster>,
    clock: &Clock,
) -> anyhow::Result<Vec<RuleTask>> {
    let mut out: Vec<RuleTask> = Vec::new();
    for r in &c.idle_metric {
        let target = scrape::Target::new(r)
            .map_err(|e| anyhow::anyhow!("cluster {}: idle_metric {}: {e}", c.name, r.name))?;
        out.push(Box::pin(idle::run(cluster.clone(), target)));
    }
    for r in &c.wake_metric {
        let target = scrape::Target::new(r)
            .map_err(|e| anyhow::anyhow!("cluster {}: wake_metric {}: {e}", c.name, r.name))?;
        out.push(Box::pin(wake::run(cluster.clone(), target)));
    }
    if !c.wake_at.is_empty() {
        let mut times = Vec::with_capacity(c.wake_at.len());
        for p in &c.wake_at {
            let cron = schedule::parse(p)
                .map_err(|e| anyhow::anyhow!("cluster {}: wake_at {p:?}: {e}", c.name))?;
            times.push((p.clone(), cron));
        }
        out.push(Box::pin(schedule::run(
            cluster.clone(),
            times,
            clock.clone(),
        )));
    }
    Ok(out)
}

/// What a rule read last, so that only a change is logged.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Above,
    Below,
    Unreadable(String),
}
