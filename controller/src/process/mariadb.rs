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
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;
use tokio::process::Child;

use super::child::{self, Escalation, RunAs, io_err};
use super::mariadb_bootstrap as bootstrap;
use super::mariadb_config::{INSTALL_DB, check_setting, find_binaries, normalise};
use super::server::{Server, ServerProcess};
use super::{BootstrapUser, ConfigProblem, ProcessConfig};
use crate::driver::{BackendInfo, DriverError};

const LOG_FILE: &str = "torpor-mariadb.log";
const PID_FILE: &str = "mariadbd.pid";
const SOCKET_FILE: &str = "mysqld.sock";
/// Written last by a successful bootstrap: its presence means prepare has nothing to create.
const DONE_MARKER: &str = "torpor-bootstrap.done";
/// Written into an empty directory before install-db: its presence without DONE_MARKER means
/// an initialisation of ours was cut short, and the directory may be wiped and redone.
const PENDING_MARKER: &str = "torpor-init.pending";
const DEFAULT_BUFFER_POOL: &str = "32M";

const READY_POLL: Duration = Duration::from_millis(5);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// One readiness probe: connect and read the first bytes of the server's greeting.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const LOG_TAIL_LINES: usize = 20;
/// SIGTERM is mariadbd's normal shutdown (SIGQUIT means the same to it); nothing gentler than
/// SIGKILL remains after it.
const SHUTDOWN: Escalation = Escalation {
    first: libc::SIGTERM,
    second: libc::SIGKILL,
    first_grace: Duration::from_secs(30),
    second_grace: Duration::from_secs(10),
};

struct Setup {
    server: PathBuf,
    install_db: PathBuf,
    user: RunAs,
}

struct Running {
    child: Child,
    info: BackendInfo,
}

/// Runs one MariaDB server (one data directory) as a child process.
pub type MariadbProcess = ServerProcess<Mariadb>;

pub struct Mariadb {
    cluster: String,
    cfg: ProcessConfig,
    users: Vec<BootstrapUser>,
    setup: OnceLock<Setup>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// Mirror of the running child's pid for the synchronous `pid()`; 0 when none.
    pid: AtomicU32,
}

/// The binaries and user `cfg` asks for, found without creating or starting anything.
fn resolve(cfg: &ProcessConfig) -> Result<Setup, ConfigProblem> {
    if !cfg.data_dir.is_absolute() {
        return Err(ConfigProblem::new(
            "data_dir",
            format!(
                "data_dir {} must be an absolute path",
                cfg.data_dir.display()
            ),
        ));
    }
    for (key, value) in &cfg.settings {
        check_setting(key, value).map_err(|e| ConfigProblem::new("settings", e.to_string()))?;
    }
    let (server, install_db) = find_binaries(cfg.bin_dir.as_deref())
        .map_err(|e| ConfigProblem::new("bin_dir", e.to_string()))?;
    let user = RunAs::resolve(cfg.run_as.as_deref(), "mysql")
        .map_err(|e| ConfigProblem::new("run_as", e.to_string()))?;
    if user.uid == 0 {
        return Err(ConfigProblem::new(
            "run_as",
            "mariadbd refuses to run as root; set run_as to an unprivileged user",
        ));
    }
    Ok(Setup {
        server,
        install_db,
        user,
    })
}

impl Mariadb {
    fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    fn pid_path(&self) -> PathBuf {
        self.data_dir().join(PID_FILE)
    }

