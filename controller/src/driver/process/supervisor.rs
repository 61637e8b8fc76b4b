//! Starting, watching and stopping a [`Server`] as a child process: one body for every kind of
//! server, which only says how it differs (its flags, readiness probe, signals, bootstrap).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::Child;

use super::cgroup::Cgroup;
use super::child::{self, RunAs, io_err};
use super::server::Server;
use super::{BootstrapUser, ConfigProblem, ProcessConfig};
use crate::driver::{BackendInfo, DriverError};

const READY_POLL: Duration = Duration::from_millis(5);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server that is dying (a zombie whose threads still exit) may take to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_TAIL_LINES: usize = 20;

/// What a server's configuration resolves to before anything runs.
pub struct Setup<B> {
    pub bins: B,
    pub user: RunAs,
}

struct Running {
    child: Child,
    pid: u32,
    info: BackendInfo,
}

pub(super) struct Supervisor<S: Server> {
    server: S,
    cluster: String,
    cfg: ProcessConfig,
    setup: OnceLock<Setup<S::Binaries>>,
    running: tokio::sync::Mutex<Option<Running>>,
    /// Mirror of the running child's pid, readable without waiting for a start or stop to
    /// finish; 0 when none.
    pid: AtomicU32,
    /// The server's own cgroup, or why there is none on this machine.
    cgroup: Result<Cgroup, String>,
    /// Servers are started inside `cgroup`, to be frozen: set once the cgroup could be made.
    in_cgroup: AtomicBool,
}

impl<S: Server> Supervisor<S> {
    pub(super) fn new(cluster: &str, cfg: ProcessConfig, users: Vec<BootstrapUser>) -> Self {
        Self {
            server: S::new(cluster, cfg.clone(), users),
            cluster: cluster.to_owned(),
            setup: OnceLock::new(),
            running: tokio::sync::Mutex::new(None),
            pid: AtomicU32::new(0),
            cgroup: Cgroup::for_data_dir(&cfg.data_dir),
            in_cgroup: AtomicBool::new(false),
            cfg,
        }
    }

    /// The file the server's stdout and stderr are appended to.
    pub(super) fn log_path(&self) -> PathBuf {
        self.cfg.data_dir.join(S::LOG_FILE)
    }

