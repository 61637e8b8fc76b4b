//! What the PostgreSQL and MariaDB process-driver tests share: ports, directories, pids, the
//! users they create, and the test bodies that are the same for both servers.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use controller::driver::process::{MariadbProcess, PostgresProcess, ProcessConfig};
use controller::{BootstrapUser, Driver, DriverError};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

pub(crate) const BOB_PW: &str = "bob-secret-42";

pub(crate) fn free_port() -> u16 {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ SEQ.fetch_add(1, Ordering::SeqCst);
    loop {
        // xorshift: good enough to spread test ports
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 15000 + (x % 17000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `dir`, made traversable for the server's OS user (tempdir creates it 0700 for root).
pub(crate) fn traversable(dir: tempfile::TempDir) -> tempfile::TempDir {
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Where one test runs its server: a temp root the server's OS user can traverse, a data
/// directory in it (the driver makes it) and a free port.
pub(crate) struct Scratch {
    pub(crate) root: tempfile::TempDir,
    pub(crate) data: PathBuf,
    pub(crate) port: u16,
}

impl Scratch {
    pub(crate) fn new(root: tempfile::TempDir) -> Scratch {
        let root = traversable(root);
        let data = root.path().join("data");
        Scratch {
            root,
            data,
            port: free_port(),
        }
    }
}

/// A config with one server setting (the tests don't need crash safety).
pub(crate) fn config(data_dir: PathBuf, port: u16, setting: (&str, &str)) -> ProcessConfig {
    ProcessConfig {
        data_dir,
        port,
        bin_dir: None,
        run_as: None,
        settings: BTreeMap::from([(setting.0.to_string(), setting.1.to_string())]),
        tls: None,
        ca: None,
    }
}

/// alice, with a password built to trip SQL quoting, and bob, a superuser.
pub(crate) fn users(alice_password: &str) -> Vec<BootstrapUser> {
    vec![
        BootstrapUser {
            name: "alice".into(),
            password: alice_password.into(),
            hashed: false,
            superuser: false,
        },
        BootstrapUser {
            name: "bob".into(),
            password: BOB_PW.into(),
            hashed: false,
            superuser: true,
        },
    ]
}

pub(crate) fn kill0(pid: u32) -> Result<(), Errno> {
    kill(Pid::from_raw(pid as i32), None)
}

/// The process no longer exists, not even as a zombie.
pub(crate) fn assert_gone(pid: u32) {
    let err = kill0(pid).expect_err("pid still exists");
    assert_eq!(err, Errno::ESRCH);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

pub(crate) fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Waits until `pid` is gone or a zombie (a process we cannot reap is dead as a zombie).
pub(crate) fn wait_dead(pid: u32, within: Duration) {
    let deadline = Instant::now() + within;
    while !matches!(proc_state(pid), None | Some('Z')) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        matches!(proc_state(pid), None | Some('Z')),
        "pid {pid} alive"
    );
}

/// The pid the running server wrote into `pid_file` in its data directory.
fn server_pid(data: &Path, pid_file: &str) -> u32 {
    let text = std::fs::read_to_string(data.join(pid_file)).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// A process driver, seen the way these tests look at it.
pub(crate) trait ProcessDriver: Driver {
    /// The pid the driver reports for its server (what the admin API shows as backend_pid).
    fn pid(&self) -> Option<u32>;
    fn log(&self) -> PathBuf;
    /// The pid the running server wrote into its pid file, which a test compares with
    /// [`ProcessDriver::pid`].
    fn server_pid(&self) -> u32;
    /// Lets go of the running server without stopping it, as a crashed torpor would.
    async fn abandon(&self) -> Option<u32>
    where
        Self: Sized;
}

// The drivers are one generic type whose name the crate keeps to itself: each alias in turn.
macro_rules! process_driver {
    ($($driver:ty: $pid_file:literal),*) => {$(
        impl ProcessDriver for $driver {
            fn pid(&self) -> Option<u32> {
                self.process_status().pid
            }
            fn log(&self) -> PathBuf {
                self.log_path()
            }
            fn server_pid(&self) -> u32 {
                server_pid(&self.process_status().data_dir, $pid_file)
            }
            async fn abandon(&self) -> Option<u32> {
                <$driver>::abandon(self).await
            }
        }
    )*};
}

process_driver!(PostgresProcess: "postmaster.pid", MariadbProcess: "mariadbd.pid");

/// Starts `driver` after its server `old` ended or was stopped: a new server, whose pid the
/// driver reports. Its pid; how long the start took goes to the test's output as `what`.
pub(crate) async fn started_anew(driver: &impl ProcessDriver, old: u32, what: &str) -> u32 {
    let t = Instant::now();
    driver.start().await.unwrap();
    eprintln!("{what}: {:?}", t.elapsed());
    let pid = driver.server_pid();
    assert_eq!(driver.pid(), Some(pid));
    assert_ne!(pid, old);
    pid
}

/// Stops `driver`'s server `pid`, listening at `addr`: it is gone, and a second stop has
/// nothing to do. Then a driver from `make` prepares the data directory that is there now and
/// starts a server on it; the first driver goes before, as its torpor would: it holds the
/// directory's lock while it lives. The new driver and its server's pid.
pub(crate) async fn stop_and_start_over<D: ProcessDriver>(
    driver: D,
    make: impl Fn() -> D,
    (pid, addr): (u32, SocketAddr),
) -> (D, u32) {
    let t = Instant::now();
    driver.stop().await.unwrap();
    eprintln!("stop: {:?}", t.elapsed());
    assert_gone(pid);
    assert_eq!(driver.pid(), None);
    assert!(!driver.status().await.is_running());
    assert!(TcpStream::connect(addr).is_err());
    driver.stop().await.unwrap();
    drop(driver);

    let again = make();
    let t = Instant::now();
    again.prepare().await.unwrap();
    eprintln!("prepare on existing data: {:?}", t.elapsed());
    let pid2 = started_anew(&again, pid, "start on existing data").await;
    (again, pid2)
}

/// Stops the server `pid` of a driver whose users have the passwords of [`users`]: it is gone,
/// and its log holds neither password. The log.
pub(crate) async fn stopped_without_secrets(driver: &impl ProcessDriver, pid: u32) -> String {
    driver.stop().await.unwrap();
    assert_gone(pid);
    let log = std::fs::read_to_string(driver.log()).unwrap();
    assert!(!log.contains("tricky") && !log.contains(BOB_PW), "{log}");
    log
}

/// A driver on a directory that holds a server already (made and left running by an earlier
/// driver, as by a crashed torpor): its prepare stops that leftover, and its start runs a
/// server of its own. `make` builds a driver on the directory; `settle` waits for whatever the
/// leftover's end still needs on this kind of server. The new driver, with its server running,
/// the leftover's pid and the new one's.
pub(crate) async fn the_successor_of_a_crashed_run<D: ProcessDriver>(
    make: impl Fn() -> D,
    settle: impl FnOnce(u32),
) -> (D, u32, u32) {
    let first = make();
    first.prepare().await.unwrap();
    let info = first.start().await.unwrap();
    let old = first.server_pid();
    assert_eq!(first.pid(), Some(old));
    assert_eq!(ProcessDriver::abandon(&first).await, Some(old));
    assert_eq!(first.pid(), None);
    kill0(old).unwrap();
    TcpStream::connect(info.addr).unwrap();

    let second = make();
    let t = Instant::now();
    second.prepare().await.unwrap();
    eprintln!("prepare stopping a leftover: {:?}", t.elapsed());
    // The leftover is still this test process's child (tokio reaps it in the background), so
    // right after prepare it may briefly be a zombie; it must not be running.
    assert!(matches!(proc_state(old), None | Some('Z')));
    settle(old);

    let new = started_anew(&second, old, "start after the leftover").await;
    // Where the leftover listened.
    TcpStream::connect(info.addr).unwrap();
    (second, old, new)
}

/// A bin_dir that isn't there fails prepare and start alike, naming it.
pub(crate) async fn bin_dir_is_refused(driver: &impl ProcessDriver, bin_dir: &str) {
    for err in [
        driver.prepare().await.unwrap_err(),
        driver.start().await.unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(matches!(err, DriverError::Failed(_)), "{msg}");
        assert!(msg.contains(bin_dir), "{msg}");
    }
}

/// A server prepared with `cfg`, then started with `option` added, which makes it exit at
/// start: the start fails, naming the exit and the option, and leaves no pid. How long the
/// failed start took.
pub(crate) async fn exits_at_start<D: ProcessDriver>(
    make: impl Fn(ProcessConfig) -> D,
    mut cfg: ProcessConfig,
    option: (&str, &str),
) -> Duration {
    let driver = make(cfg.clone());
    driver.prepare().await.unwrap();
    cfg.settings.insert(option.0.into(), option.1.into());
    drop(driver);
    let driver = make(cfg);
    let t = Instant::now();
    let err = driver.start().await.unwrap_err().to_string();
    let took = t.elapsed();
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains(option.0), "{err}");
    assert_eq!(driver.pid(), None);
    took
}

/// Prepares, then starts and stops the server once per round, each call first cut short after
/// that round's milliseconds: the cut call goes on, so the next one returns its server or finds
/// nothing left to stop. One server per round, never two racing for the data directory: the
/// log says `started` once a round. The log, for the caller's further checks.
pub(crate) async fn cut_short_starts_and_stops(
    driver: &impl ProcessDriver,
    rounds: &[u64],
    started: &str,
) -> String {
    driver.prepare().await.unwrap();
    for &wait_ms in rounds {
        let cut = tokio::time::timeout(Duration::from_millis(wait_ms), driver.start()).await;
        // The start went on: the next call returns that same server.
        let info = driver.start().await.unwrap();
        if let Ok(first) = cut {
            assert_eq!(first.unwrap(), info);
        }
        let pid = driver.server_pid();
        assert_eq!(driver.pid(), Some(pid));
        TcpStream::connect(info.addr).unwrap();

        let _ = tokio::time::timeout(Duration::from_millis(wait_ms), driver.stop()).await;
        // So did the stop: this call waits for it and finds nothing left to do.
        driver.stop().await.unwrap();
        assert_eq!(driver.pid(), None);
        assert_gone(pid);
    }
    let log = std::fs::read_to_string(driver.log()).unwrap();
    assert_eq!(log.matches(started).count(), rounds.len(), "{log}");
    log
}

/// A test that kills the parent of a server: the ignored `helper` test, run in a process of its
/// own, starts the server where `{env}_DATA` and `{env}_PORT` say and prints `{marker} <pid>`.
pub(crate) struct ParentTest {
    pub(crate) helper: &'static str,
    pub(crate) env: &'static str,
    pub(crate) marker: &'static str,
}

/// The helper of `test`: prepares and starts a server with `driver`, prints its pid and waits
/// to be killed. Run as a test of its own, it does nothing.
pub(crate) async fn start_for_parent(
    test: &ParentTest,
    driver: impl FnOnce(PathBuf, u16) -> Box<dyn ProcessDriver>,
) {
    let Ok(data) = std::env::var(format!("{}_DATA", test.env)) else {
        return;
    };
    let port: u16 = std::env::var(format!("{}_PORT", test.env))
        .unwrap()
        .parse()
        .unwrap();
    let driver = driver(data.into(), port);
    driver.prepare().await.unwrap();
    driver.start().await.unwrap();
    println!("{} {}", test.marker, driver.pid().unwrap());
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Runs the helper of `test` on `s`, waits for the pid of the server it started, then
/// SIGKILLs it: no destructor, no stop() runs. The server must then end by itself within
/// `within`, cleanly: without the pid file `pid_file`. What it logged to `log_file` in its data
/// dir, for the caller to check how it stopped.
pub(crate) fn a_killed_parent_takes_its_server_down(
    test: &ParentTest,
    s: &Scratch,
    pid_file: &str,
    log_file: &str,
    within: Duration,
) -> String {
    let pid = kill_the_parent_of_a_server(test, &s.data, s.port);
    let t = Instant::now();
    // Reparented to init, which may or may not reap it; a zombie is a dead process.
    wait_dead(pid, within);
    eprintln!("server gone after its parent was killed: {:?}", t.elapsed());
    assert!(!s.data.join(pid_file).exists());
    std::fs::read_to_string(s.data.join(log_file)).unwrap()
}

/// The pid of the server the helper started, still running when the helper was killed.
fn kill_the_parent_of_a_server(test: &ParentTest, data: &Path, port: u16) -> u32 {
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test.helper, "--ignored", "--nocapture"])
        .env(format!("{}_DATA", test.env), data)
        .env(format!("{}_PORT", test.env), port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(parent.stdout.take().unwrap()).lines();
    let prefix = format!("{} ", test.marker);
    let pid: u32 = loop {
        let line = lines
            .next()
            .expect("helper exited without starting its server")
            .unwrap();
        if let Some(p) = line.strip_prefix(&prefix) {
            break p.parse().unwrap();
        }
    };
    kill0(pid).unwrap();
    TcpStream::connect(("127.0.0.1", port)).unwrap();
    parent.kill().unwrap();
    parent.wait().unwrap();
    pid
}

/// A server these tests need is missing. In CI (`CI=true`) that is a failure: a suite that
/// skips itself there would pass without testing anything. Elsewhere the test skips.
pub(crate) fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}, and CI=true: this test must run here (scripts/test.sh installs it)");
    }
    eprintln!("skipping: {what}");
}
