//! Idle means idle, with real MySQL clients: while the database sleeps, the default connect and
//! the health checks of PyMySQL, MySQL Connector/Python (pure and C extension) and mysql2 are
//! answered by torpor without starting the server. The next real query wakes it, and what the
//! client set at connect time is in effect there, as on a direct connection.
//!
//! Each client runs `tests/clients/my_probes.{py,js}`: it connects and pings, says "asleep" and
//! waits; on a line from the test it reads the session's settings and prints them.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use torpor_tests::asleep::Asleep;
use torpor_tests::clients::{client_file, my_env};
use torpor_tests::harness::{Opts, SLOW, TestEnv};
use torpor_tests::python;

/// The command that runs one client against `addr`.
type MakeCommand = dyn Fn(SocketAddr) -> Command;

async fn python_client(kind: &'static str) -> Box<MakeCommand> {
    let python = python::python(python::my_clients).await;
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
    my_env(c, addr)
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
    let mut run = Running::start(make(env.backend_addr()), &env.cluster);
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

    let asleep = Asleep::start(&env).await;
    let mut run = Running::start(make(env.listen), &env.cluster);
    let (said, woke) = asleep.watch(&env, run.line()).await;
    assert_eq!(said, "asleep");
    asleep.check(&env, woke, "").await;
    assert!(env.metric("torpor_local_answers_total").await >= asleep.answers + 5.0);

    run.go().await;
    assert_eq!(run.line().await, want, "the session after the wake");
    run.finish().await;
    assert_eq!(env.metric("torpor_wakes_total").await, asleep.wakes + 1.0);
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
