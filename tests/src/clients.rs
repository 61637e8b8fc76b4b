//! Client programs and load tools run against a test's torpor: where their scripts are, how they
//! find the proxy and its admin API, and forced sleeps while they run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::harness::{PASSWORD, TestEnv, USER};
use crate::python;

/// A client program in `tests/clients/`.
pub fn client_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// The URL a PostgreSQL client program connects to `addr` with, as the test user.
pub fn pg_url(addr: SocketAddr) -> String {
    format!("postgres://{USER}:{PASSWORD}@{addr}/{USER}")
}

/// `python <script>` with the PostgreSQL clients ([`python::pg_clients`]), and a torpor for it to
/// connect to (TORPOR_URL). The virtualenv comes first: a first install takes a while.
pub async fn pg_python(script: &str) -> (TestEnv, Command) {
    let python = python::python(python::pg_clients).await;
    let env = TestEnv::default().await;
    let mut cmd = Command::new(python);
    cmd.arg(client_file(script))
        .env("TORPOR_URL", pg_url(env.listen));
    (env, cmd)
}

/// Tells a MySQL client program where to connect, as the test user.
pub fn my_env(cmd: &mut Command, addr: SocketAddr) -> &mut Command {
    cmd.env("TORPOR_HOST", addr.ip().to_string())
        .env("TORPOR_PORT", addr.port().to_string())
        .env("TORPOR_USER", USER)
        .env("TORPOR_PASSWORD", PASSWORD)
}

/// What a finished program wrote to stdout and to stderr.
pub fn output_text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command-line client to its end; it must succeed. What it printed on stdout.
pub async fn cli_stdout(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{cmd:?}:\n{stdout}\n{stderr}");
    stdout
}

/// Runs a client program to its end: it must exit 0 and print `done`.
pub async fn run_to_end(cmd: &mut Command, done: &str) {
    let out = cmd.output().await.unwrap();
    let (stdout, stderr) = output_text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(done), "{stdout}\n{stderr}");
}

impl TestEnv {
    /// Tells a client program where the admin API is and which cluster to put to sleep.
    pub fn admin_env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("TORPOR_ADMIN", format!("http://{}", self.admin))
            .env("TORPOR_CLUSTER", &self.cluster)
    }

    /// Runs a load tool (its output piped) while forcing sleeps for `period`: the tool must
    /// succeed, and at least one sleep must have drained the database under it. What it
    /// printed on stdout and on stderr.
    pub async fn under_forced_sleeps(
        &self,
        mut tool: Command,
        period: Duration,
    ) -> (String, String) {
        let drains0 = self.metric("torpor_drains_total").await;
        let run = tool.spawn().unwrap();
        let slept = self.sleep_repeatedly(period).await;
        let out = run.wait_with_output().await.unwrap();
        let (stdout, stderr) = output_text(&out);
        assert!(out.status.success(), "{tool:?} failed:\n{stdout}\n{stderr}");
        assert!(slept >= 1, "no drain succeeded in {period:?} of trying");
        assert!(self.metric("torpor_drains_total").await - drains0 >= 1.0);
        (stdout, stderr)
    }

    /// Forces a sleep every 300 ms for `period`, while a load tool runs; how many succeeded.
    /// A refusal is no failure: the tool may have a transaction in flight.
    pub async fn sleep_repeatedly(&self, period: Duration) -> u32 {
        let deadline = Instant::now() + period;
        let mut slept = 0;
        while Instant::now() < deadline {
            let (status, _) = self.sleep().await;
            if status == 200 {
                slept += 1;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        slept
    }
}
