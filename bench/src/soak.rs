//! The soak (issue 11, scripts/soak.sh): sleep/wake cycles of one torpor with a PostgreSQL and
//! a MariaDB cluster under a real client mix, every session checking all of its state after
//! every wake. Not a benchmark and not part of CI.
//!
//! torpor-bench soak --torpor PATH --work DIR [--cycles N] [--idle-timeout D]
//!     [--python PATH --scripts DIR] [--java-cp CLASSPATH]
//!
//! The sessions: tokio-postgres and mysql_async run here; psycopg 3 and PyMySQL (`--python`
//! runs `soak_psycopg.py` and `soak_pymysql.py` from `--scripts`) and pgjdbc (`--java-cp`, the
//! class path of the compiled `SoakJdbc`) are child processes that speak a line protocol on
//! stdin and stdout: the driver writes `setup`, `cycle N` or `quit`; the client answers `ok`,
//! `error MESSAGE` (its library raised) or `mismatch MESSAGE` (a value it read back differs).
//!
//! A cycle: wait until both clusters are asleep (`GET /api/clusters` shows no backend pid and
//! the old backend processes are gone), tell every session at once to check its state (its
//! first query wakes its cluster) and move it one step on, then read from the metrics that both
//! clusters started a backend again. Sessions are idle between cycles, so each cluster goes to
//! sleep by itself after `idle_timeout`.
//!
//! Each session holds the state of its step k (0 after setup, k after cycle k) and, after the
//! wake of cycle k + 1, reads back all of it in one query plus its prepared statements.
//! PostgreSQL (TAG: `tp` tokio-postgres, `pg3` psycopg, `jdbc` pgjdbc):
//! - `search_path = soak_TAG, public` (a schema of its own): `current_schema()` is `soak_TAG`;
//! - `work_mem = (64 + k)kB`, `application_name = 'soak-TAG-k'`, a custom `soak.step = 'k'`;
//! - temp table `soak_t` with rows id 0..=k (count k + 1, sum k(k+1)/2);
//! - temp sequence `soak_seq`: the check's `nextval` returns k + 1;
//! - one session advisory lock; SQL `PREPARE soak_q AS SELECT k`; a protocol-level prepared
//!   statement `SELECT $1::int * 2` run with k.
//!
//! MySQL (TAG: `ma` mysql_async, `pym` PyMySQL):
//! - `USE soak_TAG`; `group_concat_max_len = 1024 + k`, `time_zone = '+01:00'`;
//! - `@soak_step = k`, `@soak_s = 'step k'`;
//! - temp table `soak_t` with AUTO_INCREMENT ids 1..=k+1, `LAST_INSERT_ID()` k + 1;
//! - a named lock (GET_LOCK) held; `PREPARE soak_q FROM 'SELECT k'`; mysql_async also a binary
//!   statement `SELECT ? * 2` run with k.
//!
//! A session that fails a check or a step closes its connection and opens a new one with the
//! state of the step it should have reached (a new "generation": its own lock), so one failure
//! is counted once, not in every later cycle.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::stats::{median, ms, percentile};
use crate::torpor::{Cluster, PASSWORD, Proto, Torpor, USER, alive};

/// How long one session may take over one step before it counts as an error.
const STEP_LIMIT: Duration = Duration::from_secs(120);
/// How long both clusters may take to go to sleep once every session is idle.
const SLEEP_LIMIT: Duration = Duration::from_secs(60);
/// Failures printed in full; later ones are only counted.
const SHOWN: u64 = 100;

struct Opts {
    torpor: PathBuf,
    work: PathBuf,
    cycles: u64,
    idle_timeout: String,
    python: Option<PathBuf>,
    scripts: Option<PathBuf>,
    java_cp: Option<String>,
}

