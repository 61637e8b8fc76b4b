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

/// Every process of the postmaster's tree, which must all be in its cgroup: the server was
/// spawned inside it, and its children (which call setsid) inherit it.
fn tree(root: u32) -> Vec<u32> {
    let mut all = vec![root];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        if after.split_whitespace().nth(1) == Some(&root.to_string()) {
            all.push(pid);
        }
    }
    all
}

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    matches!(state, Some(s) if s != "Z" && s != "X")
}

fn shutdowns(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("database system is shut down")
        .count()
}

/// The frozen tier's driver side: the server runs in a cgroup of its own with all its
/// processes; frozen, a query waits until the thaw; a frozen server is thawed before it is
/// stopped, and a leftover one that a crashed torpor left frozen is thawed before the next
/// torpor stops it: both shut down cleanly instead of being killed.
#[tokio::test]
async fn a_frozen_server_answers_after_the_thaw_and_is_thawed_before_it_stops() {
    let s = scratch();
    let port = s.port;
    let driver = driver("frozen", &s, users());
    driver.can_freeze().unwrap();
    driver.prepare().await.unwrap();
    driver.start().await.unwrap();
    let pid = driver.server_pid();
    let status = driver.process_status();
    let cgroup = status.cgroup.clone().expect("a cgroup");
    assert!(!status.frozen);
    // A connection before the freeze, so a backend process exists besides the auxiliaries.
    assert_eq!(psql_ok(port, "bob", BOB_PW, "bob", "select 1"), "1");
    // The tree first: a child forked after this is not in it, and one that has exited by the
    // time the cgroup is read (psql's backend may still be a zombie: the kernel takes an
    // exiting task out of cgroup.procs) is let off below.
    let tree = tree(pid);
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap();
    let members: Vec<u32> = procs.lines().map(|l| l.parse().unwrap()).collect();
    assert!(tree.len() >= 4, "postmaster and its children: {tree:?}");
    for p in &tree {
        assert!(
            members.contains(p) || !running(*p),
            "{p} of {tree:?} is not in {members:?}"
        );
    }

    let t = Instant::now();
    driver.freeze().await.unwrap();
    eprintln!("freeze: {:?}", t.elapsed());
    assert!(driver.process_status().frozen);
    let events = std::fs::read_to_string(cgroup.join("cgroup.events")).unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    let query = std::thread::spawn(move || psql_ok(port, "bob", BOB_PW, "bob", "select 40 + 2"));
    std::thread::sleep(Duration::from_millis(700));
    assert!(!query.is_finished(), "a frozen server answered");
    let t = Instant::now();
    driver.thaw().await.unwrap();
    eprintln!("thaw: {:?}", t.elapsed());
    assert!(!driver.process_status().frozen);
    assert_eq!(query.join().unwrap(), "42");

    // Stopped while frozen: thawed first, so it shuts down as asked.
    driver.freeze().await.unwrap();
    let before = shutdowns(&driver.log());
    driver.stop().await.unwrap();
    assert_gone(pid);
    assert_eq!(shutdowns(&driver.log()), before + 1, "not a clean shutdown");
    assert!(
        !cgroup.exists(),
        "the cgroup of a stopped server is removed"
    );

    // A torpor killed while its server was frozen: the next one thaws it, then stops it.
    driver.start().await.unwrap();
    let old = driver.server_pid();
    driver.freeze().await.unwrap();
    assert_eq!(ProcessDriver::abandon(&driver).await, Some(old));
    drop(driver);
    let before = shutdowns(&s.data.join("torpor-postgres.log"));
    let next = self::driver("frozen", &s, users());
    next.prepare().await.unwrap();
    wait_gone(old, Duration::from_secs(10));
    let log = next.log();
    assert_eq!(
        shutdowns(&log),
        before + 1,
        "the leftover was not shut down cleanly"
    );
    // This driver doesn't freeze: its server runs outside any cgroup of torpor's.
    next.start().await.unwrap();
    assert_eq!(next.process_status().cgroup, None);
    assert!(next.freeze().await.is_err());
    next.stop().await.unwrap();
    let _ = std::fs::remove_dir(&cgroup);
}
