//! The API client, made on first use rather than when torpor starts: a kubeconfig that is
//! wrong, or a token not mounted yet, then fails a wake with the reason instead of torpor's
//! start, and is read again at the next wake.

use std::path::PathBuf;
use std::time::Duration;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use tokio::sync::OnceCell;

use super::super::DriverError;

/// A call that hangs counts as the API server being unavailable well before a wake's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) struct Lazy {
    kubeconfig: Option<PathBuf>,
    made: OnceCell<(kube::Client, String)>,
}

impl Lazy {
    pub(super) fn new(kubeconfig: Option<PathBuf>) -> Self {
        Lazy {
            kubeconfig,
            made: OnceCell::new(),
        }
    }

    /// The client, and the namespace its config names (or the pod's own).
    pub(super) async fn get(&self, cluster: &str) -> Result<(kube::Client, String), DriverError> {
        self.made
            .get_or_try_init(|| self.make(cluster))
            .await
            .cloned()
    }

    async fn make(&self, cluster: &str) -> Result<(kube::Client, String), DriverError> {
        let failed = |e: &dyn std::fmt::Display| {
            DriverError::Failed(format!(
                "cluster {cluster}: no Kubernetes client config: {e}"
            ))
        };
        let mut config = match &self.kubeconfig {
            Some(path) => {
                let file = Kubeconfig::read_from(path).map_err(|e| {
                    DriverError::Failed(format!(
                        "cluster {cluster}: kubeconfig {}: {e}",
                        path.display()
                    ))
                })?;
                Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| failed(&e))?
            }
            None => Config::infer().await.map_err(|e| failed(&e))?,
        };
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(READ_TIMEOUT);
        let namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| failed(&e))?;
        Ok((client, namespace))
    }
}
