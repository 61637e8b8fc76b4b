//! The frozen tier (issue 13, item 6). First: the first query of an attached session after its
//! backend was frozen (`freeze_after`), for the session shape of the cold wake, interleaved with
//! a bare server start → first query and a cold wake through torpor in the same run. Second:
//! the CPU time the frozen backend's processes use while frozen, against a second cluster's
//! backend that idles without being frozen, over the same windows.
//!
//! Every frozen state is taken from both sides: the admin API says `frozen` and the kernel says
//! `frozen 1` in the server's own cgroup.events. Every timed thaw is checked to be exactly one
//! thaw of the same server process (`torpor_thaws_total`, the pid).
//!
//! A frozen process can still be put on a CPU for a few µs: a timer it armed before the freeze
//! (postgres's idle statistics timeout, SIGALRM) wakes it, and it traps back into the freezer.
//! The CPU line counts how often that happened.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mysql_async::prelude::Queryable;

use crate::stats::{Outcome, max, median, min, ms, not_measured, percentile};
use crate::torpor::{Cluster, Proto, Spec, Torpor};
use crate::{my, pg};

/// Short, so that a sample waits little for the freeze.
const FREEZE_AFTER: &str = "200ms";
/// The contrast cluster has a cgroup too (the process driver makes one for a cluster that
/// freezes), but is never frozen within a run.
const CONTRAST_FREEZE_AFTER: &str = "50m";
const IDLE_TIMEOUT: &str = "1h";
const FROZEN_WAIT: Duration = Duration::from_secs(30);
/// A CPU window starts this long after `frozen 1`: µs were once counted just after it (the last
/// task entering the freezer, perhaps), and a window must show only what a frozen backend
/// uses. That second is reported apart.
const SETTLE: Duration = Duration::from_secs(1);

pub(crate) struct Plan {
    /// Cold rounds (sleep, bare start, cold wake) and CPU windows.
    pub runs: usize,
    /// Timed thaws.
    pub samples: usize,
    /// Length of each CPU window.
    pub seconds: u64,
}

const THAW_TARGET: &str = "p50 ≤ 5 ms, p99 ≤ 20 ms";
const CPU_TARGET: &str = "0 CPU while frozen";

/// The line names of a protocol's measure: (thaw latency, CPU while frozen).
fn names(proto: Proto) -> (&'static str, &'static str) {
    match proto {
        Proto::Postgres => ("pg_thaw_first_query", "pg_frozen_cpu"),
        Proto::Mysql => ("my_thaw_first_query", "my_frozen_cpu"),
    }
}

/// Both lines as not measured, when the measure stopped before it could print them.
pub(crate) fn not_measured_both(proto: Proto, error: &str) {
    let (thaw, cpu) = names(proto);
    not_measured(thaw, THAW_TARGET, error);
    not_measured(cpu, CPU_TARGET, error);
}

/// The measured cluster (first) and the contrast (second), both of `proto`.
async fn start(bin: &Path, work: &Path, proto: Proto, settings: &str) -> Result<Torpor> {
    let spec = |freeze_after| Spec {
        proto,
        idle_timeout: IDLE_TIMEOUT,
        freeze_after: Some(freeze_after),
        settings,
    };
    let specs = [spec(FREEZE_AFTER), spec(CONTRAST_FREEZE_AFTER)];
    Torpor::start_clusters(bin, work, &specs).await
}

