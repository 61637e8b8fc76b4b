//! The seam between the lifecycle and whatever runs the database: a local process today,
//! docker or kubernetes later.

use std::net::SocketAddr;
use std::path::PathBuf;

use async_trait::async_trait;

/// Where a started backend can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    pub addr: SocketAddr,
    /// A Unix socket to the same server, when it runs on this machine. Sessions prefer it:
    /// per query it costs the kernel less than a loopback TCP connection.
    pub socket: Option<PathBuf>,
    /// The OS pid of the database server, when the driver runs it on this machine.
    pub pid: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    #[error("timed out: {0}")]
    Timeout(String),
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
    /// Stop the backend; returns once its process is gone. Stopping a stopped backend is Ok.
    async fn stop(&self) -> Result<(), DriverError>;
    /// The pid of the running backend process, if any.
    fn pid(&self) -> Option<u32>;
    /// Whether the backend started last is still running. Checked on each wake, so a backend
    /// that died on its own is started again rather than handed out.
    fn alive(&self) -> bool {
        true
    }
}
