//! PostgreSQL measures: cold wake (#4), idle → stop (#5), temp-table restore (#6), memory per
//! parked connection (#7), mass wake (#8).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::SinkExt;
use std::os::unix::process::CommandExt as _;
use tokio::sync::{Barrier, Semaphore};
use tokio_postgres::{Client, NoTls};

use crate::stats::{Outcome, max, median, percentile};
use crate::torpor::{PASSWORD, Proto, Torpor, USER, signal, user_ids, wait_gone};

pub async fn connect(addr: SocketAddr) -> Result<Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(addr.ip().to_string())
        .port(addr.port())
        .user(USER)
        .password(PASSWORD)
        .dbname(USER)
        .connect_timeout(Duration::from_secs(120));
    let (client, conn) = cfg.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// #4: first query after a scale-to-zero, for a session holding 10 prepared statements,
/// 5 settings and a 1,000-row temp table; against a bare postgres start → first query on
/// the same data dir, interleaved.
pub async fn wake(bin: &Path, work: &Path, runs: usize) -> Result<()> {
    let t = Torpor::start(bin, work, Proto::Postgres, "1h", r#"{ fsync = "off" }"#).await?;
    let r = wake_inner(&t, runs).await;
    t.stop().await;
    let (torpor, bare) = r?;
    let (mt, mb) = (median(&torpor), median(&bare));
    Outcome {
        name: "pg_cold_wake".into(),
        unit: "ms".into(),
        runs: torpor,
        baseline: format!(
            "bare postgres start→query p50 {:.1} ms (min {:.1}, max {:.1})",
            mb,
            crate::stats::min(&bare),
            max(&bare)
        ),
        ratio: Some(mt / mb),
        target: "p50 ≤ bare + 30 ms".into(),
        met: mt <= mb + 30.0,
        note: format!("torpor − bare = {:+.1} ms", mt - mb),
    }
    .emit();
    Ok(())
}

async fn wake_inner(t: &Torpor, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let c = connect(t.listen).await?;
    c.batch_execute(
        "SET search_path = public, pg_temp; SET application_name = 'bench'; \
         SET work_mem = '8MB'; SET statement_timeout = '60s'; SET bench.custom = 'x'; \
         CREATE TEMP TABLE t (id int PRIMARY KEY, name text, val float8); \
         INSERT INTO t SELECT g, 'row ' || g, g * 0.5 FROM generate_series(1, 1000) g",
    )
    .await?;
    let mut stmts = Vec::new();
    for i in 0..10 {
        stmts.push(c.prepare(&format!("SELECT $1::int + {i}")).await?);
    }
    let mut torpor = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..runs {
        t.sleep().await?;
        bare.push(bare_postgres(&t.data_dir, t.backend).await?);
        let start = Instant::now();
        c.simple_query("SELECT 1").await?;
        torpor.push(ms(start.elapsed()));
    }
    // The state really came back (not timed).
    let n: i64 = c.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    let v: i32 = c.query_one(&stmts[9], &[&1i32]).await?.get(0);
    let wm: String = c.query_one("SHOW work_mem", &[]).await?.get(0);
    if n != 1000 || v != 10 || wm != "8MB" {
        bail!("state not restored: rows {n}, stmt {v}, work_mem {wm}");
    }
    Ok((torpor, bare))
}

pub fn pg_bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let v = versions.last().context("no /usr/lib/postgresql/<N>")?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
}

