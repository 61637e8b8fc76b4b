//! What a session's last snapshot held, counted for operators.

use protocols::mysql::snapshot::MySnapshot;
use protocols::pg::snapshot::PgSnapshot;
use serde::Serialize;

/// What a session's last snapshot held, counted for operators.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Holds {
    pub settings: u64,
    pub statements: u64,
    pub temp_tables: u64,
    pub temp_rows: u64,
    pub channels: u64,
    pub locks: u64,
}

fn count<T>(items: &[T]) -> u64 {
    items.len() as u64
}

impl Holds {
    /// Role and session authorization count as settings: the snapshot keeps them apart only
    /// because replay must set them in a certain order. Capture always records the session
    /// authorization; it is a setting only when it is not the login user.
    pub fn of_pg(snap: &PgSnapshot) -> Holds {
        let login = snap
            .startup_params
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.as_str());
        let authorization = snap
            .session_authorization
            .as_deref()
            .is_some_and(|a| Some(a) != login);
        Holds {
            settings: count(&snap.settings)
                + u64::from(snap.role.is_some())
                + u64::from(authorization),
            statements: count(&snap.prepared),
            temp_tables: count(&snap.temp_tables),
            temp_rows: snap.temp_tables.iter().map(|t| t.row_count()).sum(),
            channels: count(&snap.listen),
            locks: count(&snap.advisory_locks),
        }
    }

    /// A role counts as a setting, as in PostgreSQL.
    pub fn of_mysql(snap: &MySnapshot) -> Holds {
        Holds {
            settings: count(&snap.variables)
                + count(&snap.user_vars)
                + u64::from(snap.role.is_some()),
            statements: count(&snap.statements) + count(&snap.sql_prepared),
            temp_tables: count(&snap.temp_tables),
            temp_rows: snap.temp_tables.iter().map(|t| t.rows).sum(),
            channels: 0,
            locks: count(&snap.named_locks),
        }
    }
}
