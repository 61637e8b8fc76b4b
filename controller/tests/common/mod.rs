//! What the PostgreSQL and MariaDB process-driver tests share: ports, directories, pids, the
//! users they create, and the test bodies that are the same for both servers.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use controller::driver::process::{MariadbProcess, PostgresProcess, ProcessConfig};
use controller::{BootstrapUser, Driver};
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

/// A config with one server setting (the tests don't need crash safety).
pub(crate) fn config(data_dir: PathBuf, port: u16, setting: (&str, &str)) -> ProcessConfig {
    ProcessConfig {
        data_dir,
        port,
        bin_dir: None,
        run_as: None,
        settings: BTreeMap::from([(setting.0.to_string(), setting.1.to_string())]),
    }
}

/// alice, with a password built to trip SQL quoting, and bob, a superuser.
pub(crate) fn users(alice_password: &str) -> Vec<BootstrapUser> {
    vec![
        BootstrapUser {
            name: "alice".into(),
            password: alice_password.into(),
            superuser: false,
        },
        BootstrapUser {
            name: "bob".into(),
            password: BOB_PW.into(),
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
pub(crate) fn server_pid(data: &Path, pid_file: &str) -> u32 {
    let text = std::fs::read_to_string(data.join(pid_file)).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// A process driver, seen the way these tests look at it.
pub(crate) trait ProcessDriver: Driver {
    /// The pid the driver reports for its server (what the admin API shows as backend_pid).
    fn pid(&self) -> Option<u32>;
    fn log(&self) -> PathBuf;
}

impl ProcessDriver for PostgresProcess {
    fn pid(&self) -> Option<u32> {
        self.process_status().pid
    }
    fn log(&self) -> PathBuf {
        self.log_path()
    }
}

impl ProcessDriver for MariadbProcess {
    fn pid(&self) -> Option<u32> {
        self.process_status().pid
    }
    fn log(&self) -> PathBuf {
        self.log_path()
    }
}

/// Starts and stops a prepared server once per round, each call first cut short after that
/// round's milliseconds: the cut call goes on, so the next one returns its server or finds
/// nothing left to stop. The server's log, for the caller to check.
pub(crate) async fn cut_short_starts_and_stops(
    driver: &impl ProcessDriver,
    data: &Path,
    pid_file: &str,
    rounds: &[u64],
) -> String {
    for &wait_ms in rounds {
        let cut = tokio::time::timeout(Duration::from_millis(wait_ms), driver.start()).await;
        // The start went on: the next call returns that same server.
        let info = driver.start().await.unwrap();
        if let Ok(first) = cut {
            assert_eq!(first.unwrap(), info);
        }
        let pid = server_pid(data, pid_file);
        assert_eq!(driver.pid(), Some(pid));
        TcpStream::connect(info.addr).unwrap();

        let _ = tokio::time::timeout(Duration::from_millis(wait_ms), driver.stop()).await;
        // So did the stop: this call waits for it and finds nothing left to do.
        driver.stop().await.unwrap();
        assert_eq!(driver.pid(), None);
        assert_gone(pid);
    }
    std::fs::read_to_string(driver.log()).unwrap()
}

/// For a test that kills its parent: a helper test (run in a process of its own) prepares and
/// starts a server on `data` and `port`, which it reads from `{env}_DATA` and `{env}_PORT`,
/// prints `{marker} <pid>`, and waits to be killed.
pub(crate) async fn start_for_parent(
    env: &str,
    marker: &str,
    driver: impl FnOnce(PathBuf, u16) -> Box<dyn ProcessDriver>,
) {
    let Ok(data) = std::env::var(format!("{env}_DATA")) else {
        return;
    };
    let port: u16 = std::env::var(format!("{env}_PORT"))
        .unwrap()
        .parse()
        .unwrap();
    let driver = driver(data.into(), port);
    driver.prepare().await.unwrap();
    driver.start().await.unwrap();
    println!("{marker} {}", driver.pid().unwrap());
    tokio::time::sleep(Duration::from_secs(600)).await;
}

/// Runs the helper test `helper` (see [`start_for_parent`]) on `data` and `port`, waits for
/// the pid of the server it started, then SIGKILLs it: no destructor, no stop() runs. The
/// server's pid, still running when the helper was killed.
pub(crate) fn kill_the_parent_of_a_server(
    helper: &str,
    env: &str,
    marker: &str,
    data: &Path,
    port: u16,
) -> u32 {
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", helper, "--ignored", "--nocapture"])
        .env(format!("{env}_DATA"), data)
        .env(format!("{env}_PORT"), port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(parent.stdout.take().unwrap()).lines();
    let prefix = format!("{marker} ");
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
