//! PostgreSQL as a child process: initdb and bootstrap users on first use, start with a fast
//! readiness check, fast shutdown, and cleanup of a server that a crashed torpor left behind.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::Signal;

use super::child::{self, Escalation, io_err};
use super::postgres_bootstrap as bootstrap;
use super::server::{Server, ServerProcess};
use super::supervisor::Setup;
use super::{BootstrapUser, ProcessConfig};
use crate::driver::DriverError;

/// Where Debian/Ubuntu install one directory per major version.
const VERSIONS_ROOT: &str = "/usr/lib/postgresql";
const PID_FILE: &str = "postmaster.pid";
/// SIGINT is PostgreSQL's fast shutdown (roll back sessions, checkpoint, exit); SIGQUIT is its
/// immediate shutdown (crash recovery on next start).
const SHUTDOWN: Escalation = Escalation {
    first: Signal::SIGINT,
    second: Signal::SIGQUIT,
    first_grace: Duration::from_secs(30),
    second_grace: Duration::from_secs(10),
};
/// Who may log in how: every login gives a SCRAM password, over the socket or TCP.
const HBA: &str = "\
# Written by torpor when it created this data directory.
local   all          all                   scram-sha-256
host    all          all   127.0.0.1/32    scram-sha-256
host    all          all   ::1/128         scram-sha-256
local   replication  all                   scram-sha-256
host    replication  all   127.0.0.1/32    scram-sha-256
host    replication  all   ::1/128         scram-sha-256
";

/// Settings the driver owns: they decide the address it reports.
const RESERVED_SETTINGS: [&str; 2] = ["port", "listen_addresses"];

/// Runs one PostgreSQL server (one data directory) as a child process.
pub type PostgresProcess = ServerProcess<Postgres>;

pub struct Postgres {
    cluster: String,
    cfg: ProcessConfig,
    users: Vec<BootstrapUser>,
}

impl Postgres {
    fn data_dir(&self) -> &Path {
        &self.cfg.data_dir
    }

    /// A fresh data directory: initdb, then the bootstrap users, without any network.
    async fn initialize(&self, setup: &Setup<PathBuf>) -> Result<(), DriverError> {
        let dir = self.data_dir().to_path_buf();
        let user = setup.user.clone();
        tokio::task::spawn_blocking(move || child::ensure_dir(&dir, 0o700, &user))
            .await
            .map_err(|e| DriverError::Failed(format!("creating the data directory: {e}")))??;

        let started = Instant::now();
        let mut cmd = child::command(&setup.bins.join("initdb"), &setup.user, Signal::SIGKILL);
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-U", bootstrap::SUPERUSER])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-E", "UTF8", "--locale=C"]);
        if self.fsync_off() {
            // The operator already gave up crash safety for this server (tests do).
            cmd.arg("--no-sync");
        }
        let out = child::run(cmd, None)
            .await
            .map_err(|e| io_err("running initdb", e))?;
        if !out.status.success() {
            return Err(DriverError::Failed(format!(
                "initdb -D {} failed ({}): {}",
                self.data_dir().display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        tracing::info!(
            cluster = %self.cluster,
            data_dir = %self.data_dir().display(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "initdb done"
        );

        // initdb wants a superuser password before it makes local logins ask for one; torpor
        // has none to give it, so the rules are written here instead: the socket in the data
        // directory asks for a password as TCP does.
        let hba = self.data_dir().join("pg_hba.conf");
        tokio::fs::write(&hba, HBA)
            .await
            .map_err(|e| io_err(format!("writing {}", hba.display()), e))?;

        if let Err(e) = self.create_users(setup).await {
            // Leave no half-initialised directory: the next prepare would skip the users.
            child::remove_dir_contents(self.data_dir()).await;
            return Err(e);
        }
        Ok(())
    }

    async fn create_users(&self, setup: &Setup<PathBuf>) -> Result<(), DriverError> {
        let sql = bootstrap::script(&self.cluster, &self.users)?;
        self.single_user(setup, sql).await
    }

    /// Sets the verifiers of users given by `password_hash` again, in single-user mode
    /// before the server starts.
    async fn align_users(&self, setup: &Setup<PathBuf>) -> Result<(), DriverError> {
        match bootstrap::align_script(&self.users)? {
            Some(sql) => self.single_user(setup, sql).await,
            None => Ok(()),
        }
    }

    async fn single_user(&self, setup: &Setup<PathBuf>, sql: String) -> Result<(), DriverError> {
        let mut cmd = child::command(&setup.bins.join("postgres"), &setup.user, Signal::SIGKILL);
        cmd.arg("--single").arg("-D").arg(self.data_dir()).arg("-j");
        // An error report would otherwise repeat the statement, password included.
        cmd.args(["-c", "log_min_error_statement=panic"]);
        for (k, v) in &self.cfg.settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.arg(bootstrap::SUPERUSER);
        child::run_script(&self.cluster, &bootstrap::SCRIPT, cmd, sql).await
    }

    /// Stops a server that an earlier, crashed torpor left running on this data directory.
    /// A pid file whose process is gone is left alone: postgres handles a stale one.
    async fn stop_leftover(&self, ours: Option<u32>) -> Result<(), DriverError> {
        let pidfile = self.data_dir().join(PID_FILE);
        let text = match tokio::fs::read_to_string(&pidfile).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("reading {}", pidfile.display()), e)),
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        else {
            return Ok(());
        };
        if pid == 0 || ours == Some(pid) || !child::is_alive(pid) {
            return Ok(());
        }
        if !self.is_our_postmaster(pid).await {
            tracing::warn!(
                cluster = %self.cluster,
                pid,
                "postmaster.pid names a live process that is not a postgres on this data \
                 directory; leaving it alone"
            );
            return Ok(());
        }
        tracing::warn!(
            cluster = %self.cluster,
            pid,
            data_dir = %self.data_dir().display(),
            "stopping a postgres left running by an earlier torpor run"
        );
        child::stop_pid(pid, Self::SHUTDOWN).await
    }

    /// The process runs a postgres binary and (when we may look) works in our data directory:
    /// the postmaster chdirs there, which tells it apart from a postgres that reused the pid.
    async fn is_our_postmaster(&self, pid: u32) -> bool {
        let is_postgres = child::cmdline(pid)
            .and_then(|argv| argv.into_iter().next())
            .is_some_and(|argv0| {
                Path::new(&argv0)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("postgres"))
            });
        if !is_postgres {
            return false;
        }
        let Some(cwd) = child::cwd(pid) else {
            return true;
        };
        match tokio::fs::canonicalize(self.data_dir()).await {
            Ok(dir) => cwd == dir,
            Err(_) => true,
        }
    }

    fn fsync_off(&self) -> bool {
        self.cfg
            .settings
            .get("fsync")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "off" | "false" | "0"))
    }

    fn server_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-D".into(), self.data_dir().into()];
        args.extend(["-p".into(), self.cfg.port.to_string().into()]);
        args.extend(["-c".into(), "listen_addresses=127.0.0.1".into()]);
        args.extend(["-c".into(), self.socket_dir_setting()]);
        // After an unclean stop, syncing the data dir file by file takes seconds.
        args.extend(["-c".into(), "recovery_init_sync_method=syncfs".into()]);
        for (k, v) in &self.cfg.settings {
            args.extend(["-c".into(), format!("{k}={v}").into()]);
        }
        args
    }

    fn socket_dir_setting(&self) -> std::ffi::OsString {
        let mut arg = std::ffi::OsString::from("unix_socket_directories=");
        if self.socket().is_some() {
            // Quoted: the setting is a comma-separated list.
            arg.push("\"");
            arg.push(self.data_dir());
            arg.push("\"");
        }
        arg
    }
}

