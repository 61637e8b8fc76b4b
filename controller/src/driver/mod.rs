//! The seam between the lifecycle and whatever runs the database: a local process today,
//! docker or kubernetes later. The lifecycle learns only where a started backend is reached,
//! whether it still runs, and whether a failure is worth retrying; how a driver runs its
//! backend (pids, sockets, containers) stays in the driver, which shows it to operators through
//! [`DriverStatus::details`].

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;
use serde::Serialize;

pub mod command;
pub mod docker;
mod factory;
pub mod kubernetes;
pub mod process;
mod ready;
mod tls;

pub use factory::{BackendConfig, BootstrapUser, ConfigProblem, Engine};
pub use tls::{BackendTls, TlsMode};

/// Where a started backend can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    pub addr: SocketAddr,
    /// The same server, also reachable over this Unix socket when it runs on this machine.
    /// Sessions prefer it: per query it costs the kernel less than a loopback TCP connection.
    pub socket: Option<PathBuf>,
}

/// Whether the backend runs, as far as its driver can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Never started, or stopped by the driver.
    Stopped,
    /// Started, and running when last observed.
    Running,
    /// Started, then ended without being asked to (killed, crashed, out of memory): the next
    /// start replaces it.
    Exited,
}

/// What a driver observes of its backend now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriverStatus {
    pub state: BackendState,
    /// What this kind of driver knows about its backend, for operators and tests (the process
    /// driver: pid, data directory, socket, log; see [`process::ProcessStatus`]). An object, or
    /// null. The lifecycle never reads it.
    pub details: serde_json::Value,
}

impl DriverStatus {
    pub fn is_running(&self) -> bool {
        self.state == BackendState::Running
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An OS call failed; retryable when the failure passes by itself (see
    /// [`DriverError::is_retryable`]).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The backend can't be prepared or started as configured (a missing binary, a refused
    /// setting, a server that exits at start): the same call fails the same way until someone
    /// changes the config or the machine.
    #[error("{0}")]
    Failed(String),
    /// The backend did not get where it should in time; it may the next time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A service the driver works through (the Kubernetes API server) did not answer or
    /// answered that it can't for now; it may the next time.
    #[error("{0}")]
    Unavailable(String),
    /// Another torpor, or another driver in this one, manages the same data directory.
    #[error(
        "data_dir {} is in use by another torpor{} (lock file {}); stop that one first",
        .data_dir.display(),
        held_by(.pid),
        .lock.display()
    )]
    InUse {
        data_dir: PathBuf,
        lock: PathBuf,
        /// The holder's pid, as it wrote it into the lock file.
        pid: Option<u32>,
    },
}

impl DriverError {
    /// Whether the same call may succeed later with nothing changed by anyone: a timeout, or an
    /// OS error that passes (interrupted, out of processes or memory for now, a peer not
    /// answering). A refused config, a data directory another torpor holds or a server that
    /// won't start as configured are not: retrying them only repeats the error.
    pub fn is_retryable(&self) -> bool {
        match self {
            DriverError::Timeout(_) | DriverError::Unavailable(_) => true,
            DriverError::Io { source, .. } => transient(source.kind()),
            DriverError::Failed(_) | DriverError::InUse { .. } => false,
        }
    }
}

fn transient(kind: io::ErrorKind) -> bool {
    use io::ErrorKind as K;
    matches!(
        kind,
        K::Interrupted
            | K::WouldBlock
            | K::TimedOut
            | K::ResourceBusy
            | K::OutOfMemory
            | K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::HostUnreachable
            | K::NetworkUnreachable
            | K::NetworkDown
    )
}

fn held_by(pid: &Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Makes the backend's data this driver's alone, for as long as the driver lives: another
    /// driver, here or in another torpor, then fails here instead of taking this one's server
    /// for a leftover and stopping it. Touches nothing of the data itself. `prepare` and
    /// `start` claim too; calling it first lets a caller fail before doing anything else.
    fn claim(&self) -> Result<(), DriverError> {
        Ok(())
    }
    /// One-time work before the first start: create the database on first use, and stop a
    /// backend that an earlier, crashed run left behind on the same data.
    async fn prepare(&self) -> Result<(), DriverError>;
    /// Start the backend; returns once it accepts connections.
    async fn start(&self) -> Result<BackendInfo, DriverError>;
    /// Stop the backend; returns once it is gone. Stopping a stopped backend is Ok.
    async fn stop(&self) -> Result<(), DriverError>;
    /// What the driver observes of its backend now. Asked on each wake while the cluster runs,
    /// so that a backend that ended on its own is started again rather than handed out: it
    /// must be quick and must not wait for a start or stop in progress (a driver whose backend
    /// is remote answers from what it last observed).
    async fn status(&self) -> DriverStatus;
    /// Whether this driver can freeze its backend on this machine, or why not: torpor says
    /// why once at start and then only stops idle backends.
    fn can_freeze(&self) -> Result<(), String> {
        Err("this driver has no way to freeze its backend".into())
    }
    /// Freezes the running backend in place: its processes keep their memory and their open
    /// connections but get no CPU until [`Driver::thaw`]. Only called while the backend runs,
    /// nothing is in flight on it, and [`Driver::can_freeze`] said yes.
    async fn freeze(&self) -> Result<(), DriverError> {
        Err(DriverError::Failed(
            "this driver has no way to freeze its backend".into(),
        ))
    }
    /// Lets a frozen backend run again. Thawing a backend that is not frozen is Ok; a driver
    /// must also thaw before it signals or stops its backend, since a frozen server never
    /// handles a signal.
    async fn thaw(&self) -> Result<(), DriverError> {
        Ok(())
    }
    /// Completes when the backend started last ends without being asked to, saying how; never
    /// while none runs or one is being stopped. A driver that can't tell never completes:
    /// then the next wake finds out through `status`.
    async fn exited(&self) -> String {
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_passing_failures_are_retryable() {
        let io = |kind: io::ErrorKind| DriverError::Io {
            what: "x".into(),
            source: io::Error::from(kind),
        };
        assert!(DriverError::Timeout("ready".into()).is_retryable());
        assert!(DriverError::Unavailable("api server".into()).is_retryable());
        assert!(io(io::ErrorKind::WouldBlock).is_retryable());
        assert!(io(io::ErrorKind::ConnectionRefused).is_retryable());
        assert!(io(io::ErrorKind::Interrupted).is_retryable());
        assert!(!io(io::ErrorKind::NotFound).is_retryable());
        assert!(!io(io::ErrorKind::PermissionDenied).is_retryable());
        assert!(!DriverError::Failed("no such binary".into()).is_retryable());
        let in_use = DriverError::InUse {
            data_dir: "/d".into(),
            lock: "/d.lock".into(),
            pid: Some(1),
        };
        assert!(!in_use.is_retryable());
    }

    #[test]
    fn a_status_runs_only_when_running() {
        let status = |state| DriverStatus {
            state,
            details: serde_json::Value::Null,
        };
        assert!(status(BackendState::Running).is_running());
        assert!(!status(BackendState::Exited).is_running());
        assert!(!status(BackendState::Stopped).is_running());
        assert_eq!(
            serde_json::to_value(status(BackendState::Exited)).unwrap(),
            serde_json::json!({"state": "exited", "details": null})
        );
    }
}
