//! The `torpor` binary as an operator runs it: SIGTERM, a crash and restart, `check`, `status`.
//! Needs `cargo build -p torpor` first (the README's test command does it).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::{Duration, Instant};

use controller::driver::process::lock::DataDirLock;
use torpor_tests::binary::{self, Proc, torpor_bin};
use torpor_tests::harness::{
    Opts, PASSWORD, Pg, SLOW, TestConfig, USER, assert_pid_gone, connect_to, init_tracing,
};
use torpor_tests::http;

async fn backend_pid(cfg: &TestConfig) -> Option<u32> {
    let r = http::request(cfg.admin, "GET", "/api/clusters")
        .await
        .unwrap();
    r.json()[0]["backend_pid"].as_u64().map(|p| p as u32)
}

/// The process has exited: gone, or a zombie nobody reaps. On this machine pid 1 does not reap
/// orphans, so a postgres orphaned by a killed torpor stays a zombie after it exits.
fn assert_exited(pid: u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().next());
    if state == Some("Z") || stat.is_empty() {
        return;
    }
    assert_pid_gone(pid);
}

async fn wait_exited(pid: u32) {
    let deadline = Instant::now() + SLOW;
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} still running: {stat}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A log line without its colours.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// A config of its own and `torpor up` on it.
async fn up() -> (TestConfig, Proc) {
    init_tracing();
    let cfg = TestConfig::new(&Opts::default()).await;
    let proc = binary::up(&cfg.config_path).await;
    (cfg, proc)
}

