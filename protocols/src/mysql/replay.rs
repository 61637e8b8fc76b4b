//! Replay plan: the commands that give a fresh MariaDB connection a parked session's state.
//! The proxy sends them all pipelined in one write and reads one response per command; an ERR
//! names the command's label in the client's error.
//!
//! Order, and why:
//! 1. session variables, all of them (SET NAMES trio, then the rest, sql_mode last);
//! 2. role: in MariaDB a role only adds privileges, so everything below may use them;
//! 3. row settings: sql_mode without strictness/ANSI surprises plus NO_AUTO_VALUE_ON_ZERO (a 0
//!    in an AUTO_INCREMENT column stays 0), time_zone +00:00 (TIMESTAMPs travel as epochs),
//!    utf8mb4 connection (the CREATE text is UTF-8), autocommit on and tx_read_only off (the
//!    INSERTs must not leave a transaction open), CHECK constraints off (the rows were accepted
//!    once);
//! 4. temp tables (`SHOW CREATE TABLE` text, qualified with the schema: no USE needed; its
//!    AUTO_INCREMENT= option carries the counter) and their rows;
//! 5. user variables, with typed literals;
//! 6. named locks: a compound statement that raises SQLSTATE 45000 when GET_LOCK(name, 0)
//!    does not return 1, so a lock taken meanwhile fails the replay with a clear message;
//! 7. the variables touched in 3 back to the session's value (or DEFAULT, i.e. the global
//!    value, when the session had not changed them);
//! 8. SQL PREPAREs and binary statements, each after a COM_INIT_DB of its schema (they parse
//!    under the session's own sql_mode and character set);
//! 9. the current schema;
//! 10. LAST_INSERT_ID(n), last, as nothing after it may change it.
//!
//! Names are quoted as identifiers and values built from typed fields. Only where the server
//! itself keeps text does the snapshot's text go in as it is: a temp table's `SHOW CREATE
//! TABLE` text, its rows' INSERTs, a variable's value, a SQL PREPARE's source and a binary
//! statement (prepared, never run by replay). Each must stay within its command
//! ([`is_contained`]); a CREATE must name its table, an INSERT must insert into it and a
//! variable's value must be one value. A snapshot that breaks this is refused before anything
//! is sent.

use super::contained::{is_contained, is_value};
use super::rows::{qualify_create, table_ref};
use super::snapshot::MySnapshot;
use super::sql::{quote_ident, quote_literal};
use super::uservars::user_value_sql;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// COM_QUERY; its result set (if any) is discarded.
    Query { sql: String, label: String },
    /// COM_INIT_DB.
    InitDb { schema: String, label: String },
    /// COM_STMT_PREPARE; the backend's statement id maps to the client-visible `id`.
    Prepare { id: u32, sql: String, label: String },
}

impl Command {
    pub fn label(&self) -> &str {
        match self {
            Command::Query { label, .. }
            | Command::InitDb { label, .. }
            | Command::Prepare { label, .. } => label,
        }
    }
}

/// Variables the row settings override, and restore afterwards, in restore order.
const ROW_SETTINGS: &[(&str, &str)] = &[
    ("character_set_client", "'utf8mb4'"),
    ("character_set_results", "'utf8mb4'"),
    ("character_set_connection", "'utf8mb4'"),
    ("collation_connection", "'utf8mb4_bin'"),
    ("time_zone", "'+00:00'"),
    ("check_constraint_checks", "'OFF'"),
    ("autocommit", "'ON'"),
    ("tx_read_only", "'OFF'"),
    ("sql_mode", "'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'"),
];

/// Variables only a privileged user may set (SUPER, BINLOG ADMIN, FILE ...). A session value
/// that differs from the global one may also mean the global changed after the session
/// connected; a user who may not set the variable now could not have set it then either, so
/// for them "access denied" (1227) is skipped and the variable keeps the current global.
const PRIVILEGED_VARIABLES: &[&str] = &[
    "binlog_annotate_row_events",
    "binlog_direct_non_transactional_updates",
    "binlog_format",
    "binlog_row_image",
    "enforce_storage_engine",
    "gtid_domain_id",
    "innodb_tmpdir",
    "log_disabled_statements",
    "server_id",
    "sql_log_bin",
    "sql_log_off",
    "wsrep_on",
];

fn query(out: &mut Vec<Command>, sql: String, label: impl Into<String>) {
    out.push(Command::Query {
        sql,
        label: label.into(),
    });
}

fn set_session(name: &str, value: &str) -> String {
    format!("SET SESSION {name} = {value}")
}

