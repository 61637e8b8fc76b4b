//! What both process drivers share above their own servers: each lifecycle step runs to
//! completion in a task of its own, so a caller that gives up (a timeout, a dropped client)
//! leaves neither a half-initialised directory nor an untracked server behind, and the next
//! call sees the outcome (a start that went on returns its backend at once).

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::lock::DataDirLock;
use super::{BootstrapUser, ConfigProblem, ProcessConfig, child};
use crate::driver::{BackendInfo, Driver, DriverError};

/// One database server (one data directory) run as a child process.
#[async_trait]
pub trait Server: Send + Sync + 'static {
    /// For error messages.
    const NAME: &'static str;
    /// The file in the data directory whose first line is the running server's pid.
    const PID_FILE: &'static str;
    fn new(cluster: &str, cfg: ProcessConfig, users: Vec<BootstrapUser>) -> Self;
    /// What `prepare` and `start` would refuse in `cfg` (binaries, settings, user), found
    /// without creating or starting anything.
    fn check(cfg: &ProcessConfig) -> Result<(), ConfigProblem>;
    async fn prepare(&self) -> Result<(), DriverError>;
    async fn start(&self) -> Result<BackendInfo, DriverError>;
    async fn stop(&self) -> Result<(), DriverError>;
    fn pid(&self) -> Option<u32>;
    /// The file the server's output goes to.
    fn log_path(&self) -> PathBuf;
    /// Forgets the running server without stopping it; its pid.
    async fn abandon(&self) -> Option<u32>;
}

pub struct ServerProcess<S> {
    inner: Arc<S>,
    data_dir: PathBuf,
    /// Taken by the first claim, prepare or start; kept until this driver is dropped (or
    /// abandons its server), across stops: a stopped server's directory is still ours.
    lock: Mutex<Option<DataDirLock>>,
}

impl<S: Server> ServerProcess<S> {
    pub fn new(cluster: &str, cfg: ProcessConfig, users: Vec<BootstrapUser>) -> Self {
        Self {
            data_dir: cfg.data_dir.clone(),
            inner: Arc::new(S::new(cluster, cfg, users)),
            lock: Mutex::new(None),
        }
    }

    /// What `prepare` and `start` would refuse in `cfg`, without touching anything.
    pub fn check(cfg: &ProcessConfig) -> Result<(), ConfigProblem> {
        S::check(cfg)
    }

    /// The pid of a live process that the data directory's pid file names: a server an
    /// earlier torpor left behind (which `prepare` stops), or another torpor's.
    pub fn running_on(cfg: &ProcessConfig) -> Option<u32> {
        let text = std::fs::read_to_string(cfg.data_dir.join(S::PID_FILE)).ok()?;
        let pid = text.lines().next()?.trim().parse().ok()?;
        child::is_alive(pid).then_some(pid)
    }

    /// The file the server's stdout and stderr are appended to.
    pub fn log_path(&self) -> PathBuf {
        self.inner.log_path()
    }

    /// Forgets the running server without stopping it and lets go of the data directory, as
    /// a crashed torpor would. Tests use this to leave a server behind for the next `prepare`
    /// to clean up.
    #[doc(hidden)]
    pub async fn abandon(&self) -> Option<u32> {
        let pid = self.inner.abandon().await;
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        pid
    }
}

#[async_trait]
impl<S: Server> Driver for ServerProcess<S> {
    fn claim(&self) -> Result<(), DriverError> {
        let mut lock = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lock.is_none() {
            // Checked here too (setup checks it later): a relative path would put the lock
            // wherever the process happens to run.
            if !self.data_dir.is_absolute() {
                return Err(DriverError::Failed(format!(
                    "data_dir {} must be an absolute path",
                    self.data_dir.display()
                )));
            }
            *lock = Some(DataDirLock::acquire(&self.data_dir)?);
        }
        Ok(())
    }

    async fn prepare(&self) -> Result<(), DriverError> {
        // Before the leftover cleanup in prepare: a server on this directory is only a
        // leftover if no other torpor holds the lock.
        self.claim()?;
        let s = self.inner.clone();
        detached::<S, _>(async move { s.prepare().await }).await
    }

    async fn start(&self) -> Result<BackendInfo, DriverError> {
        self.claim()?;
        let s = self.inner.clone();
        detached::<S, _>(async move { s.start().await }).await
    }

    async fn stop(&self) -> Result<(), DriverError> {
        let s = self.inner.clone();
        detached::<S, _>(async move { s.stop().await }).await
    }

    fn pid(&self) -> Option<u32> {
        self.inner.pid()
    }

    fn alive(&self) -> bool {
        self.inner.pid().is_some_and(child::is_alive)
    }
}

async fn detached<S: Server, T: Send + 'static>(
    work: impl Future<Output = Result<T, DriverError>> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::spawn(work)
        .await
        .map_err(|e| DriverError::Failed(format!("{} driver task failed: {e}", S::NAME)))?
}