/// Starts postgres on the data dir as torpor's driver would, polls a connection every
/// millisecond, runs one query, stops the server. Returns spawn → query answered, in ms.
async fn bare_postgres(data: &Path, addr: SocketAddr) -> Result<f64> {
    let (uid, gid) = user_ids("postgres")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.parent().unwrap_or(data).join("bare-postgres.log"))?;
    let mut cmd = std::process::Command::new(pg_bin_dir()?.join("postgres"));
    cmd.arg("-D")
        .arg(data)
        .arg("-p")
        .arg(addr.port().to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "recovery_init_sync_method=syncfs"])
        .args(["-c", "fsync=off"])
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    let start = Instant::now();
    let mut child = tokio::process::Command::from(cmd).spawn()?;
    let pid = child.id().context("postgres exited")?;
    let result = async {
        loop {
            if let Ok(c) = connect(addr).await {
                c.simple_query("SELECT 1").await?;
                return Ok::<f64, anyhow::Error>(ms(start.elapsed()));
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("bare postgres not answering after 60 s");
            }
            if let Some(s) = child.try_wait()? {
                bail!("bare postgres exited: {s}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    .await;
    signal(pid, libc::SIGINT);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    wait_gone(pid, Duration::from_secs(5)).await?;
    result
}

/// #5: 100 connected sessions go quiet; time from the last query's answer to the moment the
/// postmaster pid is gone (polled at 1 ms), with idle_timeout 200 ms.
pub async fn idle_stop(bin: &Path, work: &Path, runs: usize, n: usize) -> Result<()> {
    let t = Torpor::start(
        bin,
        work,
        Proto::Postgres,
        "200ms",
        &format!(r#"{{ fsync = "off", max_connections = "{}" }}"#, n + 50),
    )
    .await?;
    let r = idle_inner(&t, runs, n).await;
    t.stop().await;
    let v = r?;
    let m = median(&v);
    Outcome {
        name: "pg_idle_to_stop".into(),
        unit: "ms".into(),
        runs: v,
        baseline: "idle_timeout 200 ms".into(),
        ratio: None,
        target: "p50 ≤ 350 ms (idle_timeout + 150 ms)".into(),
        met: m <= 350.0,
        note: format!("{n} idle sessions"),
    }
    .emit();
    Ok(())
}

async fn idle_inner(t: &Torpor, runs: usize, n: usize) -> Result<Vec<f64>> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(Arc::new(connect(t.listen).await?));
    }
    let mut out = Vec::new();
    for _ in 0..runs {
        let mut set = tokio::task::JoinSet::new();
        for c in &clients {
            let c = c.clone();
            set.spawn(async move {
                c.simple_query("SELECT 1").await?;
                Ok::<Instant, tokio_postgres::Error>(Instant::now())
            });
        }
        let mut last: Option<Instant> = None;
        while let Some(r) = set.join_next().await {
            let at = r??;
            last = Some(last.map_or(at, |l| l.max(at)));
        }
        let last = last.context("no clients")?;
        let pid = t
            .backend_pid()
            .context("backend not running after the queries")?;
        wait_gone(pid, Duration::from_secs(30)).await?;
        out.push(ms(last.elapsed()));
    }
    Ok(out)
}

const BIG_ROWS: i64 = 1_000_000;

/// #6: restore of a 1M-row, 3-column temp table. The backend is woken first (admin API);
/// then an empty session's first query and the big session's first query are timed; the
/// difference is the restore. Baseline: `COPY … FROM STDIN (FORMAT binary)` of the same rows
/// into a fresh temp table over a direct connection, interleaved.
pub async fn restore(bin: &Path, work: &Path, runs: usize) -> Result<()> {
    let t = Torpor::start(bin, work, Proto::Postgres, "1h", r#"{ fsync = "off" }"#).await?;
    let r = restore_inner(&t, runs).await;
    t.stop().await;
    let (restore_s, copy_s) = r?;
    let rate = |s: &Vec<f64>| s.iter().map(|x| BIG_ROWS as f64 / x).collect::<Vec<_>>();
    let (rr, cr) = (rate(&restore_s), rate(&copy_s));
    let ratio = median(&rr) / median(&cr);
    Outcome {
        name: "pg_temp_restore".into(),
        unit: "rows/s".into(),
        runs: rr,
        baseline: format!(
            "raw COPY FROM STDIN binary {:.0} rows/s ({:.0} ms)",
            median(&cr),
            median(&copy_s) * 1000.0
        ),
        ratio: Some(ratio),
        target: "≥ 0.5× raw COPY".into(),
        met: ratio >= 0.5,
        note: format!("restore {:.0} ms for 1M rows", median(&restore_s) * 1000.0),
    }
    .emit();
    Ok(())
}

async fn restore_inner(t: &Torpor, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let rows_sql = format!(
        "SELECT g::int, 'row ' || g, g * 0.5::float8 FROM generate_series(1, {BIG_ROWS}) g"
    );
    let big = connect(t.listen).await?;
    big.batch_execute(&format!(
        "CREATE TEMP TABLE big (id int, name text, val float8); INSERT INTO big {rows_sql}"
    ))
    .await?;
    let empty = connect(t.listen).await?;
    empty.simple_query("SELECT 1").await?;

    // The same rows in COPY binary form, for the baseline.
    let data = {
        let d = connect(t.backend).await?;
        let stream = d
            .copy_out(&format!("COPY ({rows_sql}) TO STDOUT (FORMAT binary)"))
            .await?;
        let mut stream = std::pin::pin!(stream);
        let mut buf = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            buf.extend_from_slice(&chunk?);
        }
        bytes::Bytes::from(buf)
    };

    let mut restore_s = Vec::new();
    let mut copy_s = Vec::new();
    for _ in 0..runs {
        t.sleep().await?;
        t.wake().await?;
        let s = Instant::now();
        empty.simple_query("SELECT 1").await?;
        let e = s.elapsed();
        let s = Instant::now();
        big.simple_query("SELECT 1").await?;
        let b = s.elapsed();
        restore_s.push((b.saturating_sub(e)).as_secs_f64());

        let d = connect(t.backend).await?;
        d.batch_execute("CREATE TEMP TABLE c (id int, name text, val float8)")
            .await?;
        let s = Instant::now();
        let sink = d.copy_in("COPY c FROM STDIN (FORMAT binary)").await?;
        let mut sink = std::pin::pin!(sink);
        let mut at = 0;
        while at < data.len() {
            let end = (at + (64 << 10)).min(data.len());
            sink.send(data.slice(at..end)).await?;
            at = end;
        }
        let n = sink.as_mut().finish().await?;
        copy_s.push(s.elapsed().as_secs_f64());
        if n != BIG_ROWS as u64 {
            bail!("baseline COPY loaded {n} rows");
        }
    }
    let n: i64 = big.query_one("SELECT count(*) FROM big", &[]).await?.get(0);
    if n != BIG_ROWS {
        bail!("restored table has {n} rows");
    }
    Ok((restore_s, copy_s))
}

/// #7: torpor's RSS growth per parked client connection, with `conns` clients connected
/// while the cluster sleeps.
pub async fn memory(bin: &Path, work: &Path, runs: usize, conns: usize) -> Result<()> {
    let mut per = Vec::new();
    for i in 0..runs {
        let t = Torpor::start(
            bin,
            &work.join(format!("run{i}")),
            Proto::Postgres,
            "1h",
            r#"{ fsync = "off" }"#,
        )
        .await?;
        let r = memory_inner(&t, conns).await;
        t.stop().await;
        per.push(r?);
    }
    let m = median(&per);
    Outcome {
        name: "pg_parked_conn_memory".into(),
        unit: "KiB/conn".into(),
        runs: per,
        baseline: format!("{conns} parked connections"),
        ratio: None,
        target: "≤ 16 KiB per connection".into(),
        met: m <= 16.0,
        note: String::new(),
    }
    .emit();
    Ok(())
}

async fn memory_inner(t: &Torpor, conns: usize) -> Result<f64> {
    // One session first, so torpor knows the server's ParameterStatus values and can greet
    // later clients without waking the database.
    let first = connect(t.listen).await?;
    first.simple_query("SELECT 1").await?;
    t.sleep().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = t.rss_kib()?;
    let clients = connect_many(t.listen, conns).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = t.rss_kib()?;
    if t.backend_pid().is_some() {
        bail!("the backend woke up while clients connected");
    }
    let (attached, parked) = t.sessions().await?;
    if attached != 0 || (parked as usize) < conns {
        bail!(
            "expected {conns} parked sessions, admin API says attached {attached}, parked {parked}"
        );
    }
    drop(clients);
    Ok((after.saturating_sub(before)) as f64 / conns as f64)
}

/// Connects `n` clients, 32 at a time (each authenticates with SCRAM).
async fn connect_many(addr: SocketAddr, n: usize) -> Result<Vec<Client>> {
    let sem = Arc::new(Semaphore::new(32));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            connect(addr).await
        });
    }
    let mut out = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        out.push(r??);
    }
    Ok(out)
}

