//! Durations in config files, for every duration in torpor's config (the proxy's too).

use std::time::Duration;

/// The units a config duration may use, for error messages.
const DURATION_FORMAT: &str =
    "a duration in ms, s, m (minutes), h or d, e.g. \"500ms\", \"30s\", \"5m\", \"2h\", \"1d\"";

/// A humantime duration without months and years: humantime reads `"5M"` as five months and
/// `"1y"` as a year, which someone who meant minutes would not notice until the database never
/// sleeps, and neither has a fixed length anyway.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    // humantime's units are the runs of letters (and µ) between the numbers.
    let units = text
        .split(|c: char| !(c.is_ascii_alphabetic() || c == 'µ'))
        .filter(|u| !u.is_empty());
    for unit in units {
        if matches!(
            unit,
            "M" | "month" | "months" | "y" | "yr" | "yrs" | "year" | "years"
        ) {
            return Err(format!(
                "{text:?}: months and years are not accepted ({unit:?}); want {DURATION_FORMAT}"
            ));
        }
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}; want {DURATION_FORMAT}"))
}
