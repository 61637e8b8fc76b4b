//! Reading one metric from a Prometheus text endpoint: a GET bounded in time and size, the
//! text read by `prometheus-parse`, the series chosen by name and labels.

use std::collections::BTreeMap;
use std::time::Duration;

use controller::error_chain as chain;

use crate::config::MetricRule;

/// A larger answer is refused rather than read: an exporter's page is kilobytes.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The shortest and longest a request may take, whatever the rule's interval.
const MIN_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum ScrapeError {
    #[error("cannot read {url}: {why}")]
    Request { url: String, why: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} answered more than {} MiB", MAX_BODY / 1024 / 1024)]
    TooLarge { url: String },
    #[error("{url} answered something other than the Prometheus text format: {why}")]
    NotText { url: String, why: String },
    #[error("no such series at {url}")]
    Absent { url: String },
    #[error("the value at {url} is NaN")]
    NotANumber { url: String },
}

/// One rule's endpoint and series.
pub(crate) struct Target {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL without a password, for messages.
    shown: String,
    name: String,
    labels: BTreeMap<String, String>,
    pub(crate) above: f64,
    pub(crate) interval: Duration,
    timeout: Duration,
}

impl Target {
    pub(crate) fn new(rule: &MetricRule) -> Result<Target, String> {
        let url = reqwest::Url::parse(&rule.url).map_err(|e| e.to_string())?;
        let mut shown = url.clone();
        // Only fails for URLs that can't have a password, which then have none.
        let _ = shown.set_password(None);
        // reqwest is built without a TLS provider of its own; ring is torpor's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let timeout = rule.interval.clamp(MIN_TIMEOUT, MAX_TIMEOUT);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| chain(&e))?;
        Ok(Target {
            client,
            url,
            shown: shown.to_string(),
            name: rule.name.clone(),
            labels: rule.labels.clone(),
            above: rule.above,
            interval: rule.interval,
            timeout,
        })
    }

    /// The series as operators write it: `name` or `name{k="v",…}`.
    pub(crate) fn series(&self) -> String {
        if self.labels.is_empty() {
            return self.name.clone();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }

    /// The value now: the largest of the matching series.
    pub(crate) async fn read(&self) -> Result<f64, ScrapeError> {
        let body = tokio::time::timeout(self.timeout, self.fetch())
            .await
            .map_err(|_| ScrapeError::Request {
                url: self.shown.clone(),
                why: format!("no answer within {:?}", self.timeout),
            })??;
        pick(&body, &self.name, &self.labels).map_err(|e| e.at(&self.shown))
    }

    async fn fetch(&self) -> Result<String, ScrapeError> {
        let request_error = |e: reqwest::Error| ScrapeError::Request {
            url: self.shown.clone(),
            why: chain(&e.without_url()),
        };
        let mut resp = self
            .client
            .get(self.url.clone())
            .send()
            .await
            .map_err(request_error)?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status {
                url: self.shown.clone(),
                status: resp.status().as_u16(),
            });
        }
        let too_large = || ScrapeError::TooLarge {
            url: self.shown.clone(),
        };
        if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|e| ScrapeError::NotText {
            url: self.shown.clone(),
            why: e.to_string(),
        })
    }
}

/// The largest value of `name` among the series with every one of `labels`.
fn pick(body: &str, name: &str, labels: &BTreeMap<String, String>) -> Result<f64, Unfound> {
    use prometheus_parse::Value;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .map_err(|e| Unfound::NotText(e.to_string()))?;
    let mut max: Option<f64> = None;
    for s in &scrape.samples {
        if s.metric != name || labels.iter().any(|(k, v)| s.labels.get(k) != Some(v)) {
            continue;
        }
        let v = match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            // A histogram's or summary's own series (_sum, _count) come as untyped ones.
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        if v.is_nan() {
            return Err(Unfound::NotANumber);
        }
        max = Some(max.map_or(v, |m| m.max(v)));
    }
    max.ok_or(Unfound::Absent)
}

/// Why [`pick`] found no value, before the URL is known.
#[derive(Debug, PartialEq)]
enum Unfound {
    NotText(String),
    Absent,
    NotANumber,
}

impl Unfound {
    fn at(self, url: &str) -> ScrapeError {
        let url = url.to_string();
        match self {
            Unfound::NotText(why) => ScrapeError::NotText { url, why },
            Unfound::Absent => ScrapeError::Absent { url },
            Unfound::NotANumber => ScrapeError::NotANumber { url },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP backup_running 1 while a backup runs
# TYPE backup_running gauge
backup_running{job="nightly",host="a"} 0
backup_running{job="hourly",host="a"} 1
backup_running{job="hourly",host="b"} 3

# TYPE queue_length untyped
queue_length 12 1700000000000
# TYPE lag_seconds histogram
lag_seconds_bucket{le="1"} 2
lag_seconds_bucket{le="+Inf"} 5
lag_seconds_sum 7.5
lag_seconds_count 5
weird NaN
"#;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_largest_matching_series_counts() {
        assert_eq!(pick(PAGE, "backup_running", &labels(&[])), Ok(3.0));
        assert_eq!(
            pick(PAGE, "backup_running", &labels(&[("job", "nightly")])),
            Ok(0.0)
        );
        assert_eq!(
            pick(
                PAGE,
                "backup_running",
                &labels(&[("job", "hourly"), ("host", "a")])
            ),
            Ok(1.0)
        );
        assert_eq!(pick(PAGE, "queue_length", &labels(&[])), Ok(12.0));
        assert_eq!(pick(PAGE, "lag_seconds_count", &labels(&[])), Ok(5.0));
    }

    #[test]
    fn labels_that_dont_match_and_missing_metrics_are_absent() {
        assert_eq!(
            pick(PAGE, "backup_running", &labels(&[("job", "weekly")])),
            Err(Unfound::Absent)
        );
        assert_eq!(
            pick(PAGE, "backup_running", &labels(&[("region", "eu")])),
            Err(Unfound::Absent)
        );
        assert_eq!(pick(PAGE, "backup", &labels(&[])), Err(Unfound::Absent));
        assert_eq!(
            pick("", "backup_running", &labels(&[])),
            Err(Unfound::Absent)
        );
        assert_eq!(pick(PAGE, "weird", &labels(&[])), Err(Unfound::NotANumber));
    }
}
