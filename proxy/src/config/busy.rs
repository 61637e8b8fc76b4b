//! `busy_query`: what torpor asks the server before a drain or a freeze (see `crate::busy`).
//! One statement, checked here with the same scanners replay uses, so the server is never sent
//! a second one.

use super::{ClusterConfig, ConfigError, Protocol, invalid};

/// What a cluster asks its server before a drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusyQuery {
    /// `busy_query = ""`: nothing is asked.
    Off,
    /// No `busy_query`: torpor's own, which knows its sessions (`crate::busy`).
    Default,
    /// The operator's statement, without a trailing `;`.
    Custom(String),
}

impl ClusterConfig {
    /// The `busy_query` as torpor runs it. A statement that failed validation counts as none:
    /// a loaded config has none.
    pub fn busy_query(&self) -> BusyQuery {
        match &self.busy_query {
            None => BusyQuery::Default,
            Some(text) => match one_statement(self.protocol, text) {
                Ok(Some(sql)) => BusyQuery::Custom(sql),
                Ok(None) | Err(_) => BusyQuery::Off,
            },
        }
    }
}

pub(super) fn validate(c: &ClusterConfig, key: &str) -> Result<(), ConfigError> {
    match &c.busy_query {
        Some(text) => one_statement(c.protocol, text)
            .map(drop)
            .map_err(|problem| invalid(key, problem)),
        None => Ok(()),
    }
}

/// The one statement `text` holds (None: blank, the check is off), or why it isn't one.
fn one_statement(protocol: Protocol, text: &str) -> Result<Option<String>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let statement = match protocol {
        Protocol::Postgres => {
            use protocols::pg::sql::{is_contained, split_statements};
            // The server may or may not take backslash escapes: one statement either way.
            let standard = split_statements(trimmed, false);
            let escaped = split_statements(trimmed, true);
            match (standard.as_slice(), escaped.as_slice()) {
                ([one], [same]) if one == same && is_contained(one) => Some(one.to_string()),
                ([], _) | (_, []) => {
                    return Err("holds only comments: say \"\" to turn the check off".into());
                }
                _ => None,
            }
        }
        Protocol::Mysql => {
            let one = trimmed.strip_suffix(';').unwrap_or(trimmed).trim_end();
            protocols::mysql::contained::is_contained(one).then(|| one.to_string())
        }
    };
    match statement {
        Some(s) => Ok(Some(s)),
        None => Err(
            "must be one SQL statement, with nothing left open (a string, a quoted name, a comment)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_or_an_error() {
        for (protocol, text, want) in [
            (Protocol::Postgres, "SELECT 1", "SELECT 1"),
            (Protocol::Postgres, "  SELECT 1 ;\n", "SELECT 1"),
            (
                Protocol::Postgres,
                "SELECT count(*) > 0 FROM jobs WHERE note <> ';'",
                "SELECT count(*) > 0 FROM jobs WHERE note <> ';'",
            ),
            (Protocol::Mysql, "SELECT 1", "SELECT 1"),
            (Protocol::Mysql, "SELECT ';' = 1;  ", "SELECT ';' = 1"),
        ] {
            assert_eq!(
                one_statement(protocol, text),
                Ok(Some(want.to_string())),
                "{text}"
            );
        }
        for protocol in [Protocol::Postgres, Protocol::Mysql] {
            assert_eq!(one_statement(protocol, ""), Ok(None));
            assert_eq!(one_statement(protocol, "  \n"), Ok(None));
            for bad in [
                "SELECT 1; SELECT 2",
                "SELECT 'open",
                "SELECT 1 /* open",
                // One statement only where backslashes escape.
                r"SELECT '\'; DROP TABLE t; -- '",
            ] {
                assert!(one_statement(protocol, bad).is_err(), "{protocol:?}: {bad}");
            }
        }
        assert!(one_statement(Protocol::Postgres, "-- nothing").is_err());
    }

    #[test]
    fn unset_is_the_default_and_empty_is_off() {
        use crate::config::{Config, TEST_CONFIG};
        let base = std::path::Path::new("/tmp");
        let at = |line: &str| {
            let text = TEST_CONFIG.replace(
                "idle_timeout = \"500ms\"",
                &format!("idle_timeout = \"500ms\"\n{line}"),
            );
            Config::parse(&text, base)
        };
        let query = |line: &str| at(line).expect("valid").clusters[0].busy_query();
        assert_eq!(query(""), BusyQuery::Default);
        assert_eq!(query("busy_query = \"\""), BusyQuery::Off);
        assert_eq!(
            query("busy_query = \"SELECT count(*) > 0 FROM jobs;\""),
            BusyQuery::Custom("SELECT count(*) > 0 FROM jobs".into())
        );
        let err = at("busy_query = \"SELECT 1; SELECT 2\"").expect_err("two statements");
        assert!(err.to_string().contains("cluster[0].busy_query"), "{err}");
    }
}
