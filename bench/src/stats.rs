//! Summaries of repeated runs and the one-line result format shared with scripts/bench.sh.

use std::io::Write as _;

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile (p in 0..=100).
pub(crate) fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub(crate) fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub(crate) fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// One measure's outcome: printed as `name value unit ratio=... target=... met|MISSED` and
/// appended as a `|`-separated row to `$BENCH_RESULTS` for BENCHMARKS.md.
pub(crate) struct Outcome {
    pub name: String,
    pub unit: String,
    pub runs: Vec<f64>,
    /// What the ratio compares against, e.g. "direct 35120 tps".
    pub baseline: String,
    pub ratio: Option<f64>,
    pub target: String,
    pub met: bool,
    pub note: String,
}

/// CPU time one proxy process used per transaction in each run of a load (utime + stime from
/// /proc/<pid>/stat over the run ÷ the transactions the load tool reported), in µs.
pub(crate) struct Cpu {
    pub who: String,
    pub runs: Vec<f64>,
}

/// `torpor 24.3 (23.9–25.0); forwarder 15.1 (14.8–15.6); torpor ÷ forwarder 1.61`: each
/// process's median (min–max) in µs/transaction, then the first one's median over each other's.
pub(crate) fn cpu_text(cpu: &[Cpu]) -> String {
    let cpu: Vec<&Cpu> = cpu.iter().filter(|c| !c.runs.is_empty()).collect();
    let mut parts: Vec<String> = cpu
        .iter()
        .map(|c| {
            format!(
                "{} {} ({}–{})",
                c.who,
                fmt(median(&c.runs)),
                fmt(min(&c.runs)),
                fmt(max(&c.runs))
            )
        })
        .collect();
    if let Some((first, rest)) = cpu.split_first() {
        for other in rest {
            parts.push(format!(
                "{} ÷ {} {:.2}",
                first.who,
                other.who,
                median(&first.runs) / median(&other.runs)
            ));
        }
    }
    parts.join("; ")
}

impl Outcome {
    pub(crate) fn emit(&self) {
        self.emit_with_cpu(&[]);
    }

    /// The line and the row, with the proxies' CPU per transaction beside the ratio.
    pub(crate) fn emit_with_cpu(&self, cpu: &[Cpu]) {
        let value = median(&self.runs);
        let ratio = self.ratio.map_or("-".to_string(), |r| format!("{r:.3}"));
        let verdict = if self.met { "met" } else { "MISSED" };
        let cpu = cpu_text(cpu);
        println!(
            "{} {} {} ratio={}{} target=\"{}\" {}{}",
            self.name,
            fmt(value),
            self.unit,
            ratio,
            if cpu.is_empty() {
                String::new()
            } else {
                format!(" cpu_us_per_tx=\"{cpu}\"")
            },
            self.target,
            verdict,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.note)
            }
        );
        let row = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}\n",
            self.name,
            fmt(value),
            fmt(min(&self.runs)),
            fmt(max(&self.runs)),
            self.runs.len(),
            self.unit,
            ratio,
            if cpu.is_empty() { "-" } else { &cpu },
            self.baseline,
            self.target,
            verdict,
            self.note.replace('|', "/"),
        );
        append_to("BENCH_RESULTS", &row);
    }
}

pub(crate) fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// #4 and #10: the first query after a scale-to-zero against a bare `server` start → first
/// query on the same data dir, both in ms.
pub(crate) fn cold_wake(name: &str, server: &str, torpor: Vec<f64>, bare: Vec<f64>) {
    against(
        name,
        &format!("bare {server} start→query"),
        "bare",
        torpor,
        bare,
    );
}

/// The first query through torpor against what the same step costs without it (`baseline`,
/// called `short` in the target and the note), both in ms: met within 30 ms of it.
pub(crate) fn against(name: &str, baseline: &str, short: &str, torpor: Vec<f64>, bare: Vec<f64>) {
    let (mt, mb) = (median(&torpor), median(&bare));
    Outcome {
        name: name.into(),
        unit: "ms".into(),
        runs: torpor,
        baseline: format!(
            "{baseline} p50 {mb:.1} ms (min {:.1}, max {:.1})",
            min(&bare),
            max(&bare)
        ),
        ratio: Some(mt / mb),
        target: format!("p50 ≤ {short} + 30 ms"),
        met: mt <= mb + 30.0,
        note: format!("torpor − {short} = {:+.1} ms", mt - mb),
    }
    .emit();
}

/// A measure that could not be taken: still one line, never a failed suite.
pub(crate) fn not_measured(name: &str, target: &str, error: &str) {
    let error = error.replace(['\n', '|'], " ");
    println!("{name} not-measured - ratio=- target=\"{target}\" ({error})");
    append_to(
        "BENCH_RESULTS",
        &format!("{name}|-|-|-|0|-|-|-|-|{target}|not measured|{error}\n"),
    );
}

/// Appends `text` to the file the environment variable `var` names, if it names one.
pub(crate) fn append_to(var: &str, text: &str) {
    if let Ok(path) = std::env::var(var)
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = f.write_all(text.as_bytes());
    }
}

pub(crate) fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
