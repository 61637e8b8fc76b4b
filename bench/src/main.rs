//! The benchmark driver behind scripts/bench.sh. Each subcommand runs one measure against a
//! torpor binary it starts itself and prints one `name value unit ratio=...` line.
//!
//! torpor-bench <measure> --torpor PATH --work DIR [--runs N] [--conns N] [--seconds N]
//!     [--samples N]
//! torpor-bench summarize NAME UNIT TARGET_RATIO SUBJECT_VALUES [BASE=]BASE_VALUES
//!     [PEER=VALUES ...] [cpu:PROCESS=VALUES ...]
//! torpor-bench compare NAME UNIT LIMIT BASE=VALUES SUBJECT=VALUES [tps:LABEL=VALUES ...]
//! torpor-bench pool-clients --proto P --addr HOST:PORT --name ROW --label WHO ... (pool.rs)
//! torpor-bench soak --torpor PATH --work DIR [--cycles N] ... (scripts/soak.sh, see soak.rs)

// Benchmark code, like the tests crate: a failed step may stop the run where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod docker;
mod dockerd;
mod forward;
mod freeze;
mod idle;
mod my;
mod pg;
mod pg_tls;
mod pool;
mod pool_state;
mod soak;
mod stats;
mod tls;
mod torpor;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

struct Args {
    measure: String,
    torpor: PathBuf,
    work: PathBuf,
    runs: usize,
    conns: Option<usize>,
    seconds: Option<u64>,
    samples: Option<usize>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args> {
    let measure = it
        .next()
        .context("usage: torpor-bench <measure> --torpor PATH --work DIR")?;
    let (mut torpor, mut work, mut runs, mut conns) = (None, None, 3, None);
    let (mut seconds, mut samples) = (None, None);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--torpor" => torpor = Some(PathBuf::from(value)),
            "--work" => work = Some(PathBuf::from(value)),
            "--runs" => runs = value.parse()?,
            "--conns" => conns = Some(value.parse()?),
            "--seconds" => seconds = Some(value.parse()?),
            "--samples" => samples = Some(value.parse()?),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(Args {
        measure,
        torpor: torpor.context("--torpor PATH")?,
        work: work.context("--work DIR")?,
        runs,
        conns,
        seconds,
        samples,
    })
}

type Tool = fn(&[String]) -> Result<()>;

/// Subcommands that parse their own arguments (all but soak take no torpor).
const TOOLS: [(&str, Tool); 5] = [
    ("summarize", summarize),
    ("compare", compare),
    ("forward", forward::run),
    // Runs against a torpor, PgBouncer or server the script started (the pool group).
    ("pool-clients", pool::run),
    // Starts its own torpor: scripts/soak.sh (issue 11).
    ("soak", soak::run),
];

fn main() {
    let mut argv = std::env::args().skip(1).peekable();
    let tool = argv
        .peek()
        .and_then(|a| TOOLS.iter().find(|(name, _)| name == a));
    if let Some(&(name, run)) = tool {
        let rest: Vec<String> = argv.skip(1).collect();
        if let Err(e) = run(&rest) {
            eprintln!("{name}: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    let args = match parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            std::process::exit(2);
        }
    };
    let (name, target) = match args.measure.as_str() {
        "pg-wake" => ("pg_cold_wake", "p50 ≤ bare + 30 ms"),
        "pg-idle" => ("pg_idle_to_stop", "p50 ≤ 350 ms"),
        "pg-restore" => ("pg_temp_restore", "≥ 0.5× raw COPY"),
        "pg-memory" => ("pg_parked_conn_memory", "≤ 8 KiB per connection"),
        "pg-mass-wake" => ("pg_mass_wake_p99", "0 errors, p99 ≤ 2000 ms"),
        // Prints a second line, pg_docker_thaw (scripts/bench.sh docker).
        "docker-wake" => ("pg_docker_cold_wake", "p50 ≤ bare + 30 ms"),
        "my-wake" => ("my_cold_wake", "p50 ≤ bare + 30 ms"),
        // Prints a second line, pg_cold_connect_tls.
        "pg-tls-wake" => ("pg_cold_wake_tls", "p50 ≤ bare + 30 ms"),
        // These two print their own lines, a PostgreSQL and a MySQL one, failures included.
        "idle-pool" => ("pg_pool_asleep_fraction", "≥ 90% asleep, 0 client errors"),
        "probe" => ("pg_probe_asleep_p50", "p50 ≤ direct p50, 0 wakes"),
        // Each prints two lines: the first query after a freeze, and CPU while frozen.
        "pg-thaw" => ("pg_thaw_first_query", "p50 ≤ 5 ms, p99 ≤ 20 ms"),
        "my-thaw" => ("my_thaw_first_query", "p50 ≤ 5 ms, p99 ≤ 20 ms"),
        other => {
            eprintln!("unknown measure {other}");
            std::process::exit(2);
        }
    };
    let _ = std::fs::create_dir_all(&args.work);
    let (bin, work, runs) = (&args.torpor, &args.work, args.runs);
    let result = rt.block_on(async {
        match args.measure.as_str() {
            "pg-wake" => pg::wake(bin, work, runs).await,
            "pg-idle" => pg::idle_stop(bin, work, runs, args.conns.unwrap_or(100)).await,
            "pg-restore" => pg::restore(bin, work, runs).await,
            "pg-memory" => pg::memory(bin, work, runs, args.conns.unwrap_or(10_000)).await,
            "pg-mass-wake" => pg::mass_wake(bin, work, runs, args.conns.unwrap_or(1000)).await,
            "idle-pool" => {
                let (secs, conns) = (args.seconds.unwrap_or(180), args.conns.unwrap_or(20));
                idle::pool(bin, work, runs, secs, conns).await
            }
            "probe" => idle::probe(bin, work, runs, args.samples.unwrap_or(2000)).await,
            "pg-tls-wake" => pg_tls::wake(bin, work, runs).await,
            "pg-thaw" | "my-thaw" => {
                let plan = freeze::Plan {
                    runs,
                    samples: args.samples.unwrap_or(50),
                    seconds: args.seconds.unwrap_or(10),
                };
                if args.measure == "pg-thaw" {
                    freeze::pg_thaw(bin, work, plan).await
                } else {
                    freeze::my_thaw(bin, work, plan).await
                }
            }
            "docker-wake" => docker::wake(bin, work, runs, args.samples.unwrap_or(runs)).await,
            _ => my::wake(bin, work, runs).await,
        }
    });
    // Don't wait for client connection tasks still parked on sockets.
    rt.shutdown_background();
    if let Err(e) = result {
        // These measures print a line for sessions that changed state too.
        if matches!(args.measure.as_str(), "pg-idle" | "pg-mass-wake") {
            stats::not_measured(&format!("{name}_stateful"), target, &format!("{e:#}"));
        }
        match args.measure.as_str() {
            "pg-thaw" => freeze::not_measured_both(torpor::Proto::Postgres, &format!("{e:#}")),
            "my-thaw" => freeze::not_measured_both(torpor::Proto::Mysql, &format!("{e:#}")),
            "docker-wake" => {
                stats::not_measured(name, target, &format!("{e:#}"));
                stats::not_measured("pg_docker_thaw", "p50 ≤ unpause + 30 ms", &format!("{e:#}"));
            }
            _ => stats::not_measured(name, target, &format!("{e:#}")),
        }
        if args.measure == "pg-tls-wake" {
            stats::not_measured("pg_cold_connect_tls", target, &format!("{e:#}"));
        }
    }
}

/// Comma-separated runs as numbers (empty entries skipped).
fn nums(s: &str) -> Result<Vec<f64>> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse::<f64>()
                .with_context(|| format!("not a number: {x}"))
        })
        .collect()
}

