//! What a parked MySQL/MariaDB session holds. Stored (rmp-serde, named fields) in the object
//! store, so every struct is `#[serde(default)]`: a later version that adds a field still reads
//! old snapshots.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MySnapshot {
    /// Filled by the proxy.
    pub client: ClientInfo,
    /// Session system variables that differ from the global value, in replay order:
    /// (lower-case name, SQL literal ready to follow `SET SESSION name = `, e.g. `'ON'`, `4096`,
    /// `NULL`, `'STRICT_TRANS_TABLES,...'`). Includes sql_mode, autocommit, tx_isolation,
    /// tx_read_only, time_zone and the character_set_* / collation_* of SET NAMES.
    pub variables: Vec<(String, String)>,
    /// `DATABASE()`.
    pub schema: Option<String>,
    /// `CURRENT_ROLE()` when not NULL.
    pub role: Option<String>,
    pub last_insert_id: u64,
    pub user_vars: Vec<UserVar>,
    pub sql_prepared: Vec<SqlPrepared>,
    /// Filled by the proxy.
    pub statements: Vec<BinaryStatement>,
    pub temp_tables: Vec<TempTable>,
    /// GET_LOCK names held (once each: a re-entered lock's count is not carried over).
    pub named_locks: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    pub capabilities: u32,
    pub charset: u8,
    pub user: String,
    pub database: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserVar {
    pub name: String,
    pub value: UserValue,
}

/// A user variable's value with the type the server keeps for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum UserValue {
    #[default]
    Null,
    Int(i64),
    UInt(u64),
    /// As the server prints it (`-12.50`); the scale is the number of fraction digits.
    Decimal(String),
    Double(f64),
    /// Bytes in the collation's character set.
    Text {
        bytes: Vec<u8>,
        collation: String,
    },
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SqlPrepared {
    pub name: String,
    /// The statement text, for display: the literal's value (best effort) or the variable's
    /// text as read at capture.
    pub sql: String,
    /// Current schema when the PREPARE ran.
    pub schema: Option<String>,
    /// The SQL expression to replay after `PREPARE name FROM ` (the client's own literal,
    /// verbatim, or a hex literal built from the variable's value at capture).
    pub from: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BinaryStatement {
    /// The statement id the client knows.
    pub id: u32,
    pub sql: String,
    pub schema: Option<String>,
    pub num_params: u16,
    pub param_types: Option<Vec<u8>>,
    pub long_data: Vec<(u16, Vec<u8>)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TempTable {
    pub schema: String,
    pub name: String,
    /// `SHOW CREATE TABLE` text (`CREATE TEMPORARY TABLE `t` (...) ... AUTO_INCREMENT=n ...`),
    /// unqualified as the server prints it, read with sql_mode '' (backquotes, all options).
    pub create: String,
    /// Columns the INSERTs fill (generated columns left out), in table order.
    pub columns: Vec<String>,
    /// Multi-row INSERTs of about 1 MiB each, fully qualified, values as literals that hold
    /// whatever sql_mode and character set the session has (hex for strings and bytes,
    /// `FROM_UNIXTIME` for TIMESTAMP, so they need `time_zone = '+00:00'`, which replay sets).
    pub inserts: Vec<String>,
    pub rows: u64,
}
