//! The MariaDB process driver against a real mariadbd (run as the `mysql` OS user when the
//! tests run as root). Skipped, with a message, where mariadbd is not installed.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    BOB_PW, ParentTest, ProcessDriver, Scratch, assert_gone, start_for_parent, wait_dead,
};
use controller::driver::process::{MariadbProcess, ProcessConfig};
use controller::{BackendState, BootstrapUser, Driver};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Quotes, backslashes, a semicolon, a newline and non-ASCII: everything naive SQL building or
/// the bootstrap reader would trip on.
const ALICE_PW: &str = "it's \"tricky\" \\' ;\nDROP USER x; ü";
const PID_FILE: &str = "mariadbd.pid";

fn have_mariadb() -> bool {
    let ok = Path::new("/usr/sbin/mariadbd").exists() || Path::new("/usr/bin/mariadbd").exists();
    if !ok {
        common::missing("mariadbd is not installed (apt-get install mariadb-server)");
    }
    ok
}

/// A temp dir the `mysql` user can traverse, with a data dir to be and a port; None (the test
/// skips) without mariadbd.
fn scratch() -> Option<Scratch> {
    have_mariadb().then(|| {
        Scratch::new(
            tempfile::Builder::new()
                .prefix("torpor-mdb")
                .tempdir_in("/tmp")
                .unwrap(),
        )
    })
}

fn config(data_dir: PathBuf, port: u16) -> ProcessConfig {
    // The tests' crash-safety needs are nil; this keeps commit latency out of the timings.
    common::config(data_dir, port, ("innodb_flush_log_at_trx_commit", "0"))
}

fn users() -> Vec<BootstrapUser> {
    common::users(ALICE_PW)
}

/// A driver for `s`'s data dir and port.
fn driver(name: &str, s: &Scratch, users: Vec<BootstrapUser>) -> MariadbProcess {
    MariadbProcess::new(name, config(s.data.clone(), s.port), users)
}

