//! What makes one database server different from another when torpor runs it as a child
//! process ([`Server`]), and the driver around any of them ([`ServerProcess`]): each lifecycle
//! step runs to completion in a task of its own, so a caller that gives up (a timeout, a
//! dropped client) leaves neither a half-initialised directory nor an untracked server behind,
//! and the next call sees the outcome (a start that went on returns its backend at once).

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::child::{self, Escalation, io_err};
use super::lock::DataDirLock;
use super::supervisor::{Setup, Supervisor};
use super::{BootstrapUser, ProcessConfig};
use crate::driver::{BackendInfo, BackendState, Driver, DriverError, DriverStatus};

/// One kind of database server run from a data directory: only what differs between kinds
/// (binaries, flags, readiness, signals, bootstrap). Starting, watching and stopping the
/// process is [`Supervisor`]'s, the same for every kind.
#[async_trait]
pub trait Server: Send + Sync + Sized + 'static {
    /// The server binary's name, for logs and errors.
    const NAME: &'static str;
    /// The OS user it runs as when torpor runs as root and `run_as` is unset.
    const DEFAULT_USER: &'static str;
    /// The file in the data directory whose first line is the running server's pid.
    const PID_FILE: &'static str;
    /// The file in the data directory the server's output is appended to.
    const LOG_FILE: &'static str;
    /// How the server is asked to stop; its first signal is also the parent-death signal.
    const SHUTDOWN: Escalation;
    /// Where the executables are, as `find_binaries` found them.
    type Binaries: Send + Sync + 'static;

    fn new(cluster: &str, cfg: ProcessConfig, users: Vec<BootstrapUser>) -> Self;
    /// Whether `key = value` may become a server option.
    fn check_setting(key: &str, value: &str) -> Result<(), DriverError>;
    /// The executables `cfg` points at, checked to be there.
    fn find_binaries(cfg: &ProcessConfig) -> Result<Self::Binaries, DriverError>;
    /// First-use work: create the data directory and the users, and stop a server an earlier,
    /// crashed torpor left on it. `ours` is the server this driver runs now, never a leftover.
    async fn bootstrap(
        &self,
        setup: &Setup<Self::Binaries>,
        ours: Option<u32>,
    ) -> Result<(), DriverError>;
    /// The server executable and its arguments.
    fn command_line(&self, setup: &Setup<Self::Binaries>) -> (PathBuf, Vec<OsString>);
    /// Whether the server with `pid` accepts connections now. Polled often during a start.
    async fn is_ready(&self, pid: u32) -> bool;
    /// A Unix socket the server listens on besides TCP, if any.
    fn socket(&self) -> Option<PathBuf>;
    /// Clean-up after the server exited on its own, before the next one starts.
    async fn after_exit(&self) {}
}

/// What the process driver shows of its server, beyond whether it runs: for the admin API
/// (as the details of its [`DriverStatus`]) and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStatus {
    /// The server's pid, from its start until it is stopped, or replaced by the next start
    /// when it ended on its own.
    pub pid: Option<u32>,
    pub data_dir: PathBuf,
    /// The Unix socket it listens on besides TCP, while it has a pid.
    pub socket: Option<PathBuf>,
    /// Where its output goes.
    pub log: PathBuf,
    /// The cgroup it runs in, when torpor freezes it.
    pub cgroup: Option<PathBuf>,
    /// Whether that cgroup is frozen now.
    pub frozen: bool,
}

impl ProcessStatus {
    /// Whether the server is up, stopped, or gone without being stopped.
    pub fn state(&self) -> BackendState {
        match self.pid {
            None => BackendState::Stopped,
            Some(pid) if child::is_alive(pid) => BackendState::Running,
            Some(_) => BackendState::Exited,
        }
    }

    /// As JSON for [`DriverStatus::details`]; paths that are not UTF-8 are shown lossily.
    pub fn details(&self) -> serde_json::Value {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        serde_json::json!({
            "pid": self.pid,
            "data_dir": path(&self.data_dir),
            "socket": self.socket.as_ref().map(path),
            "log": path(&self.log),
            "cgroup": self.cgroup.as_ref().map(path),
            "frozen": self.frozen,
        })
    }
}

/// How often a running server is looked at for having ended on its own.
const EXIT_POLL: Duration = Duration::from_millis(200);

pub struct ServerProcess<S: Server> {
    supervisor: Arc<Supervisor<S>>,
    data_dir: PathBuf,
    /// Taken by the first claim, prepare or start; kept until this driver is dropped (or
    /// abandons its server), across stops: a stopped server's directory is still ours.
    lock: Mutex<Option<DataDirLock>>,
}

impl<S: Server> ServerProcess<S> {
    pub fn new(cluster: &str, cfg: ProcessConfig, users: Vec<BootstrapUser>) -> Self {
        Self {
            data_dir: cfg.data_dir.clone(),
            supervisor: Arc::new(Supervisor::new(cluster, cfg, users)),
            lock: Mutex::new(None),
        }
    }

    /// The file the server's stdout and stderr are appended to.
    pub fn log_path(&self) -> PathBuf {
        self.supervisor.log_path()
    }

    /// The server's pid, socket and files, read without waiting for a start or stop.
    pub fn process_status(&self) -> ProcessStatus {
        let pid = self.supervisor.pid();
        let cgroup = self.supervisor.cgroup();
        ProcessStatus {
            pid,
            data_dir: self.data_dir.clone(),
            socket: pid.and(self.supervisor.socket()),
            log: self.supervisor.log_path(),
            cgroup: cgroup.map(|c| c.dir().to_path_buf()),
            frozen: cgroup.is_some_and(|c| c.is_frozen()),
        }
    }

