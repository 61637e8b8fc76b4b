//! A Docker daemon of the tests' own, and test images built here without a registry.
//!
//! [`daemon`] starts `dockerd` with its own data-root, exec-root and socket under `target/docker/`
//! (one at a time on this machine: a lock file; shared by the tests that run at once, except
//! for [`own_daemon`]'s), and [`Daemon`]'s drop removes its containers, networks and volumes by
//! id and stops it by pid. Its images stay in the data-root, so each is built once: [`image`] names them by a
//! hash of what they are made of (tests/docker/*.sh and the host's server binaries). They are
//! the host's own postgres 15 and mariadbd copied into a small root filesystem with busybox,
//! and an entrypoint that behaves like the official `postgres` and `mariadb` images'.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bollard::Docker;

use crate::harness::{PASSWORD, Protocol, SLOW, TestConfig, USER};

/// The password of MariaDB's root in the test images.
pub const ROOT_PASSWORD: &str = "root-secret-pw";

/// `target/docker`: the daemon's directories and lock.
pub fn dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test binary lives in target/<profile>/deps");
    target.join("docker")
}

/// A running dockerd of the tests'.
pub struct Daemon {
    pub host: String,
    dir: PathBuf,
    pid: Mutex<Option<u32>>,
    /// The exclusive lock on `$TMPDIR/torpor-tests-dockerd.lock`, held while this daemon is
    /// the one on this machine.
    _lock: std::fs::File,
}

static SHARED: Mutex<Weak<Daemon>> = Mutex::new(Weak::new());

/// The tests' daemon, started if none runs in this process.
pub async fn daemon() -> Arc<Daemon> {
    // One start at a time: the first caller starts it, the others wait and share it.
    static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _starting = STARTING.lock().await;
    if let Some(d) = SHARED.lock().unwrap().upgrade() {
        return d;
    }
    let d = Arc::new(tokio::task::spawn_blocking(Daemon::start).await.unwrap());
    *SHARED.lock().unwrap() = Arc::downgrade(&d);
    d
}

/// A daemon of the caller's alone, for a test that stops it: it waits until no other test of
/// this process (or of another) holds one.
pub async fn own_daemon() -> Arc<Daemon> {
    Arc::new(tokio::task::spawn_blocking(Daemon::start).await.unwrap())
}

