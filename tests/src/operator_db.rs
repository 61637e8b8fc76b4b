//! PostgreSQL and MariaDB data directories made as an operator would (the test's users and
//! databases), for the drivers that run a server torpor didn't make: command, kubernetes.

use std::path::Path;
use std::process::Command;

use crate::harness::{OTHER_PASSWORD, OTHER_USER, PASSWORD, USER};

pub const BIN: &str = "/usr/lib/postgresql/15/bin";

/// `cmd` as the postgres user when the tests run as root (postgres refuses root).
pub fn as_postgres(cmd: &str) -> String {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        format!("runuser -u postgres -- {cmd}")
    } else {
        cmd.to_string()
    }
}

pub fn sh(cmd: &str, stdin: Option<&str>) {
    use std::io::Write;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("sh");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success(), "{cmd}");
}

/// A data directory made as an operator would: initdb, the test's roles and databases.
pub fn make_server(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    sh(
        &format!(
            "chown postgres: {} 2>/dev/null; chmod 700 {}",
            data.display(),
            data.display()
        ),
        None,
    );
    sh(
        &as_postgres(&format!(
            "{BIN}/initdb -D {} -U postgres --auth-host=scram-sha-256 --auth-local=peer --no-sync -E UTF8",
            data.display()
        )),
        None,
    );
    let sql = format!(
        "CREATE ROLE {USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'\nCREATE DATABASE {USER} OWNER {USER}\nCREATE ROLE {OTHER_USER} LOGIN PASSWORD '{OTHER_PASSWORD}'\nCREATE DATABASE {OTHER_USER} OWNER {OTHER_USER}\n"
    );
    sh(
        &as_postgres(&format!(
            "{BIN}/postgres --single -D {} postgres",
            data.display()
        )),
        Some(&sql),
    );
}

/// `mysql` when the tests run as root, else nothing (mariadbd then runs as this user).
pub fn mysql_user() -> &'static str {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        "--user=mysql"
    } else {
        ""
    }
}

/// A MariaDB data directory made as an operator would, with the test's users.
pub fn make_mariadb(data: &Path, db: &str) {
    std::fs::create_dir_all(data).unwrap();
    let user = mysql_user();
    sh(
        &format!(
            "chown mysql: {d} 2>/dev/null; mariadb-install-db --no-defaults --datadir={d} {user} --force --skip-test-db --auth-root-authentication-method=socket >/dev/null",
            d = data.display()
        ),
        None,
    );
    let sql = format!(
        "FLUSH PRIVILEGES;\nCREATE DATABASE {db};\nCREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';\nGRANT ALL ON *.* TO '{USER}'@'%' WITH GRANT OPTION;\nCREATE USER '{OTHER_USER}'@'%' IDENTIFIED BY '{OTHER_PASSWORD}';\nGRANT ALL ON {db}.* TO '{OTHER_USER}'@'%';\n"
    );
    sh(
        &format!(
            "mariadbd --no-defaults --bootstrap --datadir={} {user} --log-warnings=0 >/dev/null 2>&1",
            data.display()
        ),
        Some(&sql),
    );
}
