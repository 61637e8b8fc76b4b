//! `driver = "docker"`: the server runs in a container of a Docker Engine, reached through its
//! API ([`api`]). The first start creates the container when it is missing, from `image`, with
//! its data on a named volume; later starts `start` it, and a stop is `docker stop`, which
//! keeps the container and its volume. torpor learns the server is ready by asking it without
//! a credential ([`super::ready`]), never by waiting a fixed time. The frozen tier is
//! `docker pause`: the container's processes keep their memory and TCP connections. A
//! container that ends on its own (killed, out of memory, removed) is noticed through the
//! API's wait, and the next wake starts it again.

mod api;
mod config;
mod container;

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

pub use config::{DockerConfig, Env};

use self::api::{Api, Failure};
use self::container::{Observed, Spec};
use super::factory::Engine;
use super::{BackendInfo, BackendState, Driver, DriverError, DriverStatus};

pub(super) fn build(engine: Engine, cluster: &str, cfg: DockerConfig) -> Box<dyn Driver> {
    let spec = Spec::new(engine, cluster, &cfg);
    Box::new(DockerDriver {
        engine,
        cluster: cluster.to_string(),
        api: Api::new(cfg.api_host(), cluster),
        spec,
        cfg,
        last: Mutex::new(None),
    })
}

struct DockerDriver {
    engine: Engine,
    cluster: String,
    cfg: DockerConfig,
    spec: Spec,
    api: Api,
    /// Where the server was when torpor last started it; `None` once stopped.
    last: Mutex<Option<SocketAddr>>,
}

/// How often a start looks at the container while waiting for its server.
const LOOK: Duration = Duration::from_millis(250);

impl DockerDriver {
    /// The container as the daemon has it now; `None` when there is none of that name.
    async fn observe(&self) -> Result<Option<Observed>, DriverError> {
        let name = self.spec.name.clone();
        match self
            .api
            .call(|d| async move { d.inspect_container(&name, None).await })
            .await
        {
            Ok(c) => Ok(Some(Observed::from(c))),
            Err(Failure::Refused { status: 404, .. }) => Ok(None),
            Err(f) => Err(self.api.error("inspect", f)),
        }
    }

    async fn create(&self) -> Result<(), DriverError> {
        let (options, body) = self.spec.create();
        let created = self
            .api
            .call(|d| async move { d.create_container(Some(options), body).await })
            .await;
        match created {
            Ok(_) => {
                tracing::info!(cluster = %self.cluster, container = %self.spec.name, image = %self.cfg.image, "created the container");
                Ok(())
            }
            Err(Failure::Refused { status: 404, .. }) => Err(DriverError::Failed(format!(
                "cluster {}: image {} is not on the Docker daemon at {}: pull or build it there (docker pull {})",
                self.cluster,
                self.cfg.image,
                self.api.host(),
                self.cfg.image
            ))),
            Err(f) => Err(self.api.error("create", f)),
        }
    }

    /// Unpauses the container if it is paused (daemons differ in what an unpause of a running
    /// one answers: 409 or 500).
    async fn unpause(&self) -> Result<(), DriverError> {
        match self.observe().await? {
            Some(c) if c.paused => {}
            _ => return Ok(()),
        }
        let name = self.spec.name.clone();
        self.api
            .call(|d| async move { d.unpause_container(&name).await })
            .await
            .map_err(|f| self.api.error("unpause", f))
    }

    /// Where torpor reaches the server of the running container `c`.
    fn address(&self, c: &Observed) -> Result<SocketAddr, DriverError> {
        let port = self.cfg.server_port(self.engine);
        if let Some(p) = self.cfg.publish {
            return Ok(SocketAddr::from(([127, 0, 0, 1], p)));
        }
        c.address(self.cfg.network.as_deref(), port).ok_or_else(|| {
            DriverError::Failed(format!(
                "cluster {}: container {} has no address{}: set publish to reach it on 127.0.0.1",
                self.cluster,
                self.spec.name,
                self.cfg
                    .network
                    .as_deref()
                    .map(|n| format!(" in network {n}"))
                    .unwrap_or_default()
            ))
        })
    }

