//! A Docker daemon of the bench's own for `docker-wake`: started by pid with its directories
//! under the measure's work dir, and the tests' image of a server (tests/docker/rootfs.sh: the
//! host's postgres 15 or mariadbd with an entrypoint like the official image's) built on it,
//! since no registry is reachable here.
//!
//! Only one dockerd may run on this machine at a time (they share the docker0 bridge and its
//! iptables chains), so this one holds the tests' machine-wide lock,
//! `$TMPDIR/torpor-tests-dockerd.lock`, while it runs: a docker test run and this measure wait
//! for each other.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use tokio::process::{Child, Command};

use crate::torpor::{signal, wait_gone};

pub(crate) struct Dockerd {
    pub host: String,
    pub api: Docker,
    child: Child,
    pid: u32,
    _lock: std::fs::File,
}

/// The tests' lock (tests/src/docker.rs), one for the machine.
fn lock_path() -> PathBuf {
    std::env::temp_dir().join("torpor-tests-dockerd.lock")
}

impl Dockerd {
    pub(crate) async fn start(work: &Path) -> Result<Dockerd> {
        let dir = work.join("dockerd");
        std::fs::create_dir_all(&dir)?;
        // The longest Unix socket path dockerd makes; the kernel takes 107 bytes.
        let longest = dir.join("exec/containerd/containerd.sock.ttrpc");
        if longest.as_os_str().len() >= 108 {
            bail!("{} is too long for dockerd's sockets", dir.display());
        }
        let lock_path = lock_path();
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        eprintln!("docker-wake: waiting for {}", lock_path.display());
        let fd = lock.as_raw_fd();
        // SAFETY: flock on a descriptor this function owns; blocks a worker thread only.
        let r =
            tokio::task::spawn_blocking(move || unsafe { libc::flock(fd, libc::LOCK_EX) }).await?;
        if r != 0 {
            bail!("flock {}", lock_path.display());
        }
        let host = format!("unix://{}", dir.join("docker.sock").display());
        let log = std::fs::File::create(dir.join("dockerd.log"))?;
        let mut child = Command::new("dockerd")
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(&host)
            // Published ports on 127.0.0.1 only.
            .arg("--ip")
            .arg("127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("dockerd (scripts/bench.sh docker installs docker.io)")?;
        let pid = child.id().context("dockerd exited at once")?;
        let started = Instant::now();
        // The client checks the socket exists as it is made: not before dockerd makes it.
        let api = loop {
            if let Ok(api) = Docker::connect_with_host(&host)
                && api.ping().await.is_ok()
            {
                break Some(api);
            }
            // Exited: another dockerd on these directories, or a bad flag; its log says.
            if child.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(60) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let Some(api) = api else {
            signal(pid, libc::SIGTERM);
            let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
            bail!(
                "dockerd did not answer; see {}",
                dir.join("dockerd.log").display()
            );
        };
        let d = Dockerd {
            host,
            api: api.negotiate_version().await?,
            child,
            pid,
            _lock: lock,
        };
        Ok(d)
    }

    /// Runs the docker CLI against this daemon; its stdout.
    pub(crate) async fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .await?;
        if !out.status.success() {
            bail!(
                "docker {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Builds the test image of `engine` (`postgres` or `mariadb`) as `torpor-bench/<engine>`.
    pub(crate) async fn image(
        &self,
        work: &Path,
        engine: &str,
        port: u16,
        stop: &str,
    ) -> Result<String> {
        let started = Instant::now();
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/docker");
        let fs = work.join(format!("rootfs-{engine}"));
        let ok = Command::new("sh")
            .arg(scripts.join("rootfs.sh"))
            .arg(engine)
            .arg(&fs)
            .status()
            .await?
            .success();
        if !ok {
            bail!("rootfs.sh {engine} failed");
        }
        let tag = format!("torpor-bench/{engine}");
        let base = format!("{tag}-rootfs");
        let import = format!(
            "tar -C {} -c . | docker -H {} import - {base} >/dev/null",
            fs.display(),
            self.host
        );
        if !Command::new("sh")
            .arg("-c")
            .arg(&import)
            .status()
            .await?
            .success()
        {
            bail!("{import} failed");
        }
        // docker import takes no STOPSIGNAL: a build on top adds it.
        let ctx = work.join(format!("context-{engine}"));
        std::fs::create_dir_all(&ctx)?;
        std::fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM {base}\nENTRYPOINT [\"/docker-entrypoint.sh\"]\nEXPOSE {port}\nSTOPSIGNAL {stop}\n"
            ),
        )?;
        self.cli(&["build", "-q", "-t", &tag, &ctx.to_string_lossy()])
            .await?;
        let _ = std::fs::remove_dir_all(&fs);
        eprintln!("docker-wake: built {tag} in {:?}", started.elapsed());
        Ok(tag)
    }

    /// Removes every container and volume (all of them the bench's), then stops the daemon by
    /// its pid.
    pub(crate) async fn stop(mut self) {
        let ids = self.cli(&["ps", "-aq"]).await.unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = self.cli(&["rm", "-f", "-v", id]).await;
        }
        let volumes = self.cli(&["volume", "ls", "-q"]).await.unwrap_or_default();
        for v in volumes.split_whitespace() {
            let _ = self.cli(&["volume", "rm", v]).await;
        }
        signal(self.pid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            signal(self.pid, libc::SIGKILL);
            let _ = self.child.wait().await;
        }
        let _ = wait_gone(self.pid, Duration::from_secs(10)).await;
    }
}
