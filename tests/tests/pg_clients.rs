//! Client programs other than tokio-postgres, through torpor while it scales to zero under them.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use torpor_tests::harness::{PASSWORD, TestEnv, USER};

fn pg_bin(name: &str) -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.is_file())
        .collect();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| panic!("{name} not found"))
}

fn pgbench(env: &TestEnv, args: &[&str]) -> Command {
    let mut c = Command::new(pg_bin("pgbench"));
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &env.listen.port().to_string(),
        "-U",
        USER,
    ])
    .args(args)
    .arg(USER)
    .env("PGPASSWORD", PASSWORD)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    c
}

/// pgbench's TPC-B-like transactions with protocol-level prepared statements (-M prepared),
/// rate-limited so there are idle gaps, while the cluster is put to sleep again and again.
/// Every transaction must succeed: the statements pgbench prepared once per connection are
/// replayed on each new backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_prepared_survives_repeated_scale_to_zero() {
    let env = TestEnv::default().await;
    let init = pgbench(&env, &["-i", "-s", "1", "-q"])
        .output()
        .await
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let run = pgbench(
        &env,
        &[
            "-M", "prepared", "-c", "4", "-j", "2", "-R", "20", "-T", "20",
        ],
    );
    // Put the cluster to sleep whenever every pgbench session is between transactions.
    let (stdout, stderr) = env.under_forced_sleeps(run, Duration::from_secs(15)).await;
    assert!(
        stdout.contains("number of failed transactions: 0 (0.000%)"),
        "{stdout}\n{stderr}"
    );
    let processed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|n| n.split('/').next()?.trim().parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no transaction count in {stdout}"));
    assert!(processed > 0, "{stdout}");
    env.shutdown().await;
}
