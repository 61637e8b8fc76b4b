//! `driver = "kubernetes"`: a StatefulSet or Deployment scaled between zero and one replica
//! through its `scale` subresource, or a CloudNativePG cluster (which refuses `instances: 0`)
//! hibernated and woken through its `cnpg.io/hibernation` annotation. After a start torpor
//! waits until the pod is Ready, then until the server behind the Service answers as a ready
//! one does ([`super::ready`], no credential). The API calls are in [`workload`]; how their
//! failures reach a waking client is in [`errors`].

mod client;
mod errors;
mod workload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::factory::{ConfigProblem, Engine};
use super::tls::{BackendTls, TlsMode};
use super::{BackendInfo, BackendState, Driver, DriverError, DriverStatus};
use workload::{Pods, Workload};

/// What kind of object `name` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Statefulset,
    Deployment,
    /// A CloudNativePG `Cluster` (postgresql.cnpg.io/v1).
    Cnpg,
}

/// `[cluster.backend]` for `driver = "kubernetes"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    pub kind: Kind,
    /// The workload's name.
    pub name: String,
    /// Its namespace; else the kubeconfig context's, or the pod's own in a cluster.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Where the server is reached once its pod is Ready: the Service's `host:port`.
    pub service: String,
    /// How long a start or a stop may take, pod scheduling and volume attachment included.
    #[serde(
        default = "default_timeout",
        deserialize_with = "super::factory::duration"
    )]
    pub timeout: Duration,
    /// A kubeconfig file; else `KUBECONFIG` or `~/.kube/config`, else the pod's service
    /// account (in a cluster).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// TLS towards the server: `require` unless set.
    #[serde(default)]
    pub tls: Option<TlsMode>,
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(300)
}

/// How often the pods are listed while waiting for one to be Ready or gone.
const POLL: Duration = Duration::from_millis(250);

impl KubernetesConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        BackendTls::resolve_paths(&mut self.ca, base);
        if let Some(p) = &mut self.kubeconfig
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    pub(super) fn tls(&self) -> BackendTls {
        BackendTls::new(self.tls, TlsMode::Require, self.ca.clone())
    }

    pub(super) fn check(&self, engine: Engine) -> Result<Vec<ConfigProblem>, ConfigProblem> {
        if self.timeout.is_zero() {
            return Err(ConfigProblem::new("timeout", "must be greater than zero"));
        }
        if self.name.trim().is_empty() {
            return Err(ConfigProblem::new("name", "must name the workload"));
        }
        if self.kind == Kind::Cnpg && engine != Engine::Postgres {
            return Err(ConfigProblem::new(
                "kind",
                "a CloudNativePG cluster runs PostgreSQL, not MySQL",
            ));
        }
        let port = self.service.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
        if !matches!(port, Some(Ok(p)) if p > 0) {
            return Err(ConfigProblem::new(
                "service",
                "want host:port (the Service's name and port, e.g. pg.db.svc:5432)",
            ));
        }
        if let Some(k) = &self.kubeconfig
            && !k.is_file()
        {
            return Err(ConfigProblem::new(
                "kubeconfig",
                format!("{} is not a file", k.display()),
            ));
        }
        Ok(Vec::new())
    }
}

pub(super) fn build(engine: Engine, cluster: &str, cfg: KubernetesConfig) -> Box<dyn Driver> {
    Box::new(KubeDriver {
        engine,
        cluster: cluster.to_string(),
        client: client::Lazy::new(cfg.kubeconfig.clone()),
        cfg,
        seen: Mutex::new(Seen::default()),
    })
}

/// What the driver last observed, for `status` (which must not call the API server).
#[derive(Debug, Clone, Default, Serialize)]
struct Seen {
    /// Started by torpor and not stopped since.
    running: bool,
    /// Pods matching the workload, and of them Ready, when last listed.
    pods: usize,
    ready: usize,
    address: Option<String>,
}