/// `load LO–HI (median M)`: the 1-minute load average the runs started at.
fn load_note(v: &[f64]) -> String {
    format!(
        "1-min load at run starts {:.2}–{:.2} (median {:.2})",
        stats::min(v),
        stats::max(v),
        stats::median(v)
    )
}

/// Ratio lines for measures the script takes with external tools (pgbench, sysbench).
/// Values are comma-separated runs; the subject's median is divided by the base's median (the
/// base is direct unless named, as in `pgbouncer=VALUES`; `none` for no base and no ratio).
/// `cpu:PROCESS=VALUES` are a proxy's µs of CPU per transaction in each run, shown beside the
/// ratio (the subject's first). `errors:WHO=VALUES` are the errors of each run; the first one
/// is the subject's, which must be 0 for the target to be met. `load=VALUES` is the load
/// average each run started at.
fn summarize(a: &[String]) -> Result<()> {
    if a.len() < 5 {
        bail!(
            "summarize NAME UNIT TARGET_RATIO SUBJECT BASE|none [PEER=VALUES ...] [cpu:PROCESS=VALUES ...]"
        );
    }
    let target: f64 = a[2].parse()?;
    let subject = nums(&a[3])?;
    // BASE is "direct" unless named, as in `pgbouncer=VALUES`.
    let (base_name, base) = a[4].split_once('=').unwrap_or(("direct", &a[4]));
    let base = if a[4] == "none" {
        Vec::new()
    } else {
        nums(base)?
    };
    if subject.is_empty() || (base.is_empty() && a[4] != "none") {
        bail!("no runs");
    }
    let spread = |name: &str, v: &[f64]| {
        format!(
            "{name} {} (min {}, max {})",
            stats::fmt(stats::median(v)),
            stats::fmt(stats::min(v)),
            stats::fmt(stats::max(v))
        )
    };
    let ratio = (!base.is_empty()).then(|| stats::median(&subject) / stats::median(&base));
    let mut baseline = Vec::new();
    if !base.is_empty() {
        baseline.push(spread(base_name, &base));
    }
    let mut note = Vec::new();
    let mut cpu = Vec::new();
    let mut loads = Vec::new();
    let mut errors: Option<f64> = None;
    for peer in &a[5..] {
        let (name, values) = peer.split_once('=').context("PEER=VALUES")?;
        let v = nums(values)?;
        if let Some(who) = name.strip_prefix("cpu:") {
            cpu.push(stats::Cpu {
                who: who.to_string(),
                runs: v,
            });
            continue;
        }
        if let Some(who) = name.strip_prefix("errors:") {
            let sum: f64 = v.iter().sum();
            errors.get_or_insert(sum);
            note.push(format!("{who} {sum} errors in {} runs", v.len()));
            continue;
        }
        if v.is_empty() {
            continue;
        }
        if name == "load" {
            loads = v;
            continue;
        }
        if ratio.is_some() {
            note.push(format!(
                "{name} {} {} ratio={:.3}",
                stats::fmt(stats::median(&v)),
                a[1],
                stats::median(&v) / stats::median(&base)
            ));
        }
        baseline.push(spread(name, &v));
    }
    let mut goal = match ratio {
        Some(_) => format!("≥ {target:.2}× {base_name}"),
        None => String::new(),
    };
    if errors.is_some() {
        goal = if goal.is_empty() {
            "0 errors".into()
        } else {
            format!("{goal}, 0 errors")
        };
    }
    stats::Outcome {
        name: a[0].clone(),
        unit: a[1].clone(),
        runs: subject,
        baseline: if baseline.is_empty() {
            "-".into()
        } else {
            baseline.join("; ")
        },
        ratio,
        target: goal,
        met: ratio.is_none_or(|r| r >= target) && errors.is_none_or(|e| e == 0.0),
        note: note
            .into_iter()
            .chain((!loads.is_empty()).then(|| load_note(&loads)))
            .collect::<Vec<_>>()
            .join("; "),
    }
    .emit_with_cpu(&cpu);
    Ok(())
}

