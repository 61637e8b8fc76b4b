//! The snapshot store as torpor starts it: sealed with the configured key (or one torpor
//! makes), under this torpor's own instance prefix, emptied of what earlier runs left.

use std::time::Duration;

use anyhow::Context;
use state_store::Store;

use crate::config::Config;

/// Opens the store `cfg` names, checks it can write, and deletes every snapshot its earlier
/// runs left: no session can be live before the listeners open, so what is there belongs to
/// sessions of a torpor that did not stop cleanly (a `kill -9`) and can never be woken.
pub(crate) async fn open(cfg: &Config) -> anyhow::Result<Store> {
    let mut store_cfg = cfg.state_store.clone();
    if let Some(path) = cfg.default_key_file() {
        if !path.exists() {
            state_store::seal::write_key_file(&path).context("state_store")?;
            tracing::warn!(path = %path.display(), "no key_file or key_env in [state_store]: made a new key to seal snapshots with; keep it, snapshots sealed with it open with no other");
        } else {
            tracing::info!(path = %path.display(), "sealing snapshots with the key torpor made earlier");
        }
        store_cfg.key_file = Some(path);
    }
    let instance = cfg.instance();
    let store = Store::open(&store_cfg)
        .and_then(|s| s.instance(&instance))
        .context("state_store")?;
    // A store that isn't up yet (started beside torpor, as in a compose file) is waited for;
    // one that refuses what torpor asks (a bad key, a bad URL) is not.
    let gave_up = tokio::time::Instant::now() + STARTUP_WAIT;
    let mut wait = Duration::from_millis(200);
    let removed = loop {
        let ready = async {
            store.probe().await?;
            store.clear().await
        };
        match ready.await {
            Ok(removed) => break removed,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() + wait < gave_up => {
                tracing::warn!(store = %store.describe(), error = %e, retry_in = ?wait, "the snapshot store is not reachable yet; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e).context("state_store"),
        }
    };
    tracing::info!(store = %store.describe(), removed, "snapshot store ready; removed the snapshots an earlier run of this instance left");
    Ok(store)
}

/// How long torpor waits at start for a snapshot store that doesn't answer yet.
const STARTUP_WAIT: Duration = Duration::from_secs(300);