struct KubeDriver {
    engine: Engine,
    cluster: String,
    cfg: KubernetesConfig,
    client: client::Lazy,
    seen: Mutex<Seen>,
}

impl KubeDriver {
    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn workload(&self) -> Result<Workload, DriverError> {
        let (client, default_ns) = self.client.get(&self.cluster).await?;
        let namespace = self.cfg.namespace.clone().unwrap_or(default_ns);
        Ok(Workload::new(
            client,
            self.cfg.kind,
            &namespace,
            &self.cfg.name,
        ))
    }

    /// Lists the pods until `done` says so, within the deadline.
    async fn wait_pods(
        &self,
        w: &Workload,
        selector: &str,
        deadline: Instant,
        what: &str,
        done: impl Fn(&Pods) -> bool,
    ) -> Result<(), DriverError> {
        loop {
            let pods = w
                .pods(selector)
                .await
                .map_err(|e| errors::from_call(&self.cluster, w, "listing its pods", e))?;
            {
                let mut seen = self.seen();
                seen.pods = pods.total;
                seen.ready = pods.ready;
            }
            if done(&pods) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "cluster {}: {} {what} within {} ({} pods, {} Ready)",
                    self.cluster,
                    w,
                    humantime::format_duration(self.cfg.timeout),
                    pods.total,
                    pods.ready
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The Service's address, asked again at each start: its DNS name may be new.
    async fn service(&self, deadline: Instant) -> Result<SocketAddr, DriverError> {
        loop {
            let found = tokio::net::lookup_host(self.cfg.service.as_str())
                .await
                .ok()
                .and_then(|mut a| a.next());
            if let Some(addr) = found {
                return Ok(addr);
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "cluster {}: the service {} did not resolve",
                    self.cluster, self.cfg.service
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[async_trait]
impl Driver for KubeDriver {
    async fn prepare(&self) -> Result<(), DriverError> {
        // Nothing to ask of the API server yet: it may not be up while torpor starts, and
        // the first wake reports what is wrong to the client that asked.
        Ok(())
    }

    async fn start(&self) -> Result<BackendInfo, DriverError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let w = self.workload().await?;
        let selectors = w
            .set_running(true)
            .await
            .map_err(|e| errors::from_call(&self.cluster, &w, "waking it", e))?;
        self.wait_pods(&w, &selectors.primary, deadline, "has no Ready pod", |p| {
            p.ready > 0
        })
        .await?;
        let addr = self.service(deadline).await?;
        while !super::ready::ready(self.engine, addr).await {
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "cluster {}: its pod is Ready but the server behind {} ({addr}) did not answer as ready within {}",
                    self.cluster,
                    self.cfg.service,
                    humantime::format_duration(self.cfg.timeout)
                )));
            }
            tokio::time::sleep(super::ready::READY_POLL).await;
        }
        let mut seen = self.seen();
        seen.running = true;
        seen.address = Some(addr.to_string());
        Ok(BackendInfo { addr, socket: None })
    }

    async fn stop(&self) -> Result<(), DriverError> {
        let deadline = Instant::now() + self.cfg.timeout;
        let w = self.workload().await?;
        let selectors = w
            .set_running(false)
            .await
            .map_err(|e| errors::from_call(&self.cluster, &w, "scaling it to zero", e))?;
        self.seen().running = false;
        self.wait_pods(&w, &selectors.all, deadline, "still has pods", |p| {
            p.total == 0
        })
        .await
    }

    async fn status(&self) -> DriverStatus {
        let seen = self.seen().clone();
        DriverStatus {
            state: if seen.running {
                BackendState::Running
            } else {
                BackendState::Stopped
            },
            details: serde_json::json!({
                "kind": self.cfg.kind,
                "name": self.cfg.name,
                "namespace": self.cfg.namespace,
                "service": self.cfg.service,
                "pods": seen.pods,
                "ready": seen.ready,
                "address": seen.address,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
