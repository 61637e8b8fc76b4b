//! `wake_at`: cron patterns (five fields, minute granularity, UTC, through `croner`) at whose
//! times the cluster is woken. A wake holds the cluster up for idle_timeout from then, also
//! when it was running already. Time is read from a [`Clock`] at least every second, so a
//! clock a test sets (or the system's, when it jumps) is followed within a second.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use controller::{Cluster, WakeCause};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::Clock;

/// The longest the loop sleeps before it reads the clock again.
const TICK: Duration = Duration::from_secs(1);

/// A `wake_at` pattern, or why it isn't one.
pub fn parse(pattern: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| {
            format!("{pattern:?} is not a cron pattern (minute hour day month weekday): {e}")
        })
}

/// The first time after `now` any pattern names, with the pattern.
fn next_after(times: &[(String, Cron)], now: DateTime<Utc>) -> Option<(DateTime<Utc>, &str)> {
    times
        .iter()
        .filter_map(|(p, cron)| Some((cron.find_next_occurrence(&now, false).ok()?, p.as_str())))
        .min_by_key(|(at, _)| *at)
}

pub(super) async fn run(cluster: Arc<Cluster>, times: Vec<(String, Cron)>, clock: Clock) {
    let name = cluster.name().to_string();
    let mut last: DateTime<Utc> = clock.now().into();
    let mut next = next_after(&times, last);
    tracing::debug!(cluster = %name, next = ?next.map(|(at, _)| at), "wake_at: first wake");
    loop {
        let now: DateTime<Utc> = clock.now().into();
        if now < last {
            // The clock went back: what is next is counted from the new now.
            next = next_after(&times, now);
        }
        last = now;
        let Some((at, pattern)) = next else {
            tracing::warn!(cluster = %name, "wake_at: none of the patterns names a time to come");
            return;
        };
        if now >= at {
            let pattern = pattern.to_string();
            wake(&cluster, &pattern, at).await;
            next = next_after(&times, now);
            continue;
        }
        let until = (at - now).to_std().unwrap_or_default();
        tokio::time::sleep(until.min(TICK)).await;
    }
}

async fn wake(cluster: &Arc<Cluster>, pattern: &str, at: DateTime<Utc>) {
    // Held through the wake, and released after it: the idle clock starts from now.
    let _hold = cluster.hold(format!("wake_at {pattern}"));
    match cluster.wake_for(WakeCause::Schedule, None).await {
        Ok(_) => {
            tracing::info!(cluster = %cluster.name(), %pattern, %at, "wake_at woke the cluster: it stays up for idle_timeout at least")
        }
        Err(e) => {
            tracing::error!(cluster = %cluster.name(), %pattern, %at, error = %e, "wake_at could not wake the cluster")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_next_time_is_the_earliest_of_every_pattern_in_utc() {
        let times: Vec<(String, Cron)> = ["0 8 * * 1-5", "30 6 * * *"]
            .iter()
            .map(|p| (p.to_string(), parse(p).unwrap()))
            .collect();
        // A Monday.
        let (t, p) = next_after(&times, at("2030-01-07T07:59:00Z")).unwrap();
        assert_eq!((t, p), (at("2030-01-07T08:00:00Z"), "0 8 * * 1-5"));
        // Exactly at a time: the next one, not this one again.
        let (t, p) = next_after(&times, at("2030-01-07T08:00:00Z")).unwrap();
        assert_eq!((t, p), (at("2030-01-08T06:30:00Z"), "30 6 * * *"));
        // Saturday: no weekday pattern until Monday.
        let (t, _) = next_after(&times[..1], at("2030-01-12T09:00:00Z")).unwrap();
        assert_eq!(t, at("2030-01-14T08:00:00Z"));
    }

    #[test]
    fn only_five_field_patterns_are_taken() {
        assert!(parse("0 8 * * 1-5").is_ok());
        assert!(parse("@daily").is_ok());
        for bad in ["0 0 8 * * 1-5", "8 * *", "61 * * * *", "", "every day"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("not a cron pattern"), "{bad}: {e}");
        }
    }
}
