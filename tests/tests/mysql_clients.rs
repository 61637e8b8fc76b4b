//! sysbench (the load tool issue 4 measures with) through torpor while the MariaDB cluster
//! scales to zero under it.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use torpor_tests::clients::output_text;
use torpor_tests::harness::{Opts, PASSWORD, TestEnv, USER};

fn sysbench(env: &TestEnv, args: &[&str]) -> Command {
    let mut c = Command::new("sysbench");
    c.arg("oltp_read_only")
        .args([
            "--db-driver=mysql".to_string(),
            "--mysql-host=127.0.0.1".to_string(),
            format!("--mysql-port={}", env.listen.port()),
            format!("--mysql-user={USER}"),
            format!("--mysql-password={PASSWORD}"),
            format!("--mysql-db={}", env.cluster),
            "--tables=2".to_string(),
            "--table-size=1000".to_string(),
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// sysbench prepares its statements once per connection (binary protocol) and keeps using
/// them; rate-limited so there are idle gaps, the cluster is put to sleep again and again and
/// no query may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_survives_repeated_scale_to_zero() {
    let env = TestEnv::start(Opts::mysql()).await;
    let prep = sysbench(&env, &["prepare"]).output().await.unwrap();
    let (stdout, stderr) = output_text(&prep);
    assert!(prep.status.success(), "{stdout}\n{stderr}");

    let run = sysbench(
        &env,
        &[
            "--threads=2",
            "--rate=10",
            "--time=15",
            "--skip_trx=on",
            "run",
        ],
    );
    let (stdout, _) = env.under_forced_sleeps(run, Duration::from_secs(12)).await;
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} line in {stdout}"))
            .to_string()
    };
    assert!(line("ignored errors:").contains(" 0 "), "{stdout}");
    assert!(line("reconnects:").contains(" 0 "), "{stdout}");
    let queries: u64 = line("queries:")
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no query count in {stdout}"));
    assert!(queries > 0, "{stdout}");
    env.shutdown().await;
}
