//! The server's catalog of settings, read from `pg_settings` while the server ran, so a `SET`
//! sent while it sleeps can be checked the way the server would check it. A value is accepted
//! only when the check is certain; anything else is left to the server.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What torpor learned from a running server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub settings: HashMap<String, SettingDef>,
    /// `SELECT version()`.
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingDef {
    /// The name as `pg_settings` spells it (`DateStyle`, `TimeZone`).
    pub name: String,
    /// bool, integer, real, string or enum.
    pub vartype: String,
    pub unit: String,
    pub enumvals: Vec<String>,
    pub min: String,
    pub max: String,
    pub context: String,
}

/// Reads the catalog: one row per setting, then the version.
pub const QUERY: &str = "SELECT name, vartype, coalesce(unit, ''), \
    coalesce(array_to_string(enumvals, chr(31)), ''), coalesce(min_val, ''), \
    coalesce(max_val, ''), context FROM pg_catalog.pg_settings; SELECT pg_catalog.version()";

/// Settings whose changes the server reports with ParameterStatus (GUC_REPORT in PostgreSQL 15).
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "intervalstyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "timezone",
];

/// String settings whose value the server accepts as given, or changes in a way known here.
/// Every other string setting has a check that only the server can run.
const FREE_STRINGS: &[&str] = &["application_name"];

/// Settings with context `user` that still can't be set like the others.
const SPECIAL: &[&str] = &[
    // Their check hooks depend on the transaction state.
    "transaction_isolation",
    "transaction_read_only",
    "transaction_deferrable",
    // Changing them changes how the session's later queries are lexed or logged in ways the
    // recogniser relies on.
    "standard_conforming_strings",
    "backslash_quote",
];

/// A SET the server would accept, with what it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The name as the server reports it (`application_name`, `IntervalStyle`).
    pub name: String,
    /// The value as given, for the replay's `set_config`.
    pub value: String,
    /// The value ParameterStatus carries, for reported settings.
    pub reported: Option<String>,
}

impl Catalog {
    /// Builds the catalog from [`QUERY`]'s two results (rows of text columns).
    pub fn from_rows(settings: &[Vec<Option<String>>], version: &str) -> Catalog {
        let mut map = HashMap::new();
        for row in settings {
            let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
            let def = SettingDef {
                name: col(0),
                vartype: col(1),
                unit: col(2),
                enumvals: col(3)
                    .split('\u{1f}')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                min: col(4),
                max: col(5),
                context: col(6),
            };
            map.insert(def.name.to_ascii_lowercase(), def);
        }
        Catalog {
            settings: map,
            version: version.to_string(),
        }
    }

    pub fn reported(name: &str) -> bool {
        REPORTED.contains(&name.to_ascii_lowercase().as_str())
    }

    /// The setting `name` as a `RESET` may touch it: known, and settable by any user.
    pub fn resettable(&self, name: &str) -> Option<&SettingDef> {
        let name = name.to_ascii_lowercase();
        let def = self.settings.get(&name)?;
        (def.context == "user" && !SPECIAL.contains(&name.as_str())).then_some(def)
    }