fn parse(a: &[String]) -> Result<Opts> {
    let mut o = Opts {
        torpor: PathBuf::new(),
        work: PathBuf::new(),
        cycles: 1000,
        idle_timeout: "300ms".into(),
        python: None,
        scripts: None,
        java_cp: None,
    };
    let mut it = a.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--torpor" => o.torpor = PathBuf::from(value),
            "--work" => o.work = PathBuf::from(value),
            "--cycles" => o.cycles = value.parse()?,
            "--idle-timeout" => o.idle_timeout = value.clone(),
            "--python" => o.python = Some(PathBuf::from(value)),
            "--scripts" => o.scripts = Some(PathBuf::from(value)),
            "--java-cp" => o.java_cp = Some(value.clone()),
            other => bail!("unknown flag {other}"),
        }
    }
    if o.torpor.as_os_str().is_empty() || o.work.as_os_str().is_empty() {
        bail!("soak --torpor PATH --work DIR [--cycles N] [--idle-timeout D] ...");
    }
    if o.python.is_some() != o.scripts.is_some() {
        bail!("--python and --scripts go together");
    }
    Ok(o)
}

/// `torpor-bench soak ...`: runs the soak, prints its counts; an error when any session saw an
/// error or a mismatch, or a cycle didn't sleep or wake.
pub(crate) fn run(a: &[String]) -> Result<()> {
    let opts = parse(a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        std::fs::create_dir_all(&opts.work)?;
        let t = crate::idle::start_both(&opts.torpor, &opts.work, &opts.idle_timeout).await?;
        t.measure(async |t| soak(t, &opts).await).await
    });
    rt.shutdown_background();
    let report = report?;
    report.print();
    let (errors, mismatches) = report.failures();
    if errors + mismatches + report.missed_sleeps + report.missed_wakes > 0 {
        bail!(
            "failed: {errors} client errors, {mismatches} state mismatches, {} cycles \
             without a sleep, {} without a wake",
            report.missed_sleeps,
            report.missed_wakes
        );
    }
    Ok(())
}

/// What a session said about one step.
enum Outcome {
    Ok,
    /// The client library raised (or the program died, or took over [`STEP_LIMIT`]).
    Error(String),
    /// A value read back differs from what the session set.
    Mismatch(String),
}

impl Outcome {
    fn of_line(line: Option<String>) -> Outcome {
        match line {
            None => Outcome::Error("the client program exited".into()),
            Some(l) if l == "ok" => Outcome::Ok,
            Some(l) => match l.split_once(' ') {
                Some(("error", m)) => Outcome::Error(m.to_string()),
                Some(("mismatch", m)) => Outcome::Mismatch(m.to_string()),
                _ => Outcome::Error(format!("unexpected answer {l:?}")),
            },
        }
    }
}

enum Cmd {
    Setup,
    Cycle(u64),
}

/// One client session, run in a task of its own so that all of them act at once.
trait Session: Send + 'static {
    fn setup(&mut self) -> impl Future<Output = Outcome> + Send;
    fn cycle(&mut self, n: u64) -> impl Future<Output = Outcome> + Send;
    fn quit(self) -> impl Future<Output = ()> + Send;
}

/// The driver's handle on a session task, with its counts.
struct Handle {
    name: &'static str,
    cluster: String,
    cmds: mpsc::Sender<Cmd>,
    answers: mpsc::Receiver<Outcome>,
    errors: u64,
    mismatches: u64,
}

fn spawn(name: &'static str, cluster: &Cluster, mut s: impl Session) -> Handle {
    let (cmds, mut rx) = mpsc::channel::<Cmd>(1);
    let (tx, answers) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            let step = async {
                match cmd {
                    Cmd::Setup => s.setup().await,
                    Cmd::Cycle(n) => s.cycle(n).await,
                }
            };
            let outcome = tokio::time::timeout(STEP_LIMIT, step)
                .await
                .unwrap_or_else(|_| Outcome::Error(format!("no answer in {STEP_LIMIT:?}")));
            if tx.send(outcome).await.is_err() {
                break;
            }
        }
        s.quit().await;
    });
    Handle {
        name,
        cluster: cluster.name.clone(),
        cmds,
        answers,
        errors: 0,
        mismatches: 0,
    }
}