    /// Forgets the running server without stopping it and lets go of the data directory, as
    /// a crashed torpor would. Tests use this to leave a server behind for the next `prepare`
    /// to clean up.
    #[doc(hidden)]
    pub async fn abandon(&self) -> Option<u32> {
        let pid = self.supervisor.abandon().await;
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
        // A torpor killed while its server was frozen left it frozen: it would never handle
        // the signals that stop it.
        if let Some(c) = self.supervisor.leftover_cgroup() {
            c.thaw()
                .await
                .map_err(|e| io_err("thawing a leftover server", e))?;
        }
        let s = self.supervisor.clone();
        detached::<S, _>(async move { s.prepare().await }).await
    }

    async fn start(&self) -> Result<BackendInfo, DriverError> {
        self.claim()?;
        let s = self.supervisor.clone();
        detached::<S, _>(async move { s.start().await }).await
    }

    async fn stop(&self) -> Result<(), DriverError> {
        let s = self.supervisor.clone();
        detached::<S, _>(async move {
            let cgroup = s.cgroup();
            if let Some(c) = cgroup
                && let Err(e) = c.thaw().await
            {
                // The stop escalates to SIGKILL, which a frozen process gets too.
                tracing::warn!(error = %e, "stopping {} without thawing it", S::NAME);
            }
            s.stop().await?;
            if let Some(c) = cgroup {
                c.remove();
            }
            Ok(())
        })
        .await
    }

    fn can_freeze(&self) -> Result<(), String> {
        self.supervisor.use_cgroup().map(drop)
    }

    async fn freeze(&self) -> Result<(), DriverError> {
        let (Some(pid), Some(cgroup)) = (self.supervisor.pid(), self.supervisor.cgroup()) else {
            return Err(DriverError::Failed(format!(
                "no {} runs to freeze",
                S::NAME
            )));
        };
        if !cgroup.contains(pid) {
            return Err(DriverError::Failed(format!(
                "{} (pid {pid}) is not in cgroup {}: it was started outside",
                S::NAME,
                cgroup.dir().display()
            )));
        }
        cgroup
            .freeze()
            .await
            .map_err(|e| io_err(format!("freezing {}", S::NAME), e))
    }

    async fn thaw(&self) -> Result<(), DriverError> {
        match self.supervisor.cgroup() {
            Some(c) => c
                .thaw()
                .await
                .map_err(|e| io_err(format!("thawing {}", S::NAME), e)),
            None => Ok(()),
        }
    }

    async fn status(&self) -> DriverStatus {
        let process = self.process_status();
        DriverStatus {
            state: process.state(),
            details: process.details(),
        }
    }

    /// Polls the recorded pid (a signal 0 and a read of /proc): the child itself is held by
    /// whichever start or stop runs, and a dead server is reaped in a task of its own, so a
    /// caller that gives up leaves no half-forgotten record.
    async fn exited(&self) -> String {
        loop {
            tokio::time::sleep(EXIT_POLL).await;
            let Some(pid) = self.supervisor.pid().filter(|p| !child::is_alive(*p)) else {
                continue;
            };
            let s = self.supervisor.clone();
            if let Ok(Some(why)) =
                detached::<S, _>(async move { Ok(s.reap_exited(pid).await) }).await
            {
                return why;
            }
        }
    }
}

async fn detached<S: Server, T: Send + 'static>(
    work: impl Future<Output = Result<T, DriverError>> + Send + 'static,
) -> Result<T, DriverError> {
    tokio::spawn(work)
        .await
        .map_err(|e| DriverError::Failed(format!("{} driver task failed: {e}", S::NAME)))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::process::PostgresProcess;

    fn status(pid: Option<u32>) -> ProcessStatus {
        ProcessStatus {
            pid,
            data_dir: "/d".into(),
            socket: pid.map(|_| "/d/.s.PGSQL.5432".into()),
            log: "/d/torpor-postgres.log".into(),
            cgroup: None,
            frozen: false,
        }
    }

    #[test]
    fn a_recorded_pid_runs_until_it_is_gone() {
        assert_eq!(status(None).state(), BackendState::Stopped);
        assert_eq!(
            status(Some(std::process::id())).state(),
            BackendState::Running
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(status(Some(pid)).state(), BackendState::Exited);
    }

    #[test]
    fn details_carry_the_pid_and_files() {
        assert_eq!(
            status(Some(42)).details(),
            serde_json::json!({
                "pid": 42,
                "data_dir": "/d",
                "socket": "/d/.s.PGSQL.5432",
                "log": "/d/torpor-postgres.log",
                "cgroup": null,
                "frozen": false,
            })
        );
        assert!(status(None).details()["pid"].is_null());
    }

    #[tokio::test]
    async fn a_driver_that_never_started_is_stopped() {
        let cfg = ProcessConfig {
            data_dir: "/nonexistent/torpor/data".into(),
            port: 5432,
            bin_dir: None,
            run_as: None,
            settings: Default::default(),
            tls: None,
            ca: None,
        };
        let driver = PostgresProcess::new("c", cfg, vec![]);
        let status = driver.status().await;
        assert_eq!(status.state, BackendState::Stopped);
        assert!(status.details["pid"].is_null());
        assert_eq!(status.details["data_dir"], "/nonexistent/torpor/data");
        assert!(status.details["socket"].is_null());
    }
}