async fn connect(cfg: &TestConfig) -> Pg {
    connect_to(cfg.listen, USER, PASSWORD).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_57p01_and_stops_postgres() {
    let (cfg, mut proc) = up().await;
    assert!(
        proc.banner
            .iter()
            .any(|l| l.contains(&format!("postgres://{USER}@{}", cfg.listen))),
        "no connection URL in {:?}",
        proc.banner
    );
    assert!(
        !proc.banner.iter().any(|l| l.contains(PASSWORD)),
        "a configured password was printed: {:?}",
        proc.banner
    );

    let attached = connect(&cfg).await;
    assert_eq!(attached.text("SELECT 1").await, "1");
    let pid = backend_pid(&cfg).await.expect("backend running");
    assert_eq!(cfg.postmaster_pid(), Some(pid));

    proc.signal(libc::SIGTERM);
    attached.assert_ended_with("57P01").await;
    let status = proc.wait().await;
    assert!(status.success(), "torpor exited with {status}");
    assert_pid_gone(pid);
    assert!(
        !cfg.data_dir.join("postmaster.pid").exists(),
        "postmaster.pid left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_also_shuts_down_cleanly() {
    let (cfg, mut proc) = up().await;
    let s = connect(&cfg).await;
    assert_eq!(s.text("SELECT 1").await, "1");
    let pid = backend_pid(&cfg).await.expect("backend running");
    proc.signal(libc::SIGINT);
    s.assert_ended_with("57P01").await;
    assert!(proc.wait().await.success());
    assert_pid_gone(pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_crash_leaves_no_orphan() {
    let (cfg, mut first) = up().await;
    let s = connect(&cfg).await;
    s.exec("CREATE TABLE survives(x int); INSERT INTO survives VALUES (1)")
        .await;
    let old = backend_pid(&cfg).await.expect("backend running");

    first.signal(libc::SIGKILL);
    let status = first.wait().await;
    assert!(!status.success());
    // The client's connection ends (ended() panics if it stays open).
    let _ = s.ended().await;

    let mut second = binary::up(&cfg.config_path).await;
    let c = connect(&cfg).await;
    assert_eq!(c.text("SELECT x FROM survives").await, "1");
    let new = backend_pid(&cfg).await.expect("backend running");
    assert_ne!(new, old);
    // Only one postgres on the data dir: the old one is gone (stopped or adopted+replaced).
    wait_exited(old).await;
    assert_exited(old);
    assert_eq!(cfg.postmaster_pid(), Some(new));

    second.stop().await;
    assert_pid_gone(new);
}

/// The snapshots of sessions a killed torpor had parked can never wake: the next start on the
/// same config (the same instance) removes them and says how many, and leaves another
/// instance's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_removes_the_snapshots_a_crash_left() {
    let (cfg, mut first) = up().await;
    let dir = cfg.snapshot_dir();
    let mut clients = Vec::new();
    for i in 0..2 {
        let c = connect(&cfg).await;
        c.exec(&format!("CREATE TEMP TABLE t AS SELECT {i} AS x"))
            .await;
        clients.push(c);
    }
    let path = format!("/api/clusters/{}/sleep", cfg.cluster);
    let r = http::request(cfg.admin, "POST", &path).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 2, "{left:?}");
    let theirs = cfg
        .state_dir
        .join("another-instance")
        .join(&cfg.cluster)
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
    std::fs::write(&theirs, b"TRPR another torpor's snapshot").unwrap();

    first.signal(libc::SIGKILL);
    assert!(!first.wait().await.success());
    drop(clients);

    let mut second = binary::up(&cfg.config_path).await;
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(theirs.is_file(), "another instance's snapshot was removed");
    let log: Vec<String> = second
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|l| plain(l))
        .collect();
    assert!(
        log.iter()
            .any(|l| l.contains("snapshot store ready") && l.contains("removed=2")),
        "{log:?}"
    );
    second.stop().await;
}

/// With no key in the config, `torpor up` makes one in its working directory, readable by
/// its user only, says where, and uses the same one the next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_torpor_makes_one_and_keeps_it() {
    use std::os::unix::fs::PermissionsExt;
    init_tracing();
    let cfg = TestConfig::new(&Opts::default()).await;
    let lines: Vec<&str> = cfg
        .toml
        .lines()
        .filter(|l| !l.starts_with("key_file"))
        .collect();
    std::fs::write(&cfg.config_path, lines.join("\n")).unwrap();
    let work = cfg.dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let start = || {
        let mut cmd = tokio::process::Command::new(torpor_bin());
        cmd.arg("up")
            .arg("--config")
            .arg(&cfg.config_path)
            .current_dir(&work);
        binary::up_command(cmd, "info")
    };

    let mut first = start().await;
    let key = work.join("torpor.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let made = std::fs::read_to_string(&key).unwrap();
    let log = first.log.lock().unwrap().join("\n");
    assert!(plain(&log).contains(&key.display().to_string()), "{log}");
    let c = connect(&cfg).await;
    c.exec("CREATE TEMP TABLE t AS SELECT 7 AS x").await;
    let path = format!("/api/clusters/{}/sleep", cfg.cluster);
    let r = http::request(cfg.admin, "POST", &path).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(c.text("SELECT x FROM t").await, "7");
    drop(c);
    first.stop().await;

    let mut second = start().await;
    assert_eq!(std::fs::read_to_string(&key).unwrap(), made);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_clusters() {
    let (cfg, mut proc) = up().await;
    let s = connect(&cfg).await;
    assert_eq!(s.text("SELECT 1").await, "1");
    let out = tokio::process::Command::new(torpor_bin())
        .args(["status", "--admin", &cfg.admin.to_string()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&cfg.cluster) && text.contains("running"),
        "{text}"
    );
    drop(s);
    proc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_bad_key() {
    let cfg = TestConfig::new(&Opts::default()).await;
    let run = |path: std::path::PathBuf| async move { binary::run(&["check"], &path).await };
    let (ok, text) = run(cfg.config_path.clone()).await;
    assert!(ok, "good config rejected: {text}");
    assert!(text.contains("ok"), "{text}");
    assert!(!text.contains("no key_file"), "{text}");
    // No key configured: fine, but said, with the file `up` would make (check makes none).
    let keyless = cfg.dir.path().join("keyless.toml");
    let lines: Vec<&str> = cfg
        .toml
        .lines()
        .filter(|l| !l.starts_with("key_file"))
        .collect();
    std::fs::write(&keyless, lines.join("\n")).unwrap();
    let (ok, text) = run(keyless).await;
    assert!(ok, "a config without a key rejected: {text}");
    let warning = text
        .lines()
        .find(|l| l.starts_with("warning: state_store: no key_file or key_env"))
        .unwrap_or_else(|| panic!("no warning about the key: {text}"));
    let made = std::env::current_dir().unwrap().join("torpor.key");
    assert!(warning.contains(&made.display().to_string()), "{warning}");
    // Nothing made: no data dir, not even a lock file beside it.
    let lock_file = cfg.data_dir.with_extension("lock");
    assert!(!cfg.data_dir.exists() && !lock_file.exists());

    let backend_port = format!("port = {}", cfg.backend_port);
    let missing_bin_dir = format!("{backend_port}\nbin_dir = \"/nonexistent/pg/bin\"");
    let cases = [
        (
            "idle_timeout = \"1h\"",
            "idle_timeout = \"soon\"",
            "idle_timeout",
        ),
        // humantime reads these as 5 months and a year.
        (
            "idle_timeout = \"1h\"",
            "idle_timeout = \"5M\"",
            "idle_timeout",
        ),
        (
            "idle_timeout = \"1h\"",
            "idle_timeout = \"1y\"",
            "idle_timeout",
        ),
        (
            &backend_port,
            &missing_bin_dir,
            "cluster[0].backend.bin_dir: bin_dir /nonexistent/pg/bin",
        ),
        (
            &format!("listen = \"{}\"", cfg.listen),
            "listen = \"nowhere\"",
            "cluster[0].listen",
        ),
        ("protocol = \"postgres\"", "protocol = \"oracle\"", "oracle"),
        ("driver = \"process\"", "driver = \"teleport\"", "teleport"),
    ];
    for (from, to, key) in cases {
        assert!(cfg.toml.contains(from), "{from} not in test config");
        let bad = cfg.dir.path().join("bad.toml");
        std::fs::write(&bad, cfg.toml.replacen(from, to, 1)).unwrap();
        let (ok, text) = run(bad).await;
        assert!(!ok, "{to}: accepted");
        assert!(text.contains(key), "{to}: error should name {key}: {text}");
    }
    let (ok, text) = run(cfg.dir.path().join("missing.toml")).await;
    assert!(!ok && text.contains("missing.toml"), "{text}");

    // Ports someone else listens on, each named by its key.
    for (addr, key) in [
        (cfg.listen, "cluster[0].listen"),
        (
            SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.backend_port)),
            "cluster[0].backend.port",
        ),
        (cfg.admin, "admin.listen"),
    ] {
        let taken = std::net::TcpListener::bind(addr).unwrap();
        let (ok, text) = run(cfg.config_path.clone()).await;
        drop(taken);
        assert!(!ok, "{key}: port in use accepted");
        assert!(
            text.contains(&format!("{key}: {addr}:")) && text.contains("in use"),
            "{key}: {text}"
        );
    }

    // A data dir another torpor holds.
    let held = DataDirLock::acquire(&cfg.data_dir).unwrap();
    let (ok, text) = run(cfg.config_path.clone()).await;
    assert!(!ok, "a data dir in use accepted");
    assert!(
        text.contains("cluster[0].backend.data_dir")
            && text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    drop(held);
    let (ok, text) = run(cfg.config_path.clone()).await;
    assert!(ok, "{text}");
    assert!(!cfg.data_dir.exists());
}

/// A second `torpor up` on the same config refuses to start, naming the data dir and the
/// first one's pid, before it touches anything: the first one's postgres is not taken for a
/// leftover and stopped, and its sessions keep their state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_torpor_on_the_same_data_dir_refuses_to_start() {
    let (cfg, mut first) = up().await;
    let s = connect(&cfg).await;
    s.exec("SET app.marker = 'still-here'").await;
    let pid = backend_pid(&cfg).await.expect("backend running");

    let second = tokio::time::timeout(
        SLOW,
        tokio::process::Command::new(torpor_bin())
            .arg("up")
            .arg("--config")
            .arg(&cfg.config_path)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the second torpor did not exit")
    .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    eprintln!("second torpor: {stderr}");
    assert!(!second.status.success(), "the second torpor started");
    assert!(
        stderr.contains(&format!("data_dir {} is in use", cfg.data_dir.display())),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");

    assert_eq!(backend_pid(&cfg).await, Some(pid));
    assert_eq!(cfg.postmaster_pid(), Some(pid));
    assert_eq!(
        s.text("SELECT current_setting('app.marker')").await,
        "still-here"
    );
    assert_eq!(backend_pid(&cfg).await, Some(pid));

    first.signal(libc::SIGTERM);
    let _ = s.ended().await;
    assert!(first.wait().await.success());
    assert_pid_gone(pid);
}

/// A postgres left running on the data dir (as after a crash of torpor and its watchdog) is
/// found and stopped when torpor starts, instead of being orphaned or fought with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_stops_a_leftover_postgres() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::default()).await;
    // A first run creates the data dir and users.
    let mut first = binary::up(&cfg.config_path).await;
    first.stop().await;

    // Start postgres on that data dir behind torpor's back.
    let (uid, gid) = postgres_ids();
    let mut leftover = tokio::process::Command::new("/usr/lib/postgresql/15/bin/postgres")
        .arg("-D")
        .arg(&cfg.data_dir)
        .args(["-p", &cfg.backend_port.to_string()])
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "fsync=off",
        ])
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start a leftover postgres");
    let deadline = Instant::now() + SLOW;
    while tokio::net::TcpStream::connect(("127.0.0.1", cfg.backend_port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "leftover postgres did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leftover_pid = leftover.id().expect("pid");
    assert_eq!(cfg.postmaster_pid(), Some(leftover_pid));

    let mut second = binary::up(&cfg.config_path).await;
    let exit = tokio::time::timeout(SLOW, leftover.wait())
        .await
        .expect("torpor did not stop the leftover postgres")
        .unwrap();
    eprintln!("leftover postgres exited: {exit}");
    let c = connect(&cfg).await;
    assert_eq!(c.text("SELECT 1").await, "1");
    let new = backend_pid(&cfg).await.expect("backend running");
    assert_ne!(new, leftover_pid);
    second.stop().await;
    assert_pid_gone(new);
    assert_pid_gone(leftover_pid);
}

fn postgres_ids() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam with a valid C string; the fields are copied out right away.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no postgres user on this machine");
    // SAFETY: checked non-null just above; getpwnam's static record stays valid until the
    // next call, and this test makes none in between.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

/// Design invariant 5: no password, SCRAM material or row data in the log, even at debug
/// level, through failed logins, a scale-to-zero with temp rows, a failed restore and shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_holds_no_passwords_or_row_data() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::default()).await;
    let mut proc = binary::up_logging(&cfg.config_path, "debug").await;
    const WRONG: &str = "wrong-pw-Zq81";
    const ROW: &str = "row-marker-Kx47";

    assert!(connect_to(cfg.listen, USER, WRONG).await.is_err());
    assert!(connect_to(cfg.listen, "ghost", WRONG).await.is_err());
    let s = connect(&cfg).await;
    s.exec(&format!(
        "CREATE TEMP TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, '{ROW}')"
    ))
    .await;
    // A constraint error carries row data in its detail; it is for the client only.
    assert!(
        s.simple_query(&format!("INSERT INTO t VALUES (1, '{ROW}')"))
            .await
            .is_err()
    );
    // The client has the error before torpor need have passed the ReadyForQuery behind it:
    // one more round trip, so the sleep doesn't find the failed query still in flight.
    assert_eq!(s.text("SELECT 2").await, "2");
    let r = http::request(
        cfg.admin,
        "POST",
        &format!("/api/clusters/{}/sleep", cfg.cluster),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.text("SELECT v FROM t").await, ROW);

    proc.stop().await;
    let log = proc.log.lock().unwrap().join("\n");
    assert!(log.contains("drain"), "the debug log is empty?\n{log}");
    for secret in [PASSWORD, WRONG, ROW, "r=", "p="] {
        let hit = log.lines().find(|l| {
            l.contains(secret)
                // SCRAM attribute prefixes are short: only flag them inside a SCRAM-looking token.
                && (secret.len() > 2 || l.contains(&format!(",{secret}")))
        });
        assert!(hit.is_none(), "{secret:?} appears in the log: {hit:?}");
    }
}
