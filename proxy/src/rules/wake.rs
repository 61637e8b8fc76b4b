//! `wake_metric`: while the metric is above its threshold the cluster is woken (from standby,
//! frozen, or a drain under way) and held up; once it is at or below, the hold goes and the
//! cluster stays up idle_timeout more. An endpoint that can't be read wakes nothing, and a
//! hold already taken stays until a reading says otherwise.

use std::sync::Arc;

use controller::{Cluster, ClusterState, Hold, WakeCause};

use super::Seen;
use super::scrape::Target;

pub(super) async fn run(cluster: Arc<Cluster>, target: Target) {
    let series = target.series();
    let name = cluster.name().to_string();
    let mut hold: Option<Hold> = None;
    let mut seen: Option<Seen> = None;
    loop {
        match target.read().await {
            Ok(v) if v > target.above => {
                let reason = format!("wake metric {series}={v} > {}", target.above);
                if seen != Some(Seen::Above) {
                    tracing::info!(cluster = %name, %reason, "wake_metric wakes the cluster and holds it up");
                }
                match &hold {
                    Some(h) => h.set_reason(reason),
                    None => hold = Some(cluster.hold(reason)),
                }
                seen = Some(Seen::Above);
                if cluster.state() != ClusterState::Running
                    && let Err(e) = cluster.wake_for(WakeCause::Metric, None).await
                {
                    tracing::warn!(cluster = %name, metric = %series, error = %e, "wake_metric could not wake the cluster; trying again at the next reading");
                }
            }
            Ok(v) => {
                if hold.take().is_some() {
                    tracing::info!(cluster = %name, metric = %series, value = v, above = target.above, "wake_metric lets the cluster go: it may stop after idle_timeout");
                }
                seen = Some(Seen::Below);
            }
            Err(e) => {
                let now = Seen::Unreadable(e.to_string());
                if seen.as_ref() != Some(&now) {
                    tracing::warn!(cluster = %name, metric = %series, error = %e, held = hold.is_some(), "wake_metric can't be read: it wakes nothing, and a hold it took stays");
                }
                if let Some(h) = &hold {
                    h.set_reason(format!(
                        "wake metric {series}: {e} (above {} when last read)",
                        target.above
                    ));
                }
                seen = Some(now);
            }
        }
        tokio::time::sleep(target.interval).await;
    }
}
