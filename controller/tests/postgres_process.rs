//! The PostgreSQL process driver against real postgres binaries (run as the `postgres` OS user
//! when the tests run as root).

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{BOB_PW, ParentTest, ProcessDriver, Scratch, assert_gone, kill0, start_for_parent};
use controller::driver::process::{PostgresProcess, ProcessConfig};
use controller::{BootstrapUser, Driver, DriverError};

/// Quotes, a backslash, a semicolon and blank lines: everything that would break naive SQL
/// building or the `--single -j` statement terminator.
const ALICE_PW: &str = "it's \"tricky\" \\ ;\n\nDROP ROLE x;";
const PID_FILE: &str = "postmaster.pid";

/// A temp dir the `postgres` user can traverse, with a data dir to be and a port.
fn scratch() -> Scratch {
    Scratch::new(tempfile::tempdir().unwrap())
}

fn config(data_dir: PathBuf, port: u16) -> ProcessConfig {
    common::config(data_dir, port, ("fsync", "off"))
}

/// A driver for `s`'s data dir and port.
fn driver(name: &str, s: &Scratch, users: Vec<BootstrapUser>) -> PostgresProcess {
    PostgresProcess::new(name, config(s.data.clone(), s.port), users)
}

fn users() -> Vec<BootstrapUser> {
    common::users(ALICE_PW)
}

