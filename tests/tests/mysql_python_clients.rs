//! PyMySQL (mysql_native_password) and MySQL Connector/Python (caching_sha2_password fast
//! auth, server-side prepared statements) through torpor across scale-to-zero cycles. The
//! clients are installed into a virtualenv under the target directory on first use (PyPI).

use std::path::PathBuf;

use torpor_tests::harness::{Opts, PASSWORD, TestEnv, USER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_and_connector_survive_scale_to_zero() {
    let python = tokio::task::spawn_blocking(|| {
        torpor_tests::python::venv_python(
            "pymyclients",
            "pymysql, mysql.connector",
            &["PyMySQL==1.1.1", "mysql-connector-python==9.1.0"],
        )
    })
    .await
    .unwrap();
    let env = TestEnv::start(Opts::mysql()).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients/my_clients.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .env("TORPOR_HOST", env.listen.ip().to_string())
        .env("TORPOR_PORT", env.listen.port().to_string())
        .env("TORPOR_USER", USER)
        .env("TORPOR_PASSWORD", PASSWORD)
        .env("TORPOR_DB", &env.cluster)
        .env("TORPOR_ADMIN", format!("http://{}", env.admin))
        .env("TORPOR_CLUSTER", &env.cluster)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("python mysql clients ok"),
        "{stdout}\n{stderr}"
    );
    env.shutdown().await;
}