pub(crate) async fn pg_thaw(bin: &Path, work: &Path, plan: Plan) -> Result<()> {
    let t = start(bin, work, Proto::Postgres, r#"{ fsync = "off" }"#).await?;
    let (lat, cpu) = t
        .measure(async |t| {
            let c = pg::connect(t.clusters[0].listen).await?;
            let stmts = pg::wake_state(&c).await?;
            let mut query = async || {
                // Not SELECT 1: torpor answers that probe itself, without a thaw.
                c.simple_query("SELECT 2").await?;
                Ok(())
            };
            let (data, backend) = (t.data_dir.clone(), t.backend);
            let mut bare = async || pg::bare_postgres(&data, backend).await;
            let lat = latencies(t, &plan, &mut query, &mut bare).await;
            // The contrast session holds the same state on a backend that stays up.
            let idle = pg::connect(t.clusters[1].listen).await?;
            let idle_stmts = pg::wake_state(&idle).await?;
            let cpu = cpu_windows(t, &plan, &mut query).await;
            pg::check_wake_state(&c, &stmts).await?;
            pg::check_wake_state(&idle, &idle_stmts).await?;
            Ok((lat, cpu))
        })
        .await?;
    emit(Proto::Postgres, "postgres", lat, cpu, &plan);
    Ok(())
}

pub(crate) async fn my_thaw(bin: &Path, work: &Path, plan: Plan) -> Result<()> {
    let t = start(bin, work, Proto::Mysql, my::SETTINGS).await?;
    let (lat, cpu) = t
        .measure(async |t| {
            let mut c = my::connect(t.clusters[0].listen, &t.clusters[0].name).await?;
            let stmts = my::wake_state(&mut c).await?;
            let (data, backend, db) = (t.data_dir.clone(), t.backend, t.name.clone());
            let mut bare = async || my::bare_mariadbd(&data, backend, &db).await;
            let (lat, cpu) = {
                let mut query = async || {
                    c.query_drop("SELECT 2").await?;
                    Ok(())
                };
                let lat = latencies(t, &plan, &mut query, &mut bare).await;
                let mut idle = my::connect(t.clusters[1].listen, &t.clusters[1].name).await?;
                let idle_stmts = my::wake_state(&mut idle).await?;
                let cpu = cpu_windows(t, &plan, &mut query).await;
                my::check_wake_state(&mut idle, &idle_stmts).await?;
                (lat, cpu)
            };
            my::check_wake_state(&mut c, &stmts).await?;
            Ok((lat, cpu))
        })
        .await?;
    emit(Proto::Mysql, "mariadbd", lat, cpu, &plan);
    Ok(())
}

/// Timed first queries, in ms.
struct Latencies {
    /// After a freeze (a thaw of the same server).
    thaw: Vec<f64>,
    /// A bare server start → first query on the same data dir.
    bare: Vec<f64>,
    /// After a scale-to-zero (wake + snapshot load + replay).
    cold: Vec<f64>,
}

/// `samples` thaws; before every `samples / runs`-th one (at most `runs` times) a cold round:
/// sleep (the drain thaws and stops the server), a bare start, a cold wake through torpor.
async fn latencies(
    t: &Torpor,
    plan: &Plan,
    query: &mut impl AsyncFnMut() -> Result<()>,
    bare: &mut impl AsyncFnMut() -> Result<f64>,
) -> Result<Latencies> {
    let every = (plan.samples / plan.runs.max(1)).max(1);
    let mut l = Latencies {
        thaw: Vec::with_capacity(plan.samples),
        bare: Vec::new(),
        cold: Vec::new(),
    };
    for i in 0..plan.samples {
        if i % every == 0 && l.cold.len() < plan.runs {
            t.sleep().await?;
            l.bare.push(bare().await?);
            let s = Instant::now();
            query().await?;
            l.cold.push(ms(s.elapsed()));
        }
        l.thaw.push(thawed_query(t, query).await?);
    }
    Ok(l)
}

/// Waits for the freeze, then times the session's first query; checks that exactly one thaw
/// of the same server answered it.
async fn thawed_query(t: &Torpor, query: &mut impl AsyncFnMut() -> Result<()>) -> Result<f64> {
    let c = &t.clusters[0];
    let frozen = wait_frozen(t, c).await?;
    let thaws = t.metric("torpor_thaws_total", &c.name).await?;
    let s = Instant::now();
    query().await?;
    let took = ms(s.elapsed());
    let after = t.metric("torpor_thaws_total", &c.name).await?;
    if after != thaws + 1.0 {
        bail!("the timed query came with {} thaws, not 1", after - thaws);
    }
    if c.backend_pid() != Some(frozen.pid) {
        bail!("another server answered, not the thawed pid {}", frozen.pid);
    }
    Ok(took)
}

struct Frozen {
    pid: u32,
    cgroup: PathBuf,
}

async fn status(t: &Torpor, c: &Cluster) -> Result<serde_json::Value> {
    let (code, body) = t.http("GET", "/api/clusters").await?;
    if code != 200 {
        bail!("GET /api/clusters: {code}");
    }
    let all: serde_json::Value = serde_json::from_str(&body)?;
    all.as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == c.name.as_str()))
        .cloned()
        .with_context(|| format!("cluster {} not in /api/clusters", c.name))
}

fn cgroup_of(status: &serde_json::Value) -> Result<PathBuf> {
    status["backend"]["cgroup"]
        .as_str()
        .map(PathBuf::from)
        .with_context(|| format!("no backend cgroup in {status}"))
}