fn pidfile_ready(text: &str, pid: u32) -> bool {
    let mut lines = text.lines();
    let first = lines.next().map(str::trim);
    // Line 8 (index 7 overall) is the postmaster's status: "starting", "ready", "stopping".
    let status = lines.nth(6).map(str::trim);
    first == Some(pid.to_string().as_str()) && status == Some("ready")
}

/// The highest `<root>/<major>/bin` that holds a `postgres` binary.
fn newest_bin_dir(root: &Path) -> Result<PathBuf, DriverError> {
    let entries = std::fs::read_dir(root).map_err(|e| {
        DriverError::Failed(format!(
            "no bin_dir given and {} is unreadable ({e}); set bin_dir",
            root.display()
        ))
    })?;
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(version) = name
            .split('.')
            .map(str::parse::<u32>)
            .collect::<Result<Vec<u32>, _>>()
        else {
            continue;
        };
        let bin = entry.path().join("bin");
        if child::is_executable(&bin.join("postgres"))
            && best.as_ref().is_none_or(|(v, _)| version > *v)
        {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin).ok_or_else(|| {
        DriverError::Failed(format!(
            "no bin_dir given and no {}/<version>/bin/postgres found; set bin_dir",
            root.display()
        ))
    })
}

#[async_trait]
impl Server for Postgres {
    const NAME: &'static str = "postgres";
    const DEFAULT_USER: &'static str = "postgres";
    const PID_FILE: &'static str = PID_FILE;
    const LOG_FILE: &'static str = "torpor-postgres.log";
    const SHUTDOWN: Escalation = SHUTDOWN;
    /// The directory holding `postgres` and `initdb`.
    type Binaries = PathBuf;

    fn new(cluster: &str, cfg: ProcessConfig, users: Vec<BootstrapUser>) -> Self {
        Self {
            cluster: cluster.to_owned(),
            cfg,
            users,
        }
    }

