//! What torpor learns from a server each time it starts (its settings catalog, its version),
//! on a connection of its own, so it can answer for the server while it sleeps.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use controller::ClusterState;

use crate::cluster_front::ClusterFront;

/// After a start, leave the first queries the CPU before asking.
const SETTLE: Duration = Duration::from_millis(200);
/// Between attempts that failed.
const RETRY: Duration = Duration::from_secs(1);

/// Runs as long as torpor serves the cluster: after every start of the server, `on_start`
/// forgets what belonged to the last server process, then `learn` runs until it succeeds or the
/// server stops.
pub(crate) async fn after_every_start<E, F>(
    front: Arc<ClusterFront>,
    what: &'static str,
    on_start: impl Fn(&ClusterFront),
    learn: impl Fn(Arc<ClusterFront>) -> F,
) where
    E: Display,
    F: Future<Output = Result<(), E>>,
{
    let mut state = front.cluster.subscribe_state();
    loop {
        if state
            .wait_for(|s| *s == ClusterState::Running)
            .await
            .is_err()
        {
            return;
        }
        on_start(&front);
        loop {
            tokio::time::sleep(SETTLE).await;
            if *state.borrow() != ClusterState::Running {
                break;
            }
            match learn(front.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!(cluster = %front.name, error = %e, "could not read the {what}");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        // Until the server stops, what was learned stands.
        if state
            .wait_for(|s| {
                !matches!(
                    s,
                    ClusterState::Running | ClusterState::Frozen | ClusterState::Draining
                )
            })
            .await
            .is_err()
        {
            return;
        }
    }
}
