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
}

#[async_trait]
pub trait Driver: Send + Sync + 'static {
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