    /// Whether the server would accept `SET name = value` from any user, and what it sets.
    /// `name` is as the statement gave it (already case-folded unless quoted).
    pub fn check_set(&self, name: &str, value: &str) -> Option<Accepted> {
        if name.contains('.') {
            return self.check_custom(name, value);
        }
        let def = self.resettable(name)?;
        let reported = match def.vartype.as_str() {
            "bool" => Some(parse_bool(value)?.to_string()),
            "enum" => Some(
                def.enumvals
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(value))?
                    .clone(),
            ),
            "integer" => {
                check_integer(def, value)?;
                None
            }
            "real" => {
                check_real(def, value)?;
                None
            }
            // application_name is the only one: its check only cleans the value.
            "string" if FREE_STRINGS.contains(&def.name.as_str()) => Some(clean_ascii(value)),
            _ => return None,
        };
        Some(Accepted {
            name: def.name.clone(),
            value: value.to_string(),
            reported: reported.filter(|_| Catalog::reported(name)),
        })
    }

    /// A placeholder `class.name` setting takes any string, unless an extension owns the class
    /// (its settings are in the catalog, or it reserved the prefix, as plpgsql does).
    fn check_custom(&self, name: &str, value: &str) -> Option<Accepted> {
        let (class, _) = name.split_once('.')?;
        let valid = |s: &str| {
            s.bytes()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'$')
        };
        if !name.split('.').all(valid) || class == "plpgsql" {
            return None;
        }
        let prefix = format!("{class}.");
        if self.settings.keys().any(|k| k.starts_with(&prefix)) {
            return None;
        }
        Some(Accepted {
            name: name.to_string(),
            value: value.to_string(),
            reported: None,
        })
    }
}

/// PostgreSQL's parse_bool: true/false/yes/no and their unique prefixes, on/off, 1/0.
fn parse_bool(v: &str) -> Option<&'static str> {
    let l = v.to_ascii_lowercase();
    let prefix_of = |word: &str| !l.is_empty() && word.starts_with(l.as_str());
    if prefix_of("true") || prefix_of("yes") || l == "on" || l == "1" {
        Some("on")
    } else if prefix_of("false")
        || prefix_of("no")
        || (l.len() >= 2 && "off".starts_with(l.as_str()))
        || l == "0"
    {
        Some("off")
    } else {
        None
    }
}

/// Plain decimal integers, optionally with one of the setting's units, within min..max.
fn check_integer(def: &SettingDef, value: &str) -> Option<()> {
    let digits_end = value
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(value.len(), |(i, _)| i);
    let (num, unit) = value.split_at(digits_end);
    let n: i64 = num.parse().ok()?;
    // A leading zero would be read as octal by the server.
    if num.trim_start_matches('-').len() > 1 && num.trim_start_matches('-').starts_with('0') {
        return None;
    }
    let scaled = if unit.is_empty() {
        n
    } else {
        n.checked_mul(unit_factor(&def.unit, unit)?)?
    };
    let min: i64 = def.min.parse().ok()?;
    let max: i64 = def.max.parse().ok()?;
    (min..=max).contains(&scaled).then_some(())
}

/// How many of the setting's base unit one `given` unit is, when that is a whole number.
fn unit_factor(base: &str, given: &str) -> Option<i64> {
    let time = |u: &str| match u {
        "us" => Some(1),
        "ms" => Some(1_000),
        "s" => Some(1_000_000),
        "min" => Some(60_000_000),
        "h" => Some(3_600_000_000),
        "d" => Some(86_400_000_000),
        _ => None,
    };
    let memory = |u: &str| match u {
        "B" => Some(1),
        "kB" => Some(1 << 10),
        "MB" => Some(1 << 20),
        "GB" => Some(1 << 30),
        "TB" => Some(1 << 40),
        _ => None,
    };
    let (base, given) = match time(base) {
        Some(b) => (b, time(given)?),
        None => {
            // Memory settings may count in blocks: "8kB".
            let digits = base.bytes().take_while(u8::is_ascii_digit).count();
            let blocks: i64 = if digits == 0 {
                1
            } else {
                base[..digits].parse().ok()?
            };
            (blocks * memory(&base[digits..])?, memory(given)?)
        }
    };
    (given % base == 0).then_some(given / base)
}

/// A plain decimal within min..max (the setting must have no unit).
fn check_real(def: &SettingDef, value: &str) -> Option<()> {
    if !def.unit.is_empty() {
        return None;
    }
    let ok = value
        .trim_start_matches('-')
        .bytes()
        .all(|c| c.is_ascii_digit() || c == b'.');
    if !ok || value.is_empty() {
        return None;
    }
    let v: f64 = value.parse().ok()?;
    let min: f64 = def.min.parse().ok()?;
    let max: f64 = def.max.parse().ok()?;
    (v >= min && v <= max).then_some(())
}