/// COM_INIT_DB when `schema` differs from the one last selected.
fn use_schema(out: &mut Vec<Command>, current: &mut Option<String>, schema: Option<&str>) {
    if let Some(s) = schema
        && current.as_deref() != Some(s)
    {
        out.push(Command::InitDb {
            schema: s.to_string(),
            label: format!("schema {s}"),
        });
        *current = Some(s.to_string());
    }
}

fn refused(what: &str, why: &str) -> String {
    format!("{what}: the snapshot's text {why}")
}

/// A system variable's name and value as `SET SESSION` takes them.
fn variable(name: &str, value: &str) -> Result<String, String> {
    let what = format!("session variable {name}");
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    {
        return Err(refused(&what, "is not a variable name"));
    }
    if !is_value(value) {
        return Err(refused(&what, "is not one value"));
    }
    Ok(set_session(name, value))
}

/// The commands that give a fresh connection `snap`'s state; Err names the item whose stored
/// text replay refuses to send.
pub fn build(snap: &MySnapshot) -> Result<Vec<Command>, String> {
    let mut out = Vec::new();

    for (name, value) in &snap.variables {
        let set = variable(name, value)?;
        let sql = if PRIVILEGED_VARIABLES.contains(&name.as_str()) {
            format!("BEGIN NOT ATOMIC DECLARE CONTINUE HANDLER FOR 1227 BEGIN END; {set}; END")
        } else {
            set
        };
        query(&mut out, sql, format!("session variable {name}"));
    }

    if let Some(role) = &snap.role {
        query(
            &mut out,
            format!("SET ROLE {}", quote_ident(role)),
            format!("role {role}"),
        );
    }

    let needs_row_settings =
        !snap.temp_tables.is_empty() || !snap.user_vars.is_empty() || !snap.named_locks.is_empty();
    if needs_row_settings {
        let sets: Vec<String> = ROW_SETTINGS
            .iter()
            .map(|(n, v)| format!("{n} = {v}"))
            .collect();
        query(
            &mut out,
            format!("SET SESSION {}", sets.join(", ")),
            "settings for restoring temporary tables",
        );
    }

    for t in &snap.temp_tables {
        let label = format!("temporary table {}.{}", t.schema, t.name);
        // Capture checked that the CREATE names its own table; a changed snapshot may not.
        let create = qualify_create(&t.create, &t.schema, &t.name)
            .filter(|c| is_contained(c))
            .ok_or_else(|| refused(&label, "is not one CREATE of that table"))?;
        query(&mut out, create, label.clone());
        let into = format!("INSERT INTO {} (", table_ref(t));
        for insert in &t.inserts {
            let rows = format!("rows of {label}");
            if !insert.starts_with(&into) || !is_contained(insert) {
                return Err(refused(&rows, "is not one INSERT into that table"));
            }
            query(&mut out, insert.clone(), rows);
        }
    }

    for v in &snap.user_vars {
        query(
            &mut out,
            format!(
                "SET @{} = {}",
                quote_ident(&v.name),
                user_value_sql(&v.value)
            ),
            format!("user variable @{}", v.name),
        );
    }

    for name in &snap.named_locks {
        let lit = quote_literal(name);
        let message = quote_literal(&format!(
            "torpor: named lock {name} is held by another session"
        ));
        query(
            &mut out,
            format!(
                "BEGIN NOT ATOMIC IF GET_LOCK({lit}, 0) IS NOT TRUE THEN \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = {message}; END IF; END"
            ),
            format!("named lock {name}"),
        );
    }

    if needs_row_settings {
        let sets: Vec<String> = ROW_SETTINGS
            .iter()
            .map(|(n, _)| {
                let value = snap
                    .variables
                    .iter()
                    .find(|(v, _)| v == n)
                    .map_or("DEFAULT", |(_, v)| v.as_str());
                format!("{n} = {value}")
            })
            .collect();
        query(
            &mut out,
            format!("SET SESSION {}", sets.join(", ")),
            "session variables after restoring temporary tables",
        );
    }

    // Statements prepared with no schema first: COM_INIT_DB cannot go back to none.
    let mut current: Option<String> = None;
    let mut prepared: Vec<_> = snap.sql_prepared.iter().collect();
    prepared.sort_by_key(|p| p.schema.is_some());
    for p in prepared {
        if !is_contained(&p.from) {
            return Err(refused(
                &format!("prepared statement {}", p.name),
                "reaches past its PREPARE",
            ));
        }
        use_schema(&mut out, &mut current, p.schema.as_deref());
        query(
            &mut out,
            // The newline ends a trailing `--` comment in the client's own literal.
            format!("PREPARE {} FROM {}\n", quote_ident(&p.name), p.from),
            format!("prepared statement {}", p.name),
        );
    }
    let mut statements: Vec<_> = snap.statements.iter().collect();
    statements.sort_by_key(|s| s.schema.is_some());
    for s in statements {
        use_schema(&mut out, &mut current, s.schema.as_deref());
        out.push(Command::Prepare {
            id: s.id,
            sql: s.sql.clone(),
            label: format!("prepared statement #{}", s.id),
        });
    }

    if let Some(schema) = &snap.schema {
        out.push(Command::InitDb {
            schema: schema.clone(),
            label: format!("schema {schema}"),
        });
    }

    if snap.last_insert_id != 0 {
        query(
            &mut out,
            format!("SELECT LAST_INSERT_ID({})", snap.last_insert_id),
            "LAST_INSERT_ID",
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::snapshot::{SqlPrepared, UserValue, UserVar};

    #[test]
    fn empty_snapshot_replays_nothing() {
        assert!(build(&MySnapshot::default()).unwrap().is_empty());
    }

    #[test]
    fn order_and_labels() {
        let snap = MySnapshot {
            variables: vec![("sql_mode".into(), "'ANSI_QUOTES'".into())],
            schema: Some("shop".into()),
            role: Some("r1".into()),
            last_insert_id: 7,
            user_vars: vec![UserVar {
                name: "x".into(),
                value: UserValue::Int(1),
            }],
            sql_prepared: vec![SqlPrepared {
                name: "s".into(),
                sql: "SELECT 1".into(),
                schema: Some("shop".into()),
                from: "'SELECT 1'".into(),
            }],
            named_locks: vec!["job".into()],
            ..MySnapshot::default()
        };
        let cmds = build(&snap).unwrap();
        let labels: Vec<&str> = cmds.iter().map(Command::label).collect();
        assert_eq!(
            labels,
            [
                "session variable sql_mode",
                "role r1",
                "settings for restoring temporary tables",
                "user variable @x",
                "named lock job",
                "session variables after restoring temporary tables",
                "schema shop",
                "prepared statement s",
                "schema shop",
                "LAST_INSERT_ID"
            ]
        );
        let Command::Query { sql, .. } = &cmds[5] else {
            panic!()
        };
        assert!(sql.contains("sql_mode = 'ANSI_QUOTES'"), "{sql}");
        assert!(sql.contains("time_zone = DEFAULT"), "{sql}");
        // No value in any label.
        assert!(labels.iter().all(|l| !l.contains("SELECT 1")));
    }

    #[test]
    fn stored_text_that_reaches_past_itself_is_refused() {
        use crate::mysql::snapshot::TempTable;
        let table = || TempTable {
            schema: "s".into(),
            name: "t".into(),
            create: "CREATE TEMPORARY TABLE `t` (`a` int DEFAULT 'x;y')".into(),
            inserts: vec!["INSERT INTO `s`.`t` (`a`) VALUES (1)".into()],
            ..TempTable::default()
        };
        let good = MySnapshot {
            variables: vec![("sql_mode".into(), "'ANSI_QUOTES'".into())],
            temp_tables: vec![table()],
            sql_prepared: vec![SqlPrepared {
                name: "p".into(),
                from: "'SELECT 1'".into(),
                ..SqlPrepared::default()
            }],
            ..MySnapshot::default()
        };
        build(&good).unwrap();
        type Edit = fn(&mut MySnapshot);
        let cases: [(Edit, &str); 6] = [
            (
                |s| s.variables[0].1 = "'x', @@global.general_log = 1".into(),
                "session variable sql_mode",
            ),
            (
                |s| s.variables[0].0 = "sql_mode = 1; DROP TABLE x; SET a".into(),
                "session variable",
            ),
            (
                |s| s.temp_tables[0].create.push_str("; DROP TABLE s.u"),
                "temporary table s.t",
            ),
            (
                |s| s.temp_tables[0].inserts[0] = "DELETE FROM `s`.`u`".into(),
                "rows of temporary table s.t",
            ),
            (
                |s| s.temp_tables[0].inserts[0].push_str("; DROP TABLE s.u"),
                "rows of temporary table s.t",
            ),
            (
                |s| s.sql_prepared[0].from = "'SELECT 1'; DROP TABLE x".into(),
                "prepared statement p",
            ),
        ];
        for (edit, what) in cases {
            let mut s = good.clone();
            edit(&mut s);
            match build(&s) {
                Err(e) => assert!(e.starts_with(what), "{e}"),
                Ok(cmds) => panic!("{what}: replayed {cmds:?}"),
            }
        }
    }
}