    fn setup(&self) -> Result<&Setup, DriverError> {
        if let Some(s) = self.setup.get() {
            return Ok(s);
        }
        let _ = self.setup.set(resolve(&self.cfg)?);
        self.setup
            .get()
            .ok_or_else(|| DriverError::Failed("driver setup missing".into()))
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

    /// The unix socket, inside the data directory (reachable only by the server's user and
    /// root); none when that path would not fit in a socket address.
    fn socket(&self) -> Option<PathBuf> {
        super::socket_path(self.data_dir(), SOCKET_FILE)
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
        log_error.push(self.log_path());
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

    async fn install_db(&self, setup: &Setup) -> Result<(), DriverError> {
        let started = Instant::now();
        let mut cmd = child::command(&setup.install_db, &setup.user, libc::SIGKILL);
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
            .map_err(|e| io_err(format!("running {}", setup.install_db.display()), e))?;
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
    async fn create_users(&self, setup: &Setup) -> Result<(), DriverError> {
        let started = Instant::now();
        let sql = bootstrap::script(&self.cluster, &self.users)?;
        let mut cmd = child::command(&setup.server, &setup.user, libc::SIGKILL);
        cmd.arg("--no-defaults")
            .arg("--bootstrap")
            .arg(datadir_arg(self.data_dir()))
            .arg("--log-warnings=0")
            .arg("--skip-log-bin")
            .args(self.tuning_args());
        let out = child::run(cmd, Some(sql.into_bytes()))
            .await
            .map_err(|e| io_err("running mariadbd --bootstrap", e))?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let errors = bootstrap::errors(&text);
        if !out.status.success() || !errors.is_empty() {
            return Err(DriverError::Failed(format!(
                "creating the database and users with mariadbd --bootstrap failed ({}): {}",
                out.status,
                errors.join("; ")
            )));
        }
        tracing::info!(
            cluster = %self.cluster,
            users = self.users.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mariadb database and users created"
        );
        Ok(())
    }

    /// Stops servers that an earlier, crashed torpor left running on this data directory: the
    /// one its pid file names, and any mariadbd working in the directory (a pid file can be
    /// missing, e.g. for a bootstrap run).
    async fn stop_leftovers(&self) -> Result<(), DriverError> {
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
            if pid == 0 || self.pid() == Some(pid) || !child::is_alive(pid) {
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
            child::stop_pid(pid, SHUTDOWN).await?;
        }
        Ok(())
    }

    async fn spawn_server(&self, setup: &Setup) -> Result<Child, DriverError> {
        let log_path = self.log_path();
        let user = setup.user.clone();
        let path = log_path.clone();
        let log = tokio::task::spawn_blocking(move || child::open_log(&path, &user))
            .await
            .map_err(|e| DriverError::Failed(format!("opening the server log: {e}")))??;
        let log_err = log
            .try_clone()
            .map_err(|e| io_err(format!("duplicating {}", log_path.display()), e))?;
        // No --user: child::command switches uid before exec, which keeps the parent-death
        // signal (the kernel clears it when mariadbd changes its own credentials).
        let mut cmd = child::command(&setup.server, &setup.user, libc::SIGTERM);
        cmd.args(self.server_args());
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log_err));
        child::spawn(cmd)
            .await
            .map_err(|e| io_err("starting mariadbd", e))
    }

    /// Ready when the pid file names our child (mariadbd writes it after binding its port, so
    /// the port is ours) and a connection gets the server's greeting (sent once the accept
    /// loop runs).
    async fn wait_ready(&self, child: &mut Child, pid: u32) -> Result<(), DriverError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.cfg.port));
        let pid_path = self.pid_path();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| io_err("checking the mariadbd process", e))?
            {
                return Err(DriverError::Failed(format!(
                    "mariadbd exited ({status}) before it was ready; last lines of {}:\n{}",
                    self.log_path().display(),
                    child::tail(&self.log_path(), LOG_TAIL_LINES)
                )));
            }
            let pid_written = tokio::fs::read_to_string(&pid_path)
                .await
                .is_ok_and(|t| t.trim().parse::<u32>().ok() == Some(pid));
            if pid_written && greets(addr).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "mariadbd (pid {pid}) not ready after {}s; last lines of {}:\n{}",
                    READY_TIMEOUT.as_secs(),
                    self.log_path().display(),
                    child::tail(&self.log_path(), LOG_TAIL_LINES)
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

/// How the recorded server ended, or None while it runs. A killed mariadbd is a zombie (what
/// `alive()` reports) before waitpid can reap it: its other threads still have to exit. Such a
/// server is waited for rather than handed out again.
async fn exit_status(r: &mut Running) -> Result<Option<ExitStatus>, DriverError> {
    const REAP_TIMEOUT: Duration = Duration::from_secs(10);
    let check = |e| io_err("checking the mariadbd process", e);
    if let Some(status) = r.child.try_wait().map_err(check)? {
        return Ok(Some(status));
    }
    if r.info.pid.is_none_or(child::is_alive) {
        return Ok(None);
    }
    match tokio::time::timeout(REAP_TIMEOUT, r.child.wait()).await {
        Ok(status) => status.map(Some).map_err(check),
        Err(_) => Err(DriverError::Timeout(format!(
            "mariadbd (pid {:?}) is dying but was not reaped within {}s",
            r.info.pid,
            REAP_TIMEOUT.as_secs()
        ))),
    }
}

/// Asks a server to shut down when a start is abandoned half-way.
struct StopOnDrop(Option<u32>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = child::signal(pid, libc::SIGTERM);
        }
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