/// Sends every session `cmd` at once and collects the answers, in the sessions' order.
async fn all(sessions: &mut [Handle], cmd: impl Fn() -> Cmd) -> Vec<Outcome> {
    for s in sessions.iter() {
        let _ = s.cmds.send(cmd()).await;
    }
    let mut out = Vec::new();
    for s in sessions.iter_mut() {
        let answer = s.answers.recv().await;
        out.push(answer.unwrap_or_else(|| Outcome::Error("the session task ended".into())));
    }
    out
}

/// Ends every session (the programs get `quit`) and waits up to 10 s for them.
async fn quit_all(sessions: Vec<Handle>) {
    let mut answers = Vec::new();
    for s in sessions {
        drop(s.cmds);
        answers.push(s.answers);
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        for mut a in answers {
            while a.recv().await.is_some() {}
        }
    })
    .await;
}

struct Report {
    cycles: u64,
    duration: Duration,
    /// (client, cluster, checks, errors, mismatches)
    sessions: Vec<(&'static str, String, u64, u64, u64)>,
    missed_sleeps: u64,
    missed_wakes: u64,
    /// Per cycle: from the last answer to both backends gone, ms.
    sleep_ms: Vec<f64>,
    /// Per cycle: from the command to the last session's answer (wake, check, step), ms.
    wake_ms: Vec<f64>,
    /// (cluster, [wakes, drains, drains refused, drains aborted]) over the cycles.
    counters: Vec<(String, [f64; 4])>,
}

const COUNTERS: [&str; 4] = [
    "torpor_wakes_total",
    "torpor_drains_total",
    "torpor_drains_refused_total",
    "torpor_drains_aborted_total",
];

impl Report {
    fn failures(&self) -> (u64, u64) {
        self.sessions
            .iter()
            .fold((0, 0), |(e, m), s| (e + s.3, m + s.4))
    }

