//! Python client libraries for the client tests, installed from PyPI into a virtualenv under
//! the target directory on first use, so nothing outside the repository is touched.

use std::path::PathBuf;
use std::process::Command;

/// The python of virtualenv `target/<name>`, where `import <imports>` works after installing
/// `packages` (pinned requirement strings) if it didn't already.
pub fn venv_python(name: &str, imports: &str, packages: &[&str]) -> PathBuf {
    // Tests of one binary run at once: the first creates the virtualenv, the others wait.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let venv = target.join(name);
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", &format!("import {imports}")])
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
            .args(["-m", "pip", "install", "-q"])
            .args(packages)
            .status()
            .expect("pip");
        assert!(installed.success(), "pip install {packages:?} failed");
    }
    python
}

/// The PostgreSQL Python clients the tests use (psycopg2 with SQLAlchemy, psycopg 3 with its
/// pool, asyncpg), in one virtualenv.
pub fn pg_clients() -> PathBuf {
    venv_python(
        "pyidle",
        "psycopg2, sqlalchemy, psycopg, psycopg_pool, asyncpg",
        &[
            "psycopg2-binary==2.9.13",
            "SQLAlchemy==2.1.9",
            "psycopg[binary]==3.3.9",
            "psycopg-pool==3.3.3",
            "asyncpg==0.32.0",
        ],
    )
}

/// The MySQL Python clients the tests use (PyMySQL, MySQL Connector/Python), in one virtualenv.
pub fn my_clients() -> PathBuf {
    venv_python(
        "pymyclients",
        "pymysql, mysql.connector",
        &["PyMySQL==1.1.1", "mysql-connector-python==9.1.0"],
    )
}

/// The python of `venv` ([`pg_clients`] or [`my_clients`]), from an async test: a first install
/// takes a while, so it runs on a blocking thread.
pub async fn python(venv: fn() -> PathBuf) -> PathBuf {
    tokio::task::spawn_blocking(venv)
        .await
        .expect("the virtualenv install panicked")
}