    /// Waits until the server at `addr` answers as a ready one, while the container runs.
    async fn wait_ready(&self, addr: SocketAddr) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let mut next_look = tokio::time::Instant::now() + LOOK;
        while !super::ready::ready(self.engine, addr).await {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(DriverError::Timeout(format!(
                    "cluster {}: the server in container {} did not answer as ready at {addr} within {}",
                    self.cluster,
                    self.spec.name,
                    humantime::format_duration(self.cfg.timeout)
                )));
            }
            if now >= next_look {
                next_look = now + LOOK;
                match self.observe().await? {
                    Some(c) if c.running => {}
                    Some(c) => {
                        return Err(DriverError::Failed(format!(
                            "cluster {}: container {} ended while its server started: {} (docker logs {} says why)",
                            self.cluster,
                            self.spec.name,
                            c.ended(),
                            self.spec.name
                        )));
                    }
                    None => {
                        return Err(DriverError::Failed(format!(
                            "cluster {}: container {} was removed while its server started",
                            self.cluster, self.spec.name
                        )));
                    }
                }
            }
            tokio::time::sleep(super::ready::READY_POLL).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Driver for DockerDriver {
    async fn prepare(&self) -> Result<(), DriverError> {
        // Nothing before the first start: torpor may start before the daemon does.
        Ok(())
    }

    async fn start(&self) -> Result<BackendInfo, DriverError> {
        let observed = match self.observe().await? {
            Some(c) => c,
            None => {
                self.create().await?;
                Observed::created()
            }
        };
        if observed.paused {
            self.unpause().await?;
        } else if !observed.running {
            let name = self.spec.name.clone();
            match self
                .api
                .call(|d| async move { d.start_container(&name, None).await })
                .await
            {
                // 304: already running.
                Ok(()) | Err(Failure::Refused { status: 304, .. }) => {}
                Err(f) => return Err(self.api.error("start", f)),
            }
        }
        // The address in a network is known only once the container runs.
        let running = self.observe().await?.ok_or_else(|| {
            DriverError::Failed(format!(
                "cluster {}: container {} was removed as it started",
                self.cluster, self.spec.name
            ))
        })?;
        let addr = self.address(&running)?;
        self.wait_ready(addr).await?;
        *self.last.lock().await = Some(addr);
        Ok(BackendInfo { addr, socket: None })
    }

    async fn stop(&self) -> Result<(), DriverError> {
        // A paused container would get the stop signal only once unpaused.
        self.unpause().await?;
        let name = self.spec.name.clone();
        let t = i32::try_from(self.cfg.timeout.as_secs()).unwrap_or(i32::MAX);
        let options = bollard::query_parameters::StopContainerOptions {
            t: Some(t),
            signal: None,
        };
        let within = self.cfg.timeout + Duration::from_secs(10);
        match self
            .api
            .call_within(within, |d| async move {
                d.stop_container(&name, Some(options)).await
            })
            .await
        {
            // 304: already stopped; 404: gone, so stopped too.
            Ok(())
            | Err(Failure::Refused {
                status: 304 | 404, ..
            }) => {}
            Err(f) => return Err(self.api.error("stop", f)),
        }
        *self.last.lock().await = None;
        Ok(())
    }

    async fn status(&self) -> DriverStatus {
        let last = *self.last.lock().await;
        let mut details = serde_json::json!({
            "container": self.spec.name,
            "image": self.cfg.image,
            "volume": self.spec.volume,
            "address": last.map(|a| a.to_string()),
        });
        let Some(_) = last else {
            return DriverStatus {
                state: BackendState::Stopped,
                details,
            };
        };
        let name = self.spec.name.clone();
        // Quick by contract: a daemon that doesn't answer at once leaves what torpor last saw.
        let state = match self
            .api
            .call_within(Duration::from_secs(2), |d| async move {
                d.inspect_container(&name, None).await
            })
            .await
        {
            Ok(c) => {
                let c = Observed::from(c);
                details["id"] = c.id.clone().into();
                details["paused"] = c.paused.into();
                if c.running {
                    BackendState::Running
                } else {
                    BackendState::Exited
                }
            }
            Err(Failure::Refused { status: 404, .. }) => BackendState::Exited,
            Err(_) => BackendState::Running,
        };
        DriverStatus { state, details }
    }

    fn can_freeze(&self) -> Result<(), String> {
        Ok(())
    }

    async fn freeze(&self) -> Result<(), DriverError> {
        let name = self.spec.name.clone();
        self.api
            .call(|d| async move { d.pause_container(&name).await })
            .await
            .map_err(|f| self.api.error("pause", f))
    }

    async fn thaw(&self) -> Result<(), DriverError> {
        self.unpause().await
    }

    async fn exited(&self) -> String {
        let name = &self.spec.name;
        loop {
            match self.api.wait_stopped(name).await {
                Ok(_) | Err(Failure::Refused { status: 404, .. }) => break,
                // The daemon may be restarting: ask again.
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        match self.observe().await {
            Ok(Some(c)) => format!("container {name} {}", c.ended()),
            Ok(None) => format!("container {name} was removed"),
            Err(e) => format!("container {name} ended ({e})"),
        }
    }
}