    fn print(&self) {
        for (name, cluster, checks, errors, mismatches) in &self.sessions {
            println!(
                "soak client={name} cluster={cluster} checks={checks} errors={errors} \
                 mismatches={mismatches}"
            );
        }
        for (cluster, [wakes, drains, refused, aborted]) in &self.counters {
            println!(
                "soak cluster={cluster} wakes={wakes} drains={drains} drains_refused={refused} \
                 drains_aborted={aborted}"
            );
        }
        let spread = |v: &[f64]| {
            if v.is_empty() {
                return "-".to_string();
            }
            format!(
                "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                median(v),
                percentile(v, 99.0),
                crate::stats::max(v)
            )
        };
        println!(
            "soak idle_to_asleep {}; wake_check_step {}",
            spread(&self.sleep_ms),
            spread(&self.wake_ms)
        );
        let (errors, mismatches) = self.failures();
        println!(
            "cycles={} client_errors={errors} state_mismatches={mismatches} missed_sleeps={} \
             missed_wakes={} duration_s={:.0}",
            self.cycles,
            self.missed_sleeps,
            self.missed_wakes,
            self.duration.as_secs_f64()
        );
    }
}

/// The four counters of every cluster, from the metrics.
async fn counters(t: &Torpor) -> Result<Vec<[f64; 4]>> {
    let m = t.metrics().await?;
    let of = |name: &str, cluster: &str| {
        m.iter()
            .filter(|(n, c, _)| n == name && c == cluster)
            .map(|x| x.2)
            .sum::<f64>()
    };
    Ok(t.clusters
        .iter()
        .map(|c| COUNTERS.map(|n| of(n, &c.name)))
        .collect())
}

/// Waits until every cluster is asleep: no backend pid in the admin API and every backend
/// process seen meanwhile gone. False after [`SLEEP_LIMIT`] (the API's answer is printed).
async fn wait_asleep(t: &Torpor) -> Result<bool> {
    let deadline = Instant::now() + SLEEP_LIMIT;
    let mut seen: Vec<u32> = Vec::new();
    loop {
        let pids = t.api_pids().await?;
        seen.extend(pids.iter().filter_map(|p| p.1));
        if pids.iter().all(|p| p.1.is_none()) && !seen.iter().any(|p| alive(*p)) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            let (_, body) = t.http("GET", "/api/clusters").await?;
            eprintln!("soak: not asleep after {SLEEP_LIMIT:?}: {body}");
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn soak(t: &Torpor, o: &Opts) -> Result<Report> {
    let (pg, my) = (&t.clusters[0], &t.clusters[1]);
    let mut sessions = vec![
        spawn("tokio-postgres", pg, Native::<PgConn>::new("tp", 1, pg)),
        spawn("mysql_async", my, Native::<MyConn>::new("ma", 2, my)),
    ];
    if let (Some(python), Some(scripts)) = (&o.python, &o.scripts) {
        let script = |f: &str| vec![scripts.join(f).display().to_string()];
        let psycopg = External::start(python, &script("soak_psycopg.py"), "pg3", pg)?;
        sessions.push(spawn("psycopg", pg, psycopg));
        let pymysql = External::start(python, &script("soak_pymysql.py"), "pym", my)?;
        sessions.push(spawn("PyMySQL", my, pymysql));
    }
    if let Some(cp) = &o.java_cp {
        let args = ["-cp".to_string(), cp.clone(), "SoakJdbc".into()];
        let jdbc = External::start(&PathBuf::from("java"), &args, "jdbc", pg)?;
        sessions.push(spawn("pgjdbc", pg, jdbc));
    }

    // Every session builds the state of step 0, which wakes both clusters.
    let setup = all(&mut sessions, || Cmd::Setup).await;
    let failed: Vec<String> = sessions
        .iter()
        .zip(&setup)
        .filter_map(|(s, o)| match o {
            Outcome::Ok => None,
            Outcome::Error(m) | Outcome::Mismatch(m) => Some(format!("{}: {m}", s.name)),
        })
        .collect();
    if !failed.is_empty() {
        quit_all(sessions).await;
        bail!("setup failed: {}", failed.join("; "));
    }
    eprintln!(
        "soak: {} sessions set up ({}), {} cycles, idle_timeout {}",
        sessions.len(),
        sessions
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", "),
        o.cycles,
        o.idle_timeout
    );

    let start = Instant::now();
    let first = counters(t).await?;
    let mut report = Report {
        cycles: 0,
        duration: Duration::ZERO,
        sessions: Vec::new(),
        missed_sleeps: 0,
        missed_wakes: 0,
        sleep_ms: Vec::new(),
        wake_ms: Vec::new(),
        counters: Vec::new(),
    };
    let mut shown = 0;
    let mut show = |line: String| {
        shown += 1;
        if shown <= SHOWN {
            eprintln!("{line}");
        }
    };
    let mut idle_since = Instant::now();
    for n in 1..=o.cycles {
        if wait_asleep(t).await? {
            report.sleep_ms.push(ms(idle_since.elapsed()));
        } else {
            report.missed_sleeps += 1;
            show(format!("cycle {n}: the clusters did not both go to sleep"));
        }
        let before = counters(t).await?;
        let go = Instant::now();
        let outcomes = all(&mut sessions, || Cmd::Cycle(n)).await;
        idle_since = Instant::now();
        report.wake_ms.push(ms(go.elapsed()));
        for (s, outcome) in sessions.iter_mut().zip(outcomes) {
            match outcome {
                Outcome::Ok => {}
                Outcome::Error(m) => {
                    s.errors += 1;
                    show(format!("cycle {n}: {} error: {m}", s.name));
                }
                Outcome::Mismatch(m) => {
                    s.mismatches += 1;
                    show(format!("cycle {n}: {} mismatch: {m}", s.name));
                }
            }
        }
        let after = counters(t).await?;
        for (c, (b, a)) in t.clusters.iter().zip(before.iter().zip(&after)) {
            if a[0] <= b[0] {
                report.missed_wakes += 1;
                show(format!(
                    "cycle {n}: cluster {} did not start a backend",
                    c.name
                ));
            }
        }
        report.cycles = n;
        if n % 50 == 0 || n == o.cycles {
            let (e, m) = sessions
                .iter()
                .fold((0, 0), |(e, m), s| (e + s.errors, m + s.mismatches));
            eprintln!(
                "soak: cycle {n}/{} after {:.0} s: {e} client errors, {m} state mismatches",
                o.cycles,
                start.elapsed().as_secs_f64()
            );
        }
    }
    report.duration = start.elapsed();
    let last = counters(t).await?;
    for (c, (f, l)) in t.clusters.iter().zip(first.iter().zip(&last)) {
        let delta = [0, 1, 2, 3].map(|i| l[i] - f[i]);
        report.counters.push((c.name.clone(), delta));
    }
    for s in &sessions {
        let checks = report.cycles;
        let row = (s.name, s.cluster.clone(), checks, s.errors, s.mismatches);
        report.sessions.push(row);
    }
    quit_all(sessions).await;
    Ok(report)
}

/// Which session this is: its tag (the names of its schema, lock, application_name), the
/// cluster's address and database, and how many connections it has opened.
struct Who {
    tag: &'static str,
    /// Makes the PostgreSQL advisory lock key unique per client.
    id: u64,
    addr: SocketAddr,
    db: String,
    generation: u64,
}

impl Who {
    fn pg_lock(&self) -> u64 {
        self.id * 1_000_000 + self.generation
    }

    fn my_lock(&self) -> String {
        format!("soak_{}_{}", self.tag, self.generation)
    }
}

/// A connection of a session run here, and what its state looks like at each step.
trait Conn: Sized + Send + 'static {
    /// What the values [`Conn::check`] returns are, for the mismatch messages.
    const FIELDS: &'static [&'static str];
    /// Connects and builds the state of `step`.
    fn open(w: &Who, step: u64) -> impl Future<Output = Result<Self>> + Send;
    /// Reads back the state, as text.
    fn check(&mut self, w: &Who, step: u64) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Moves the state to `step` (from `step - 1`).
    fn advance(&mut self, w: &Who, step: u64) -> impl Future<Output = Result<()>> + Send;
    /// What [`Conn::check`] must return at `step`.
    fn expected(w: &Who, step: u64) -> Vec<String>;
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A session run in this process: tokio-postgres or mysql_async.
struct Native<C> {
    who: Who,
    step: u64,
    conn: Option<C>,
}

impl<C: Conn> Native<C> {
    fn new(tag: &'static str, id: u64, c: &Cluster) -> Native<C> {
        let db = match c.proto {
            Proto::Postgres => USER.to_string(),
            Proto::Mysql => c.name.clone(),
        };
        let who = Who {
            tag,
            id,
            addr: c.listen,
            db,
            generation: 0,
        };
        Native {
            who,
            step: 0,
            conn: None,
        }
    }