/// Empties a data directory that torpor itself was initialising (never one it adopted).
async fn remove_dir_contents(dir: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let removed = match entry.file_type().await {
            Ok(t) if t.is_dir() => tokio::fs::remove_dir_all(&path).await,
            _ => tokio::fs::remove_file(&path).await,
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "cleanup after failed init");
        }
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[async_trait]
impl Server for Mariadb {
    const NAME: &'static str = "mariadb";
    const PID_FILE: &'static str = PID_FILE;

    fn new(cluster: &str, cfg: ProcessConfig, users: Vec<BootstrapUser>) -> Self {
        Self {
            cluster: cluster.to_owned(),
            cfg,
            users,
            setup: OnceLock::new(),
            running: tokio::sync::Mutex::new(None),
            pid: AtomicU32::new(0),
        }
    }

    fn check(cfg: &ProcessConfig) -> Result<(), ConfigProblem> {
        resolve(cfg).map(|_| ())
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir().join(LOG_FILE)
    }

    async fn abandon(&self) -> Option<u32> {
        let running = self.running.lock().await.take()?;
        self.pid.store(0, Ordering::SeqCst);
        running.info.pid
    }

    async fn prepare(&self) -> Result<(), DriverError> {
        let setup = self.setup()?;
        let dir = self.data_dir().to_path_buf();
        let user = setup.user.clone();
        tokio::task::spawn_blocking(move || child::ensure_dir(&dir, 0o700, &user))
            .await
            .map_err(|e| DriverError::Failed(format!("creating the data directory: {e}")))??;
        // Before anything touches the files: a server (or a bootstrap cut short with its
        // parent) holding this directory's InnoDB lock would make everything below wait.
        self.stop_leftovers().await?;
        if exists(&self.data_dir().join(DONE_MARKER)).await? {
            return Ok(());
        }
        let ours = self.data_dir().join(PENDING_MARKER);
        if exists(&ours).await? {
            tracing::warn!(cluster = %self.cluster, "redoing an initialisation that was cut short");
            remove_dir_contents(self.data_dir()).await;
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
                remove_dir_contents(self.data_dir()).await;
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
                remove_dir_contents(self.data_dir()).await;
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

    async fn start(&self) -> Result<BackendInfo, DriverError> {
        let setup = self.setup()?;
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_mut() {
            match exit_status(r).await? {
                None => return Ok(r.info.clone()),
                Some(status) => {
                    tracing::warn!(cluster = %self.cluster, %status, "mariadbd had exited on its own");
                    *running = None;
                    self.pid.store(0, Ordering::SeqCst);
                }
            }
        }
        let started = Instant::now();
        let mut child = self.spawn_server(setup).await?;
        let Some(pid) = child.id() else {
            return Err(DriverError::Failed(
                "mariadbd exited before its pid was known".into(),
            ));
        };
        // Dropped only if the runtime shuts down mid-start: then nobody would track the server.
        let mut guard = StopOnDrop(Some(pid));
        if let Err(e) = self.wait_ready(&mut child, pid).await {
            guard.0 = None;
            if let Err(stop_err) = child::stop_child(&mut child, SHUTDOWN).await {
                tracing::warn!(cluster = %self.cluster, pid, error = %stop_err, "stopping a mariadbd that failed to start");
            }
            return Err(e);
        }
        guard.0 = None;
        let info = BackendInfo {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, self.cfg.port)),
            socket: self.socket(),
            pid: Some(pid),
        };
        tracing::info!(
            cluster = %self.cluster,
            pid,
            addr = %info.addr,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mariadbd ready"
        );
        self.pid.store(pid, Ordering::SeqCst);
        *running = Some(Running {
            child,
            info: info.clone(),
        });
        Ok(info)
    }

    async fn stop(&self) -> Result<(), DriverError> {
        let mut running = self.running.lock().await;
        let Some(r) = running.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        // The child stays recorded until it is reaped: a stop cut short can be repeated.
        let status = child::stop_child(&mut r.child, SHUTDOWN).await?;
        tracing::info!(
            cluster = %self.cluster,
            pid = r.info.pid,
            %status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "mariadbd stopped"
        );
        *running = None;
        self.pid.store(0, Ordering::SeqCst);
        Ok(())
    }

    fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
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
        };
        let short = Mariadb::new("c", cfg("/d".into()), vec![]);
        assert_eq!(short.socket_arg(), "--socket=/d/mysqld.sock");
        let long = Mariadb::new("c", cfg(format!("/{}", "x".repeat(100))), vec![]);
        assert_eq!(long.socket_arg(), "--socket=");
    }
}
