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

use crate::stats::{Outcome, cold_wake, max, median, ms, not_measured, percentile};
use crate::torpor::{PASSWORD, Proto, Torpor, USER, time_bare_start, user_ids, wait_gone};

pub(crate) async fn connect(addr: SocketAddr) -> Result<Client> {
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

/// #4: first query after a scale-to-zero, for a session holding 10 prepared statements,
/// 5 settings and a 1,000-row temp table; against a bare postgres start → first query on
/// the same data dir, interleaved.
pub(crate) async fn wake(bin: &Path, work: &Path, runs: usize) -> Result<()> {
    let t = Torpor::start(bin, work, Proto::Postgres, "1h", r#"{ fsync = "off" }"#).await?;
    let (torpor, bare) = t.measure(async |t| wake_inner(t, runs).await).await?;
    cold_wake("pg_cold_wake", "postgres", torpor, bare);
    Ok(())
}

async fn wake_inner(t: &Torpor, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let c = connect(t.listen).await?;
    let stmts = wake_state(&c).await?;
    let mut torpor = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..runs {
        t.sleep().await?;
        bare.push(bare_postgres(&t.data_dir, t.backend).await?);
        let start = Instant::now();
        // Not SELECT 1: torpor answers that probe itself while the database sleeps.
        c.simple_query("SELECT 2").await?;
        torpor.push(ms(start.elapsed()));
    }
    check_wake_state(&c, &stmts).await?;
    Ok((torpor, bare))
}

/// The cold wake's session state: 5 settings, a 1,000-row temp table and 10 prepared
/// statements (returned: they close when dropped).
pub(crate) async fn wake_state(c: &Client) -> Result<Vec<tokio_postgres::Statement>> {
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
    Ok(stmts)
}

/// The state really came back (not timed).
pub(crate) async fn check_wake_state(
    c: &Client,
    stmts: &[tokio_postgres::Statement],
) -> Result<()> {
    let n: i64 = c.query_one("SELECT count(*) FROM t", &[]).await?.get(0);
    let v: i32 = c.query_one(&stmts[9], &[&1i32]).await?.get(0);
    let wm: String = c.query_one("SHOW work_mem", &[]).await?.get(0);
    if n != 1000 || v != 10 || wm != "8MB" {
        bail!("state not restored: rows {n}, stmt {v}, work_mem {wm}");
    }
    Ok(())
}

pub(crate) fn pg_bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let v = versions.last().context("no /usr/lib/postgresql/<N>")?;
    Ok(PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
}

/// Starts postgres on the data dir as torpor's driver would, polls a connection every
/// millisecond, runs one query, stops the server. Returns spawn → query answered, in ms.
pub(crate) async fn bare_postgres(data: &Path, addr: SocketAddr) -> Result<f64> {
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
    let answer = async || {
        let c = connect(addr).await.ok()?;
        Some(
            c.simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(Into::into),
        )
    };
    let poll = Duration::from_millis(1);
    time_bare_start(cmd, "postgres", poll, libc::SIGINT, answer).await
}

/// #5: 100 connected sessions go quiet; time from the last query's answer to the moment the
/// postmaster pid is gone (polled at 1 ms), with idle_timeout 200 ms. Twice on the same
/// clients: sessions that only ran `SELECT 2` (the drain skips their capture and put), then
/// sessions that each changed state before going quiet (two settings and a prepared statement,
/// a new application_name every run), so every stop has all of them to capture and store
/// (ahead of the drain, by the early snapshot, or in it).
pub(crate) async fn idle_stop(bin: &Path, work: &Path, runs: usize, n: usize) -> Result<()> {
    let t = Torpor::start(
        bin,
        work,
        Proto::Postgres,
        "200ms",
        &format!(r#"{{ fsync = "off", max_connections = "{}" }}"#, n + 50),
    )
    .await?;
    let (reads, stateful) = t.measure(async |t| idle_inner(t, runs, n).await).await?;
    let target = "p50 ≤ 350 ms (idle_timeout + 150 ms)";
    let emit = |name: &str, v: Vec<f64>, note: String| {
        let m = median(&v);
        Outcome {
            name: name.into(),
            unit: "ms".into(),
            runs: v,
            baseline: "idle_timeout 200 ms".into(),
            ratio: None,
            target: target.into(),
            met: m <= 350.0,
            note,
        }
        .emit();
    };
    emit(
        "pg_idle_to_stop",
        reads,
        format!("{n} idle sessions, reads only (no capture)"),
    );
    match stateful {
        Ok(v) => emit(
            "pg_idle_to_stop_stateful",
            v,
            format!(
                "{n} idle sessions, each with 2 settings + 1 prepared statement captured and stored"
            ),
        ),
        Err(e) => not_measured("pg_idle_to_stop_stateful", target, &format!("{e:#}")),
    }
    Ok(())
}

type Stateful = Result<Vec<f64>>;

async fn idle_inner(t: &Torpor, runs: usize, n: usize) -> Result<(Vec<f64>, Stateful)> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(Arc::new(connect(t.listen).await?));
    }
    let reads = idle_runs(t, &clients, runs, false).await?;
    let stateful = idle_runs(t, &clients, runs, true).await;
    Ok((reads, stateful))
}

async fn idle_runs(
    t: &Torpor,
    clients: &[Arc<Client>],
    runs: usize,
    stateful: bool,
) -> Result<Vec<f64>> {
    let mut out = Vec::new();
    // Prepared statements close when dropped: keep them for the whole measure.
    let mut keep: Vec<Option<tokio_postgres::Statement>> = vec![None; clients.len()];
    for run in 0..runs {
        let mut set = tokio::task::JoinSet::new();
        for (i, c) in clients.iter().enumerate() {
            let c = c.clone();
            set.spawn(async move {
                let stmt = if !stateful {
                    c.simple_query("SELECT 2").await?;
                    None
                } else if run == 0 {
                    make_stateful(&c, i).await?
                } else {
                    // A new value each run, so every drain has something to capture. The SELECT
                    // wakes the database: a SET alone is answered by torpor while it sleeps.
                    c.batch_execute(&format!("SET application_name = 's{i}r{run}'; SELECT 2"))
                        .await?;
                    None
                };
                Ok::<_, tokio_postgres::Error>((Instant::now(), i, stmt))
            });
        }
        let mut last: Option<Instant> = None;
        while let Some(r) = set.join_next().await {
            let (at, i, stmt) = r??;
            if stmt.is_some() {
                keep[i] = stmt;
            }
            last = Some(last.map_or(at, |l| l.max(at)));
        }
        let last = last.context("no clients")?;
        let pid = t
            .backend_pid()
            .context("backend not running after the queries")?;
        wait_gone(pid, Duration::from_secs(30)).await?;
        out.push(ms(last.elapsed()));
    }
    if stateful {
        check_stateful(clients, &keep, runs).await?;
    }
    Ok(out)
}

/// The state the stateful variants give every session: two settings and one named
/// (protocol-level) prepared statement; no temp tables.
async fn make_stateful(
    c: &Client,
    i: usize,
) -> Result<Option<tokio_postgres::Statement>, tokio_postgres::Error> {
    c.batch_execute(&format!(
        "SET application_name = 's{i}'; SET work_mem = '8MB'"
    ))
    .await?;
    Ok(Some(c.prepare(&format!("SELECT $1::int + {i}")).await?))
}

/// The state really came back after the last sleep (not timed): a few sessions are asked.
async fn check_stateful(
    clients: &[Arc<Client>],
    stmts: &[Option<tokio_postgres::Statement>],
    runs: usize,
) -> Result<()> {
    if clients.is_empty() {
        return Ok(());
    }
    for i in [0, clients.len() / 2, clients.len() - 1] {
        let c = &clients[i];
        let stmt = stmts[i].as_ref().context("no prepared statement")?;
        let v: i32 = c.query_one(stmt, &[&1i32]).await?.get(0);
        let wm: String = c.query_one("SHOW work_mem", &[]).await?.get(0);
        let app: String = c.query_one("SHOW application_name", &[]).await?.get(0);
        let want = if runs > 1 {
            format!("s{i}r{}", runs - 1)
        } else {
            format!("s{i}")
        };
        if v != 1 + i as i32 || wm != "8MB" || app != want {
            bail!(
                "session {i}: state not restored: stmt {v}, work_mem {wm}, application_name {app}"
            );
        }
    }
    Ok(())
}

const BIG_ROWS: i64 = 1_000_000;

/// #6: restore of a 1M-row, 3-column temp table. The backend is woken first (admin API);
/// then an empty session's first query and the big session's first query are timed; the
/// difference is the restore. Baseline: `COPY … FROM STDIN (FORMAT binary)` of the same rows
/// into a fresh temp table over a direct connection, interleaved.
pub(crate) async fn restore(bin: &Path, work: &Path, runs: usize) -> Result<()> {
    let t = Torpor::start(bin, work, Proto::Postgres, "1h", r#"{ fsync = "off" }"#).await?;
    let (restore_s, copy_s) = t.measure(async |t| restore_inner(t, runs).await).await?;
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
    empty.simple_query("SELECT 2").await?;

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
        empty.simple_query("SELECT 2").await?;
        let e = s.elapsed();
        let s = Instant::now();
        big.simple_query("SELECT 2").await?;
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
pub(crate) async fn memory(bin: &Path, work: &Path, runs: usize, conns: usize) -> Result<()> {
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
        per.push(t.measure(async |t| memory_inner(t, conns).await).await?);
    }
    let m = median(&per);
    Outcome {
        name: "pg_parked_conn_memory".into(),
        unit: "KiB/conn".into(),
        runs: per,
        baseline: format!("{conns} parked connections"),
        ratio: None,
        target: "≤ 8 KiB per connection".into(),
        met: m <= 8.0,
        note: String::new(),
    }
    .emit();
    Ok(())
}

async fn memory_inner(t: &Torpor, conns: usize) -> Result<f64> {
    // One session first, so torpor knows the server's ParameterStatus values and can greet
    // later clients without waking the database.
    let first = connect(t.listen).await?;
    first.simple_query("SELECT 2").await?;
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
async fn connect_many(addr: SocketAddr, n: usize) -> Result<Vec<Arc<Client>>> {
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
        out.push(Arc::new(r??));
    }
    Ok(out)
}

/// #8: `n` parked sessions each send one query at the same moment. First sessions that only
/// ran `SELECT 2` (nothing to restore), then `n` new sessions that each hold two settings and
/// a prepared statement (every wake loads and replays a snapshot). Baseline, in the same run:
/// `n` direct connections to the backend opened at once, each running one query: what
/// PostgreSQL's own fork + authentication costs on this machine.
pub(crate) async fn mass_wake(bin: &Path, work: &Path, runs: usize, n: usize) -> Result<()> {
    let settings = format!(r#"{{ fsync = "off", max_connections = "{}" }}"#, n + 50);
    let t = Torpor::start(bin, work, Proto::Postgres, "1h", &settings).await?;
    let (reads, direct, stateful) = t.measure(async |t| mass_inner(t, runs, n).await).await?;
    let target = "0 errors, p99 ≤ 2000 ms";
    let baseline = match &direct {
        Ok(d) => format!(
            "{n} direct connections opened at once + 1 query: p99 {:.0} ms (runs {})",
            median(&d.p99s),
            d.p99s
                .iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => format!("direct baseline not measured: {e:#}"),
    };
    let direct_p99 = match &direct {
        Ok(d) => format!(
            "direct connections p99 {:.0} ms ({} errors)",
            median(&d.p99s),
            d.errors
        ),
        Err(_) => "direct baseline not measured".into(),
    };
    let emit = |name: &str, w: Wave, what: &str| {
        let m = median(&w.p99s);
        Outcome {
            name: name.into(),
            unit: "ms".into(),
            met: w.errors == 0 && m <= 2000.0,
            note: format!(
                "{n} sessions {what}; p50 {:.0} ms, max {:.0} ms over all runs; {} errors; {direct_p99}",
                percentile(&w.all, 50.0),
                max(&w.all),
                w.errors
            ),
            runs: w.p99s,
            baseline: baseline.clone(),
            ratio: None,
            target: target.into(),
        }
        .emit();
    };
    emit(
        "pg_mass_wake_p99",
        reads,
        "that only read (nothing to restore)",
    );
    match stateful {
        Ok(w) => emit(
            "pg_mass_wake_p99_stateful",
            w,
            "each restoring 2 settings + 1 prepared statement",
        ),
        Err(e) => not_measured("pg_mass_wake_p99_stateful", target, &format!("{e:#}")),
    }
    Ok(())
}

/// One measure's waves: each run's p99, every latency, failed queries.
#[derive(Default)]
struct Wave {
    p99s: Vec<f64>,
    all: Vec<f64>,
    errors: usize,
}

impl Wave {
    fn add(&mut self, results: Vec<(bool, f64)>) {
        let lat: Vec<f64> = results.iter().filter(|r| r.0).map(|r| r.1).collect();
        self.errors += results.len() - lat.len();
        self.p99s.push(percentile(&lat, 99.0));
        self.all.extend(lat);
    }
}

async fn mass_inner(
    t: &Torpor,
    runs: usize,
    n: usize,
) -> Result<(Wave, Result<Wave>, Result<Wave>)> {
    let first = connect(t.listen).await?;
    first.simple_query("SELECT 2").await?;
    t.sleep().await?;
    let clients = connect_many(t.listen, n).await?;
    let mut reads = Wave::default();
    for run in 0..runs {
        if run > 0 {
            t.sleep().await?;
        }
        reads.add(wave(&clients).await?);
    }
    drop(clients);
    let direct = direct_waves(t, runs, n).await;
    let stateful = stateful_waves(t, runs, n).await;
    drop(first);
    Ok((reads, direct, stateful))
}

/// Every client sends `SELECT 2` at the same moment: (answered, latency ms) per client. Not
/// SELECT 1: torpor answers that probe itself while the database sleeps, with no wake.
async fn wave(clients: &[Arc<Client>]) -> Result<Vec<(bool, f64)>> {
    let barrier = Arc::new(Barrier::new(clients.len()));
    let mut set = tokio::task::JoinSet::new();
    for c in clients {
        let (c, barrier) = (c.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            let s = Instant::now();
            let r = c.simple_query("SELECT 2").await;
            (r.is_ok(), ms(s.elapsed()))
        });
    }
    let mut out = Vec::with_capacity(clients.len());
    while let Some(r) = set.join_next().await {
        out.push(r?);
    }
    Ok(out)
}

/// The baseline: the backend is running with no torpor session on it; `n` clients connect to
/// it directly at the same moment (fork + SCRAM, including the client's own PBKDF2) and run
/// one query; latency from the barrier to the answer.
async fn direct_waves(t: &Torpor, runs: usize, n: usize) -> Result<Wave> {
    let mut w = Wave::default();
    for _ in 0..runs {
        // Sessions of the previous wave may still be on their way out: restart the backend.
        t.sleep().await?;
        t.wake().await?;
        let barrier = Arc::new(Barrier::new(n));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let barrier = barrier.clone();
            let addr = t.backend;
            set.spawn(async move {
                barrier.wait().await;
                let s = Instant::now();
                let r = async {
                    let c = connect(addr).await?;
                    c.simple_query("SELECT 1").await?;
                    Ok::<Client, anyhow::Error>(c)
                }
                .await;
                (ms(s.elapsed()), r)
            });
        }
        let mut results = Vec::with_capacity(n);
        let mut open = Vec::with_capacity(n);
        while let Some(r) = set.join_next().await {
            let (l, c) = r?;
            results.push((c.is_ok(), l));
            open.extend(c.ok());
        }
        w.add(results);
        drop(open);
    }
    t.sleep().await?;
    Ok(w)
}

/// `n` new sessions each take some state while the backend runs; then each run sleeps the
/// cluster (the first drain captures and stores every session) and wakes them all at once.
async fn stateful_waves(t: &Torpor, runs: usize, n: usize) -> Result<Wave> {
    let clients = connect_many(t.listen, n).await?;
    let sem = Arc::new(Semaphore::new(64));
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in clients.iter().enumerate() {
        let (c, sem) = (c.clone(), sem.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            let stmt = make_stateful(&c, i).await?;
            Ok::<_, anyhow::Error>((i, stmt))
        });
    }
    let mut stmts: Vec<Option<tokio_postgres::Statement>> = vec![None; n];
    while let Some(r) = set.join_next().await {
        let (i, stmt) = r??;
        stmts[i] = stmt;
    }
    let mut w = Wave::default();
    for _ in 0..runs {
        t.sleep().await?;
        w.add(wave(&clients).await?);
    }
    check_stateful(&clients, &stmts, 1).await?;
    Ok(w)
}