/// #8: `n` parked sessions each send one query at the same moment.
pub async fn mass_wake(bin: &Path, work: &Path, runs: usize, n: usize) -> Result<()> {
    let settings = format!(r#"{{ fsync = "off", max_connections = "{}" }}"#, n + 50);
    let t = Torpor::start(bin, work, Proto::Postgres, "1h", &settings).await?;
    let r = mass_inner(&t, runs, n).await;
    t.stop().await;
    let (p99s, errors, all) = r?;
    let m = median(&p99s);
    Outcome {
        name: "pg_mass_wake_p99".into(),
        unit: "ms".into(),
        runs: p99s,
        baseline: format!(
            "{n} sessions; p50 {:.0} ms, max {:.0} ms over all runs",
            percentile(&all, 50.0),
            max(&all)
        ),
        ratio: None,
        target: "0 errors, p99 ≤ 2000 ms".into(),
        met: errors == 0 && m <= 2000.0,
        note: format!("{errors} errors"),
    }
    .emit();
    Ok(())
}

async fn mass_inner(t: &Torpor, runs: usize, n: usize) -> Result<(Vec<f64>, usize, Vec<f64>)> {
    let first = connect(t.listen).await?;
    first.simple_query("SELECT 1").await?;
    t.sleep().await?;
    let clients: Vec<Arc<Client>> = connect_many(t.listen, n)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    let mut p99s = Vec::new();
    let mut all = Vec::new();
    let mut errors = 0;
    for run in 0..runs {
        if run > 0 {
            t.sleep().await?;
        }
        let barrier = Arc::new(Barrier::new(n));
        let mut set = tokio::task::JoinSet::new();
        for c in &clients {
            let (c, barrier) = (c.clone(), barrier.clone());
            set.spawn(async move {
                barrier.wait().await;
                let s = Instant::now();
                let r = c.simple_query("SELECT 1").await;
                (r.is_ok(), ms(s.elapsed()))
            });
        }
        let mut lat = Vec::new();
        while let Some(r) = set.join_next().await {
            let (ok, l) = r?;
            if ok {
                lat.push(l);
            } else {
                errors += 1;
            }
        }
        p99s.push(percentile(&lat, 99.0));
        all.extend(lat);
    }
    drop(first);
    Ok((p99s, errors, all))
}
