//! MySQL/MariaDB cold wake (#10): the shape of #4 with 10 binary prepared statements, 5 session
//! variables and a 1,000-row temp table, against a bare mariadbd start → first query.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Statement};

use crate::stats::{cold_wake, ms};
use crate::torpor::{PASSWORD, Proto, Torpor, USER, time_bare_start, user_ids};

pub(crate) async fn connect(addr: SocketAddr, db: &str) -> Result<Conn> {
    Ok(Conn::new(opts(addr, db)).await?)
}

/// The bench user over TCP to `addr`.
pub(crate) fn opts(addr: SocketAddr, db: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(USER))
        .pass(Some(PASSWORD))
        .db_name(Some(db))
        // Otherwise mysql_async switches to the server's unix socket, around the proxy.
        .prefer_socket(false)
}

pub(crate) const SETTINGS: &str = r#"{ innodb_flush_log_at_trx_commit = "0" }"#;

pub(crate) async fn wake(bin: &Path, work: &Path, runs: usize) -> Result<()> {
    let t = Torpor::start(bin, work, Proto::Mysql, "1h", SETTINGS).await?;
    let (torpor, bare) = t.measure(async |t| wake_inner(t, runs).await).await?;
    cold_wake("my_cold_wake", "mariadbd", torpor, bare);
    Ok(())
}

async fn wake_inner(t: &Torpor, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut c = connect(t.listen, &t.name).await?;
    let stmts = wake_state(&mut c).await?;
    let mut torpor = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..runs {
        t.sleep().await?;
        bare.push(bare_mariadbd(&t.data_dir, t.backend, &t.name).await?);
        let s = Instant::now();
        // Not SELECT 1: torpor answers that probe itself while the database sleeps.
        c.query_drop("SELECT 2").await?;
        torpor.push(ms(s.elapsed()));
    }
    check_wake_state(&mut c, &stmts).await?;
    Ok((torpor, bare))
}

/// The cold wake's session state: 5 session variables, a 1,000-row temporary table and 10
/// binary prepared statements.
pub(crate) async fn wake_state(c: &mut Conn) -> Result<Vec<Statement>> {
    c.query_drop(
        "SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES', time_zone = '+02:00', \
         sort_buffer_size = 1048576, group_concat_max_len = 4096, wait_timeout = 3600",
    )
    .await?;
    c.query_drop("CREATE TEMPORARY TABLE t (id INT PRIMARY KEY, name VARCHAR(64), val DOUBLE)")
        .await?;
    c.query_drop(
        "INSERT INTO t WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) \
         SELECT n, CONCAT('row ', n), n * 0.5 FROM s",
    )
    .await?;
    let mut stmts = Vec::new();
    for i in 0..10 {
        stmts.push(c.prep(format!("SELECT ? + {i}")).await?);
    }
    Ok(stmts)
}

/// The state really came back (not timed).
pub(crate) async fn check_wake_state(c: &mut Conn, stmts: &[Statement]) -> Result<()> {
    let n: Option<i64> = c.query_first("SELECT count(*) FROM t").await?;
    let v: Option<i64> = c.exec_first(&stmts[9], (1,)).await?;
    let tz: Option<String> = c.query_first("SELECT @@session.time_zone").await?;
    if n != Some(1000) || v != Some(10) || tz.as_deref() != Some("+02:00") {
        bail!("state not restored: rows {n:?}, stmt {v:?}, time_zone {tz:?}");
    }
    Ok(())
}

/// mariadbd with the process driver's arguments on the same data dir; spawn → first query.
pub(crate) async fn bare_mariadbd(data: &Path, addr: SocketAddr, db: &str) -> Result<f64> {
    let (uid, gid) = user_ids("mysql")?;
    let bin = ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("no mariadbd")?;
    let d = data.display();
    let log = data.parent().unwrap_or(data).join("bare-mariadb.log");
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={d}"))
        .arg(format!("--port={}", addr.port()))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={d}/mysqld.sock"))
        .arg(format!("--pid-file={d}/mariadbd.pid"))
        .arg(format!("--log-error={}", log.display()))
        .arg("--skip-name-resolve")
        .arg("--skip-log-bin")
        .arg("--plugin-load-add=metadata_lock_info")
        .arg("--innodb-buffer-pool-size=32M")
        .arg(format!("--tmpdir={d}"))
        .arg("--innodb_flush_log_at_trx_commit=0")
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let answer = async || {
        let mut c = connect(addr, db).await.ok()?;
        if let Err(e) = c.query_drop("SELECT 1").await {
            return Some(Err(e.into()));
        }
        // Not part of the time taken.
        tokio::spawn(c.disconnect());
        Some(Ok(()))
    };
    let poll = Duration::from_millis(2);
    time_bare_start(cmd, "mariadbd", poll, libc::SIGTERM, answer).await
}
