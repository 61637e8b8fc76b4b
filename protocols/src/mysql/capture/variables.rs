//! Which session variables a snapshot carries, how capture asks for them, in what order replay
//! sets them and how each value is written back.

use super::NO_LIMIT;
use crate::mysql::sql::quote_literal;

/// Variables never carried over: volatile per-statement values, values the server derives
/// (character_set_database follows USE), identities of the old connection, and the
/// session_track_* settings the proxy sets itself. Read-only ones are filtered by READ_ONLY.
pub const EXCLUDED_VARIABLES: &[&str] = &[
    "CHARACTER_SET_DATABASE",
    "COLLATION_DATABASE",
    "GTID_SEQ_NO",
    "IDENTITY",
    "INSERT_ID",
    "LAST_INSERT_ID",
    // Read-only per session, copied from the global at connect: differs after SET GLOBAL.
    "MAX_ALLOWED_PACKET",
    "MAX_USER_CONNECTIONS",
    "NET_BUFFER_LENGTH",
    "PSEUDO_THREAD_ID",
    "RAND_SEED1",
    "RAND_SEED2",
    "SESSION_TRACK_SCHEMA",
    "SESSION_TRACK_STATE_CHANGE",
    "SESSION_TRACK_SYSTEM_VARIABLES",
    "SESSION_TRACK_TRANSACTION_INFO",
    "TIMESTAMP",
    "WSREP_GTID_SEQ_NO",
];

pub(super) fn variables_query() -> String {
    let excluded: Vec<String> = EXCLUDED_VARIABLES
        .iter()
        .map(|v| format!("'{v}'"))
        .collect();
    // BINARY: a case-only difference is a difference. SESSION ONLY variables have no global
    // value; their compile-time default is what a fresh session starts with. The handshake
    // sets the connection character set, so a session that went back to the global one
    // (SET NAMES latin1) still differs from a fresh connection.
    format!(
        "SELECT LOWER(VARIABLE_NAME), SESSION_VALUE, VARIABLE_TYPE \
         FROM information_schema.SYSTEM_VARIABLES WHERE READ_ONLY = 'NO' \
         AND ((VARIABLE_SCOPE = 'SESSION' AND NOT (BINARY SESSION_VALUE <=> BINARY GLOBAL_VALUE)) \
         OR (VARIABLE_SCOPE = 'SESSION ONLY' AND NOT (BINARY SESSION_VALUE <=> BINARY DEFAULT_VALUE)) \
         OR VARIABLE_NAME IN ({HANDSHAKE_VARIABLES})) \
         AND VARIABLE_NAME NOT IN ({}) {NO_LIMIT}",
        excluded.join(", ")
    )
}

const HANDSHAKE_VARIABLES: &str = "'CHARACTER_SET_CLIENT', 'CHARACTER_SET_CONNECTION', \
'CHARACTER_SET_RESULTS', 'COLLATION_CONNECTION'";

/// Replay order of variables: a character set before its collation (setting a character set
/// resets the collation), SET NAMES's trio before collation_connection; then the rest by
/// name; the transaction characteristics and sql_mode last.
pub(crate) fn variable_rank(name: &str) -> (u8, u8) {
    const FIRST: &[&str] = &[
        "character_set_client",
        "character_set_results",
        "character_set_connection",
        "collation_connection",
        "character_set_server",
        "collation_server",
    ];
    const LAST: &[&str] = &["autocommit", "tx_isolation", "tx_read_only", "sql_mode"];
    if let Some(i) = FIRST.iter().position(|n| *n == name) {
        (0, i as u8)
    } else if let Some(i) = LAST.iter().position(|n| *n == name) {
        (2, i as u8)
    } else {
        (1, 0)
    }
}

/// A system variable's value as a SQL literal for `SET SESSION name = ...`: numbers bare
/// (a quoted number is refused for numeric variables), everything else quoted.
pub(super) fn variable_literal(name: &str, value: Option<&str>, kind: &str) -> String {
    let Some(v) = value else {
        return "NULL".to_string();
    };
    // These print NULL as '' (and '' is not a valid value); the versioning default prints as
    // the word DEFAULT, which is only accepted unquoted.
    match (name, v) {
        (
            "default_tmp_storage_engine"
            | "enforce_storage_engine"
            | "innodb_ft_user_stopword_table",
            "",
        ) => return "NULL".to_string(),
        ("system_versioning_asof", "DEFAULT") => return "DEFAULT".to_string(),
        _ => {}
    }
    let numeric = kind.contains("INT") || kind == "DOUBLE";
    if numeric
        && !v.is_empty()
        && v.bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'))
    {
        v.to_string()
    } else {
        quote_literal(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_literals() {
        assert_eq!(
            variable_literal("x", Some("4096"), "BIGINT UNSIGNED"),
            "4096"
        );
        assert_eq!(variable_literal("x", Some("ON"), "BOOLEAN"), "'ON'");
        assert_eq!(variable_literal("x", None, "ENUM"), "NULL");
        assert_eq!(
            variable_literal("x", Some("10.000000"), "DOUBLE"),
            "10.000000"
        );
        assert_eq!(variable_literal("x", Some("a'b"), "VARCHAR"), "'a''b'");
        assert_eq!(
            variable_literal("enforce_storage_engine", Some(""), "VARCHAR"),
            "NULL"
        );
    }
}
