//! Session-preserving pooling (the `pool` group of scripts/bench.sh): many clients that each
//! hold session state, against a server with few connection slots, through whatever listens
//! at --addr (torpor, PgBouncer, or the server itself).
//!
//! torpor-bench pool-clients --proto postgres|mysql --addr HOST:PORT --name ROW --label WHO
//!     [--db DB] [--clients 1000] [--seconds 60] [--ramp 5] [--about TEXT]
//!
//! First every client connects (spread over --ramp seconds) and takes its state
//! (pool_state.rs). Once all have, each one, for --seconds, sleeps 5–15 s and reads back one
//! piece of its state picked at random. A wrong answer, or an error that says the state is
//! gone, is a mismatch; any other failure (a refused connection included) is an error. With
//! --seconds 0 the clients only connect and take their state: how many a server refuses.
//! Prints one result line (the p99 of the checks) and, with $BENCH_POOL_TABLE set, appends
//! `label|clients|opened|checks|p50|p99|errors|mismatches` to that file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::idle::{Conn, Rng};
use crate::pool_state::{self, Answer, Check};
use crate::stats::{Outcome, fmt, ms, percentile};
use crate::torpor::Proto;

/// Pause between one client's checks, in seconds.
const PAUSE: (f64, f64) = (5.0, 15.0);
/// A connect with its state, or one check, that takes longer counts as an error.
const LIMIT: Duration = Duration::from_secs(60);
/// Distinct error texts kept for the report; more are counted as "other".
const KINDS: usize = 12;

struct Plan {
    proto: Proto,
    addr: SocketAddr,
    db: String,
    name: String,
    label: String,
    about: String,
    clients: usize,
    seconds: u64,
    ramp: f64,
}

fn parse(a: &[String]) -> Result<Plan> {
    let mut p = Plan {
        proto: Proto::Postgres,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        db: String::new(),
        name: String::new(),
        label: String::new(),
        about: String::new(),
        clients: 1000,
        seconds: 60,
        ramp: 5.0,
    };
    let mut it = a.iter();
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--proto" => {
                p.proto = match v.as_str() {
                    "postgres" => Proto::Postgres,
                    "mysql" => Proto::Mysql,
                    other => bail!("--proto postgres|mysql, not {other}"),
                }
            }
            "--addr" => p.addr = v.parse().context("--addr HOST:PORT")?,
            "--db" => p.db = v.clone(),
            "--name" => p.name = v.clone(),
            "--label" => p.label = v.clone(),
            "--about" => p.about = v.clone(),
            "--clients" => p.clients = v.parse()?,
            "--seconds" => p.seconds = v.parse()?,
            "--ramp" => p.ramp = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if p.addr.port() == 0 || p.name.is_empty() || p.label.is_empty() || p.clients == 0 {
        bail!("pool-clients --proto P --addr HOST:PORT --name ROW --label WHO [--clients N] …");
    }
    if p.db.is_empty() {
        p.db = crate::torpor::USER.into();
    }
    Ok(p)
}

/// What a set of clients saw.
#[derive(Default)]
struct Tally {
    /// Latency of each check that was answered (right or wrong), ms.
    checks: Vec<f64>,
    /// Connect + state of each client that got through it, ms.
    setups: Vec<f64>,
    errors: usize,
    mismatches: usize,
    by_check: [usize; 3],
    kinds: BTreeMap<String, usize>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.checks.extend(o.checks);
        self.setups.extend(o.setups);
        self.errors += o.errors;
        self.mismatches += o.mismatches;
        for (a, b) in self.by_check.iter_mut().zip(o.by_check) {
            *a += b;
        }
        for (k, n) in o.kinds {
            self.kind(k, n);
        }
    }

    /// Texts that differ only by the client's number ("relation \"t10\"…") count as one; the
    /// first word, the server's error code, is kept.
    fn kind(&mut self, text: String, n: usize) {
        let (code, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let rest: String = rest
            .chars()
            .map(|c| if c.is_ascii_digit() { '#' } else { c })
            .take(160)
            .collect();
        let key = format!("{code} {rest}");
        let key = if self.kinds.len() >= KINDS && !self.kinds.contains_key(&key) {
            "other".to_string()
        } else {
            key
        };
        *self.kinds.entry(key).or_default() += n;
    }

    fn answer(&mut self, a: Answer, check: Option<Check>) {
        match a {
            Answer::Ok => {}
            Answer::Lost(text) => {
                self.mismatches += 1;
                if let Some(c) = check {
                    self.by_check[c as usize] += 1;
                }
                self.kind(text, 1);
            }
            Answer::Failed(text) => {
                self.errors += 1;
                self.kind(text, 1);
            }
        }
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let plan = parse(args)?;
    raise_nofile(plan.clients as u64 * 2 + 256);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (tally, opened) = rt.block_on(drive(&plan));
    rt.shutdown_background();
    report(&plan, &tally, opened);
    Ok(())
}

async fn drive(plan: &Plan) -> (Tally, usize) {
    let started = Instant::now();
    let (conns, mut tally) = open_all(plan).await;
    let opened = conns.len();
    println!(
        "   {}: {opened} of {} clients connected and took their state in {:.1} s",
        plan.label,
        plan.clients,
        started.elapsed().as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(plan.seconds);
    let mut set = JoinSet::new();
    for (i, conn) in conns {
        set.spawn(checks(i, conn, deadline));
    }
    while let Some(t) = set.join_next().await {
        match t {
            Ok(t) => tally.merge(t),
            Err(e) => tally.answer(Answer::Failed(format!("client task: {e}")), None),
        }
    }
    (tally, opened)
}

/// Every client connects at its moment of the ramp and takes its state.
async fn open_all(plan: &Plan) -> (Vec<(usize, Conn)>, Tally) {
    let start = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..plan.clients {
        let at = start + Duration::from_secs_f64(plan.ramp * i as f64 / plan.clients as f64);
        let (proto, addr, db) = (plan.proto, plan.addr, plan.db.clone());
        set.spawn(async move {
            sleep_until(at).await;
            let mut t = Tally::default();
            let s = Instant::now();
            let opened = timeout(LIMIT, async {
                let mut conn = Conn::plain(proto, addr, &db)
                    .await
                    .map_err(|e| Answer::Failed(pool_state::describe(&e)))?;
                match pool_state::take(&mut conn, i).await {
                    Answer::Failed(e) => Err(Answer::Failed(e)),
                    other => Ok((conn, other)),
                }
            })
            .await
            .unwrap_or_else(|_| Err(Answer::Failed("connect and state: timed out".into())));
            match opened {
                Ok((conn, answer)) => {
                    t.setups.push(ms(s.elapsed()));
                    t.answer(answer, None);
                    (Some((i, conn)), t)
                }
                Err(a) => {
                    t.answer(a, None);
                    (None, t)
                }
            }
        });
    }
    let mut conns = Vec::with_capacity(plan.clients);
    let mut tally = Tally::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok((conn, t)) => {
                conns.extend(conn);
                tally.merge(t);
            }
            Err(e) => tally.answer(Answer::Failed(format!("client task: {e}")), None),
        }
    }
    (conns, tally)
}

