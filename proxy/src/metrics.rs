//! Prometheus metrics through the `metrics` crate and its exporter.
//!
//! Two recorders, rendered one after the other. What is measured as it happens (latencies,
//! sizes, probes answered) goes to one that lives as long as the server. What is read off the
//! clusters when `/metrics` is scraped (states, sessions, blockers, the controller's counters)
//! goes to one built for that scrape: the exporter cannot forget a series, and a blocker that
//! went away must not be shown again.
//!
//! Each torpor has its own recorders rather than the process-wide one, so that several in one
//! process (the end-to-end tests) don't count each other's wakes.

use std::collections::HashSet;

use controller::WakeCause;
use metrics::{
    Counter, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::config::Protocol;
use crate::throttle::LoginMetrics;

pub const WAKE_SECONDS: &str = "torpor_wake_seconds";
pub const CHECKPOINT_SECONDS: &str = "torpor_checkpoint_seconds";
pub const SNAPSHOT_PUT_SECONDS: &str = "torpor_snapshot_put_seconds";
pub const SNAPSHOT_GET_SECONDS: &str = "torpor_snapshot_get_seconds";
pub const SNAPSHOT_BYTES: &str = "torpor_snapshot_bytes";
pub const REPLAY_SECONDS: &str = "torpor_replay_seconds";
pub const PROBES_ANSWERED: &str = "torpor_probes_answered_total";
pub const LOGIN_FAILURES: &str = "torpor_login_failures_total";
pub const LOGIN_THROTTLED: &str = "torpor_login_throttled_total";
pub const OFFLOADED_BYTES: &str = "torpor_offloaded_bytes_total";
pub const BACKEND_WAIT_SECONDS: &str = "torpor_backend_wait_seconds";

/// From a snapshot put on a local disk (sub-millisecond) to a cold start of a large server.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// A bare session's snapshot is a few hundred bytes; one with temp tables can reach megabytes.
const BYTES: &[f64] = &[
    256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The metrics recorded as things happen.
pub struct Metrics {
    recorder: PrometheusRecorder,
}

impl Metrics {
    pub fn new() -> Result<Metrics, BuildError> {
        // Without buckets the exporter renders summaries; Prometheus can only aggregate
        // histograms across instances.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
            .set_buckets_for_metric(Matcher::Full(SNAPSHOT_BYTES.into()), BYTES)?
            .build_recorder();
        for (name, unit, help) in [
            (
                WAKE_SECONDS,
                Unit::Seconds,
                "from a wake request to the backend being ready, by who asked (client, admin, metric, schedule)",
            ),
            (
                CHECKPOINT_SECONDS,
                Unit::Seconds,
                "capture of a session's state for a snapshot",
            ),
            (
                SNAPSHOT_PUT_SECONDS,
                Unit::Seconds,
                "writing a snapshot to the store, until durable",
            ),
            (
                SNAPSHOT_GET_SECONDS,
                Unit::Seconds,
                "reading a snapshot from the store",
            ),
            (SNAPSHOT_BYTES, Unit::Bytes, "size of each snapshot written"),
            (
                BACKEND_WAIT_SECONDS,
                Unit::Seconds,
                "time a session waited for a backend connection to come free (max_backend_connections)",
            ),
            (
                REPLAY_SECONDS,
                Unit::Seconds,
                "replay of a snapshot into a new backend connection",
            ),
        ] {
            recorder.describe_histogram(KeyName::from_const_str(name), Some(unit), help.into());
        }
        recorder.describe_counter(
            KeyName::from_const_str(PROBES_ANSWERED),
            None,
            "health probes torpor answered itself, without the server (a parked session, or during a drain)"
                .into(),
        );
        for (name, help) in [
            (
                OFFLOADED_BYTES,
                "bytes of client commands scanned on the blocking pool rather than the async runtime, for their size",
            ),
            (
                LOGIN_FAILURES,
                "logins refused for a wrong password or an unknown user",
            ),
            (
                LOGIN_THROTTLED,
                "login attempts made to wait after repeated failures from their address",
            ),
        ] {
            recorder.describe_counter(KeyName::from_const_str(name), None, help.into());
        }
        Ok(Metrics { recorder })
    }

    /// Where a cluster's controller records wake latency for `cause`.
    pub fn wake(&self, cluster: &str, cause: WakeCause) -> Histogram {
        self.histogram(
            WAKE_SECONDS,
            vec![label("cluster", cluster), label("cause", cause.as_str())],
        )
    }

    /// A cluster's handles; registered now, so each series shows (at zero) from the start.
    pub fn cluster(&self, cluster: &str, protocol: Protocol) -> ClusterMetrics {
        let h = |name| self.histogram(name, vec![label("cluster", cluster)]);
        let protocol = match protocol {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        };
        ClusterMetrics {
            checkpoint: h(CHECKPOINT_SECONDS),
            snapshot_put: h(SNAPSHOT_PUT_SECONDS),
            snapshot_get: h(SNAPSHOT_GET_SECONDS),
            snapshot_bytes: h(SNAPSHOT_BYTES),
            replay: h(REPLAY_SECONDS),
            room_wait: h(BACKEND_WAIT_SECONDS),
            probes_answered: self.recorder.register_counter(
                &Key::from_parts(
                    PROBES_ANSWERED,
                    vec![label("cluster", cluster), label("protocol", protocol)],
                ),
                &METADATA,
            ),
            offloaded: self.recorder.register_counter(
                &Key::from_parts(OFFLOADED_BYTES, vec![label("cluster", cluster)]),
                &METADATA,
            ),
        }
    }

    /// Where failed and slowed logins are counted; registered now, so each shows from the start.
    pub fn logins(&self) -> LoginMetrics {
        let counter = |name, labels: Vec<Label>| {
            self.recorder
                .register_counter(&Key::from_parts(name, labels), &METADATA)
        };
        LoginMetrics {
            pg_failures: counter(LOGIN_FAILURES, vec![label("protocol", "postgres")]),
            my_failures: counter(LOGIN_FAILURES, vec![label("protocol", "mysql")]),
            throttled: counter(LOGIN_THROTTLED, vec![]),
        }
    }

    fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels.to_vec()), &METADATA)
    }

    /// Folds the values recorded since the last call into the histograms. Rendering does it
    /// too; without either, they pile up in memory.
    pub fn run_upkeep(&self) {
        self.recorder.handle().run_upkeep();
    }

    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

