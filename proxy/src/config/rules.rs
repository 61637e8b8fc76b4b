//! `[[cluster.idle_metric]]`, `[[cluster.wake_metric]]` and `wake_at`: what besides clients
//! keeps a cluster up or wakes it (run by `crate::rules`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ClusterConfig, ConfigError, invalid};

/// One metric of a Prometheus text endpoint compared with a threshold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricRule {
    /// The endpoint (`http://` or `https://`), read with a GET.
    pub url: String,
    /// The metric's name as the endpoint writes it.
    pub name: String,
    /// Only series with every one of these labels at these values count.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The rule holds while the value (the largest, when several series match) is above this.
    pub above: f64,
    #[serde(default = "default_interval", deserialize_with = "interval")]
    pub interval: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}

fn interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    super::duration("interval", d)
}

/// The shortest interval: a rule reads its endpoint no more often than this.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Checks the rules of cluster `i`.
pub(super) fn validate(c: &ClusterConfig, i: usize) -> Result<(), ConfigError> {
    for (kind, rules) in [
        ("idle_metric", &c.idle_metric),
        ("wake_metric", &c.wake_metric),
    ] {
        for (j, r) in rules.iter().enumerate() {
            let key = |k: &str| format!("cluster[{i}].{kind}[{j}].{k}");
            match reqwest::Url::parse(&r.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
                _ => {
                    return Err(invalid(key("url"), "must be an http:// or https:// URL"));
                }
            }
            if !is_name(&r.name, true) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is not a metric name", r.name),
                ));
            }
            if let Some(l) = r.labels.keys().find(|l| !is_name(l, false)) {
                return Err(invalid(key("labels"), format!("{l:?} is not a label name")));
            }
            if !r.above.is_finite() {
                return Err(invalid(key("above"), "must be a finite number"));
            }
            if r.interval < MIN_INTERVAL {
                return Err(invalid(key("interval"), "must be at least 100ms"));
            }
        }
    }
    for (j, pattern) in c.wake_at.iter().enumerate() {
        crate::rules::schedule::parse(pattern)
            .map_err(|e| invalid(format!("cluster[{i}].wake_at[{j}]"), e))?;
    }
    Ok(())
}

/// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) or, without colons, a label name.
fn is_name(s: &str, colons: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic()
            || c == '_'
            || (colons && c == ':')
            || (!first && c.is_ascii_digit())
    };
    let mut chars = s.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{Config, TEST_CONFIG};
    use super::*;

    fn with(extra: &str) -> Result<Config, ConfigError> {
        let text = TEST_CONFIG.replace("[cluster.backend]", &format!("{extra}\n[cluster.backend]"));
        Config::parse(&text, Path::new("/base"))
    }

    #[test]
    fn rules_read_with_their_defaults() {
        let cfg = with(
            r#"wake_at = ["0 8 * * 1-5"]
idle_metric = [{ url = "http://127.0.0.1:9187/metrics", name = "backup_running", above = 0 }]
wake_metric = [{ url = "https://q:9100/m", name = "jobs:queued", labels = { queue = "nightly" }, above = 10.5, interval = "30s" }]"#,
        )
        .unwrap();
        let c = &cfg.clusters[0];
        assert_eq!(c.wake_at, ["0 8 * * 1-5"]);
        assert_eq!(c.idle_metric[0].interval, Duration::from_secs(5));
        assert!(c.idle_metric[0].labels.is_empty());
        assert_eq!(c.wake_metric[0].above, 10.5);
        assert_eq!(c.wake_metric[0].interval, Duration::from_secs(30));
        assert_eq!(c.wake_metric[0].labels["queue"], "nightly");
    }

    #[test]
    fn bad_rules_name_their_key() {
        let rule = |fields: &str| format!("idle_metric = [{{ {fields} }}]");
        for (extra, want) in [
            (
                rule(r#"url = "ftp://x/m", name = "a", above = 0"#),
                "cluster[0].idle_metric[0].url:",
            ),
            (
                rule(r#"url = "http://x/m", name = "1a", above = 0"#),
                "cluster[0].idle_metric[0].name:",
            ),
            (
                rule(r#"url = "http://x/m", name = "a", labels = { "a-b" = "1" }, above = 0"#),
                "cluster[0].idle_metric[0].labels:",
            ),
            (
                rule(r#"url = "http://x/m", name = "a", above = nan"#),
                "cluster[0].idle_metric[0].above:",
            ),
            (
                rule(r#"url = "http://x/m", name = "a", above = 0, interval = "10ms""#),
                "cluster[0].idle_metric[0].interval:",
            ),
            (
                r#"wake_at = ["0 8 * * 1-5", "every day"]"#.to_string(),
                "cluster[0].wake_at[1]:",
            ),
            (
                r#"wake_at = ["61 8 * * *"]"#.to_string(),
                "cluster[0].wake_at[0]:",
            ),
        ] {
            let e = with(&extra).unwrap_err().to_string();
            assert!(e.starts_with(want), "{extra}: {e}");
        }
        let e = with(&rule(
            r#"url = "http://x/m", name = "a", above = 0, surprise = 1"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("surprise"), "{e}");
    }
}