    /// Closes the connection (if any) and opens a new one holding the state of `step`.
    async fn reopen(&mut self, step: u64) -> Result<()> {
        if let Some(c) = self.conn.take() {
            c.close().await;
        }
        self.who.generation += 1;
        self.step = step;
        self.conn = Some(C::open(&self.who, step).await?);
        Ok(())
    }
}

impl<C: Conn> Session for Native<C> {
    async fn setup(&mut self) -> Outcome {
        match self.reopen(0).await {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Error(format!("setup: {e:#}")),
        }
    }

    async fn cycle(&mut self, n: u64) -> Outcome {
        let k = self.step;
        let outcome = match self.conn.as_mut() {
            None => Outcome::Error("no connection: the last reconnect failed".into()),
            Some(c) => match c.check(&self.who, k).await {
                Err(e) => Outcome::Error(format!("check: {e:#}")),
                Ok(got) => match diff(C::FIELDS, &C::expected(&self.who, k), &got) {
                    Some(d) => Outcome::Mismatch(d),
                    None => match c.advance(&self.who, n).await {
                        Ok(()) => {
                            self.step = n;
                            return Outcome::Ok;
                        }
                        Err(e) => Outcome::Error(format!("step: {e:#}")),
                    },
                },
            },
        };
        if let Err(e) = self.reopen(n).await {
            eprintln!("soak {}: reconnect failed: {e:#}", self.who.tag);
        }
        outcome
    }

