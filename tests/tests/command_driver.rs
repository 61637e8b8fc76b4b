//! `driver = "command"`: a real postgres, made and run by shell commands torpor only calls
//! (pg_ctl start without waiting, stop, status). torpor waits until the server answers as a
//! ready one does, finds its address on start's last line, and carries sessions across a stop
//! it makes with `stop`. A start that fails reaches the client as an error with the command's
//! stderr, and the session stays for the next try.

use std::path::Path;
use std::process::Command;

use torpor_tests::harness::{Opts, PASSWORD, SLOW, TestConfig, TestEnv, USER};
use torpor_tests::operator_db::{BIN, as_postgres, make_mariadb, make_server, mysql_user};

/// The test config with `[cluster.backend]` replaced by the command driver's.
fn command_backend(cfg: &TestConfig, start: &str) -> String {
    let data = cfg.data_dir.display();
    let port = cfg.backend_port;
    let backend_start = cfg.toml.find("[cluster.backend]").unwrap();
    let backend_end = cfg.toml[backend_start..].find("\n\n").unwrap() + backend_start;
    let stop = as_postgres(&format!("{BIN}/pg_ctl -D {data} stop -m fast"));
    let status = as_postgres(&format!("{BIN}/pg_ctl -D {data} status"));
    format!(
        "{}[cluster.backend]\ndriver = \"command\"\nstart = '''{start}'''\nstop = '''{stop}'''\nstatus = '''{status}'''\ntimeout = \"60s\"\ntls = \"disable\"\n{}",
        &cfg.toml[..backend_start],
        &cfg.toml[backend_end..]
    )
    .replace("PORT", &port.to_string())
}

fn pg_start(cfg: &TestConfig) -> String {
    let data = cfg.data_dir.display();
    // -W: no waiting here; torpor waits until the server answers. The address on the last line.
    format!(
        "{} >/dev/null && echo 127.0.0.1:PORT",
        as_postgres(&format!(
            "{BIN}/pg_ctl -D {data} -W -l {data}/server.log -o \"-p PORT -c listen_addresses=127.0.0.1 -k {data} -c fsync=off\" start"
        ))
    )
}

/// Stops the server when a test ends, even a failed one: torpor only calls the commands, and
/// a server left running would outlive the test.
struct Stopper(std::path::PathBuf);

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(as_postgres(&format!(
                "{BIN}/pg_ctl -D {} stop -m immediate >/dev/null 2>&1",
                self.0.display()
            )))
            .status();
    }
}

/// Forces a sleep and sees the server `pid` ended: gone, or a zombie, since the commands left
/// it to pid 1 (which reaps slowly here).
async fn sleep_and_see_ended(env: &TestEnv, pid: u32) {
    let (status, body) = env.sleep().await;
    assert_eq!(status, 200, "{body}");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|s| s.split_whitespace().next());
    assert!(
        stat.is_empty() || state == Some("Z"),
        "still running: {stat}"
    );
}

fn postmaster_pid(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_run_by_shell_commands_keeps_sessions_across_a_stop() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    make_server(&cfg.data_dir);
    let _stopper = Stopper(cfg.data_dir.clone());
    cfg.toml = command_backend(&cfg, &pg_start(&cfg));
    let env = TestEnv::start_config(cfg).await;
    let c = env.connect().await;
    c.exec("CREATE TEMP TABLE t AS SELECT 1 AS x; SET application_name = 'by-command'")
        .await;
    let pid = postmaster_pid(&env.data_dir).expect("a running server");
    sleep_and_see_ended(&env, pid).await;
    assert!(
        postmaster_pid(&env.data_dir).is_none(),
        "stopped by the stop command"
    );
    assert_eq!(c.value("SELECT x + 41 FROM t").await.as_deref(), Some("42"));
    assert_eq!(
        c.value("SHOW application_name").await.as_deref(),
        Some("by-command")
    );
    assert_ne!(postmaster_pid(&env.data_dir), Some(pid));
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_start_command_reaches_the_client_with_its_stderr() {
    let mut cfg = TestConfig::new(&Opts {
        proxy: "wake_timeout = \"2s\"\n".into(),
        ..Opts::default()
    })
    .await;
    make_server(&cfg.data_dir);
    let _stopper = Stopper(cfg.data_dir.clone());
    let flag = cfg.dir.path().join("broken");
    std::fs::write(&flag, "").unwrap();
    let start = format!(
        "if [ -e {} ]; then echo 'no capacity in zone-b' >&2; exit 3; fi; {}",
        flag.display(),
        pg_start(&cfg)
    );
    cfg.toml = command_backend(&cfg, &start);
    let env = TestEnv::start_config(cfg).await;
    let e = env
        .try_connect(USER, PASSWORD)
        .await
        .err()
        .expect("the start fails");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("no capacity in zone-b"), "{e:?}");
    std::fs::remove_file(&flag).unwrap();
    let c = tokio::time::timeout(SLOW, env.connect())
        .await
        .expect("in time");
    assert_eq!(c.value("SELECT 1").await.as_deref(), Some("1"));
    env.shutdown_after(c).await;
}

/// MariaDB's first bytes tell torpor it is ready: a greeting, with no login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_run_by_shell_commands_keeps_sessions_across_a_stop() {
    let mut cfg = TestConfig::new(&Opts::mysql()).await;
    let data = cfg.data_dir.clone();
    make_mariadb(&data, &cfg.cluster);
    let pid_file = data.join("server.pid");
    struct Killer(std::path::PathBuf);
    impl Drop for Killer {
        fn drop(&mut self) {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!("kill -9 $(cat {}) 2>/dev/null", self.0.display()))
                .status();
        }
    }
    let _killer = Killer(pid_file.clone());
    let d = data.display();
    let p = pid_file.display();
    let start = format!(
        "mariadbd --no-defaults --datadir={d} {} --port=PORT --bind-address=127.0.0.1 --socket={d}/s.sock --pid-file={p} --skip-log-bin --innodb-flush-log-at-trx-commit=0 </dev/null >{d}/server.log 2>&1 & echo 127.0.0.1:PORT",
        mysql_user()
    );
    let stop = format!(
        "pid=$(cat {p}); kill $pid; while kill -0 $pid 2>/dev/null && ! grep -q Z /proc/$pid/stat 2>/dev/null; do sleep 0.05; done"
    );
    let status = format!("kill -0 $(cat {p})");
    let backend_start = cfg.toml.find("[cluster.backend]").unwrap();
    let backend_end = cfg.toml[backend_start..].find("\n\n").unwrap() + backend_start;
    cfg.toml = format!(
        "{}[cluster.backend]\ndriver = \"command\"\nstart = '''{start}'''\nstop = '''{stop}'''\nstatus = '''{status}'''\ntls = \"disable\"\n{}",
        &cfg.toml[..backend_start],
        &cfg.toml[backend_end..]
    )
    .replace("PORT", &cfg.backend_port.to_string());
    let env = TestEnv::start_config(cfg).await;
    let mut raw = env.my_raw().await;
    assert!(
        raw.query("SET @kept = 'by command'")
            .await
            .unwrap()
            .err()
            .is_none()
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sleep_and_see_ended(&env, pid).await;
    assert_eq!(
        raw.value("SELECT @kept").await.as_deref(),
        Some("by command")
    );
    env.shutdown().await;
}
