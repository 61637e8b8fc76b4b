//! MariaDB as a child process: install-db and bootstrap users on first use, start with a fast
//! readiness check, SIGTERM shutdown, and cleanup of a server that a crashed torpor left behind.
//!
//! Binaries and settings are checked in `mariadb_config`. Settings become `--key=value` server
//! options after the driver's own, so they override its defaults (innodb_buffer_pool_size=32M,
//! tmpdir = the data directory). They are also given to install-db and the bootstrap run,
//! because some (innodb_page_size, lower_case_table_names) only take effect when the data
//! directory is created.
//!
//! mariadbd gets no `--user`: torpor switches to the run-as user itself before exec, which keeps
//! the parent-death signal (the kernel clears it when a process changes its own credentials).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;

use super::child::{self, Escalation, io_err};
use super::mariadb_bootstrap as bootstrap;
use super::mariadb_config::{Binaries, INSTALL_DB, check_setting, find_binaries, normalise};
use super::server::{Server, ServerProcess};
use super::supervisor::Setup;
use super::{BootstrapUser, ProcessConfig};
use crate::driver::DriverError;

const PID_FILE: &str = "mariadbd.pid";
const SOCKET_FILE: &str = "mysqld.sock";
/// Written last by a successful bootstrap: its presence means prepare has nothing to create.
const DONE_MARKER: &str = "torpor-bootstrap.done";
/// Written into an empty directory before install-db: its presence without DONE_MARKER means
/// an initialisation of ours was cut short, and the directory may be wiped and redone.
const PENDING_MARKER: &str = "torpor-init.pending";
const DEFAULT_BUFFER_POOL: &str = "32M";

/// One readiness probe: connect and read the first bytes of the server's greeting.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const LOG_TAIL_LINES: usize = 20;
/// SIGTERM is mariadbd's normal shutdown (SIGQUIT means the same to it); nothing gentler than
/// SIGKILL remains after it.
const SHUTDOWN: Escalation = Escalation {
    first: Signal::SIGTERM,
    second: Signal::SIGKILL,
    first_grace: Duration::from_secs(30),
    second_grace: Duration::from_secs(10),
};

/// Runs one MariaDB server (one data directory) as a child process.
pub type MariadbProcess = ServerProcess<Mariadb>;

pub struct Mariadb {
    cluster: String,
    cfg: ProcessConfig,
    users: Vec<BootstrapUser>,
}

impl Mariadb {
    fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    fn pid_path(&self) -> PathBuf {
        self.data_dir().join(PID_FILE)
    }