/// One client until `deadline`: a pause, one check, again.
async fn checks(i: usize, mut conn: Conn, deadline: Instant) -> Tally {
    let mut rng = Rng::new(i as u64);
    let mut t = Tally::default();
    let mine = pool_state::checks(i);
    loop {
        let pause = Duration::from_secs_f64(rng.uniform(PAUSE.0, PAUSE.1));
        if Instant::now() + pause > deadline {
            break;
        }
        sleep(pause).await;
        let which = mine[(rng.next() % mine.len() as u64) as usize];
        let s = Instant::now();
        match timeout(LIMIT, pool_state::check(&mut conn, i, which)).await {
            Ok(Answer::Failed(e)) => t.answer(Answer::Failed(e), Some(which)),
            Ok(a) => {
                t.checks.push(ms(s.elapsed()));
                t.answer(a, Some(which));
            }
            Err(_) => t.answer(Answer::Failed("check: timed out".into()), Some(which)),
        }
    }
    let _ = conn.close().await;
    t
}

fn report(plan: &Plan, t: &Tally, opened: usize) {
    let (p50, p99) = (percentile(&t.checks, 50.0), percentile(&t.checks, 99.0));
    let by_check: Vec<String> = Check::ALL
        .iter()
        .map(|c| format!("{} {}", c.name(), t.by_check[*c as usize]))
        .collect();
    let kinds: Vec<String> = t.kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    if !kinds.is_empty() {
        println!("   {}: failures: {}", plan.label, kinds.join("; "));
    }
    let not_opened = plan.clients - opened;
    let mut note = format!(
        "{}: {} checks, p50 {} ms, p99 {} ms; {} errors; {} mismatches ({} while taking state; \
         in checks: {}); {not_opened} of {} clients not connected or set up; connect + state \
         p50 {} ms, p99 {} ms",
        plan.label,
        t.checks.len(),
        fmt(p50),
        fmt(p99),
        t.errors,
        t.mismatches,
        t.mismatches - t.by_check.iter().sum::<usize>(),
        by_check.join(", "),
        plan.clients,
        fmt(percentile(&t.setups, 50.0)),
        fmt(percentile(&t.setups, 99.0)),
    );
    if !kinds.is_empty() {
        note.push_str(&format!("; failures: {}", kinds.join("; ")));
    }
    let checked = plan.seconds == 0 || !t.checks.is_empty();
    Outcome {
        name: plan.name.clone(),
        unit: "ms".into(),
        runs: vec![p99],
        baseline: format!(
            "{}{} clients, {}",
            if plan.about.is_empty() {
                String::new()
            } else {
                format!("{}; ", plan.about)
            },
            plan.clients,
            if plan.seconds == 0 {
                "connect and state only".to_string()
            } else {
                format!(
                    "each a check every {}–{} s for {} s",
                    PAUSE.0, PAUSE.1, plan.seconds
                )
            }
        ),
        ratio: None,
        target: "0 errors, 0 mismatches".into(),
        met: checked && t.errors == 0 && t.mismatches == 0,
        note,
    }
    .emit();
    crate::stats::append_to(
        "BENCH_POOL_TABLE",
        &format!(
            "{}|{}|{opened}|{}|{}|{}|{}|{}\n",
            plan.label,
            plan.clients,
            t.checks.len(),
            fmt(p50),
            fmt(p99),
            t.errors,
            t.mismatches
        ),
    );
}

/// One socket per client, so a thousand clients need more than the usual soft limit of 1024:
/// it goes up to `want`, at most the hard limit.
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= want {
            return;
        }
        let before = lim.rlim_cur;
        lim.rlim_cur = want.min(lim.rlim_max);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
            println!(
                "   open file limit raised from {before} to {}",
                lim.rlim_cur
            );
        }
    }
}