/// Until the admin API says frozen and the kernel agrees.
async fn wait_frozen(t: &Torpor, c: &Cluster) -> Result<Frozen> {
    let deadline = Instant::now() + FROZEN_WAIT;
    loop {
        let s = status(t, c).await?;
        if s["state"] == "frozen" && s["backend"]["frozen"] == true {
            let cgroup = cgroup_of(&s)?;
            if kernel_frozen(&cgroup)? {
                let pid = s["backend_pid"].as_u64().context("frozen, but no pid")? as u32;
                return Ok(Frozen { pid, cgroup });
            }
        }
        if Instant::now() > deadline {
            bail!("{} not frozen after {FROZEN_WAIT:?}: {s}", c.name);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `frozen 1` in the cgroup's cgroup.events.
fn kernel_frozen(cgroup: &Path) -> Result<bool> {
    let events = std::fs::read_to_string(cgroup.join("cgroup.events"))
        .with_context(|| format!("{}/cgroup.events", cgroup.display()))?;
    Ok(events.lines().any(|l| l == "frozen 1"))
}

/// CPU time of a cgroup's processes at one moment.
struct Reading {
    pids: Vec<u32>,
    /// utime + stime of every process in cgroup.procs, all threads, in clock ticks.
    ticks: u64,
    /// `usage_usec` of the cgroup's cpu.stat (exact, and counts exited processes too).
    usage_usec: u64,
    /// Times any thread of those processes was put on a CPU (/proc/<pid>/task/*/schedstat,
    /// third field): how often something ran, however briefly.
    slices: u64,
}

impl Reading {
    fn take(cgroup: &Path) -> Result<Reading> {
        let procs = std::fs::read_to_string(cgroup.join("cgroup.procs"))?;
        let mut pids: Vec<u32> = procs
            .lines()
            .map(|l| l.trim().parse())
            .collect::<Result<_, _>>()?;
        pids.sort_unstable();
        let (mut ticks, mut slices) = (0, 0);
        for pid in &pids {
            ticks += proc_ticks(*pid)?;
            slices += proc_slices(*pid)?;
        }
        let stat = std::fs::read_to_string(cgroup.join("cpu.stat"))?;
        let usage_usec = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .context("no usage_usec in cpu.stat")?
            .trim()
            .parse()?;
        Ok(Reading {
            pids,
            ticks,
            usage_usec,
            slices,
        })
    }
}

/// Fields 14 and 15 of /proc/<pid>/stat, counted after the ")" that ends the command name.
fn proc_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (_, rest) = stat.rsplit_once(')').context("bad /proc/<pid>/stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> { Ok(f.get(i).context("short stat")?.parse()?) };
    Ok(field(11)? + field(12)?)
}

fn proc_slices(pid: u32) -> Result<u64> {
    let mut n = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        n += stat
            .split_whitespace()
            .nth(2)
            .context("short schedstat")?
            .parse::<u64>()?;
    }
    Ok(n)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant; no memory is involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Per window: CPU of the frozen backend and of the idle one over the same seconds.
#[derive(Default)]
struct Cpu {
    frozen_ticks: Vec<f64>,
    frozen_usec: Vec<f64>,
    idle_ticks: Vec<f64>,
    idle_usec: Vec<f64>,
    frozen_slices: Vec<f64>,
    idle_slices: Vec<f64>,
    /// From `frozen 1` to the window's start (SETTLE): the tail of freezing, µs.
    tail_usec: Vec<f64>,
    frozen_procs: usize,
    idle_procs: usize,
    /// The first query after each window, ms.
    after_window: Vec<f64>,
}

/// `runs` windows of `seconds`: the measured cluster frozen all along (no thaw counted, the
/// kernel still says frozen at the end, the same processes), the contrast up and idle; then
/// the measured session's first query.
async fn cpu_windows(
    t: &Torpor,
    plan: &Plan,
    query: &mut impl AsyncFnMut() -> Result<()>,
) -> Result<Cpu> {
    let (measured, contrast) = (&t.clusters[0], &t.clusters[1]);
    let mut cpu = Cpu::default();
    for _ in 0..plan.runs {
        let frozen = wait_frozen(t, measured).await?;
        let at_frozen = Reading::take(&frozen.cgroup)?;
        let s = status(t, contrast).await?;
        if s["state"] != "running" {
            bail!("the contrast cluster is {}, not running", s["state"]);
        }
        let idle_cgroup = cgroup_of(&s)?;
        let thaws = t.metric("torpor_thaws_total", &measured.name).await?;
        tokio::time::sleep(SETTLE).await;
        let (f0, i0) = (Reading::take(&frozen.cgroup)?, Reading::take(&idle_cgroup)?);
        tokio::time::sleep(Duration::from_secs(plan.seconds)).await;
        let (f1, i1) = (Reading::take(&frozen.cgroup)?, Reading::take(&idle_cgroup)?);
        if t.metric("torpor_thaws_total", &measured.name).await? != thaws
            || !kernel_frozen(&frozen.cgroup)?
            || status(t, measured).await?["state"] != "frozen"
        {
            bail!("the backend was thawed during the window");
        }
        if at_frozen.pids != f1.pids || f0.pids != f1.pids || i0.pids != i1.pids {
            bail!("processes came or went during the window");
        }
        if kernel_frozen(&idle_cgroup)? {
            bail!("the contrast backend is frozen");
        }
        cpu.tail_usec
            .push((f0.usage_usec - at_frozen.usage_usec) as f64);
        cpu.frozen_ticks.push((f1.ticks - f0.ticks) as f64);
        cpu.frozen_usec.push((f1.usage_usec - f0.usage_usec) as f64);
        cpu.idle_ticks.push((i1.ticks - i0.ticks) as f64);
        cpu.frozen_slices.push((f1.slices - f0.slices) as f64);
        cpu.idle_slices.push((i1.slices - i0.slices) as f64);
        cpu.idle_usec.push((i1.usage_usec - i0.usage_usec) as f64);
        (cpu.frozen_procs, cpu.idle_procs) = (f1.pids.len(), i1.pids.len());
        cpu.after_window.push(thawed_query(t, query).await?);
    }
    if t.metric("torpor_freezes_total", &contrast.name).await? != 0.0 {
        bail!("the contrast cluster was frozen");
    }
    Ok(cpu)
}

fn list(v: &[f64], digits: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn emit(proto: Proto, server: &str, lat: Result<Latencies>, cpu: Result<Cpu>, plan: &Plan) {
    let (thaw_name, cpu_name) = names(proto);
    match lat {
        Ok(l) => {
            let (p50, p99) = (median(&l.thaw), percentile(&l.thaw, 99.0));
            let (bare, cold) = (median(&l.bare), median(&l.cold));
            Outcome {
                name: thaw_name.into(),
                unit: "ms".into(),
                baseline: format!(
                    "bare {server} start→query p50 {bare:.1} ms (min {:.1}, max {:.1}); cold wake \
                     through torpor p50 {cold:.1} ms (min {:.1}, max {:.1}); {} runs each",
                    min(&l.bare),
                    max(&l.bare),
                    min(&l.cold),
                    max(&l.cold),
                    l.cold.len()
                ),
                ratio: Some(p50 / bare),
                target: THAW_TARGET.into(),
                met: p50 <= 5.0 && p99 <= 20.0,
                note: format!(
                    "p99 {p99:.2} ms over {} thaws, each one thaw of the same server (freeze_after \
                     {FREEZE_AFTER}); same run: bare {server} start→query p50 {bare:.1} ms, cold \
                     wake through torpor p50 {cold:.1} ms = {:.0}× the thaw; session: 5 settings, \
                     1,000-row temp table, 10 prepared statements",
                    l.thaw.len(),
                    cold / p50
                ),
                runs: l.thaw,
            }
            .emit();
        }
        Err(e) => not_measured(thaw_name, THAW_TARGET, &format!("{e:#}")),
    }
    match cpu {
        Ok(c) => {
            let hz = clock_ticks_per_second();
            let tick_ms = |v: &[f64]| v.iter().map(|t| t * 1000.0 / hz).collect::<Vec<_>>();
            let usec_ms = |v: &[f64]| v.iter().map(|u| u / 1000.0).collect::<Vec<_>>();
            let met = c
                .frozen_ticks
                .iter()
                .chain(&c.frozen_usec)
                .all(|v| *v == 0.0);
            Outcome {
                name: cpu_name.into(),
                unit: "ticks".into(),
                baseline: format!(
                    "the same {server} state idle, not frozen, same windows: ticks {} ({} ms), \
                     cgroup cpu.stat {} ms, {} processes",
                    list(&c.idle_ticks, 0),
                    list(&tick_ms(&c.idle_ticks), 0),
                    list(&usec_ms(&c.idle_usec), 3),
                    c.idle_procs
                ),
                ratio: None,
                target: CPU_TARGET.into(),
                met,
                note: format!(
                    "{} s windows, {} processes frozen: ticks {} ({} ms at {hz:.0} Hz), cgroup \
                     cpu.stat usage {} ms, times on a CPU {}, no thaw in any window (each starts {} s after \
                     `frozen 1`; cpu.stat in that second: {} ms); idle not frozen: ticks {}, \
                     cpu.stat {} ms, times on a CPU {}; first query after each window {} ms",
                    plan.seconds,
                    c.frozen_procs,
                    list(&c.frozen_ticks, 0),
                    list(&tick_ms(&c.frozen_ticks), 0),
                    list(&usec_ms(&c.frozen_usec), 3),
                    list(&c.frozen_slices, 0),
                    SETTLE.as_secs(),
                    list(&usec_ms(&c.tail_usec), 3),
                    list(&c.idle_ticks, 0),
                    list(&usec_ms(&c.idle_usec), 3),
                    list(&c.idle_slices, 0),
                    list(&c.after_window, 2)
                ),
                runs: c.frozen_ticks,
            }
            .emit();
        }
        Err(e) => not_measured(cpu_name, CPU_TARGET, &format!("{e:#}")),
    }
}