    async fn quit(mut self) {
        if let Some(c) = self.conn.take() {
            c.close().await;
        }
    }
}

/// The fields whose values differ, or None.
fn diff(fields: &[&str], want: &[String], got: &[String]) -> Option<String> {
    if want.len() != got.len() {
        return Some(format!("expected {want:?}, got {got:?}"));
    }
    let bad: Vec<String> = fields
        .iter()
        .zip(want.iter().zip(got))
        .filter(|(_, (w, g))| w != g)
        .map(|(f, (w, g))| format!("{f}: expected {w:?}, got {g:?}"))
        .collect();
    (!bad.is_empty()).then(|| bad.join("; "))
}

/// The state as strings, in [`Conn::FIELDS`] order.
fn texts(values: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    values.into_iter().map(|v| v.to_string()).collect()
}

struct PgConn {
    client: tokio_postgres::Client,
    /// A protocol-level prepared statement (tokio-postgres names it `sN`).
    stmt: tokio_postgres::Statement,
}

fn pg_settings(tag: &str, k: u64) -> String {
    format!(
        "SET work_mem = '{}kB'; SET application_name = 'soak-{tag}-{k}'; SET soak.step = '{k}'",
        64 + k
    )
}

const PG_CHECK: &str = "SELECT current_schema()::text, \
     (SELECT setting FROM pg_settings WHERE name = 'work_mem'), \
     current_setting('application_name'), current_setting('soak.step', true), \
     (SELECT count(*) FROM soak_t)::text, (SELECT coalesce(sum(id), 0) FROM soak_t)::text, \
     nextval('soak_seq')::text, \
     (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
      AND granted)::text";

