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

impl TempTable {
    /// How many rows `rows` holds, read from the binary COPY framing without decoding any
    /// value. Rows after a malformed one are not counted: the number is for operators to look
    /// at, and replay judges the bytes itself.
    pub fn row_count(&self) -> u64 {
        binary_copy_rows(&self.rows)
    }
}

/// `PGCOPY\n\xff\r\n\0`, the flags field and the header extension length.
const COPY_HEADER: usize = 11 + 4 + 4;

fn binary_copy_rows(data: &[u8]) -> u64 {
    let be_u32 = |at: usize| -> Option<usize> {
        let b = data.get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(extension) = be_u32(COPY_HEADER - 4) else {
        return 0;
    };
    let Some(mut at) = COPY_HEADER.checked_add(extension) else {
        return 0;
    };
    let mut rows = 0;
    while let Some(&[hi, lo]) = data.get(at..at + 2) {
        at += 2;
        // -1 is the trailer.
        let Ok(fields) = u16::try_from(i16::from_be_bytes([hi, lo])) else {
            break;
        };
        for _ in 0..fields {
            let Some(len) = be_u32(at) else {
                return rows;
            };
            at += 4;
            // -1 is NULL, with no bytes after it.
            if len != u32::MAX as usize {
                match at.checked_add(len) {
                    Some(end) if end <= data.len() => at = end,
                    _ => return rows,
                }
            }
        }
        rows += 1;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary COPY stream as postgres writes it, with `extension` header bytes.
    fn copy(rows: &[&[Option<&[u8]>]], extension: &[u8]) -> Vec<u8> {
        let mut out = b"PGCOPY\n\xff\r\n\0".to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&(extension.len() as u32).to_be_bytes());
        out.extend_from_slice(extension);
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for field in *row {
                match field {
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn table(rows: Vec<u8>) -> TempTable {
        TempTable {
            rows,
            ..TempTable::default()
        }
    }

    #[test]
    fn counts_rows_of_a_binary_copy() {
        let one: &[u8] = &7i32.to_be_bytes();
        let data = copy(
            &[
                &[Some(one), None],
                &[None, Some(b"xyz")],
                &[Some(one), Some(b"")],
            ],
            &[],
        );
        assert_eq!(table(data).row_count(), 3);
        assert_eq!(table(copy(&[], &[])).row_count(), 0);
        assert_eq!(table(copy(&[&[]], b"ext")).row_count(), 1);
        assert_eq!(table(Vec::new()).row_count(), 0);
    }

    #[test]
    fn a_malformed_copy_counts_only_whole_rows() {
        let mut data = copy(&[&[Some(b"ab")], &[Some(b"cd")]], &[]);
        // Cut into the second row's value.
        data.truncate(COPY_HEADER + 2 + 4 + 2 + 2 + 4 + 1);
        assert_eq!(table(data.clone()).row_count(), 1);
        // A length that runs past the end, or a header extension longer than the data.
        let mut data = copy(&[&[Some(b"ab")]], &[]);
        data[COPY_HEADER + 2..COPY_HEADER + 6].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(table(data).row_count(), 0);
        let mut data = copy(&[&[Some(b"ab")]], &[]);
        data[COPY_HEADER - 4..COPY_HEADER].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(table(data).row_count(), 0);
    }
}
