//! What a parked PostgreSQL session holds. Stored (rmp-serde, named fields) in the object store,
//! so every field is `#[serde(default)]`: a later version that adds a field still reads old
//! snapshots, and an old snapshot reads as "nothing of that kind".

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PgSnapshot {
    /// StartupMessage parameters (filled by the proxy).
    pub startup_params: Vec<(String, String)>,
    /// ParameterStatus values the client was told (filled by the proxy).
    pub parameter_status: Vec<(String, String)>,
    /// `pg_settings WHERE source = 'session'` plus custom (placeholder) settings the proxy asked
    /// for, as `current_setting(name)` printed them. Never holds `role` or
    /// `session_authorization`: those have their own fields because of replay order.
    pub settings: Vec<Setting>,
    /// `SET SESSION AUTHORIZATION` value, when it differs from the login user.
    pub session_authorization: Option<String>,
    /// `SET ROLE` value (`None` when the role is "none").
    pub role: Option<String>,
    pub prepared: Vec<PreparedStatement>,
    pub sequences: Vec<TempSequence>,
    pub temp_tables: Vec<TempTable>,
    pub listen: Vec<String>,
    pub advisory_locks: Vec<AdvisoryLock>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Setting {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreparedStatement {
    pub name: String,
    /// from_sql = false: the query text given to Parse. from_sql = true: the single
    /// `PREPARE name ... AS ...` statement, cut out of the query string the client sent.
    pub statement: String,
    pub param_types: Vec<u32>,
    pub from_sql: bool,
}

/// A temp sequence (standalone, serial-owned or identity). Identity sequences are recreated by
/// their column's IDENTITY clause; the others by CREATE TEMP SEQUENCE.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TempSequence {
    pub name: String,
    pub owner: String,
    /// `format_type` of the sequence's data type ("bigint", "integer", "smallint").
    pub data_type: String,
    pub start: i64,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub cache: i64,
    pub cycle: bool,
    /// `last_value, is_called` read from the sequence relation.
    pub last_value: i64,
    pub is_called: bool,
    /// OWNED BY / identity link (temp table name, column name).
    pub owned_by: Option<(String, String)>,
    pub identity: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TempTable {
    pub name: String,
    pub owner: String,
    pub columns: Vec<Column>,
    /// Storage parameters as `key=value` (from `pg_class.reloptions`).
    pub reloptions: Vec<String>,
    pub on_commit_delete_rows: bool,
    /// PRIMARY KEY, UNIQUE, CHECK, EXCLUDE, in creation order.
    pub constraints: Vec<Constraint>,
    /// FOREIGN KEYs; added after every table holds its rows.
    pub foreign_keys: Vec<Constraint>,
    /// Indexes not backing a constraint: (index name, `pg_get_indexdef` with the temp schema
    /// written as `pg_temp`).
    pub indexes: Vec<(String, String)>,
    /// Concatenated CopyData payloads of `COPY ... TO STDOUT (FORMAT binary)` over the
    /// non-generated columns, in attnum order.
    pub rows: Vec<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Column {
    pub name: String,
    /// `format_type(atttypid, atttypmod)`.
    pub data_type: String,
    /// Qualified collation name when it differs from the type's default.
    pub collation: Option<String>,
    pub not_null: bool,
    /// `pg_get_expr` of the default, or of the generation expression when `generated`.
    pub default: Option<String>,
    /// 'a' (ALWAYS), 'd' (BY DEFAULT) or None.
    pub identity: Option<char>,
    /// Stored generated column: recreated from `default`, not part of the COPY.
    pub generated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Constraint {
    pub name: String,
    /// `pg_get_constraintdef`, temp schema written as `pg_temp`.
    pub definition: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdvisoryKey {
    /// `pg_advisory_lock(bigint)`
    Single(i64),
    /// `pg_advisory_lock(int, int)`
    Pair(i32, i32),
}

impl Default for AdvisoryKey {
    fn default() -> Self {
        AdvisoryKey::Single(0)
    }
}

impl std::fmt::Display for AdvisoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdvisoryKey::Single(k) => write!(f, "{k}"),
            AdvisoryKey::Pair(a, b) => write!(f, "({a}, {b})"),
        }
    }
}

/// A session-level advisory lock, held `count` times (pg_locks shows one row whatever the
/// re-entry count, so capture counts the levels itself; 0 in old snapshots means once).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdvisoryLock {
    pub key: AdvisoryKey,
    pub shared: bool,
    pub count: u32,
}
