//! What the protocol tests against real servers share: finding the server and its OS user, a
//! directory and a port for it, a MariaDB to talk to, and stopping it when the test is done.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server these tests need is missing. In CI (`CI=true`) that is a failure: a suite that
/// skips itself there would pass without testing anything. Elsewhere the test skips with a
/// message.
pub(crate) fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}, and CI=true: this test must run here (scripts/test.sh installs it)");
    }
    eprintln!("skipping: {what}");
}

/// A server a test started, in a directory of its own: stopped with `stop_signal` and waited
/// for when the test is done. When the test failed, the server's log is shown.
pub(crate) struct Server {
    child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) port: u16,
    stop_signal: &'static str,
}

impl Server {
    /// Starts `server` (its output goes to its own log, not the test's), which listens on
    /// `port` and keeps its files in `dir`.
    pub(crate) fn spawn(
        mut server: Command,
        dir: tempfile::TempDir,
        port: u16,
        stop_signal: &'static str,
    ) -> Self {
        let child = server
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Server {
            child,
            dir,
            port,
            stop_signal,
        }
    }

    /// Where the server's own log goes, for [`Server`] to show when a test fails.
    pub(crate) fn log(dir: &Path) -> PathBuf {
        dir.join("server.log")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(Server::log(self.dir.path()))
        {
            eprintln!("server log:\n{log}");
        }
        let _ = Command::new("kill")
            .arg(format!("-{}", self.stop_signal))
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Runs `what` to its end: it must succeed, or the test fails with what it printed.
pub(crate) fn run_ok(what: &mut Command) {
    let out = what.output().unwrap();
    assert!(
        out.status.success(),
        "{what:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The uid and gid of the OS user `name`, if there is one.
pub(crate) fn os_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.split(':').next() == Some(name))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

/// A temp dir the server's OS user owns, for its data, socket and log.
pub(crate) fn server_dir((uid, gid): (u32, u32)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    dir
}

pub(crate) fn free_port() -> u16 {
    loop {
        let p = 15000 + rand::random::<u16>() % 17000;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

const MARIADBD: &str = "/usr/sbin/mariadbd";
const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";

/// A fresh mariadbd on 127.0.0.1, run as the `mysql` user, accepting connections on its port and
/// on its socket ([`mariadb_socket`]); root logs in without a password over the socket. None
/// (the test skips) without MariaDB.
pub(crate) fn start_mariadb() -> Option<Server> {
    if !Path::new(MARIADBD).exists() || !Path::new(INSTALL_DB).exists() {
        missing(&format!("MariaDB is not installed ({MARIADBD})"));
        return None;
    }
    let Some(ids) = os_user("mysql") else {
        missing("there is no mysql OS user");
        return None;
    };
    let dir = server_dir(ids);
    let data = dir.path().join("data");
    // Each server gets its own tmpdir: a mariadbd starting up deletes every `#sql*` file in
    // its tmpdir, which in a shared /tmp are another test's server's temporary tables.
    let tmpdir = format!("--tmpdir={}", data.display());
    run_ok(
        Command::new(INSTALL_DB)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(&tmpdir)
            .args([
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ]),
    );
    let port = free_port();
    let sock = mariadb_socket(dir.path());
    let mut mariadbd = Command::new(MARIADBD);
    mariadbd
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(&tmpdir)
        .arg(format!("--port={port}"))
        .arg(format!("--socket={}", sock.display()))
        .arg(format!("--pid-file={}", dir.path().join("pid").display()))
        .arg(format!("--log-error={}", Server::log(dir.path()).display()))
        .args([
            "--bind-address=127.0.0.1",
            "--user=mysql",
            "--plugin-load-add=metadata_lock_info",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
        ]);
    let server = Server::spawn(mariadbd, dir, port, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() || !sock.exists() {
        assert!(Instant::now() < deadline, "mariadbd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

/// The Unix socket of the mariadbd [`start_mariadb`] runs in `dir`.
pub(crate) fn mariadb_socket(dir: &Path) -> PathBuf {
    dir.join("sock")
}
