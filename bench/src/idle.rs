//! Idle means idle. `idle-pool`: an app's connection pool that only probes, reconnects and runs
//! a real query once a minute, against one torpor with a PostgreSQL and a MariaDB cluster; the
//! share of wall time each backend process did not exist. `probe`: `SELECT 1` answered by
//! torpor while the cluster sleeps against `SELECT 1` on the running server over a direct
//! connection, the same client code and number of round trips.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use mysql_async::prelude::Queryable;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::stats::{Outcome, max, median, min, ms, not_measured, percentile};
use crate::torpor::{Cluster, Proto, Spec, Torpor, alive};

/// One torpor with a PostgreSQL cluster (the first) and a MariaDB one.
pub(crate) async fn start_both(bin: &Path, work: &Path, idle_timeout: &str) -> Result<Torpor> {
    let spec = |proto, settings| Spec {
        proto,
        idle_timeout,
        freeze_after: None,
        settings,
    };
    let specs = [
        spec(Proto::Postgres, r#"{ fsync = "off" }"#),
        spec(Proto::Mysql, r#"{ innodb_flush_log_at_trx_commit = "0" }"#),
    ];
    Torpor::start_clusters(bin, work, &specs).await
}

/// A measure that printed nothing yet still prints one line per cluster.
fn not_measured_all(names: &[&str], target: &str, e: &anyhow::Error) {
    for name in names {
        not_measured(name, target, &format!("{e:#}"));
    }
}

/// A small xorshift generator (the driver has no rand dependency).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
enum Probe {
    Select1,
    /// PostgreSQL's empty query (pgjdbc's `isValid`).
    Empty,
    /// MySQL COM_PING (PyMySQL's `ping()`).
    Ping,
}

/// One client connection, PostgreSQL (tokio-postgres) or MySQL (mysql_async).
pub(crate) enum Conn {
    Pg(tokio_postgres::Client),
    My(mysql_async::Conn),
}

impl Conn {
    /// A connection and nothing else. mysql_async is told max_allowed_packet and wait_timeout,
    /// so it doesn't ask the server for them with a `SELECT @@…` of its own at connect.
    pub(crate) async fn plain(proto: Proto, addr: SocketAddr, db: &str) -> Result<Conn> {
        Ok(match proto {
            Proto::Postgres => Conn::Pg(crate::pg::connect(addr).await?),
            Proto::Mysql => {
                let opts = crate::my::opts(addr, db)
                    .max_allowed_packet(Some(16 << 20))
                    .wait_timeout(Some(28_800));
                Conn::My(mysql_async::Conn::new(opts).await?)
            }
        })
    }

    /// A pooled connection opened as a driver opens one: pgjdbc's connect-time settings, or
    /// PyMySQL's (`SET NAMES`, `SET autocommit = 0`), then the pool's validation (pgjdbc
    /// `isValid` sends the empty query, PyMySQL `ping()` COM_PING).
    async fn open(proto: Proto, addr: SocketAddr, db: &str) -> Result<Conn> {
        let mut conn = Conn::plain(proto, addr, db).await?;
        match &mut conn {
            Conn::Pg(p) => {
                p.batch_execute("SET extra_float_digits = 3").await?;
                p.batch_execute("SET application_name = 'PostgreSQL JDBC Driver'")
                    .await?;
                p.batch_execute("").await?;
            }
            Conn::My(m) => {
                m.query_drop("SET NAMES utf8mb4").await?;
                m.query_drop("SET autocommit = 0").await?;
                m.ping().await?;
            }
        }
        Ok(conn)
    }

    async fn probe(&mut self, p: Probe) -> Result<()> {
        match (self, p) {
            (Conn::Pg(c), Probe::Empty) => c.batch_execute("").await?,
            (Conn::Pg(c), _) => {
                c.simple_query("SELECT 1").await?;
            }
            (Conn::My(c), Probe::Ping) => c.ping().await?,
            (Conn::My(c), _) => c.query_drop("SELECT 1").await?,
        }
        Ok(())
    }

    /// The app's real work: a count and a small write (committed: PyMySQL runs with
    /// autocommit off).
    async fn real(&mut self, tick: usize) -> Result<()> {
        match self {
            Conn::Pg(c) => {
                c.simple_query("SELECT count(*) FROM items").await?;
                c.batch_execute(&format!("INSERT INTO items (note) VALUES ('tick {tick}')"))
                    .await?;
            }
            Conn::My(c) => {
                c.query_drop("SELECT COUNT(*) FROM items").await?;
                c.query_drop(format!("INSERT INTO items (note) VALUES ('tick {tick}')"))
                    .await?;
                c.query_drop("COMMIT").await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn close(self) -> Result<()> {
        match self {
            // Dropping the client ends the connection task, which sends Terminate.
            Conn::Pg(c) => drop(c),
            Conn::My(c) => c.disconnect().await?,
        }
        Ok(())
    }
}

/// The table the real queries use, made through torpor (which wakes the backend, so its
/// settings catalog is learned), then the catalog is waited for.
async fn prepare(t: &Torpor) -> Result<Vec<bool>> {
    let mut learned = Vec::new();
    for c in &t.clusters {
        let mut conn = Conn::plain(c.proto, c.listen, &c.name).await?;
        match &mut conn {
            Conn::Pg(p) => {
                p.batch_execute(
                    "CREATE TABLE IF NOT EXISTS items (id serial PRIMARY KEY, note text); \
                     INSERT INTO items (note) VALUES ('first')",
                )
                .await?
            }
            Conn::My(m) => {
                m.query_drop(
                    "CREATE TABLE IF NOT EXISTS items \
                     (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64))",
                )
                .await?;
                m.query_drop("INSERT INTO items (note) VALUES ('first')")
                    .await?;
            }
        }
        conn.close().await?;
    }
    for c in &t.clusters {
        learned.push(wait_catalog(t, c).await?);
    }
    Ok(learned)
}

fn catalog_metric(c: &Cluster) -> &'static str {
    match c.proto {
        Proto::Postgres => "torpor_pg_catalog_settings",
        Proto::Mysql => "torpor_mysql_catalog_variables",
    }
}

/// Waits up to 30 s for the settings catalog torpor learns after a start (a SET while asleep
/// is answered locally only once it has one). False if it never came.
async fn wait_catalog(t: &Torpor, c: &Cluster) -> Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if t.metric(catalog_metric(c), &c.name).await? > 0.0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// Sleeps every cluster whose backend runs.
async fn sleep_all(t: &Torpor) -> Result<()> {
    for c in &t.clusters {
        if c.backend_pid().is_some() {
            t.sleep_cluster(c).await?;
        }
    }
    Ok(())
}

/// Counters of one cluster from /metrics, taken before and after a window.
#[derive(Clone, Copy, Default)]
struct Counters {
    wakes: f64,
    drains: f64,
    refused: f64,
    aborted: f64,
    local: f64,
}

async fn counters(t: &Torpor, c: &Cluster) -> Result<Counters> {
    let m = t.metrics().await?;
    let get = |name: &str| {
        m.iter()
            .find(|(n, cl, _)| n == name && *cl == c.name)
            .map_or(0.0, |x| x.2)
    };
    Ok(Counters {
        wakes: get("torpor_wakes_total"),
        drains: get("torpor_drains_total"),
        refused: get("torpor_drains_refused_total"),
        aborted: get("torpor_drains_aborted_total"),
        local: get("torpor_local_answers_total"),
    })
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            wakes: self.wakes - o.wakes,
            drains: self.drains - o.drains,
            refused: self.refused - o.refused,
            aborted: self.aborted - o.aborted,
            local: self.local - o.local,
        }
    }
}

/// What one cluster's clients saw in one window.
#[derive(Default)]
struct Seen {
    probes: Vec<f64>,
    connects: Vec<f64>,
    /// Connects made while the backend ran (their SETs reach it and are activity).
    connects_awake: usize,
    /// The schedule's phases: first reconnect, first real query (s).
    phases: (f64, f64),
    real: Vec<f64>,
    errors: Vec<String>,
}

/// One cluster's result of one window.
struct Window {
    asleep: f64,
    samples: usize,
    awake_periods: usize,
    seen: Seen,
    counts: Counters,
}

/// When a cluster's app reconnects and runs its real queries, in seconds from the start of the
/// window: drawn at random for each cluster and run, as two independent apps would. The real
/// query's phase stays in 5..50 s so the last one's awake time ends inside the window.
fn schedule(rng: &mut Rng) -> (f64, f64) {
    (rng.uniform(0.0, CHURN_EVERY), rng.uniform(5.0, 50.0))
}

const CHURN_EVERY: f64 = 20.0;
const REAL_EVERY: f64 = 60.0;

/// `first` s after `start`, then every `period` s, numbered from 0, until `deadline`.
fn every(
    start: Instant,
    first: f64,
    period: f64,
    deadline: Instant,
) -> impl Iterator<Item = (usize, Instant)> {
    (0..)
        .map(move |k| {
            (
                k,
                start + Duration::from_secs_f64(first + period * k as f64),
            )
        })
        .take_while(move |&(_, at)| at < deadline)
}
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

pub(crate) async fn pool(bin: &Path, work: &Path, runs: usize, secs: u64, n: usize) -> Result<()> {
    let target = "≥ 90% asleep, 0 client errors";
    let names = ["pg_pool_asleep_fraction", "my_pool_asleep_fraction"];
    let r = async {
        let t = start_both(bin, work, "5s").await?;
        t.measure(async |t| pool_inner(t, runs, secs, n).await)
            .await
    };
    let (learned, opening, windows) = match r.await {
        Ok(r) => r,
        Err(e) => {
            not_measured_all(&names, target, &e);
            return Ok(());
        }
    };
    for (i, name) in names.iter().enumerate() {
        let w: Vec<&Window> = windows.iter().map(|run| &run[i]).collect();
        let fractions: Vec<f64> = w.iter().map(|w| w.asleep * 100.0).collect();
        let errors: usize = w.iter().map(|w| w.seen.errors.len()).sum();
        let all = |f: &dyn Fn(&Seen) -> &Vec<f64>| -> Vec<f64> {
            w.iter().flat_map(|w| f(&w.seen).iter().copied()).collect()
        };
        let (probes, connects, real) = (
            all(&|s| &s.probes),
            all(&|s| &s.connects),
            all(&|s| &s.real),
        );
        let total = |f: &dyn Fn(&Counters) -> f64| w.iter().map(|w| f(&w.counts)).sum::<f64>();
        let samples: usize = w.iter().map(|w| w.samples).sum();
        // Per run: wakes, awake periods the sampler saw, reconnects that found the server up,
        // and the random phases of the schedule.
        let per_run = w
            .iter()
            .map(|w| {
                format!(
                    "{:.1}% asleep, {} wakes, {} awake periods, {} of {} connects while up, phases {:.0}/{:.0} s",
                    w.asleep * 100.0,
                    w.counts.wakes,
                    w.awake_periods,
                    w.seen.connects_awake,
                    w.seen.connects.len(),
                    w.seen.phases.0,
                    w.seen.phases.1
                )
            })
            .collect::<Vec<_>>()
            .join(" / ");
        let (proto_probes, setup) = if i == 0 {
            (
                "SELECT 1 or the empty query",
                "SET extra_float_digits, SET application_name, empty query",
            )
        } else {
            (
                "COM_PING or SELECT 1",
                "SET NAMES utf8mb4, SET autocommit = 0, COM_PING",
            )
        };
        let mut note = format!(
            "{errors} client errors; {} wakes (torpor_wakes_total); runs: {per_run}; \
             drains {}, refused {}, aborted {}; {} local answers; \
             {} probes ({proto_probes}) p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms; \
             {} connects ({setup}) p50 {:.1} ms, max {:.0} ms; {} real queries p50 {:.0} ms, max {:.0} ms",
            total(&|c| c.wakes),
            total(&|c| c.drains),
            total(&|c| c.refused),
            total(&|c| c.aborted),
            total(&|c| c.local),
            probes.len(),
            percentile(&probes, 50.0),
            percentile(&probes, 99.0),
            max(&probes),
            connects.len(),
            percentile(&connects, 50.0),
            max(&connects),
            real.len(),
            percentile(&real, 50.0),
            max(&real),
        );
        if opening[i] > 0.0 {
            note.push_str(&format!("; opening the pool woke it {} times", opening[i]));
        }
        if !learned[i] {
            note.push_str("; settings catalog not learned before the run");
        }
        if let Some(e) = w.iter().find_map(|w| w.seen.errors.first()) {
            note.push_str(&format!("; first error: {e}"));
        }
        let m = median(&fractions);
        Outcome {
            name: name.to_string(),
            unit: "%".into(),
            runs: fractions,
            baseline: format!(
                "{secs} s window, idle_timeout 5 s, {n} pooled connections; backend pid sampled every {} ms ({samples} samples)",
                SAMPLE_EVERY.as_millis()
            ),
            ratio: None,
            target: target.into(),
            met: m >= 90.0 && errors == 0,
            note,
        }
        .emit();
    }
    Ok(())
}

type PoolResult = (Vec<bool>, Vec<f64>, Vec<Vec<Window>>);

async fn pool_inner(t: &Torpor, runs: usize, secs: u64, n: usize) -> Result<PoolResult> {
    let learned = prepare(t).await?;
    sleep_all(t).await?;
    // The pool opens its connections while the databases sleep.
    let mut opening = Vec::new();
    let mut pools = Vec::new();
    for c in &t.clusters {
        let before = counters(t, c).await?;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let (proto, listen, name) = (c.proto, c.listen, c.name.clone());
            set.spawn(async move { (i, Conn::open(proto, listen, &name).await) });
        }
        let mut slots: Vec<Option<Conn>> = (0..n).map(|_| None).collect();
        while let Some(r) = set.join_next().await {
            let (i, conn) = r?;
            slots[i] = Some(conn.with_context(|| format!("{}: opening the pool", c.name))?);
        }
        opening.push((counters(t, c).await? - before).wakes);
        pools.push(Arc::new(
            slots.into_iter().map(Mutex::new).collect::<Vec<_>>(),
        ));
    }
    let mut windows = Vec::new();
    for _ in 0..runs {
        sleep_all(t).await?;
        windows.push(window(t, &pools, secs).await?);
    }
    for pool in pools {
        for slot in pool.iter() {
            if let Some(c) = slot.lock().await.take() {
                let _ = c.close().await;
            }
        }
    }
    Ok((learned, opening, windows))
}

type Pool = Arc<Vec<Mutex<Option<Conn>>>>;

/// One measured window: every cluster's app at once, and the sampler.
async fn window(t: &Torpor, pools: &[Pool], secs: u64) -> Result<Vec<Window>> {
    let before = {
        let mut v = Vec::new();
        for c in &t.clusters {
            v.push(counters(t, c).await?);
        }
        v
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let seen: Vec<Arc<std::sync::Mutex<Seen>>> = t
        .clusters
        .iter()
        .map(|_| Arc::new(std::sync::Mutex::new(Seen::default())))
        .collect();
    let seed = Arc::new(AtomicU64::new(1));
    let mut set = tokio::task::JoinSet::new();
    for (ci, c) in t.clusters.iter().enumerate() {
        let spec = Arc::new(c.clone());
        let pool = &pools[ci];
        // Each pooled connection validates itself every 2-3 s.
        for slot in 0..pool.len() {
            let (pool, seen, spec) = (pool.clone(), seen[ci].clone(), spec.clone());
            let mut rng = Rng::new(seed.fetch_add(1, Ordering::Relaxed));
            set.spawn(async move {
                let mut next = start + Duration::from_secs_f64(rng.uniform(0.0, 3.0));
                while next < deadline {
                    tokio::time::sleep_until(next).await;
                    let kind = match spec.proto {
                        Proto::Postgres if rng.next() & 1 == 0 => Probe::Select1,
                        Proto::Postgres => Probe::Empty,
                        Proto::Mysql if slot.is_multiple_of(2) => Probe::Ping,
                        Proto::Mysql => Probe::Select1,
                    };
                    let mut g = pool[slot].lock().await;
                    let s = Instant::now();
                    let r = match g.as_mut() {
                        Some(conn) => conn.probe(kind).await,
                        None => Err(anyhow!("no connection")),
                    };
                    let took = ms(s.elapsed());
                    if let Err(e) = r {
                        seen.lock().unwrap().errors.push(format!("probe: {e:#}"));
                        *g = match Conn::open(spec.proto, spec.listen, &spec.name).await {
                            Ok(c) => Some(c),
                            Err(e) => {
                                seen.lock()
                                    .unwrap()
                                    .errors
                                    .push(format!("reconnect: {e:#}"));
                                None
                            }
                        };
                    } else {
                        seen.lock().unwrap().probes.push(took);
                    }
                    drop(g);
                    next += Duration::from_secs_f64(rng.uniform(2.0, 3.0));
                }
            });
        }
        let (churn_at, real_at) = schedule(&mut Rng::new(seed.fetch_add(1, Ordering::Relaxed)));
        seen[ci].lock().unwrap().phases = (churn_at, real_at);
        // The pool retires a connection and opens its replacement every 20 s.
        {
            let (pool, seen, spec) = (pool.clone(), seen[ci].clone(), spec.clone());
            set.spawn(async move {
                for (k, at) in every(start, churn_at, CHURN_EVERY, deadline) {
                    tokio::time::sleep_until(at).await;
                    if spec.backend_pid().is_some() {
                        seen.lock().unwrap().connects_awake += 1;
                    }
                    let s = Instant::now();
                    let fresh = match Conn::open(spec.proto, spec.listen, &spec.name).await {
                        Ok(c) => {
                            seen.lock().unwrap().connects.push(ms(s.elapsed()));
                            Some(c)
                        }
                        Err(e) => {
                            seen.lock().unwrap().errors.push(format!("connect: {e:#}"));
                            None
                        }
                    };
                    if fresh.is_some() {
                        let old = std::mem::replace(&mut *pool[k % pool.len()].lock().await, fresh);
                        if let Some(old) = old
                            && let Err(e) = old.close().await
                        {
                            seen.lock().unwrap().errors.push(format!("close: {e:#}"));
                        }
                    }
                }
            });
        }
        // One real query a minute, on one of the pooled connections.
        {
            let (pool, seen) = (pool.clone(), seen[ci].clone());
            set.spawn(async move {
                for (k, at) in every(start, real_at, REAL_EVERY, deadline) {
                    tokio::time::sleep_until(at).await;
                    let mut g = pool[(k * 7 + 3) % pool.len()].lock().await;
                    let s = Instant::now();
                    let r = match g.as_mut() {
                        Some(conn) => conn.real(k).await,
                        None => Err(anyhow!("no connection")),
                    };
                    match r {
                        Ok(()) => seen.lock().unwrap().real.push(ms(s.elapsed())),
                        Err(e) => seen
                            .lock()
                            .unwrap()
                            .errors
                            .push(format!("real query: {e:#}")),
                    }
                }
            });
        }
    }
    // The sampler: is each backend process there? The admin API's backend_pid or the pid file.
    let mut states: Vec<Vec<(Instant, bool)>> = t.clusters.iter().map(|_| Vec::new()).collect();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut api_errors = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        let api = match t.api_pids().await {
            Ok(v) => v,
            Err(_) => {
                api_errors += 1;
                Vec::new()
            }
        };
        let now = Instant::now();
        for (ci, c) in t.clusters.iter().enumerate() {
            let by_api = api
                .iter()
                .find(|(name, _)| *name == c.name)
                .and_then(|(_, pid)| *pid)
                .is_some_and(alive);
            states[ci].push((now.min(deadline), by_api || c.backend_pid().is_some()));
        }
    }
    if api_errors > 10 {
        bail!("GET /api/clusters failed {api_errors} times during the window");
    }
    while let Some(r) = set.join_next().await {
        r?;
    }
    let mut out = Vec::new();
    for (ci, c) in t.clusters.iter().enumerate() {
        let after = counters(t, c).await?;
        let s = &states[ci];
        // Each sample stands for the time since the one before it.
        let (mut asleep, mut total, mut periods) = (0.0, 0.0, 0);
        let mut prev = (start, false);
        for &(at, up) in s {
            let d = at.duration_since(prev.0).as_secs_f64();
            total += d;
            if !up {
                asleep += d;
            }
            if up && !prev.1 {
                periods += 1;
            }
            prev = (at, up);
        }
        let seen = std::mem::take(&mut *seen[ci].lock().unwrap());
        out.push(Window {
            asleep: if total > 0.0 {
                asleep / total
            } else {
                f64::NAN
            },
            samples: s.len(),
            awake_periods: periods,
            seen,
            counts: after - before[ci],
        });
    }
    Ok(out)
}

/// Round trips per block; the samples are taken in alternating blocks (asleep, direct,
/// direct, asleep, …) so a noisy moment on the machine falls on both.
const BLOCKS: usize = 4;
const WARMUP: usize = 20;

pub(crate) async fn probe(bin: &Path, work: &Path, runs: usize, samples: usize) -> Result<()> {
    let target = "p50 ≤ direct p50, 0 wakes";
    let names = ["pg_probe_asleep_p50", "my_probe_asleep_p50"];
    let t = match start_both(bin, work, "1h").await {
        Ok(t) => t,
        Err(e) => {
            not_measured_all(&names, target, &e);
            return Ok(());
        }
    };
    let mut results = Vec::new();
    for c in &t.clusters {
        results.push(probe_cluster(&t, c, runs, samples).await);
    }
    t.stop().await;
    for (name, r) in names.iter().zip(results) {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                not_measured(name, target, &format!("{e:#}"));
                continue;
            }
        };
        let p = |v: &Vec<Vec<f64>>, q: f64| v.iter().map(|x| percentile(x, q)).collect::<Vec<_>>();
        let (t50, t99, d50, d99) = (
            p(&r.torpor, 50.0),
            p(&r.torpor, 99.0),
            p(&r.direct, 50.0),
            p(&r.direct, 99.0),
        );
        let runs_of = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let ratio = median(&t50) / median(&d50);
        Outcome {
            name: name.to_string(),
            unit: "µs".into(),
            runs: t50.clone(),
            baseline: format!(
                "direct SELECT 1 on the running server: p50 {:.0} µs (runs {}), p99 {:.0} µs (runs {})",
                median(&d50),
                runs_of(&d50),
                median(&d99),
                runs_of(&d99)
            ),
            ratio: Some(ratio),
            target: target.into(),
            met: ratio <= 1.0 && r.wakes == 0.0,
            note: format!(
                "asleep p99 {:.0} µs (runs {}, min {:.0}, max {:.0}); {samples} sequential round trips each per run, \
                 in {BLOCKS} alternating blocks; wakes during the asleep blocks {}",
                median(&t99),
                runs_of(&t99),
                min(&t99),
                max(&t99),
                r.wakes
            ),
        }
        .emit();
    }
    Ok(())
}

