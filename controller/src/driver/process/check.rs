//! What `torpor check` asks of a process backend: what `prepare` and `start` would refuse on
//! this machine now, found without starting, creating or changing anything.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use super::child;
use super::lock::DataDirLock;
use super::server::{Server, ServerProcess};
use super::supervisor::Supervisor;
use super::{ConfigProblem, ProcessConfig};

impl<S: Server> ServerProcess<S> {
    /// What `prepare` and `start` would refuse in `cfg` (binaries, settings, user), without
    /// touching anything.
    pub fn check(cfg: &ProcessConfig) -> Result<(), ConfigProblem> {
        Supervisor::<S>::resolve(cfg).map(drop)
    }

    /// The pid of a live process that the data directory's pid file names: a server an
    /// earlier torpor left behind (which `prepare` stops), or another torpor's.
    fn running_on(cfg: &ProcessConfig) -> Option<u32> {
        let text = std::fs::read_to_string(cfg.data_dir.join(S::PID_FILE)).ok()?;
        let pid = text.lines().next()?.trim().parse().ok()?;
        child::is_alive(pid).then_some(pid)
    }

    /// Err names the field `up` would refuse; Ok carries warnings about what it copes with (a
    /// server an earlier torpor left on the backend port, which `prepare` stops).
    pub fn check_machine(cfg: &ProcessConfig) -> Result<Vec<ConfigProblem>, ConfigProblem> {
        Self::check(cfg)?;
        match DataDirLock::holder(&cfg.data_dir) {
            Ok(None) => {}
            Ok(Some(holder)) => {
                return Err(ConfigProblem::new(
                    "data_dir",
                    format!(
                        "{} is in use by a running torpor{} (lock file {})",
                        cfg.data_dir.display(),
                        holder
                            .pid
                            .map(|p| format!(" (pid {p})"))
                            .unwrap_or_default(),
                        holder.lock.display()
                    ),
                ));
            }
            Err(e) => return Err(ConfigProblem::new("data_dir", e.to_string())),
        }
        let mut warnings = Vec::new();
        let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.port));
        // Bound as the server would, and let go at once.
        if let Err(e) = TcpListener::bind(backend) {
            let e = format!("{backend}: {e}");
            match Self::running_on(cfg) {
                // Most likely the server on that pid: `up` stops it before it starts its own.
                Some(pid) => warnings.push(ConfigProblem::new(
                    "port",
                    format!(
                        "{e}; {} names pid {pid}, a server an earlier torpor left running: \
                         `up` will stop it",
                        cfg.data_dir.display()
                    ),
                )),
                None => return Err(ConfigProblem::new("port", e)),
            }
        }
        Ok(warnings)
    }
}
