//! Idle means idle, with real MySQL clients: while the database sleeps, the default connect and
//! the health checks of PyMySQL, MySQL Connector/Python (pure and C extension) and mysql2 are
//! answered by torpor without starting the server. The next real query wakes it, and what the
//! client set at connect time is in effect there, as on a direct connection.
//!
//! Each client runs `tests/clients/my_probes.{py,js}`: it connects and pings, says "asleep" and
//! waits; on a line from the test it reads the session's settings and prints them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use torpor_tests::harness::{Opts, PASSWORD, SLOW, TestEnv, USER, assert_pid_gone};

fn client_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

async fn python() -> PathBuf {
    tokio::task::spawn_blocking(|| {
        torpor_tests::python::venv_python(
            "pymyclients",
            "pymysql, mysql.connector",
            &["PyMySQL==1.1.1", "mysql-connector-python==9.1.0"],
        )
    })
    .await
    .unwrap()
}

/// The command that runs one client against `addr`.
type MakeCommand = dyn Fn(SocketAddr) -> Command;

async fn python_client(kind: &'static str) -> Box<MakeCommand> {
    let python = python().await;
    Box::new(move |addr| {
        let mut c = Command::new(&python);
        c.arg(client_file("my_probes.py")).arg(kind);
        with_env(&mut c, addr);
        c
    })
}

async fn node_client() -> Box<MakeCommand> {
    let modules = tokio::task::spawn_blocking(torpor_tests::node::client_modules)
        .await
        .unwrap();
    Box::new(move |addr| {
        let mut c = torpor_tests::node::node_command(&modules, &client_file("my_probes.js"));
        with_env(&mut c, addr);
        c
    })
}

fn with_env(c: &mut Command, addr: SocketAddr) {
    c.env("TORPOR_HOST", addr.ip().to_string())
        .env("TORPOR_PORT", addr.port().to_string())
        .env("TORPOR_USER", USER)
        .env("TORPOR_PASSWORD", PASSWORD)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
}

struct Running {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
}

impl Running {
    fn start(mut cmd: Command, db: &str) -> Running {
        let mut child = cmd.env("TORPOR_DB", db).spawn().expect("start the client");
        let stdout = child.stdout.take().expect("stdout");
        Running {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line the client prints; on its end, everything it said on stderr.
    async fn line(&mut self) -> String {
        let next = tokio::time::timeout(SLOW, self.lines.next_line())
            .await
            .expect("the client said nothing for a long time");
        match next {
            Ok(Some(l)) => l,
            _ => {
                let out = ending(&mut self.child).await;
                panic!("the client ended early: {out}");
            }
        }
    }

    async fn go(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").await.expect("write to the client");
        stdin.flush().await.expect("flush");
    }

    async fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = tokio::time::timeout(SLOW, self.child.wait())
            .await
            .expect("the client did not end")
            .expect("wait");
        assert!(status.success(), "{}", ending(&mut self.child).await);
    }
}

/// How the client ended, with what it said on stderr.
async fn ending(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = tokio::time::timeout(Duration::from_secs(10), e.read_to_string(&mut err)).await;
    }
    let status = child.wait().await.ok();
    format!("{status:?}\n{err}")
}

/// The client's settings after its default connect, on a direct connection to the server.
async fn direct_settings(env: &TestEnv, make: &MakeCommand) -> String {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, env.backend_port));
    let mut run = Running::start(make(addr), &env.cluster);
    assert_eq!(run.line().await, "asleep");
    run.go().await;
    let settings = run.line().await;
    run.finish().await;
    settings
}

/// Connects and health-checks while the database sleeps, watching every 50 ms that it stays
/// asleep; then a real query wakes it and must find what a direct connection has.
async fn stays_asleep_until_a_real_query(make: Box<MakeCommand>) {
    let env = TestEnv::start(Opts::mysql()).await;
    // The greeting and the first login of this user and schema come from the server.
    drop(env.my().await);
    env.wait_for_catalog().await;
    let want = direct_settings(&env, &*make).await;

    let pid = env.backend_pid().await.expect("running");
    env.sleep_ok().await;
    let wakes = env.metric("torpor_wakes_total").await;
    let answered = env.metric("torpor_local_answers_total").await;
    let mut run = Running::start(make(env.listen), &env.cluster);
    let mut woke = None;
    let said = loop {
        tokio::select! {
            l = run.line() => break l,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                let c = env.cluster_status().await;
                if woke.is_none()
                    && (c["state"] != "standby"
                        || !c["backend_pid"].is_null()
                        || Path::new(&format!("/proc/{pid}")).exists())
                {
                    woke = Some(c);
                }
            }
        }
    };
    assert_eq!(said, "asleep");
    assert!(
        woke.is_none(),
        "the database woke while the client only connected and pinged: {woke:?}"
    );
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "standby", "{c}");
    assert!(c["backend_pid"].is_null(), "{c}");
    assert_pid_gone(pid);
    assert_eq!(env.metric("torpor_wakes_total").await, wakes);
    assert!(env.metric("torpor_local_answers_total").await >= answered + 5.0);

    run.go().await;
    assert_eq!(run.line().await, want, "the session after the wake");
    run.finish().await;
    assert_eq!(env.metric("torpor_wakes_total").await, wakes + 1.0);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_connects_and_pings_while_asleep() {
    stays_asleep_until_a_real_query(python_client("pymysql").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_python_pure_connects_and_pings_while_asleep() {
    stays_asleep_until_a_real_query(python_client("connector-pure").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_python_c_extension_connects_and_pings_while_asleep() {
    stays_asleep_until_a_real_query(python_client("connector-c").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql2_connects_and_pings_while_asleep() {
    stays_asleep_until_a_real_query(node_client().await).await;
}