    /// `--key=value` for each setting, after the defaults they may override.
    ///
    /// tmpdir defaults to the data directory: temporary tables can hold row data, which should
    /// stay as private as the tables themselves, and concurrent bootstraps sharing /tmp were
    /// seen to collide on temporary table names ("Unknown table 'mysql.tmp_user_sys'").
    fn tuning_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let overridden = |name: &str| self.cfg.settings.keys().any(|k| normalise(k) == name);
        if !overridden("innodb-buffer-pool-size") {
            args.push(format!("--innodb-buffer-pool-size={DEFAULT_BUFFER_POOL}").into());
        }
        if !overridden("tmpdir") {
            let mut arg = OsString::from("--tmpdir=");
            arg.push(self.data_dir());
            args.push(arg);
        }
        for (k, v) in &self.cfg.settings {
            args.push(format!("--{k}={v}").into());
        }
        args
    }

    fn socket_arg(&self) -> OsString {
        let mut arg = OsString::from("--socket=");
        match self.socket() {
            Some(path) => arg.push(path),
            None => {
                tracing::debug!(cluster = %self.cluster, "data_dir path too long for a unix socket; TCP only")
            }
        }
        arg
    }

    fn server_args(&self) -> Vec<OsString> {
        let dir = self.data_dir();
        let mut args: Vec<OsString> = vec!["--no-defaults".into(), datadir_arg(dir)];
        args.push(format!("--port={}", self.cfg.port).into());
        args.push("--bind-address=127.0.0.1".into());
        args.push(self.socket_arg());
        let mut pid_file = OsString::from("--pid-file=");
        pid_file.push(self.pid_path());
        args.push(pid_file);
        let mut log_error = OsString::from("--log-error=");
        log_error.push(self.data_dir().join(Self::LOG_FILE));
        args.push(log_error);
        // Users are `name@'%'` and the server listens on 127.0.0.1 only: no DNS on connect.
        args.push("--skip-name-resolve".into());
        args.push("--skip-log-bin".into());
        // information_schema.METADATA_LOCK_INFO tells a checkpoint who holds LOCK TABLES,
        // GET_LOCK() and similar locks.
        args.push("--plugin-load-add=metadata_lock_info".into());
        args.extend(self.tuning_args());
        args
    }

    async fn install_db(&self, setup: &Setup<Binaries>) -> Result<(), DriverError> {
        let started = Instant::now();
        let mut cmd = child::command(&setup.bins.install_db, &setup.user, Signal::SIGKILL);
        cmd.arg("--no-defaults")
            .arg(datadir_arg(self.data_dir()))
            // No DNS lookup of this host's name (it can hang or fail on a broken resolver).
            .arg("--force")
            .arg("--skip-test-db")
            // root@localhost only through the unix socket as OS root: no passwordless root
            // over TCP. The bootstrap below needs no login at all.
            .arg("--auth-root-authentication-method=socket")
            .args(self.tuning_args());
        let out = child::run(cmd, None)
            .await
            .map_err(|e| io_err(format!("running {}", setup.bins.install_db.display()), e))?;
        if !out.status.success() {
            let text = format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return Err(DriverError::Failed(format!(
                "{INSTALL_DB} --datadir={} failed ({}): {}",
                self.data_dir().display(),
                out.status,
                last_lines(&text, LOG_TAIL_LINES)
            )));
        }
        tracing::info!(
            cluster = %self.cluster,
            data_dir = %self.data_dir().display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mariadb-install-db done"
        );
        Ok(())
    }

    /// The cluster database and the users, through `mariadbd --bootstrap`: no network, no
    /// socket, no login.
    async fn create_users(&self, setup: &Setup<Binaries>) -> Result<(), DriverError> {
        let sql = bootstrap::script(&self.cluster, &self.users)?;
        self.bootstrap_script(setup, sql).await
    }

    /// Runs `sql` through `mariadbd --bootstrap`.
    async fn bootstrap_script(
        &self,
        setup: &Setup<Binaries>,
        sql: String,
    ) -> Result<(), DriverError> {
        let mut cmd = child::command(&setup.bins.server, &setup.user, Signal::SIGKILL);
        cmd.arg("--no-defaults")
            .arg("--bootstrap")
            .arg(datadir_arg(self.data_dir()))
            .arg("--log-warnings=0")
            .arg("--skip-log-bin")
            .args(self.tuning_args());
        child::run_script(&self.cluster, &bootstrap::SCRIPT, cmd, sql).await
    }

    /// Stops servers that an earlier, crashed torpor left running on this data directory: the
    /// one its pid file names, and any mariadbd working in the directory (a pid file can be
    /// missing, e.g. for a bootstrap run).
    async fn stop_leftovers(&self, ours: Option<u32>) -> Result<(), DriverError> {
        let dir = match tokio::fs::canonicalize(self.data_dir()).await {
            Ok(d) => d,
            Err(e) => {
                return Err(io_err(
                    format!("resolving {}", self.data_dir().display()),
                    e,
                ));
            }
        };
        let from_pidfile = match tokio::fs::read_to_string(self.pid_path()).await {
            Ok(text) => text.trim().parse::<u32>().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(format!("reading {}", self.pid_path().display()), e)),
        };
        let scan_dir = dir.clone();
        let mut pids: BTreeSet<u32> =
            tokio::task::spawn_blocking(move || child::processes_in(&scan_dir))
                .await
                .map_err(|e| DriverError::Failed(format!("scanning processes: {e}")))?
                .into_iter()
                .collect();
        pids.extend(from_pidfile);
        for pid in pids {
            if pid == 0 || ours == Some(pid) || !child::is_alive(pid) {
                continue;
            }
            if !is_our_server(pid, &dir) {
                if from_pidfile == Some(pid) {
                    tracing::warn!(
                        cluster = %self.cluster,
                        pid,
                        "{PID_FILE} names a live process that is not a mariadbd on this data \
                         directory; leaving it alone"
                    );
                }
                continue;
            }
            tracing::warn!(
                cluster = %self.cluster,
                pid,
                data_dir = %dir.display(),
                "stopping a mariadbd left running by an earlier torpor run"
            );
            child::stop_pid(pid, Self::SHUTDOWN).await?;
        }
        Ok(())
    }
}