fn mariadb(port: u16, user: &str, password: &str, sql: &str) -> Output {
    Command::new("mariadb")
        .arg("--no-defaults")
        .args(["-h127.0.0.1", &format!("-P{port}"), &format!("-u{user}")])
        .arg(format!("--password={password}"))
        .args(["--connect-timeout=5", "-N", "-B", "-e", sql])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn mariadb_ok(port: u16, user: &str, password: &str, sql: &str) -> String {
    let out = mariadb(port, user, password, sql);
    assert!(
        out.status.success(),
        "mariadb as {user} failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn mariadb_err(port: u16, user: &str, password: &str, sql: &str) -> String {
    let out = mariadb(port, user, password, sql);
    assert!(!out.status.success(), "{user} could run {sql:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn install_users_start_stop_restart() {
    let Some(s) = scratch() else { return };
    // Two missing levels: the driver creates the parents too.
    let data = s.root.path().join("clusters").join("app");
    let port = s.port;
    let driver = MariadbProcess::new("app", config(data.clone(), port), users());
    assert_eq!(driver.pid(), None);
    assert!(!driver.status().await.is_running());

    let t = Instant::now();
    driver.prepare().await.unwrap();
    eprintln!("prepare (install-db + users): {:?}", t.elapsed());
    assert!(data.join("torpor-bootstrap.done").exists());
    assert!(!data.join("torpor-init.pending").exists());
    assert!(data.join("mysql").is_dir());
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);

    let t = Instant::now();
    let info = driver.start().await.unwrap();
    let ready = t.elapsed();
    assert_eq!(
        mariadb_ok(port, "alice", ALICE_PW, "SELECT CURRENT_USER()"),
        "alice@%"
    );
    eprintln!(
        "start -> ready: {ready:?}; -> first query done: {:?}",
        t.elapsed()
    );
    let pid = driver.server_pid();
    assert_eq!(driver.pid(), Some(pid));
    assert!(driver.status().await.is_running());
    assert_eq!(info.addr.to_string(), format!("127.0.0.1:{port}"));
    // A second start while running returns the same backend.
    assert_eq!(driver.start().await.unwrap(), info);

    // alice: everything on the cluster database, nothing elsewhere.
    mariadb_ok(
        port,
        "alice",
        ALICE_PW,
        "CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t VALUES (1, 'kept')",
    );
    mariadb_ok(port, "bob", BOB_PW, "CREATE DATABASE other");
    let denied = mariadb_err(port, "alice", ALICE_PW, "CREATE TABLE other.t (id INT)");
    assert!(denied.contains("denied"), "{denied}");
    let denied = mariadb_err(port, "alice", ALICE_PW, "CREATE DATABASE mine");
    assert!(denied.contains("denied"), "{denied}");
    // bob: superuser, with grant option.
    let grants = mariadb_ok(port, "bob", BOB_PW, "SHOW GRANTS");
    assert!(
        grants.contains("GRANT ALL PRIVILEGES ON *.* TO `bob`@`%`")
            && grants.contains("WITH GRANT OPTION"),
        "{grants}"
    );
    mariadb_ok(port, "bob", BOB_PW, "CREATE TABLE other.t (id INT)");
    // Passwords are checked; root has no password login over TCP.
    let wrong = mariadb_err(port, "alice", "not-the-password", "SELECT 1");
    assert!(wrong.contains("Access denied"), "{wrong}");
    let wrong = mariadb_err(port, "bob", "", "SELECT 1");
    assert!(wrong.contains("Access denied"), "{wrong}");
    let root_tcp = mariadb_err(port, "root", "", "SELECT 1");
    assert!(root_tcp.contains("Access denied"), "{root_tcp}");
    // The plugin the checkpoint relies on is loaded; no binary log.
    assert_eq!(
        mariadb_ok(
            port,
            "bob",
            BOB_PW,
            "SELECT COUNT(*) >= 0 FROM information_schema.METADATA_LOCK_INFO; SELECT @@log_bin, \
             @@skip_name_resolve, @@innodb_buffer_pool_size"
        ),
        format!("1\n0\t1\t{}", 32 * 1024 * 1024)
    );

    // Existing data directory: no install-db, the users and the data are still there.
    let next = || MariadbProcess::new("app", config(data.clone(), port), users());
    let (again, pid2) = common::stop_and_start_over(driver, next, (pid, info.addr)).await;
    assert_eq!(
        mariadb_ok(port, "alice", ALICE_PW, "SELECT v FROM app.t WHERE id = 1"),
        "kept"
    );
    assert_eq!(
        mariadb_ok(port, "bob", BOB_PW, "SELECT CURRENT_USER()"),
        "bob@%"
    );
    let log = common::stopped_without_secrets(&again, pid2).await;
    assert!(log.contains("ready for connections"), "{log}");
}

#[tokio::test]
async fn prepare_stops_a_server_left_by_a_crashed_run() {
    let Some(s) = scratch() else { return };
    let (second, _, new) =
        common::the_successor_of_a_crashed_run(|| driver("orphan", &s, users()), |_| {}).await;
    assert_eq!(
        mariadb_ok(s.port, "bob", BOB_PW, "SELECT CURRENT_USER()"),
        "bob@%"
    );
    second.stop().await.unwrap();
    assert_gone(new);
    // Normal shutdowns (SIGTERM), not SIGKILLs: the leftover's and the second server's.
    let log = std::fs::read_to_string(second.log_path()).unwrap();
    assert_eq!(log.matches("Normal shutdown").count(), 2, "{log}");
}

#[tokio::test]
async fn a_killed_server_is_not_alive_and_starts_again() {
    let Some(s) = scratch() else { return };
    let (data, port) = (s.data.clone(), s.port);
    let mut cfg = config(data.clone(), port);
    // Durable commits: the row must survive the kill.
    cfg.settings.clear();
    let driver = MariadbProcess::new("crash", cfg, users());
    driver.prepare().await.unwrap();
    driver.start().await.unwrap();
    mariadb_ok(
        port,
        "alice",
        ALICE_PW,
        "CREATE TABLE crash.t (id INT); INSERT INTO crash.t VALUES (7)",
    );
    let pid = driver.server_pid();
    assert_eq!(driver.pid(), Some(pid));
    assert!(driver.status().await.is_running());
    assert_eq!(kill(Pid::from_raw(pid as i32), Signal::SIGKILL), Ok(()));
    wait_dead(pid, Duration::from_secs(5));
    assert!(!driver.status().await.is_running());
    // Recorded until the next start replaces it, and known to have ended on its own.
    let status = driver.status().await;
    assert_eq!(status.state, BackendState::Exited);
    assert_eq!(status.details["pid"], pid);

    // Crash recovery on the next start; the committed row is back.
    let pid2 = common::started_anew(&driver, pid, "start after kill -9").await;
    assert!(driver.status().await.is_running());
    assert_eq!(
        mariadb_ok(port, "alice", ALICE_PW, "SELECT id FROM crash.t"),
        "7"
    );
    driver.stop().await.unwrap();
    assert_gone(pid2);
}

#[tokio::test]
async fn a_cut_short_initialisation_is_redone_and_an_existing_one_adopted() {
    let Some(s) = scratch() else { return };
    let (data, port) = (s.data.clone(), s.port);
    let driver = MariadbProcess::new("redo", config(data.clone(), port), vec![]);
    driver.prepare().await.unwrap();
    driver.start().await.unwrap();
    driver.stop().await.unwrap();

    // As if torpor died after install-db, before the bootstrap finished: wiped and redone.
    std::fs::remove_file(data.join("torpor-bootstrap.done")).unwrap();
    std::fs::write(data.join("torpor-init.pending"), "").unwrap();
    std::fs::create_dir(data.join("junk")).unwrap();
    drop(driver);
    let driver = MariadbProcess::new("redo", config(data.clone(), port), users());
    driver.prepare().await.unwrap();
    assert!(!data.join("junk").exists());
    assert!(!data.join("torpor-init.pending").exists());
    driver.start().await.unwrap();
    mariadb_ok(
        port,
        "alice",
        ALICE_PW,
        "CREATE TABLE redo.t (id INT); INSERT INTO redo.t VALUES (1)",
    );
    driver.stop().await.unwrap();

    // A data directory without our markers (made elsewhere): kept, users (re)created.
    std::fs::remove_file(data.join("torpor-bootstrap.done")).unwrap();
    let other: Vec<BootstrapUser> = vec![BootstrapUser {
        name: "carol".into(),
        password: "carol-pw".into(),
        hashed: false,
        superuser: false,
    }];
    drop(driver);
    let driver = MariadbProcess::new("redo", config(data.clone(), port), other);
    driver.prepare().await.unwrap();
    assert!(data.join("torpor-bootstrap.done").exists());
    driver.start().await.unwrap();
    assert_eq!(
        mariadb_ok(port, "carol", "carol-pw", "SELECT id FROM redo.t"),
        "1"
    );
    assert_eq!(
        mariadb_ok(port, "alice", ALICE_PW, "SELECT COUNT(*) FROM redo.t"),
        "1"
    );
    driver.stop().await.unwrap();
}

#[tokio::test]
async fn a_foreign_directory_is_not_initialised_over() {
    let Some(s) = scratch() else { return };
    let data = &s.data;
    std::fs::create_dir(data).unwrap();
    std::fs::write(data.join("precious.txt"), "keep me").unwrap();
    let driver = driver("foreign", &s, users());
    let msg = driver.prepare().await.unwrap_err().to_string();
    assert!(msg.contains("not empty"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(data.join("precious.txt")).unwrap(),
        "keep me"
    );
}

#[tokio::test]
async fn bad_settings_and_bin_dir_are_clear_errors() {
    let Some(s) = scratch() else { return };
    let mut cfg = config(s.data.clone(), s.port);
    cfg.bin_dir = Some("/nonexistent/mariadb/bin".into());
    let driver = MariadbProcess::new("bad", cfg, users());
    common::bin_dir_is_refused(&driver, "/nonexistent/mariadb/bin").await;
    drop(driver);
    let mut cfg = config(s.data.clone(), s.port);
    cfg.settings.insert("bind_address".into(), "0.0.0.0".into());
    let msg = MariadbProcess::new("bad", cfg, users())
        .prepare()
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("managed by torpor"), "{msg}");
    assert!(!s.data.exists());
}

#[tokio::test]
async fn a_server_that_exits_at_start_reports_its_log() {
    let Some(s) = scratch() else { return };
    let took = common::exits_at_start(
        |cfg| MariadbProcess::new("exits", cfg, vec![]),
        config(s.data.clone(), s.port),
        ("no_such_option_torpor", "1"),
    )
    .await;
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test]
async fn a_cancelled_start_or_stop_still_completes() {
    let Some(s) = scratch() else { return };
    let driver = driver("cancel", &s, vec![]);
    let rounds = [0, 5, 50];
    let log = common::cut_short_starts_and_stops(&driver, &rounds, "ready for connections").await;
    assert!(!log.contains("[ERROR]"), "{log}");
}

const DEATHSIG: ParentTest = ParentTest {
    helper: "mariadb_deathsig_helper",
    env: "TORPOR_TEST_MDB_DEATHSIG",
    marker: "MARIADBD_PID",
};

/// Runs only as a subprocess of `a_killed_parent_takes_mariadbd_down`: starts mariadbd, says
/// its pid, and waits to be SIGKILLed.
#[tokio::test]
#[ignore]
async fn mariadb_deathsig_helper() {
    start_for_parent(&DEATHSIG, |data, port| {
        Box::new(MariadbProcess::new("deathsig", config(data, port), users()))
    })
    .await;
}

#[test]
fn a_killed_parent_takes_mariadbd_down() {
    let Some(s) = scratch() else { return };
    let log = common::a_killed_parent_takes_its_server_down(
        &DEATHSIG,
        &s,
        PID_FILE,
        "torpor-mariadb.log",
        Duration::from_secs(30),
    );
    // A normal shutdown (SIGTERM), not a crash.
    assert!(log.contains("Normal shutdown"), "{log}");
}
