//! asyncpg and psycopg 3 (named protocol statements, COPY, pipeline mode, LISTEN) through
//! torpor across scale-to-zero cycles. The clients are installed into a virtualenv under the
//! target directory on first use (PyPI), so nothing outside the repository is touched.

use std::path::PathBuf;

use torpor_tests::harness::{PASSWORD, TestEnv, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg_survive_scale_to_zero() {
    let python = tokio::task::spawn_blocking(|| {
        torpor_tests::python::venv_python(
            "pyclients",
            "asyncpg, psycopg",
            &["asyncpg==0.32.0", "psycopg[binary]==3.3.9"],
        )
    })
    .await
    .unwrap();
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
