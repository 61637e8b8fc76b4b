//! The embedded default driver: the database server runs as a child process of torpor.
//!
//! `child` holds what any server needs (run-as user, spawning, signals, pid checks);
//! `supervisor` starts, watches and stops any server; `server` is the driver around it and
//! what each kind of server must say about itself; each database has its own files on top
//! (`postgres`, `mariadb`). `check` is what `torpor check` asks of this machine.

mod cgroup;
mod check;
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
use std::path::{Path, PathBuf};

pub use mariadb::MariadbProcess;
pub use postgres::PostgresProcess;
pub use server::ProcessStatus;

use super::factory::{BootstrapUser, ConfigProblem, Engine};
use super::tls::{BackendTls, TlsMode};
use super::{Driver, DriverError};

/// A driver running `engine`'s server.
pub(super) fn build(
    engine: Engine,
    cluster: &str,
    cfg: ProcessConfig,
    users: Vec<BootstrapUser>,
) -> Box<dyn Driver> {
    match engine {
        Engine::Postgres => Box::new(PostgresProcess::new(cluster, cfg, users)),
        Engine::Mysql => Box::new(MariadbProcess::new(cluster, cfg, users)),
    }
}

/// What a driver running `engine`'s server would refuse on this machine now.
pub(super) fn check(
    engine: Engine,
    cfg: &ProcessConfig,
) -> Result<Vec<ConfigProblem>, ConfigProblem> {
    match engine {
        Engine::Postgres => PostgresProcess::check_machine(cfg),
        Engine::Mysql => MariadbProcess::check_machine(cfg),
    }
}

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
    /// TLS towards the server: `disable` by default (the Unix socket); `require` or
    /// `verify-full` go over TCP to `port`.
    #[serde(default)]
    pub tls: Option<TlsMode>,
    /// The CA `verify-full` checks the server's certificate against.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

impl ProcessConfig {
    /// Takes a relative data_dir or bin_dir from `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if self.data_dir.is_relative() {
            self.data_dir = base.join(&self.data_dir);
        }
        if let Some(bin) = &mut self.bin_dir
            && bin.is_relative()
        {
            *bin = base.join(&*bin);
        }
        BackendTls::resolve_paths(&mut self.ca, base);
    }
}

/// The checks every server's settings get, in this order: a name the server's syntax allows
/// (`name_ok`), not one torpor sets itself (`reserved`: the config's `fields` set it), and a
/// value without a NUL.
pub(crate) fn check_setting(
    key: &str,
    value: &str,
    name_ok: bool,
    reserved: bool,
    fields: &str,
) -> Result<(), DriverError> {
    if !name_ok {
        return Err(DriverError::Failed(format!("invalid setting name {key:?}")));
    }
    if reserved {
        return Err(DriverError::Failed(format!(
            "setting {key:?} is managed by torpor (use the {fields})"
        )));
    }
    if value.contains('\0') {
        return Err(DriverError::Failed(format!(
            "setting {key:?} has a NUL character"
        )));
    }
    Ok(())
}

/// The users in order, each an error if it was listed before: a bootstrap script would create
/// it twice, or let the second entry win in silence.
pub(crate) fn each_user_once(
    users: &[BootstrapUser],
) -> impl Iterator<Item = Result<&BootstrapUser, DriverError>> {
    let mut seen = std::collections::BTreeSet::new();
    users.iter().map(move |u| {
        if seen.insert(u.name.as_str()) {
            Ok(u)
        } else {
            Err(DriverError::Failed(format!(
                "bootstrap user {:?} is listed twice",
                u.name
            )))
        }
    })
}

/// What `statement` says for each `hashed` user, one after the other; `None` when no user is
/// hashed.
pub(crate) fn for_hashed(
    users: &[BootstrapUser],
    statement: impl Fn(&BootstrapUser) -> Result<String, DriverError>,
) -> Result<Option<String>, DriverError> {
    let mut sql = String::new();
    for u in each_user_once(users) {
        let u = u?;
        if u.hashed {
            sql.push_str(&statement(u)?);
        }
    }
    Ok((!sql.is_empty()).then_some(sql))
}

#[cfg(test)]
pub(crate) fn user(name: &str, password: &str, superuser: bool) -> BootstrapUser {
    BootstrapUser {
        name: name.into(),
        password: password.into(),
        hashed: false,
        superuser,
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
