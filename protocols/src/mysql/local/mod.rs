//! What torpor answers for a MySQL/MariaDB session without a server: health-check probes
//! (`SELECT 1`, `DO 1`, COM_PING), and plain `SET`s of session variables checked against the
//! catalog the server gave the last time it ran. What a parked session changes this way waits
//! in an [`Overlay`] and reaches the server with the next replay.

mod answer;
mod catalog;
mod sql;

pub use answer::{Answer, SESSION_STATUS, View, answer, ok_packet};
pub use catalog::{Catalog, Change, QUERIES as CATALOG_QUERIES, Row, VarDef};
pub use sql::{
    Assignment, MAX_TEXT, Probe, ProbeSet, Statement, Value, is_probe, may_customise, parse,
};

use super::capture::variable_rank;
use super::snapshot::MySnapshot;

/// Session variables a parked session set while torpor answered for it: the last value of
/// each, as a SQL literal. Only variables from a short list can get here, so it stays small.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    vars: Vec<(String, String)>,
}

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    pub fn record(&mut self, changes: &[(String, String)]) {
        for (name, literal) in changes {
            self.vars.retain(|(n, _)| n != name);
            self.vars.push((name.clone(), literal.clone()));
        }
    }

    pub fn clear(&mut self) {
        self.vars.clear();
    }

    /// Puts the changes onto the variables the store held (or onto none), in the order a
    /// capture would list them, so the replay gives the server the session the client knows.
    pub fn apply(&self, snap: &mut MySnapshot) {
        for (name, literal) in &self.vars {
            match snap.variables.iter_mut().find(|(n, _)| n == name) {
                Some(v) => v.1 = literal.clone(),
                None => snap.variables.push((name.clone(), literal.clone())),
            }
        }
        snap.variables
            .sort_by(|a, b| (variable_rank(&a.0), &a.0).cmp(&(variable_rank(&b.0), &b.0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_keeps_the_last_value_in_replay_order() {
        let mut o = Overlay::default();
        let v = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        o.record(&v(&[("autocommit", "'OFF'"), ("sql_mode", "''")]));
        o.record(&v(&[
            ("character_set_client", "'latin1'"),
            ("collation_connection", "'latin1_bin'"),
            ("character_set_connection", "'latin1'"),
            ("autocommit", "'ON'"),
        ]));
        let mut snap = MySnapshot {
            variables: v(&[
                ("character_set_client", "'utf8mb4'"),
                ("collation_connection", "'utf8mb4_general_ci'"),
                ("wait_timeout", "60"),
            ]),
            ..MySnapshot::default()
        };
        o.apply(&mut snap);
        assert_eq!(
            snap.variables,
            v(&[
                ("character_set_client", "'latin1'"),
                ("character_set_connection", "'latin1'"),
                ("collation_connection", "'latin1_bin'"),
                ("wait_timeout", "60"),
                ("autocommit", "'ON'"),
                ("sql_mode", "''"),
            ])
        );
        o.clear();
        assert!(o.is_empty());
    }
}