impl Daemon {
    fn start() -> Daemon {
        let dir = dir();
        // The longest Unix socket path dockerd makes there; the kernel takes 107 bytes.
        let longest = dir.join("exec/containerd/containerd.sock.ttrpc");
        assert!(
            longest.as_os_str().len() < 108,
            "{} is too long a path for dockerd's sockets: use a shorter CARGO_TARGET_DIR",
            longest.display()
        );
        std::fs::create_dir_all(&dir).unwrap();
        // Machine-wide, not per target dir: two dockerds both take the docker0 bridge, and
        // the containers of both become unreachable.
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("torpor-tests-dockerd.lock"))
            .unwrap();
        // Another test binary (cargo runs them one after another, but a developer may not, and
        // another checkout's tests may run at once) has its daemon: wait for it to finish.
        // SAFETY: flock on a descriptor this function owns.
        let r = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "lock {}", dir.display());
        let d = Daemon {
            host: format!("unix://{}", dir.join("docker.sock").display()),
            dir,
            pid: Mutex::new(None),
            _lock: lock,
        };
        d.stop_leftover();
        d.run();
        // What a run killed before its drop left in the data-root.
        d.clean();
        d
    }

    /// A dockerd an earlier run left (killed before its drop): ours, since we hold the lock.
    fn stop_leftover(&self) {
        let Some(pid) = std::fs::read_to_string(self.dir.join("dockerd.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        else {
            return;
        };
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.contains(&*self.dir.to_string_lossy()) {
            terminate(pid);
        }
    }

    /// Starts dockerd and waits until it answers.
    fn run(&self) {
        let started = Instant::now();
        let log = std::fs::File::create(self.dir.join("dockerd.log")).unwrap();
        let child = std::process::Command::new("dockerd")
            .arg("--data-root")
            .arg(self.dir.join("root"))
            .arg("--exec-root")
            .arg(self.dir.join("exec"))
            .arg("--pidfile")
            .arg(self.dir.join("dockerd.pid"))
            .arg("--host")
            .arg(&self.host)
            // Nothing of the daemon's own on any other address.
            .arg("--ip")
            .arg("127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("dockerd (scripts/test.sh installs docker.io): {e}"));
        let pid = child.id();
        // The child is waited for by pid in terminate(); std's handle is not needed.
        drop(child);
        *self.pid.lock().unwrap() = Some(pid);
        loop {
            let ok = std::process::Command::new("docker")
                .args([
                    "-H",
                    &self.host,
                    "version",
                    "--format",
                    "{{.Server.Version}}",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            assert!(
                started.elapsed() < SLOW,
                "dockerd did not answer; see {}",
                self.dir.join("dockerd.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("dockerd up in {:?}", started.elapsed());
    }

    /// A client of this daemon's API.
    pub async fn api(&self) -> Docker {
        Docker::connect_with_host(&self.host)
            .unwrap()
            .negotiate_version()
            .await
            .unwrap()
    }

    /// Runs the docker CLI against this daemon; its stdout, or a panic with its stderr.
    pub async fn cli(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new("docker")
            .arg("-H")
            .arg(&self.host)
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the daemon, as an operator or a crash would; [`Daemon::restart`] brings it back.
    pub fn stop(&self) {
        if let Some(pid) = self.pid.lock().unwrap().take() {
            terminate(pid);
        }
    }

    pub fn restart(&self) {
        assert!(self.pid.lock().unwrap().is_none(), "running already");
        self.run();
    }

    /// Whether the container `name` runs, asked of the API.
    pub async fn running(&self, name: &str) -> Option<bool> {
        let c = self.api().await.inspect_container(name, None).await.ok()?;
        c.state.and_then(|s| s.running)
    }

    /// The container's status word (`running`, `paused`, `exited`), asked of the API.
    pub async fn status(&self, name: &str) -> Option<String> {
        let c = self.api().await.inspect_container(name, None).await.ok()?;
        c.state.and_then(|s| s.status).map(|s| s.to_string())
    }

    /// Removes every container, user network and volume, by id: all of them are the tests'.
    fn clean(&self) {
        let cli = |args: &[&str]| -> Vec<String> {
            let out = std::process::Command::new("docker")
                .arg("-H")
                .arg(&self.host)
                .args(args)
                .output();
            out.map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
        };
        for id in cli(&["ps", "-aq"]) {
            cli(&["rm", "-f", "-v", &id]);
        }
        for id in cli(&["network", "ls", "-q", "--filter", "type=custom"]) {
            cli(&["network", "rm", &id]);
        }
        for name in cli(&["volume", "ls", "-q"]) {
            cli(&["volume", "rm", &name]);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.pid.lock().unwrap().is_some() {
            self.clean();
        }
        self.stop();
    }
}

/// SIGTERM to `pid`, then waits until it is gone (SIGKILL after a minute).
fn terminate(pid: u32) {
    // SAFETY: kill(2) on a dockerd pid this module started (or found in its own pid file).
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: reaps our own child if it is one; harmless otherwise.
        let _ = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            // SAFETY: as above.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Which test image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    Postgres,
    Mariadb,
}

impl Image {
    pub fn of(protocol: Protocol) -> Image {
        match protocol {
            Protocol::Postgres => Image::Postgres,
            Protocol::Mysql => Image::Mariadb,
        }
    }

    fn engine(self) -> &'static str {
        match self {
            Image::Postgres => "postgres",
            Image::Mariadb => "mariadb",
        }
    }

    fn port(self) -> u16 {
        match self {
            Image::Postgres => 5432,
            Image::Mariadb => 3306,
        }
    }

    /// What the official image stops its server with: postgres's fast shutdown.
    fn stop_signal(self) -> &'static str {
        match self {
            Image::Postgres => "SIGINT",
            Image::Mariadb => "SIGTERM",
        }
    }

    /// The server binary whose build the image copies: part of its tag.
    fn server(self) -> &'static str {
        match self {
            Image::Postgres => "/usr/lib/postgresql/15/bin/postgres",
            Image::Mariadb => "/usr/sbin/mariadbd",
        }
    }
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
}

/// The test image's name, built on `daemon` unless it has it already.
pub async fn image(daemon: &Daemon, which: Image) -> String {
    let server = std::fs::metadata(which.server()).unwrap();
    let dockerfile = format!(
        "ENTRYPOINT [\"/docker-entrypoint.sh\"]\nEXPOSE {}\nSTOPSIGNAL {}\n",
        which.port(),
        which.stop_signal()
    );
    build(
        daemon,
        which.engine(),
        None,
        &dockerfile,
        (server.len(), server.modified().unwrap()),
    )
    .await
}

/// An image of `rootfs.sh engine DIR [bin]` with the `dockerfile` lines on top, tagged
/// `torpor-test/<engine>:<hash>` of the scripts, `bin`'s size and time, the lines and `more`.
pub async fn build(
    daemon: &Daemon,
    engine: &str,
    bin: Option<&Path>,
    dockerfile: &str,
    more: impl Hash,
) -> String {
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = BUILDING.lock().await;
    let mut h = DefaultHasher::new();
    for f in ["rootfs.sh".to_string(), format!("entrypoint-{engine}.sh")] {
        std::fs::read(scripts().join(f))
            .unwrap_or_default()
            .hash(&mut h);
    }
    if let Some(b) = bin {
        let m = std::fs::metadata(b).unwrap();
        (m.len(), m.modified().unwrap()).hash(&mut h);
    }
    (dockerfile, more).hash(&mut h);
    let tag = format!("torpor-test/{engine}:{:016x}", h.finish());
    let api = daemon.api().await;
    if api.inspect_image(&tag).await.is_ok() {
        return tag;
    }
    let started = Instant::now();
    let fs = daemon.dir.join(format!("rootfs-{engine}"));
    let _ = std::fs::remove_dir_all(&fs);
    let mut script = tokio::process::Command::new("sh");
    script.arg(scripts().join("rootfs.sh")).arg(engine).arg(&fs);
    if let Some(b) = bin {
        script.arg(b);
    }
    assert!(
        script.status().await.unwrap().success(),
        "rootfs.sh {engine}"
    );
    // docker import takes no STOPSIGNAL: a build on top adds the image's settings.
    let base = format!("{tag}-rootfs");
    let import = format!(
        "tar -C {} -c . | docker -H {} import - {base} >/dev/null",
        fs.display(),
        daemon.host,
    );
    let ok = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&import)
        .status()
        .await
        .unwrap()
        .success();
    assert!(ok, "{import}");
    let ctx = daemon.dir.join(format!("context-{engine}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), format!("FROM {base}\n{dockerfile}")).unwrap();
    daemon
        .cli(&["build", "-q", "-t", &tag, &ctx.to_string_lossy()])
        .await;
    let _ = std::fs::remove_dir_all(&fs);
    eprintln!("built {tag} in {:?}", started.elapsed());
    tag
}

/// The environment the official image of `protocol` makes the test's users and database from.
pub fn image_env(protocol: Protocol, database: &str) -> String {
    match protocol {
        Protocol::Postgres => format!(
            "{{ POSTGRES_USER = \"{USER}\", POSTGRES_PASSWORD = \"{PASSWORD}\", POSTGRES_DB = \"{USER}\" }}"
        ),
        Protocol::Mysql => format!(
            "{{ MARIADB_ROOT_PASSWORD = \"{ROOT_PASSWORD}\", MARIADB_USER = \"{USER}\", MARIADB_PASSWORD = \"{PASSWORD}\", MARIADB_DATABASE = \"{database}\" }}"
        ),
    }
}

/// What a test's docker backend is.
pub struct Backend {
    pub image: String,
    pub container: String,
    /// The port on 127.0.0.1 the container's server is published on.
    pub publish: u16,
}

impl Backend {
    /// A backend of the test image for `cfg`'s protocol, published on its backend port.
    pub async fn new(daemon: &Daemon, cfg: &TestConfig) -> Backend {
        Backend {
            image: image(daemon, Image::of(cfg.protocol)).await,
            container: format!("torpor-test-{}-{}", cfg.cluster, cfg.backend_port),
            publish: cfg.backend_port,
        }
    }

    /// `cfg`'s config with its `[cluster.backend]` replaced by this docker backend on `daemon`.
    pub fn configure(&self, daemon: &Daemon, cfg: &mut TestConfig) {
        let start = cfg.toml.find("[cluster.backend]").unwrap();
        let end = cfg.toml[start..].find("\n\n").unwrap() + start;
        let backend = format!(
            "[cluster.backend]\ndriver = \"docker\"\nhost = \"{}\"\nimage = \"{}\"\ncontainer = \"{}\"\npublish = {}\ntls = \"disable\"\ntimeout = \"90s\"\nenv = {}\n",
            daemon.host,
            self.image,
            self.container,
            self.publish,
            image_env(cfg.protocol, &cfg.cluster)
        );
        cfg.toml = format!("{}{backend}{}", &cfg.toml[..start], &cfg.toml[end..]);
    }
}