    /// The binaries and user `cfg` asks for, found without creating or starting anything.
    pub(super) fn resolve(cfg: &ProcessConfig) -> Result<Setup<S::Binaries>, ConfigProblem> {
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
            S::check_setting(key, value)
                .map_err(|e| ConfigProblem::new("settings", e.to_string()))?;
        }
        let bins =
            S::find_binaries(cfg).map_err(|e| ConfigProblem::new("bin_dir", e.to_string()))?;
        let user = RunAs::resolve(cfg.run_as.as_deref(), S::DEFAULT_USER)
            .map_err(|e| ConfigProblem::new("run_as", e.to_string()))?;
        if user.uid == 0 {
            return Err(ConfigProblem::new(
                "run_as",
                format!(
                    "{} refuses to run as root; set run_as to an unprivileged user",
                    S::NAME
                ),
            ));
        }
        Ok(Setup { bins, user })
    }

    fn setup(&self) -> Result<&Setup<S::Binaries>, DriverError> {
        if let Some(s) = self.setup.get() {
            return Ok(s);
        }
        let _ = self.setup.set(Self::resolve(&self.cfg)?);
        self.setup
            .get()
            .ok_or_else(|| DriverError::Failed("driver setup missing".into()))
    }

    /// Starts the next servers in their own cgroup, which is made now; Err says why that
    /// can't be done here.
    pub(super) fn use_cgroup(&self) -> Result<&Cgroup, String> {
        let cgroup = self.cgroup.as_ref().map_err(Clone::clone)?;
        cgroup.create()?;
        self.in_cgroup.store(true, Ordering::SeqCst);
        Ok(cgroup)
    }

    /// The server's cgroup, once servers are started in it.
    pub(super) fn cgroup(&self) -> Option<&Cgroup> {
        if self.in_cgroup.load(Ordering::SeqCst) {
            self.cgroup.as_ref().ok()
        } else {
            None
        }
    }

    /// The cgroup a server an earlier torpor left may be frozen in, whether or not this one
    /// freezes.
    pub(super) fn leftover_cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref().ok()
    }

    pub(super) fn socket(&self) -> Option<PathBuf> {
        self.server.socket()
    }

    pub(super) fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::SeqCst) {
            0 => None,
            pid => Some(pid),
        }
    }

    pub(super) async fn prepare(&self) -> Result<(), DriverError> {
        let setup = self.setup()?;
        self.server.bootstrap(setup, self.pid()).await
    }

    pub(super) async fn start(&self) -> Result<BackendInfo, DriverError> {
        let setup = self.setup()?;
        let mut running = self.running.lock().await;
        if let Some(r) = running.as_mut() {
            match exit_status::<S>(r).await? {
                None => return Ok(r.info.clone()),
                Some(status) => {
                    tracing::warn!(cluster = %self.cluster, %status, "{} had exited on its own", S::NAME);
                    *running = None;
                    self.pid.store(0, Ordering::SeqCst);
                    self.server.after_exit().await;
                }
            }
        }
        let started = Instant::now();
        let mut child = self.spawn(setup).await?;
        let Some(pid) = child.id() else {
            return Err(DriverError::Failed(format!(
                "{} exited before its pid was known",
                S::NAME
            )));
        };
        // Dropped only if the runtime shuts down mid-start: then nobody would track the server.
        let mut guard = StopOnDrop(Some(pid), S::SHUTDOWN.first);
        if let Err(e) = self.wait_ready(&mut child, pid).await {
            guard.0 = None;
            if let Err(stop_err) = child::stop_child(&mut child, S::SHUTDOWN).await {
                tracing::warn!(cluster = %self.cluster, pid, error = %stop_err, "stopping a {} that failed to start", S::NAME);
            }
            return Err(e);
        }
        guard.0 = None;
        let info = BackendInfo {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, self.cfg.port)),
            socket: self.server.socket(),
        };
        tracing::info!(
            cluster = %self.cluster,
            pid,
            addr = %info.addr,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "{} ready",
            S::NAME
        );
        self.pid.store(pid, Ordering::SeqCst);
        *running = Some(Running {
            child,
            pid,
            info: info.clone(),
        });
        Ok(info)
    }

    pub(super) async fn stop(&self) -> Result<(), DriverError> {
        let mut running = self.running.lock().await;
        let Some(r) = running.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        // The child stays recorded until it is reaped: a stop cut short (future dropped) can
        // be repeated.
        let status = child::stop_child(&mut r.child, S::SHUTDOWN).await?;
        tracing::info!(
            cluster = %self.cluster,
            pid = r.pid,
            %status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "{} stopped",
            S::NAME
        );
        *running = None;
        self.pid.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Reaps the server with `pid` if it is still the recorded one and has ended; how it
    /// ended. A stop under way holds the record until it has reaped the server itself.
    pub(super) async fn reap_exited(&self, pid: u32) -> Option<String> {
        let mut running = self.running.lock().await;
        let r = running.as_mut().filter(|r| r.pid == pid)?;
        let status = match exit_status::<S>(r).await {
            Ok(status) => status?,
            Err(e) => {
                tracing::warn!(cluster = %self.cluster, pid, error = %e, "reaping {}", S::NAME);
                return None;
            }
        };
        *running = None;
        self.pid.store(0, Ordering::SeqCst);
        self.server.after_exit().await;
        Some(format!(
            "{} (pid {pid}) exited on its own: {status}",
            S::NAME
        ))
    }

    /// Forgets the running server without stopping it; its pid.
    pub(super) async fn abandon(&self) -> Option<u32> {
        let running = self.running.lock().await.take()?;
        self.pid.store(0, Ordering::SeqCst);
        Some(running.pid)
    }

    async fn spawn(&self, setup: &Setup<S::Binaries>) -> Result<Child, DriverError> {
        let log_path = self.log_path();
        let user = setup.user.clone();
        let path = log_path.clone();
        let log = tokio::task::spawn_blocking(move || child::open_log(&path, &user))
            .await
            .map_err(|e| DriverError::Failed(format!("opening the server log: {e}")))??;
        let log_err = log
            .try_clone()
            .map_err(|e| io_err(format!("duplicating {}", log_path.display()), e))?;
        let (program, args) = self.server.command_line(setup);
        let cgroup = self.cgroup();
        if let Some(c) = cgroup
            && let Err(why) = c.create()
        {
            // Then the freezer finds the server outside and says so.
            tracing::warn!(cluster = %self.cluster, %why, "starting {} outside its cgroup", S::NAME);
        }
        let mut cmd = child::command_in(
            &program,
            &setup.user,
            S::SHUTDOWN.first,
            cgroup.map(|c| c.procs()),
        );
        cmd.args(args);
        cmd.stdout(Stdio::from(log)).stderr(Stdio::from(log_err));
        child::spawn(cmd)
            .await
            .map_err(|e| io_err(format!("starting {}", S::NAME), e))
    }

    /// Polled often: this is on the wake path, where `pg_ctl -w`'s 100 ms polls would show.
    async fn wait_ready(&self, child: &mut Child, pid: u32) -> Result<(), DriverError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| io_err(format!("checking the {} process", S::NAME), e))?
            {
                return Err(DriverError::Failed(format!(
                    "{} exited ({status}) before it was ready; last lines of {}:\n{}",
                    S::NAME,
                    self.log_path().display(),
                    child::tail(&self.log_path(), LOG_TAIL_LINES)
                )));
            }
            if self.server.is_ready(pid).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout(format!(
                    "{} (pid {pid}) not ready after {}s; last lines of {}:\n{}",
                    S::NAME,
                    READY_TIMEOUT.as_secs(),
                    self.log_path().display(),
                    child::tail(&self.log_path(), LOG_TAIL_LINES)
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

/// How the recorded server ended, or None while it runs. A killed multi-threaded server
/// (mariadbd) is a zombie, which is what `is_alive` reports, before waitpid can reap it: its
/// other threads still have to exit. Such a server is waited for rather than handed out again.
async fn exit_status<S: Server>(r: &mut Running) -> Result<Option<ExitStatus>, DriverError> {
    let check = |e| io_err(format!("checking the {} process", S::NAME), e);
    if let Some(status) = r.child.try_wait().map_err(check)? {
        return Ok(Some(status));
    }
    if child::is_alive(r.pid) {
        return Ok(None);
    }
    match tokio::time::timeout(REAP_TIMEOUT, r.child.wait()).await {
        Ok(status) => status.map(Some).map_err(check),
        Err(_) => Err(DriverError::Timeout(format!(
            "{} (pid {}) is dying but was not reaped within {}s",
            S::NAME,
            r.pid,
            REAP_TIMEOUT.as_secs()
        ))),
    }
}

/// Asks a server to shut down when a start is abandoned half-way.
struct StopOnDrop(Option<u32>, Signal);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = child::signal(pid, self.1);
        }
    }
}