fn psql(port: u16, user: &str, password: &str, db: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            db,
        ])
        .args(["-X", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap()
}

fn psql_ok(port: u16, user: &str, password: &str, db: &str, sql: &str) -> String {
    let out = psql(port, user, password, db, sql);
    assert!(
        out.status.success(),
        "psql as {user} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Waits for a pid we cannot reap ourselves (another owner's child) to vanish.
fn wait_gone(pid: u32, within: Duration) {
    let deadline = Instant::now() + within;
    while kill0(pid).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_gone(pid);
}

#[tokio::test]
async fn initdb_users_start_stop_restart() {
    let s = scratch();
    // Two missing levels: the driver creates the parents too.
    let data = s.root.path().join("clusters").join("app");
    let port = s.port;
    let driver = PostgresProcess::new("app", config(data.clone(), port), users());
    assert_eq!(driver.pid(), None);

    let t = Instant::now();
    driver.prepare().await.unwrap();
    eprintln!("prepare (initdb + users): {:?}", t.elapsed());
    assert!(data.join("PG_VERSION").exists());
    let meta = std::fs::metadata(&data).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);

    let t = Instant::now();
    let info = driver.start().await.unwrap();
    eprintln!("start -> ready: {:?}", t.elapsed());
    let pid = driver.server_pid();
    assert_eq!(driver.pid(), Some(pid));
    assert_eq!(info.addr.to_string(), format!("127.0.0.1:{port}"));
    kill0(pid).unwrap();
    TcpStream::connect(info.addr).unwrap();
    let log = std::fs::read_to_string(driver.log_path()).unwrap();
    assert!(log.contains("ready to accept connections"), "{log}");

    // A second start while running returns the same backend.
    assert_eq!(driver.start().await.unwrap(), info);

    assert_eq!(
        psql_ok(port, "alice", ALICE_PW, "alice", "select current_user"),
        "alice"
    );
    assert_eq!(
        psql_ok(
            port,
            "alice",
            ALICE_PW,
            "app",
            "select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
        ),
        "alice"
    );
    assert_eq!(
        psql_ok(
            port,
            "bob",
            BOB_PW,
            "bob",
            "select rolname || ':' || rolsuper || ':' || left(rolpassword, 14) from pg_authid \
             where rolname in ('alice', 'bob') order by 1"
        ),
        "alice:false:SCRAM-SHA-256$\nbob:true:SCRAM-SHA-256$"
    );
    let wrong = psql(port, "alice", "not-the-password", "alice", "select 1");
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    // The socket in the data dir, which torpor prefers, asks for a password too.
    let socket = data.join(format!(".s.PGSQL.{port}"));
    assert_eq!(info.socket.as_deref(), Some(socket.as_path()));
    let status = driver.process_status();
    assert_eq!(status.socket, info.socket);
    assert_eq!(status.data_dir, data);
    let over_socket = |password: &str| {
        Command::new("psql")
            .args(["-h", &data.to_string_lossy(), "-p", &port.to_string()])
            .args([
                "-U", "alice", "-d", "alice", "-X", "-t", "-A", "-c", "select 7",
            ])
            .env("PGPASSWORD", password)
            .output()
            .unwrap()
    };
    let ok = over_socket(ALICE_PW);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "7");
    let wrong = over_socket("not-the-password");
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    // Existing data directory: no initdb, the users are still there.
    let next = || PostgresProcess::new("app", config(data.clone(), port), users());
    let (again, pid2) = common::stop_and_start_over(driver, next, (pid, info.addr)).await;
    assert_eq!(
        psql_ok(port, "bob", BOB_PW, "app", "select current_user"),
        "bob"
    );
    common::stopped_without_secrets(&again, pid2).await;
}

#[tokio::test]
async fn prepare_stops_a_server_left_by_a_crashed_run() {
    let s = scratch();
    let (second, _, new) = common::the_successor_of_a_crashed_run(
        || driver("orphan", &s, users()),
        |old| wait_gone(old, Duration::from_secs(5)),
    )
    .await;
    second.stop().await.unwrap();
    assert_gone(new);
}

/// A second driver on a data directory another one manages (a second torpor with the same
/// config) is refused before it looks for leftovers: the first one's server is not a leftover
/// and keeps running, in standby as when up.
#[tokio::test]
async fn a_second_driver_on_the_same_data_dir_is_refused() {
    let s = scratch();
    let (data, port) = (&s.data, s.port);
    let first = driver("first", &s, users());
    first.prepare().await.unwrap();
    first.start().await.unwrap();
    let pid = first.server_pid();

    let second = driver("second", &s, users());
    for err in [
        second.prepare().await.unwrap_err(),
        second.start().await.unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(matches!(err, DriverError::InUse { .. }), "{msg}");
        assert!(msg.contains(&data.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
    }
    assert_eq!(second.pid(), None);
    kill0(pid).unwrap();
    assert_eq!(first.pid(), Some(pid));
    assert_eq!(psql_ok(port, "bob", BOB_PW, "first", "select 1"), "1");

    // Stopped, the directory is still the first driver's.
    first.stop().await.unwrap();
    assert!(matches!(second.claim(), Err(DriverError::InUse { .. })));
    drop(first);
    second.prepare().await.unwrap();
    second.start().await.unwrap();
    assert_ne!(second.pid(), Some(pid));
    second.stop().await.unwrap();
}

const DEATHSIG: ParentTest = ParentTest {
    helper: "deathsig_helper",
    env: "TORPOR_TEST_DEATHSIG",
    marker: "POSTGRES_PID",
};

/// Runs only as a subprocess of `a_killed_parent_takes_postgres_down`: starts postgres, says
/// its pid, and waits to be SIGKILLed.
#[tokio::test]
#[ignore]
async fn deathsig_helper() {
    start_for_parent(&DEATHSIG, |data, port| {
        Box::new(PostgresProcess::new(
            "deathsig",
            config(data, port),
            users(),
        ))
    })
    .await;
}

#[test]
fn a_killed_parent_takes_postgres_down() {
    let log = common::a_killed_parent_takes_its_server_down(
        &DEATHSIG,
        &scratch(),
        PID_FILE,
        "torpor-postgres.log",
        Duration::from_secs(10),
    );
    // A clean fast shutdown (SIGINT), not a crash.
    assert!(log.contains("fast shutdown request"), "{log}");
}

#[tokio::test]
async fn bad_bin_dir_is_a_clear_error() {
    let s = scratch();
    let mut cfg = config(s.data.clone(), s.port);
    cfg.bin_dir = Some("/nonexistent/pg/bin".into());
    let driver = PostgresProcess::new("bad", cfg, users());
    common::bin_dir_is_refused(&driver, "/nonexistent/pg/bin").await;
    assert!(!s.data.exists());
    assert_eq!(driver.pid(), None);
}

#[tokio::test]
async fn unreachable_parent_is_a_clear_error() {
    let s = scratch();
    let locked = s.root.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let driver = PostgresProcess::new("locked", config(locked.join("data"), s.port), users());
    let msg = driver.prepare().await.unwrap_err().to_string();
    assert!(
        msg.contains("cannot reach") && msg.contains("locked"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_server_that_exits_at_start_reports_its_log() {
    let s = scratch();
    common::exits_at_start(
        |cfg| PostgresProcess::new("exits", cfg, vec![]),
        config(s.data.clone(), s.port),
        ("shared_buffers", "not-a-size"),
    )
    .await;
}

#[tokio::test]
async fn a_failed_bootstrap_leaves_no_half_initialised_directory() {
    let s = scratch();
    let (data, port) = (s.data.clone(), s.port);
    // CREATE DATABASE "template1" fails: that database always exists.
    let bad = vec![BootstrapUser {
        name: "template1".into(),
        password: "bootstrap-secret".into(),
        hashed: false,
        superuser: false,
    }];
    let driver = PostgresProcess::new("boot", config(data.clone(), port), bad);
    let msg = driver.prepare().await.unwrap_err().to_string();
    assert!(
        msg.contains("single-user") && msg.contains("already exists"),
        "{msg}"
    );
    assert!(!msg.contains("bootstrap-secret"), "{msg}");
    assert!(!data.join("PG_VERSION").exists());

    // The next prepare starts over in the same directory.
    drop(driver);
    let driver = PostgresProcess::new("boot", config(data.clone(), port), users());
    driver.prepare().await.unwrap();
    driver.start().await.unwrap();
    assert_eq!(
        psql_ok(port, "alice", ALICE_PW, "boot", "select current_user"),
        "alice"
    );
    driver.stop().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_start_or_stop_still_completes() {
    let s = scratch();
    let driver = driver("cancel", &s, vec![]);
    let rounds = [0, 2, 10];
    let log = common::cut_short_starts_and_stops(&driver, &rounds, "starting PostgreSQL").await;
    assert!(!log.contains("FATAL"), "{log}");
}