struct ProbeRuns {
    /// Latencies in µs, one list per run.
    torpor: Vec<Vec<f64>>,
    direct: Vec<Vec<f64>>,
    wakes: f64,
}

async fn probe_cluster(t: &Torpor, c: &Cluster, runs: usize, samples: usize) -> Result<ProbeRuns> {
    // The session wakes the cluster once, so torpor knows the server; then it is parked.
    let mut parked = Conn::plain(c.proto, c.listen, &c.name).await?;
    parked.probe(Probe::Select1).await?;
    wait_catalog(t, c).await?;
    let per = samples.div_ceil(BLOCKS);
    let mut out = ProbeRuns {
        torpor: Vec::new(),
        direct: Vec::new(),
        wakes: 0.0,
    };
    for _ in 0..runs {
        let (mut asleep, mut direct) = (Vec::new(), Vec::new());
        for b in 0..BLOCKS {
            for side in if b.is_multiple_of(2) { [0, 1] } else { [1, 0] } {
                if side == 0 {
                    if c.backend_pid().is_some() {
                        t.sleep_cluster(c).await?;
                    }
                    let wakes = t.metric("torpor_wakes_total", &c.name).await?;
                    for _ in 0..WARMUP {
                        parked.probe(Probe::Select1).await?;
                    }
                    asleep.extend(round_trips(&mut parked, per).await?);
                    out.wakes += t.metric("torpor_wakes_total", &c.name).await? - wakes;
                    if c.backend_pid().is_some() {
                        out.wakes += 1.0;
                    }
                } else {
                    t.wake_cluster(c).await?;
                    let mut d = Conn::plain(c.proto, c.backend, &c.name).await?;
                    for _ in 0..WARMUP {
                        d.probe(Probe::Select1).await?;
                    }
                    direct.extend(round_trips(&mut d, per).await?);
                    d.close().await?;
                }
            }
        }
        out.torpor.push(asleep);
        out.direct.push(direct);
    }
    parked.close().await?;
    Ok(out)
}

async fn round_trips(conn: &mut Conn, n: usize) -> Result<Vec<f64>> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        conn.probe(Probe::Select1).await?;
        v.push(s.elapsed().as_secs_f64() * 1e6);
    }
    Ok(v)
}