    fn check_setting(key: &str, value: &str) -> Result<(), DriverError> {
        let name_ok = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        let reserved = RESERVED_SETTINGS.contains(&key.to_ascii_lowercase().as_str());
        super::check_setting(key, value, name_ok, reserved, "port field")
    }

    fn find_binaries(cfg: &ProcessConfig) -> Result<PathBuf, DriverError> {
        let bin_dir = match &cfg.bin_dir {
            Some(dir) => dir.clone(),
            None => newest_bin_dir(Path::new(VERSIONS_ROOT))?,
        };
        for tool in ["postgres", "initdb"] {
            if !child::is_executable(&bin_dir.join(tool)) {
                return Err(DriverError::Failed(format!(
                    "bin_dir {}: no executable `{tool}` there; set bin_dir to a PostgreSQL bin \
                     directory",
                    bin_dir.display()
                )));
            }
        }
        Ok(bin_dir)
    }

    async fn bootstrap(
        &self,
        setup: &Setup<PathBuf>,
        ours: Option<u32>,
    ) -> Result<(), DriverError> {
        let version_file = self.data_dir().join("PG_VERSION");
        let initialized = tokio::fs::try_exists(&version_file)
            .await
            .map_err(|e| io_err(format!("checking {}", version_file.display()), e))?;
        if initialized {
            self.stop_leftover(ours).await?;
            self.align_users(setup).await
        } else {
            self.initialize(setup).await
        }
    }

    fn command_line(&self, setup: &Setup<PathBuf>) -> (PathBuf, Vec<OsString>) {
        (setup.bins.join("postgres"), self.server_args())
    }

    /// Ready when postmaster.pid names our child and its status line reads "ready".
    async fn is_ready(&self, pid: u32) -> bool {
        tokio::fs::read_to_string(self.data_dir().join(PID_FILE))
            .await
            .is_ok_and(|text| pidfile_ready(&text, pid))
    }

    /// The Unix socket in the data directory (only the server's user and root can reach it);
    /// none when its path would not fit in a socket address or can't be written as a setting.
    fn socket(&self) -> Option<PathBuf> {
        let dir = self.data_dir();
        if dir.to_str().is_none_or(|d| d.contains('"')) {
            return None;
        }
        super::socket_path(dir, &format!(".s.PGSQL.{}", self.cfg.port))
    }

    /// When the postmaster dies uncleanly its backends live on, holding the shared memory a
    /// new postmaster needs: end them (their sessions died with the postmaster anyway).
    async fn after_exit(&self) {
        let orphans = child::processes_in(self.data_dir());
        if orphans.is_empty() {
            return;
        }
        tracing::warn!(cluster = %self.cluster, count = orphans.len(), "ending server processes orphaned by a dead postmaster");
        for pid in &orphans {
            let _ = child::signal(*pid, Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while orphans.iter().any(|p| child::is_alive(*p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        let text = "42\n/d\n1700000000\n5432\n\n127.0.0.1\n  5432001  0\nready   \n";
        assert!(pidfile_ready(text, 42));
        assert!(!pidfile_ready(text, 43));
        assert!(!pidfile_ready(&text.replace("ready", "starting"), 42));
        assert!(!pidfile_ready("42\n/d\n", 42));
    }

    #[test]
    fn socket_only_when_its_path_fits() {
        let cfg = |dir: String| ProcessConfig {
            data_dir: dir.into(),
            port: 5432,
            bin_dir: None,
            run_as: None,
            settings: Default::default(),
            tls: None,
            ca: None,
        };
        let short = Postgres::new("c", cfg("/d".into()), vec![]);
        assert_eq!(short.socket(), Some(PathBuf::from("/d/.s.PGSQL.5432")));
        assert_eq!(short.socket_dir_setting(), "unix_socket_directories=\"/d\"");
        let long = Postgres::new("c", cfg(format!("/{}", "x".repeat(100))), vec![]);
        assert_eq!(long.socket(), None);
        assert_eq!(long.socket_dir_setting(), "unix_socket_directories=");
        let quote = Postgres::new("c", cfg("/a\"b".into()), vec![]);
        assert_eq!(quote.socket(), None);
    }

    #[test]
    fn settings_are_checked() {
        let check_setting = Postgres::check_setting;
        assert!(check_setting("fsync", "off").is_ok());
        assert!(check_setting("auto_explain.log_min_duration", "0").is_ok());
        for key in ["port", "a=b", ""] {
            assert!(check_setting(key, "1").is_err(), "{key:?}");
        }
    }

    #[test]
    fn bin_dir_discovery() {
        let root = tempfile::tempdir().unwrap();
        assert!(newest_bin_dir(root.path()).is_err());
        for v in ["9.6", "15", "16", "notaversion"] {
            let bin = root.path().join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if v != "16" {
                let exe = bin.join("postgres");
                std::fs::write(&exe, "").unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        assert_eq!(
            newest_bin_dir(root.path()).unwrap(),
            root.path().join("15").join("bin")
        );
    }
}