fn datadir_arg(dir: &Path) -> OsString {
    let mut arg = OsString::from("--datadir=");
    arg.push(dir);
    arg
}

/// Whether a MySQL-protocol greeting arrives: a packet header, then protocol version 10 (or
/// an error packet, 0xff, which a running server sends when it refuses the connection).
async fn greets(addr: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    let mut head = [0u8; 5];
    let read = tokio::time::timeout(PROBE_TIMEOUT, stream.read_exact(&mut head)).await;
    matches!(read, Ok(Ok(_))) && (head[4] == 10 || head[4] == 0xff)
}

/// A mariadbd (or mysqld) binary whose working directory is `dir`: the server chdirs into its
/// data directory, which tells it apart from another server that reused the pid.
fn is_our_server(pid: u32, dir: &Path) -> bool {
    let is_server = child::cmdline(pid)
        .and_then(|argv| argv.into_iter().next())
        .is_some_and(|argv0| {
            Path::new(&argv0).file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("mariadbd") || n.starts_with("mysqld")
            })
        });
    is_server && child::cwd(pid).is_none_or(|cwd| cwd == dir)
}

async fn exists(path: &Path) -> Result<bool, DriverError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(|e| io_err(format!("checking {}", path.display()), e))
}

/// Empty but for `lost+found` (a data directory that is a mount point has one).
async fn is_empty_dir(dir: &Path) -> Result<bool, DriverError> {
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .map_err(|e| io_err(format!("reading {}", dir.display()), e))?;
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| io_err(format!("reading {}", dir.display()), e))?
    {
        if entry.file_name() != "lost+found" {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Creates a marker file durably: written, synced, and its directory entry synced.
async fn write_marker(path: &Path) -> Result<(), DriverError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let what = || format!("writing {}", path.display());
        let file = std::fs::File::create(&path).map_err(|e| io_err(what(), e))?;
        file.sync_all().map_err(|e| io_err(what(), e))?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(what(), e))?;
        }
        Ok(())
    })
    .await
    .map_err(|e| DriverError::Failed(format!("writing a marker file: {e}")))?
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[async_trait]
impl Server for Mariadb {
    const NAME: &'static str = "mariadbd";
    const DEFAULT_USER: &'static str = "mysql";
    const PID_FILE: &'static str = PID_FILE;
    const LOG_FILE: &'static str = "torpor-mariadb.log";
    const SHUTDOWN: Escalation = SHUTDOWN;
    type Binaries = Binaries;

    fn new(cluster: &str, cfg: ProcessConfig, users: Vec<BootstrapUser>) -> Self {
        Self {
            cluster: cluster.to_owned(),
            cfg,
            users,
        }
    }

    fn check_setting(key: &str, value: &str) -> Result<(), DriverError> {
        check_setting(key, value)
    }

    fn find_binaries(cfg: &ProcessConfig) -> Result<Binaries, DriverError> {
        find_binaries(cfg.bin_dir.as_deref())
    }

