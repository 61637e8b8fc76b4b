//! asyncpg and psycopg 3 (named protocol statements, COPY, pipeline mode, LISTEN) through
//! torpor across scale-to-zero cycles. The clients are installed into a virtualenv under the
//! target directory on first use (PyPI), so nothing outside the repository is touched.

use std::path::PathBuf;
use std::process::Command;

use torpor_tests::harness::{PASSWORD, TestEnv, USER};

fn venv_python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join("pyclients");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import asyncpg, psycopg"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the Python client tests");
        assert!(made.success(), "python3 -m venv failed");
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "-q",
                "asyncpg==0.32.0",
                "psycopg[binary]==3.3.9",
            ])
            .status()
            .expect("pip");
        assert!(installed.success(), "pip install asyncpg psycopg failed");
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg_survive_scale_to_zero() {
    let python = tokio::task::spawn_blocking(venv_python).await.unwrap();
    let env = TestEnv::default().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/pg_clients.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .env(
            "TORPOR_URL",
            format!("postgres://{USER}:{PASSWORD}@{}/{USER}", env.listen),
        )
        .env("TORPOR_ADMIN", format!("http://{}", env.admin))
        .env("TORPOR_CLUSTER", &env.cluster)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("python clients ok"), "{stdout}\n{stderr}");
    env.shutdown().await;
}