/// PostgreSQL 15's pg_clean_ascii: each byte outside printable ASCII becomes '?'.
fn clean_ascii(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if (32..127).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, vartype: &str, unit: &str, min: &str, max: &str) -> SettingDef {
        SettingDef {
            name: name.into(),
            vartype: vartype.into(),
            unit: unit.into(),
            enumvals: Vec::new(),
            min: min.into(),
            max: max.into(),
            context: "user".into(),
        }
    }

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        for d in [
            def("extra_float_digits", "integer", "", "-15", "3"),
            def("statement_timeout", "integer", "ms", "0", "2147483647"),
            def("work_mem", "integer", "kB", "64", "2147483647"),
            def("temp_buffers", "integer", "8kB", "100", "1073741823"),
            def("enable_seqscan", "bool", "", "", ""),
            def("application_name", "string", "", "", ""),
            def("search_path", "string", "", "", ""),
            def("TimeZone", "string", "", "", ""),
            def("seq_page_cost", "real", "", "0", "1.79769e+308"),
            SettingDef {
                enumvals: vec!["postgres".into(), "iso_8601".into()],
                ..def("IntervalStyle", "enum", "", "", "")
            },
            SettingDef {
                context: "superuser".into(),
                ..def("log_statement_stats", "bool", "", "", "")
            },
            SettingDef {
                context: "postmaster".into(),
                ..def("shared_buffers", "integer", "8kB", "16", "1073741823")
            },
            def("plperl.on_init", "string", "", "", ""),
        ] {
            c.settings.insert(d.name.to_ascii_lowercase(), d);
        }
        c
    }

    #[test]
    fn accepts_what_the_server_certainly_accepts() {
        let c = catalog();
        let ok = |n: &str, v: &str| c.check_set(n, v);
        assert_eq!(
            ok("extra_float_digits", "3").map(|a| a.reported),
            Some(None)
        );
        assert!(ok("extra_float_digits", "-15").is_some());
        assert!(ok("statement_timeout", "5s").is_some());
        assert!(ok("statement_timeout", "2min").is_some());
        assert!(ok("work_mem", "4MB").is_some());
        assert!(ok("temp_buffers", "16MB").is_some());
        assert_eq!(ok("enable_seqscan", "OFF").and_then(|a| a.reported), None);
        assert!(ok("enable_seqscan", "tr").is_some());
        assert!(ok("seq_page_cost", "1.5").is_some());
        let a = ok("intervalstyle", "ISO_8601").unwrap();
        assert_eq!(a.name, "IntervalStyle");
        assert_eq!(a.reported.as_deref(), Some("iso_8601"));
        let a = ok("application_name", "caf\u{e9}").unwrap();
        assert_eq!(a.reported.as_deref(), Some("caf??"));
        assert_eq!(a.value, "caf\u{e9}");
        assert!(ok("app.tenant", "anything at all").is_some());
    }

    #[test]
    fn leaves_everything_uncertain_to_the_server() {
        let c = catalog();
        for (n, v) in [
            ("extra_float_digits", "4"),
            ("extra_float_digits", "03"),
            ("extra_float_digits", "1.5"),
            ("statement_timeout", "5 s"),
            ("statement_timeout", "1us"),
            ("statement_timeout", "5fortnights"),
            ("work_mem", "1B"),
            ("enable_seqscan", "o"),
            ("enable_seqscan", "maybe"),
            ("intervalstyle", "nope"),
            ("timezone", "UTC"),
            ("search_path", "public"),
            ("log_statement_stats", "on"),
            ("shared_buffers", "1GB"),
            ("no_such_setting", "1"),
            ("plperl.other", "x"),
            ("plpgsql.extra_warnings", "all"),
            ("App.x", "y"),
            ("seq_page_cost", "1e3"),
        ] {
            assert_eq!(c.check_set(n, v), None, "{n} = {v}");
        }
    }
}