impl Conn for PgConn {
    const FIELDS: &'static [&'static str] = &[
        "current_schema",
        "work_mem",
        "application_name",
        "soak.step",
        "temp rows",
        "sum(id)",
        "nextval",
        "advisory locks",
        "EXECUTE soak_q",
        "prepared statement",
    ];

    async fn open(w: &Who, k: u64) -> Result<PgConn> {
        let client = crate::pg::connect(w.addr).await?;
        let tag = w.tag;
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS soak_{tag}; SET search_path = soak_{tag}, public; \
                 {}; CREATE TEMP TABLE soak_t (id int PRIMARY KEY, v text NOT NULL); \
                 INSERT INTO soak_t SELECT g, 'row ' || g FROM generate_series(0, {k}) g; \
                 CREATE TEMP SEQUENCE soak_seq; SELECT setval('soak_seq', {k} + 1, false); \
                 SELECT pg_advisory_lock({}); PREPARE soak_q AS SELECT {k}",
                pg_settings(tag, k),
                w.pg_lock()
            ))
            .await?;
        let stmt = client.prepare("SELECT $1::int * 2").await?;
        Ok(PgConn { client, stmt })
    }

    async fn check(&mut self, _: &Who, k: u64) -> Result<Vec<String>> {
        let row = self.client.query_one(PG_CHECK, &[]).await?;
        let mut got: Vec<String> = (0..row.len())
            .map(|i| {
                row.get::<_, Option<String>>(i)
                    .unwrap_or_else(|| "NULL".into())
            })
            .collect();
        let mut executed = "no row".to_string();
        for m in self.client.simple_query("EXECUTE soak_q").await? {
            if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
                executed = r.get(0).unwrap_or("NULL").to_string();
            }
        }
        got.push(executed);
        let twice: i32 = self
            .client
            .query_one(&self.stmt, &[&(k as i32)])
            .await?
            .get(0);
        got.push(twice.to_string());
        Ok(got)
    }

    async fn advance(&mut self, w: &Who, n: u64) -> Result<()> {
        self.client
            .batch_execute(&format!(
                "{}; INSERT INTO soak_t VALUES ({n}, 'row {n}'); DEALLOCATE soak_q; \
                 PREPARE soak_q AS SELECT {n}",
                pg_settings(w.tag, n)
            ))
            .await?;
        Ok(())
    }

    fn expected(w: &Who, k: u64) -> Vec<String> {
        let mut v = vec![format!("soak_{}", w.tag)];
        v.extend(texts([64 + k]));
        v.push(format!("soak-{}-{k}", w.tag));
        v.extend(texts([k, k + 1, k * (k + 1) / 2, k + 1, 1, k, 2 * k]));
        v
    }

    async fn close(self) {
        // Dropping the client ends the connection task, which sends Terminate.
        drop(self.client);
    }
}

struct MyConn {
    conn: mysql_async::Conn,
    /// A binary-protocol statement (COM_STMT_PREPARE).
    stmt: mysql_async::Statement,
}

/// A value of a text-protocol row as the client shows it.
pub(crate) fn my_text(v: Option<&mysql_async::Value>) -> String {
    use mysql_async::Value;
    match v {
        None | Some(Value::NULL) => "NULL".into(),
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::UInt(u)) => u.to_string(),
        Some(other) => format!("{other:?}"),
    }
}

impl MyConn {
    async fn step_vars(&mut self, k: u64) -> Result<()> {
        self.conn
            .query_drop(format!("SET SESSION group_concat_max_len = {}", 1024 + k))
            .await?;
        self.conn
            .query_drop(format!("SET @soak_step = {k}, @soak_s = 'step {k}'"))
            .await?;
        Ok(())
    }
}

