//! What torpor answers for a PostgreSQL session without a server: health-check probes, and
//! plain `SET`s checked against the catalog the server gave the last time it ran. What a parked
//! session changes this way waits in an [`Overlay`] and reaches the server with the next replay.

mod answer;
mod catalog;
mod sql;
mod traffic;

pub use answer::{Answer, Effect, Outcome, View, answer};
pub use catalog::{Accepted, Catalog, QUERY as CATALOG_QUERY, SettingDef};
pub use sql::{Probe, ProbeSet, Statement, probe, single, statements};
pub use traffic::is_probe_traffic;

use super::snapshot::{PgSnapshot, PreparedStatement, Setting};

/// Longest statement text kept as a canned statement.
pub const MAX_CANNED_TEXT: usize = 64;

/// Changes a parked session made while torpor answered for it, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    changes: Vec<Effect>,
}

/// Past this many changes a parked session wakes the server instead: each SET and statement
/// costs memory until then.
const MAX_CHANGES: usize = 256;

impl Overlay {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether more changes may still be kept here.
    pub fn has_room(&self) -> bool {
        self.changes.len() < MAX_CHANGES
    }

    /// Keeps what the next replay needs: the last change of each setting, and statements
    /// still open. Transaction control is the session's to follow, not the replay's.
    pub fn record(&mut self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Set(Accepted { name, .. }) | Effect::Reset { name } => {
                    self.changes.retain(|c| match c {
                        Effect::Set(a) => a.name != *name,
                        Effect::Reset { name: n } => n != name,
                        _ => true,
                    });
                    self.changes.push(e.clone());
                }
                Effect::Closed { name } => {
                    let before = self.changes.len();
                    self.changes
                        .retain(|c| !matches!(c, Effect::Parsed { name: n, .. } if n == name));
                    if before == self.changes.len() {
                        self.changes.push(e.clone());
                    }
                }
                Effect::ResetAll => {
                    self.changes
                        .retain(|c| !matches!(c, Effect::Set(_) | Effect::Reset { .. }));
                    self.changes.push(e.clone());
                }
                Effect::Parsed { .. } | Effect::UnlockAll | Effect::UnlistenAll => {
                    self.changes.push(e.clone())
                }
                Effect::Reported { .. } | Effect::Begin | Effect::End => {}
            }
        }
    }

    pub fn clear(&mut self) {
        self.changes.clear();
    }

    /// Puts the changes onto the state the store held (or onto an empty one), so the next
    /// replay gives the server the session as the client knows it.
    pub fn apply(&self, snap: &mut PgSnapshot) {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        for change in &self.changes {
            match change {
                Effect::Set(a) => {
                    snap.settings.retain(|s| !same(&s.name, &a.name));
                    snap.settings.push(Setting {
                        name: a.name.clone(),
                        value: a.value.clone(),
                    });
                }
                Effect::Reset { name } => snap.settings.retain(|s| !same(&s.name, name)),
                Effect::Parsed { name, query, .. } => snap.prepared.push(PreparedStatement {
                    name: name.clone(),
                    statement: query.clone(),
                    param_types: Vec::new(),
                    from_sql: false,
                }),
                Effect::Closed { name } => snap.prepared.retain(|p| p.name != *name),
                Effect::UnlockAll => snap.advisory_locks.clear(),
                Effect::UnlistenAll => snap.listen.clear(),
                Effect::ResetAll => {
                    // A custom setting stays defined, with an empty value.
                    snap.settings.retain(|s| s.name.contains('.'));
                    for s in &mut snap.settings {
                        s.value.clear();
                    }
                }
                Effect::Reported { .. } | Effect::Begin | Effect::End => {}
            }
        }
    }
}