    async fn bootstrap(
        &self,
        setup: &Setup<Binaries>,
        ours: Option<u32>,
    ) -> Result<(), DriverError> {
        let dir = self.data_dir().to_path_buf();
        let user = setup.user.clone();
        tokio::task::spawn_blocking(move || child::ensure_dir(&dir, 0o700, &user))
            .await
            .map_err(|e| DriverError::Failed(format!("creating the data directory: {e}")))??;
        // Before anything touches the files: a server (or a bootstrap cut short with its
        // parent) holding this directory's InnoDB lock would make everything below wait.
        self.stop_leftovers(ours).await?;
        if exists(&self.data_dir().join(DONE_MARKER)).await? {
            return match bootstrap::align_script(&self.users)? {
                Some(sql) => self.bootstrap_script(setup, sql).await,
                None => Ok(()),
            };
        }
        let ours = self.data_dir().join(PENDING_MARKER);
        if exists(&ours).await? {
            tracing::warn!(cluster = %self.cluster, "redoing an initialisation that was cut short");
            child::remove_dir_contents(self.data_dir()).await;
            if !is_empty_dir(self.data_dir()).await? {
                return Err(DriverError::Failed(format!(
                    "could not empty {} to redo an initialisation that was cut short",
                    self.data_dir().display()
                )));
            }
        }
        let created = if is_empty_dir(self.data_dir()).await? {
            write_marker(&ours).await?;
            if let Err(e) = self.install_db(setup).await {
                child::remove_dir_contents(self.data_dir()).await;
                return Err(e);
            }
            true
        } else if exists(&self.data_dir().join("mysql")).await? {
            // An existing MariaDB data directory: keep it, add the database and users.
            tracing::info!(cluster = %self.cluster, data_dir = %self.data_dir().display(), "adopting an existing MariaDB data directory");
            false
        } else {
            return Err(DriverError::Failed(format!(
                "data_dir {} is not empty and holds no MariaDB system database (mysql/); \
                 refusing to initialise over it",
                self.data_dir().display()
            )));
        };
        if let Err(e) = self.create_users(setup).await {
            if created {
                child::remove_dir_contents(self.data_dir()).await;
            }
            return Err(e);
        }
        write_marker(&self.data_dir().join(DONE_MARKER)).await?;
        if created {
            tokio::fs::remove_file(&ours)
                .await
                .map_err(|e| io_err(format!("removing {}", ours.display()), e))?;
        }
        Ok(())
    }

    /// No --user: child::command switches uid before exec, which keeps the parent-death signal
    /// (the kernel clears it when mariadbd changes its own credentials).
    fn command_line(&self, setup: &Setup<Binaries>) -> (PathBuf, Vec<OsString>) {
        (setup.bins.server.clone(), self.server_args())
    }

    /// Ready when the pid file names our child (mariadbd writes it after binding its port, so
    /// the port is ours) and a connection gets the server's greeting (sent once the accept
    /// loop runs).
    async fn is_ready(&self, pid: u32) -> bool {
        let pid_written = tokio::fs::read_to_string(self.pid_path())
            .await
            .is_ok_and(|t| t.trim().parse::<u32>().ok() == Some(pid));
        pid_written && greets(SocketAddr::from((Ipv4Addr::LOCALHOST, self.cfg.port))).await
    }

    /// The unix socket, inside the data directory (reachable only by the server's user and
    /// root); none when that path would not fit in a socket address.
    fn socket(&self) -> Option<PathBuf> {
        super::socket_path(self.data_dir(), SOCKET_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_pool_default_is_overridable() {
        let cfg = |settings: &[(&str, &str)]| ProcessConfig {
            data_dir: "/d".into(),
            port: 1,
            bin_dir: None,
            run_as: None,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tls: None,
            ca: None,
        };
        let inner = Mariadb::new("c", cfg(&[]), vec![]);
        assert_eq!(
            inner.tuning_args(),
            vec!["--innodb-buffer-pool-size=32M", "--tmpdir=/d"]
        );
        let inner = Mariadb::new(
            "c",
            cfg(&[("innodb_buffer_pool_size", "256M"), ("tmpdir", "/t")]),
            vec![],
        );
        assert_eq!(
            inner.tuning_args(),
            vec!["--innodb_buffer_pool_size=256M", "--tmpdir=/t"]
        );
    }

    #[test]
    fn long_data_dir_gets_no_socket() {
        let cfg = |dir: String| ProcessConfig {
            data_dir: dir.into(),
            port: 1,
            bin_dir: None,
            run_as: None,
            settings: Default::default(),
            tls: None,
            ca: None,
        };
        let short = Mariadb::new("c", cfg("/d".into()), vec![]);
        assert_eq!(short.socket_arg(), "--socket=/d/mysqld.sock");
        let long = Mariadb::new("c", cfg(format!("/{}", "x".repeat(100))), vec![]);
        assert_eq!(long.socket_arg(), "--socket=");
    }
}