/// What a cluster's sessions record. No-ops until the server gives real ones.
#[derive(Clone)]
pub struct ClusterMetrics {
    pub checkpoint: Histogram,
    pub snapshot_put: Histogram,
    pub snapshot_get: Histogram,
    pub snapshot_bytes: Histogram,
    pub replay: Histogram,
    pub room_wait: Histogram,
    pub probes_answered: Counter,
    pub offloaded: Counter,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        ClusterMetrics {
            checkpoint: Histogram::noop(),
            snapshot_put: Histogram::noop(),
            snapshot_get: Histogram::noop(),
            snapshot_bytes: Histogram::noop(),
            replay: Histogram::noop(),
            room_wait: Histogram::noop(),
            probes_answered: Counter::noop(),
            offloaded: Counter::noop(),
        }
    }
}

/// The values read off the clusters for one scrape.
pub struct Scrape {
    recorder: PrometheusRecorder,
    described: HashSet<&'static str>,
}

impl Default for Scrape {
    fn default() -> Self {
        Scrape {
            recorder: PrometheusBuilder::new().build_recorder(),
            described: HashSet::new(),
        }
    }
}

impl Scrape {
    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[Label], value: f64) {
        self.describe(name, help, PrometheusRecorder::describe_gauge);
        self.recorder
            .register_gauge(&Key::from_parts(name, labels.to_vec()), &METADATA)
            .set(value);
    }

    pub fn counter(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[Label],
        value: u64,
    ) {
        self.describe(name, help, PrometheusRecorder::describe_counter);
        self.recorder
            .register_counter(&Key::from_parts(name, labels.to_vec()), &METADATA)
            .absolute(value);
    }

    /// The first series of `name` in a scrape gives it its HELP text (`describe` is the
    /// recorder's call for its kind).
    fn describe(
        &mut self,
        name: &'static str,
        help: &'static str,
        describe: fn(&PrometheusRecorder, KeyName, Option<Unit>, SharedString),
    ) {
        if self.described.insert(name) {
            describe(
                &self.recorder,
                KeyName::from_const_str(name),
                None,
                help.into(),
            );
        }
    }

    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

/// A label whose value the exporter will escape correctly.
///
/// The exporter takes `\\` and `\"` in a value as already escaped and passes them through, so a
/// raw backslash before a quote or another backslash would come out wrong. With every
/// backslash doubled first, each reaches it as an escaped pair, and the rest (quotes,
/// newlines) it escapes itself.
pub fn label(key: &'static str, value: &str) -> Label {
    Label::new(key, value.replace('\\', "\\\\"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undoes the text format's escaping of a label value.
    fn unescape(v: &str) -> String {
        let mut out = String::new();
        let mut chars = v.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(c) => out.push(c),
                    None => panic!("dangling backslash in {v:?}"),
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn label_values_come_back_as_they_were() {
        let values = [
            r#"session 5 (app@127.0.0.1:40312, application_name "psql"): open transaction"#,
            r#"a\"b"#,
            r"a\\b",
            r"trailing\",
            "new\nline",
            r"\n is not a newline",
        ];
        let mut scrape = Scrape::default();
        for v in values {
            scrape.gauge(
                "t_info",
                "help",
                &[label("cluster", "c"), label("v", v)],
                1.0,
            );
        }
        let text = scrape.render();
        let mut seen: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("t_info{cluster=\"c\",v=\""))
            .map(|l| {
                let v = l.strip_suffix("\"} 1").unwrap_or_else(|| panic!("{l}"));
                unescape(v)
            })
            .collect();
        seen.sort();
        let mut want: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        want.sort();
        assert_eq!(seen, want, "{text}");
    }

    #[test]
    fn histograms_render_with_buckets_and_counts() {
        let m = Metrics::new().unwrap();
        let c = m.cluster("pg", Protocol::Postgres);
        let w = m.wake("pg", WakeCause::Client);
        w.record(0.2);
        c.snapshot_bytes.record(300.0);
        c.probes_answered.increment(2);
        let text = m.render();
        for line in [
            "# TYPE torpor_wake_seconds histogram",
            "torpor_wake_seconds_bucket{cluster=\"pg\",cause=\"client\",le=\"0.25\"} 1",
            "torpor_wake_seconds_bucket{cluster=\"pg\",cause=\"client\",le=\"0.1\"} 0",
            "torpor_wake_seconds_count{cluster=\"pg\",cause=\"client\"} 1",
            "torpor_snapshot_bytes_bucket{cluster=\"pg\",le=\"1024\"} 1",
            "torpor_snapshot_bytes_count{cluster=\"pg\"} 1",
            "torpor_replay_seconds_count{cluster=\"pg\"} 0",
            "torpor_probes_answered_total{cluster=\"pg\",protocol=\"postgres\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
