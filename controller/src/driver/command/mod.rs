//! `driver = "command"`: anything torpor can start and stop with shell commands (a systemd
//! unit, a VM, a cloud CLI). `start` returns once the server is on its way; torpor then waits
//! until it answers as a ready server does ([`super::ready`]). Its address is `address`, or
//! what `start` prints on its last line. `stop` stops it. `status`, if given, tells whether it
//! runs (exit 0); without it torpor goes by what it last did.

mod run;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::factory::{ConfigProblem, Engine};
use super::tls::{BackendTls, TlsMode};
use super::{BackendInfo, BackendState, Driver, DriverError, DriverStatus};

/// `[cluster.backend]` for `driver = "command"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Starts the server (`sh -c`); may print its `host:port` on its last line.
    pub start: String,
    /// Stops the server.
    pub stop: String,
    /// Exits 0 while the server runs.
    #[serde(default)]
    pub status: Option<String>,
    /// How long each command, and the wait for readiness after `start`, may take.
    #[serde(
        default = "default_timeout",
        deserialize_with = "super::factory::duration"
    )]
    pub timeout: Duration,
    /// Where the server listens (`host:port`); else the last line `start` prints.
    #[serde(default)]
    pub address: Option<String>,
    /// TLS towards the server: `require` unless set.
    #[serde(default)]
    pub tls: Option<TlsMode>,
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

impl CommandConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        BackendTls::resolve_paths(&mut self.ca, base);
    }

    pub(super) fn tls(&self) -> BackendTls {
        BackendTls::new(self.tls, TlsMode::Require, self.ca.clone())
    }

    pub(super) fn check(&self) -> Result<Vec<ConfigProblem>, ConfigProblem> {
        if self.timeout.is_zero() {
            return Err(ConfigProblem::new("timeout", "must be greater than zero"));
        }
        for (field, cmd) in [("start", &self.start), ("stop", &self.stop)] {
            if cmd.trim().is_empty() {
                return Err(ConfigProblem::new(field, "must be a shell command"));
            }
        }
        if let Some(a) = &self.address
            && !a.contains(':')
        {
            return Err(ConfigProblem::new("address", "want host:port"));
        }
        Ok(Vec::new())
    }
}

pub(super) fn build(engine: Engine, cluster: &str, cfg: CommandConfig) -> Box<dyn Driver> {
    Box::new(CommandDriver {
        engine,
        cluster: cluster.to_string(),
        cfg,
        last: Mutex::new(None),
    })
}

struct CommandDriver {
    engine: Engine,
    cluster: String,
    cfg: CommandConfig,
    /// Where the server was when torpor last started it; `None` once stopped.
    last: Mutex<Option<SocketAddr>>,
}

impl CommandDriver {
    async fn address(&self, printed: &str) -> Result<SocketAddr, DriverError> {
        let text = match &self.cfg.address {
            Some(a) => a.clone(),
            None => printed
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_string(),
        };
        let found = tokio::net::lookup_host(text.as_str())
            .await
            .ok()
            .and_then(|mut addrs| addrs.next());
        found.ok_or_else(|| {
            DriverError::Failed(format!(
                "cluster {}: no server address: set address, or have start print host:port on its last line (got {:?})",
                self.cluster,
                run::clip(&text)
            ))
        })
    }
}

#[async_trait]
impl Driver for CommandDriver {
    async fn prepare(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn start(&self) -> Result<BackendInfo, DriverError> {
        let printed = run::run(&self.cluster, "start", &self.cfg.start, self.cfg.timeout).await?;
        let addr = self.address(&printed).await?;
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        while !super::ready::ready(self.engine, addr).await {
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "cluster {}: the server at {addr} did not answer as ready within {}",
                    self.cluster,
                    humantime::format_duration(self.cfg.timeout)
                )));
            }
            tokio::time::sleep(super::ready::READY_POLL).await;
        }
        *self.last.lock().await = Some(addr);
        Ok(BackendInfo { addr, socket: None })
    }

    async fn stop(&self) -> Result<(), DriverError> {
        run::run(&self.cluster, "stop", &self.cfg.stop, self.cfg.timeout).await?;
        *self.last.lock().await = None;
        Ok(())
    }

    async fn status(&self) -> DriverStatus {
        let last = *self.last.lock().await;
        let state = match (&self.cfg.status, last) {
            (_, None) => BackendState::Stopped,
            (None, Some(_)) => BackendState::Running,
            (Some(cmd), Some(_)) => {
                // Quick by contract: a status command that hangs counts as not running.
                match run::run(&self.cluster, "status", cmd, Duration::from_secs(5)).await {
                    Ok(_) => BackendState::Running,
                    Err(_) => BackendState::Exited,
                }
            }
        };
        DriverStatus {
            state,
            details: serde_json::json!({ "address": last.map(|a| a.to_string()) }),
        }
    }
}
