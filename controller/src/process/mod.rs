//! The embedded default driver: the database server runs as a child process of torpor.
//!
//! `child` holds what any server needs (run-as user, spawning, signals, pid checks); each
//! database has its own files on top of it (`postgres`, `mariadb`).

pub mod child;
pub mod lock;
mod mariadb;
mod mariadb_bootstrap;
mod mariadb_config;
mod postgres;
mod postgres_bootstrap;
mod server;
mod supervisor;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use mariadb::MariadbProcess;
pub use postgres::PostgresProcess;
pub use server::ProcessStatus;

/// Where and how a local database server runs.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// Absolute by the time a driver sees it.
    pub data_dir: PathBuf,
    pub port: u16,
    /// Directory holding the server binaries; default: the newest installed version.
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// OS user the server runs as; default: `postgres` (PostgreSQL) or `mysql` (MariaDB) when
    /// torpor runs as root, else the current user.
    #[serde(default)]
    pub run_as: Option<String>,
    /// Extra server settings: `-c key=value` for PostgreSQL (e.g. fsync=off in tests),
    /// `--key=value` for MariaDB.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// A field of a [`ProcessConfig`] that the driver would refuse, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct ConfigProblem {
    /// The field's name in the config (`bin_dir`, `run_as`, `settings`, `data_dir`).
    pub field: &'static str,
    pub problem: String,
}

impl ConfigProblem {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        ConfigProblem {
            field,
            problem: problem.into(),
        }
    }
}

impl From<ConfigProblem> for crate::driver::DriverError {
    fn from(p: ConfigProblem) -> Self {
        crate::driver::DriverError::Failed(p.problem)
    }
}

/// A database user created when the data directory is first initialised, with a database of
/// the same name that it owns.
#[derive(Clone)]
pub struct BootstrapUser {
    pub name: String,
    pub password: String,
    pub superuser: bool,
}

impl fmt::Debug for BootstrapUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("superuser", &self.superuser)
            .finish()
    }
}

/// sun_path holds 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// `dir/file` as a Unix socket path, or None when it would not fit in a socket address (the
/// server then listens on TCP only).
pub(crate) fn socket_path(dir: &Path, file: &str) -> Option<PathBuf> {
    let path = dir.join(file);
    (path.as_os_str().len() <= MAX_SOCKET_PATH).then_some(path)
}