/// Before/after of one figure where lower is better (CPU per transaction of two builds, run
/// interleaved): the subject's median ÷ the base's median must stay ≤ LIMIT. `tps:LABEL=VALUES`
/// add each build's throughput in the same runs to the note, `load=VALUES` the load average
/// each run started at.
fn compare(a: &[String]) -> Result<()> {
    if a.len() < 5 {
        bail!("compare NAME UNIT LIMIT BASE=VALUES SUBJECT=VALUES [tps:LABEL=VALUES ...]");
    }
    let limit: f64 = a[2].parse()?;
    let (base_name, base) = a[3].split_once('=').context("BASE=VALUES")?;
    let (subject_name, subject) = a[4].split_once('=').context("SUBJECT=VALUES")?;
    let (base, subject) = (nums(base)?, nums(subject)?);
    if subject.is_empty() || base.is_empty() {
        bail!("no runs");
    }
    let ratio = stats::median(&subject) / stats::median(&base);
    let spread = |v: &[f64]| {
        format!(
            "{} (min {}, max {}, {} runs)",
            stats::fmt(stats::median(v)),
            stats::fmt(stats::min(v)),
            stats::fmt(stats::max(v)),
            v.len()
        )
    };
    let cpu = [
        stats::Cpu {
            who: subject_name.to_string(),
            runs: subject.clone(),
        },
        stats::Cpu {
            who: base_name.to_string(),
            runs: base.clone(),
        },
    ];
    let mut note = Vec::new();
    for extra in &a[5..] {
        let (name, values) = extra.split_once('=').context("tps:LABEL=VALUES")?;
        let v = nums(values)?;
        if v.is_empty() {
            continue;
        }
        if let Some(label) = name.strip_prefix("tps:") {
            note.push(format!("{label} {} tps", spread(&v)));
        } else if name == "load" {
            note.push(load_note(&v));
        }
    }
    stats::Outcome {
        name: format!("{}_{subject_name}", a[0]),
        unit: a[1].clone(),
        runs: subject,
        baseline: format!("{base_name} {} {}", spread(&base), a[1]),
        ratio: Some(ratio),
        target: format!("≤ {limit:.2}× {base_name}"),
        met: ratio <= limit,
        note: note.join("; "),
    }
    .emit_with_cpu(&cpu);
    Ok(())
}
