//! PyMySQL (mysql_native_password) and MySQL Connector/Python (caching_sha2_password fast
//! auth, server-side prepared statements) through torpor across scale-to-zero cycles. The
//! clients are installed into a virtualenv under the target directory on first use (PyPI).

use std::path::PathBuf;
use std::process::Command;

use torpor_tests::harness::{Opts, PASSWORD, TestEnv, USER};

fn venv_python() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join("pymyclients");
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import pymysql, mysql.connector"])
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
                "PyMySQL==1.1.1",
                "mysql-connector-python==9.1.0",
            ])
            .status()
            .expect("pip");
        assert!(
            installed.success(),
            "pip install PyMySQL mysql-connector-python failed"
        );
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_and_connector_survive_scale_to_zero() {
    let python = tokio::task::spawn_blocking(venv_python).await.unwrap();
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