impl Conn for MyConn {
    const FIELDS: &'static [&'static str] = &[
        "DATABASE()",
        "group_concat_max_len",
        "time_zone",
        "@soak_step",
        "@soak_s",
        "temp rows",
        "sum(id)",
        "LAST_INSERT_ID()",
        "named lock held",
        "EXECUTE soak_q",
        "binary statement",
    ];

    async fn open(w: &Who, k: u64) -> Result<MyConn> {
        let mut conn = crate::my::connect(w.addr, &w.db).await?;
        let tag = w.tag;
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS soak_{tag}"))
            .await?;
        conn.query_drop(format!("USE soak_{tag}")).await?;
        conn.query_drop("SET SESSION time_zone = '+01:00'").await?;
        conn.query_drop(
            "CREATE TEMPORARY TABLE soak_t (id INT AUTO_INCREMENT PRIMARY KEY, \
             v VARCHAR(40) NOT NULL)",
        )
        .await?;
        if k > 0 {
            let rows: Vec<String> = (1..=k).map(|i| format!("({i}, 'row {i}')")).collect();
            let sql = format!("INSERT INTO soak_t (id, v) VALUES {}", rows.join(", "));
            conn.query_drop(sql).await?;
        }
        conn.query_drop(format!("INSERT INTO soak_t (v) VALUES ('row {}')", k + 1))
            .await?;
        conn.query_drop(format!("PREPARE soak_q FROM 'SELECT {k}'"))
            .await?;
        let locked: Option<i64> = conn
            .query_first(format!("SELECT GET_LOCK('{}', 0)", w.my_lock()))
            .await?;
        if locked != Some(1) {
            bail!("GET_LOCK('{}') gave {locked:?}", w.my_lock());
        }
        let stmt = conn.prep("SELECT ? * 2").await?;
        let mut c = MyConn { conn, stmt };
        c.step_vars(k).await?;
        Ok(c)
    }

    async fn check(&mut self, w: &Who, k: u64) -> Result<Vec<String>> {
        let row: mysql_async::Row = self
            .conn
            .query_first(format!(
                "SELECT DATABASE(), @@session.group_concat_max_len, @@session.time_zone, \
                 @soak_step, @soak_s, (SELECT COUNT(*) FROM soak_t), \
                 (SELECT COALESCE(SUM(id), 0) FROM soak_t), LAST_INSERT_ID(), \
                 IS_USED_LOCK('{}') = @@pseudo_thread_id",
                w.my_lock()
            ))
            .await?
            .context("no row")?;
        let mut got: Vec<String> = (0..row.len()).map(|i| my_text(row.as_ref(i))).collect();
        let executed: Option<mysql_async::Row> = self.conn.query_first("EXECUTE soak_q").await?;
        got.push(executed.map_or("no row".into(), |r| my_text(r.as_ref(0))));
        let twice: Option<i64> = self.conn.exec_first(&self.stmt, (k as i64,)).await?;
        got.push(twice.map_or("NULL".into(), |v| v.to_string()));
        Ok(got)
    }

    async fn advance(&mut self, _: &Who, n: u64) -> Result<()> {
        self.step_vars(n).await?;
        self.conn
            .query_drop(format!("INSERT INTO soak_t (v) VALUES ('row {}')", n + 1))
            .await?;
        self.conn.query_drop("DEALLOCATE PREPARE soak_q").await?;
        self.conn
            .query_drop(format!("PREPARE soak_q FROM 'SELECT {n}'"))
            .await?;
        Ok(())
    }

    fn expected(w: &Who, k: u64) -> Vec<String> {
        let mut v = vec![format!("soak_{}", w.tag)];
        v.extend(texts([1024 + k]));
        v.push("+01:00".into());
        v.push(k.to_string());
        v.push(format!("step {k}"));
        v.extend(texts([k + 1, (k + 1) * (k + 2) / 2, k + 1, 1, k, 2 * k]));
        v
    }

    async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}

/// A client program (psycopg, PyMySQL, pgjdbc) that does what [`Native`] does itself and
/// answers one line per command.
struct External {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl External {
    /// Starts `program args` with the cluster's address and credentials in `SOAK_*`.
    fn start(program: &PathBuf, args: &[String], tag: &str, c: &Cluster) -> Result<External> {
        let db = match c.proto {
            Proto::Postgres => USER.to_string(),
            Proto::Mysql => c.name.clone(),
        };
        let mut child = Command::new(program)
            .args(args)
            .env("SOAK_HOST", c.listen.ip().to_string())
            .env("SOAK_PORT", c.listen.port().to_string())
            .env("SOAK_USER", USER)
            .env("SOAK_PASSWORD", PASSWORD)
            .env("SOAK_DB", db)
            .env("SOAK_TAG", tag)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {args:?}", program.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        Ok(External {
            child,
            stdin,
            stdout,
        })
    }

    async fn ask(&mut self, line: &str) -> Outcome {
        let sent = async {
            self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
            self.stdin.flush().await
        };
        if let Err(e) = sent.await {
            return Outcome::Error(format!("the client program is gone: {e}"));
        }
        Outcome::of_line(self.stdout.next_line().await.ok().flatten())
    }
}

impl Session for External {
    async fn setup(&mut self) -> Outcome {
        self.ask("setup").await
    }

    async fn cycle(&mut self, n: u64) -> Outcome {
        self.ask(&format!("cycle {n}")).await
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
