//! Replay plan: what the proxy sends a fresh backend to give it a parked session's state.
//!
//! One write, read back once: a simple Query holding the SQL statements up to the PREPAREs, the
//! CopyData and CopyDone of each `COPY ... FROM STDIN` right behind it (the backend reads them
//! when it reaches that COPY), one simple Query per SQL PREPARE, a simple Query with the rest
//! (and a COMMIT alone, see below), then one Parse per protocol-level prepared statement and a
//! Sync.
//!
//! Each PREPARE goes alone because PostgreSQL keeps the whole query string a PREPARE came in
//! as its text in `pg_prepared_statements`: alone, the text is the client's own statement
//! again, not torpor's script. Without SQL PREPAREs everything is one Query, which PostgreSQL
//! runs as one implicit transaction; split, the queries are wrapped in BEGIN and a COMMIT of
//! their own, so that a failure still leaves nothing half-restored (prepared statements are
//! not transactional, but the session is closed with an error then anyway).
//!
//! Statement order, and why:
//! 1. settings (`set_config`);
//! 2. temp sequences (serial defaults reference them), temp tables, their rows, then constraints
//!    and foreign keys (after all rows, so FK order between tables does not matter), indexes,
//!    OWNED BY links, sequence positions, and owners other than the login user;
//! 3. SQL-level PREPAREs (after search_path and temp tables, which they may reference);
//! 4. LISTEN;
//! 5. advisory locks (fail fast with a clear error if another session holds one);
//! 6. session_authorization, then role, last: everything above runs as the login user, the
//!    most privileged identity the session ever had (only a superuser login can change session
//!    authorization; SET ROLE only narrows), so superuser-only settings and owner changes work,
//!    and an unprivileged role cannot block creating the rest. session_authorization resets
//!    role, so role comes after it.
//!
//! Protocol-level prepared statements are Parse messages after the Query, so they are planned
//! under the restored search_path and role.
//!
//! What replay writes is built from typed fields, names quoted as identifiers and values as
//! literals. Only where the server itself keeps text does the snapshot's text go in as it is:
//! a column's type, collation and default (or generation) expression, a constraint's or an
//! index's definition, and a SQL PREPARE. Each of those must stay within itself
//! ([`is_contained`]), an index must be a CREATE INDEX and a PREPARE a PREPARE, and a
//! sequence's type is one of the three it can be; a snapshot that breaks this is refused
//! before anything is sent. The login user is the live session's, never the snapshot's.

use bytes::BytesMut;

use super::capture::copy_target;
use super::message;
use super::snapshot::{AdvisoryKey, Column, Constraint, PgSnapshot, TempSequence, TempTable};
use super::sql::{is_contained, prepare_name, quote_ident, quote_literal};

/// CopyData payloads are cut to this size.
const COPY_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Default)]
pub struct ReplayPlan {
    /// Everything to send in one write.
    pub messages: BytesMut,
    /// One label per statement of the simple queries, in order: exactly one CommandComplete
    /// each.
    pub statements: Vec<String>,
    /// How many of `statements` each simple Query holds, in order: one ReadyForQuery each.
    pub queries: Vec<usize>,
    /// One label per Parse message, in order: one ParseComplete each.
    pub parses: Vec<String>,
    /// ReadyForQuery messages to read before the replay is done: one per simple Query, and
    /// one for the Parse messages if there are any.
    pub ready_count: usize,
}

struct Builder<'a> {
    sql: Vec<String>,
    labels: Vec<String>,
    /// COPY payloads of the pending Query in statement order, borrowed: they can be large.
    copies: Vec<&'a [u8]>,
    plan: ReplayPlan,
}

impl Builder<'_> {
    fn push(&mut self, sql: String, label: String) {
        self.sql.push(sql);
        self.labels.push(label);
    }

    /// Ends the pending simple Query: its message, then the rows of its COPYs.
    fn send_query(&mut self) {
        if self.sql.is_empty() {
            return;
        }
        let plan = &mut self.plan;
        message::query(&mut plan.messages, &self.sql.join(";\n"));
        let copy_bytes: usize = self
            .copies
            .iter()
            .map(|r| r.len() + 5 * (r.len() / COPY_CHUNK + 2))
            .sum();
        plan.messages.reserve(copy_bytes);
        for rows in self.copies.drain(..) {
            for chunk in rows.chunks(COPY_CHUNK) {
                message::copy_data(&mut plan.messages, chunk);
            }
            message::copy_done(&mut plan.messages);
        }
        plan.queries.push(self.sql.len());
        plan.statements.append(&mut self.labels);
        plan.ready_count += 1;
        self.sql.clear();
    }
}

fn set_config(name: &str, value: &str) -> String {
    format!(
        "SELECT pg_catalog.set_config({}, {}, false)",
        quote_literal(name),
        quote_literal(value)
    )
}

fn table_ref(name: &str) -> String {
    format!("pg_temp.{}", quote_ident(name))
}

/// `text` from the snapshot, to be pasted as it is; refused, naming `what`, unless it stays a
/// piece of one statement.
fn stored<'t>(text: &'t str, what: &dyn std::fmt::Display) -> Result<&'t str, String> {
    if is_contained(text) {
        Ok(text)
    } else {
        Err(format!(
            "{what}: the snapshot's text is not a single SQL fragment"
        ))
    }
}

fn sequence_type(s: &TempSequence) -> Result<&'static str, String> {
    match s.data_type.as_str() {
        "smallint" => Ok("smallint"),
        "integer" => Ok("integer"),
        "bigint" => Ok("bigint"),
        _ => Err(format!("temp sequence {}: not a sequence type", s.name)),
    }
}

fn sequence_options(s: &TempSequence) -> String {
    format!(
        "INCREMENT BY {} MINVALUE {} MAXVALUE {} START WITH {} CACHE {} {}",
        s.increment,
        s.min,
        s.max,
        s.start,
        s.cache,
        if s.cycle { "CYCLE" } else { "NO CYCLE" }
    )
}

/// An empty binary COPY (header + trailer only) needs no COPY statement.
fn has_rows(rows: &[u8]) -> bool {
    !(rows.is_empty() || (rows.len() == 21 && rows.ends_with(&[0xff, 0xff])))
}

fn column_def(
    table: &TempTable,
    col: &Column,
    sequences: &[TempSequence],
) -> Result<String, String> {
    let what = format_args!("column {} of temp table {}", col.name, table.name);
    let mut def = format!(
        "{} {}",
        quote_ident(&col.name),
        stored(&col.data_type, &what)?
    );
    if let Some(coll) = &col.collation {
        def.push_str(" COLLATE ");
        def.push_str(stored(coll, &what)?);
    }
    let default = col
        .default
        .as_deref()
        .map(|d| stored(d, &what))
        .transpose()?;
    if col.generated {
        if let Some(expr) = default {
            def.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED"));
        }
    } else if let Some(kind) = col.identity {
        def.push_str(if kind == 'a' {
            " GENERATED ALWAYS AS IDENTITY"
        } else {
            " GENERATED BY DEFAULT AS IDENTITY"
        });
        let seq = sequences.iter().find(|s| {
            s.identity
                && s.owned_by
                    .as_ref()
                    .is_some_and(|(t, c)| *t == table.name && *c == col.name)
        });
        if let Some(s) = seq {
            def.push_str(&format!(
                " (SEQUENCE NAME {} {})",
                table_ref(&s.name),
                sequence_options(s)
            ));
        }
    } else if let Some(expr) = default {
        def.push_str(" DEFAULT ");
        def.push_str(expr);
    }
    if col.not_null {
        def.push_str(" NOT NULL");
    }
    Ok(def)
}

/// `key=value` from pg_class.reloptions → `key = 'value'`. Option names are plain (possibly
/// dotted, e.g. toast.fillfactor) words; anything else is quoted.
fn reloption(opt: &str) -> String {
    let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
    let key = if plain {
        key.to_string()
    } else {
        quote_ident(key)
    };
    format!("{key} = {}", quote_literal(value))
}

fn create_table(t: &TempTable, sequences: &[TempSequence]) -> Result<String, String> {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| column_def(t, c, sequences))
        .collect::<Result<_, _>>()?;
    let mut sql = format!(
        "CREATE TEMP TABLE {} ({})",
        table_ref(&t.name),
        cols.join(", ")
    );
    if !t.reloptions.is_empty() {
        let opts: Vec<String> = t.reloptions.iter().map(|o| reloption(o)).collect();
        sql.push_str(&format!(" WITH ({})", opts.join(", ")));
    }
    if t.on_commit_delete_rows {
        sql.push_str(" ON COMMIT DELETE ROWS");
    }
    Ok(sql)
}

fn add_constraints(
    b: &mut Builder,
    t: &TempTable,
    constraints: &[Constraint],
    what: &str,
) -> Result<(), String> {
    for c in constraints {
        let label = format!("{what} {} of temp table {}", c.name, t.name);
        let sql = format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            table_ref(&t.name),
            quote_ident(&c.name),
            stored(&c.definition, &label)?
        );
        b.push(sql, label);
    }
    Ok(())
}

/// `pg_get_indexdef` text: one CREATE [UNIQUE] INDEX.
fn index_def<'t>(def: &'t str, what: &str) -> Result<&'t str, String> {
    let words: Vec<String> = def
        .split_whitespace()
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    let create_index = matches!(
        words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["CREATE", "INDEX", _] | ["CREATE", "UNIQUE", "INDEX"]
    );
    if !create_index {
        return Err(format!("{what}: the snapshot's text is not a CREATE INDEX"));
    }
    stored(def, &what)
}

fn advisory_lock(b: &mut Builder, key: AdvisoryKey, shared: bool, count: u32) {
    let (func, args) = match key {
        AdvisoryKey::Single(k) => ("pg_try_advisory_lock", format!("{k}::pg_catalog.int8")),
        AdvisoryKey::Pair(a, c) => (
            "pg_try_advisory_lock",
            format!("{a}::pg_catalog.int4, {c}::pg_catalog.int4"),
        ),
    };
    let func = if shared {
        format!("{func}_shared")
    } else {
        func.to_string()
    };
    let what = if shared {
        format!("shared advisory lock {key}")
    } else {
        format!("advisory lock {key}")
    };
    // DO + RAISE: a try-lock never waits, and the error names the lock. Once the first level
    // is ours the further ones are re-entrant and always granted.
    b.push(
        format!(
            "DO $torpor$BEGIN FOR i IN 1..{} LOOP IF NOT pg_catalog.{func}({args}) THEN \
             RAISE EXCEPTION 'torpor: % is held by another session', {}; END IF; END LOOP; \
             END$torpor$",
            count.max(1),
            quote_literal(&what)
        ),
        what,
    );
}

/// The replay of `snap` for a session logged in as `login_user`; Err names the item whose
/// stored text replay refuses to send.
pub fn build(snap: &PgSnapshot, login_user: &str) -> Result<ReplayPlan, String> {
    let mut b = Builder {
        sql: Vec::new(),
        labels: Vec::new(),
        copies: Vec::new(),
        plan: ReplayPlan::default(),
    };
    let split = snap.prepared.iter().any(|p| p.from_sql);
    if split {
        b.push("BEGIN".into(), "start of the restore".into());
    }

    for s in &snap.settings {
        b.push(set_config(&s.name, &s.value), format!("setting {}", s.name));
    }

    for s in snap.sequences.iter().filter(|s| !s.identity) {
        b.push(
            format!(
                "CREATE TEMP SEQUENCE {} AS {} {}",
                table_ref(&s.name),
                sequence_type(s)?,
                sequence_options(s)
            ),
            format!("temp sequence {}", s.name),
        );
    }
    for t in &snap.temp_tables {
        b.push(
            create_table(t, &snap.sequences)?,
            format!("temp table {}", t.name),
        );
    }
    for t in &snap.temp_tables {
        if has_rows(&t.rows) {
            b.push(
                format!("COPY {} FROM STDIN (FORMAT binary)", copy_target(t)),
                format!("rows of temp table {}", t.name),
            );
            b.copies.push(&t.rows);
        }
    }
    // Foreign keys after every table has its constraints, so the keys they point at exist.
    for t in &snap.temp_tables {
        add_constraints(&mut b, t, &t.constraints, "constraint")?;
    }
    for t in &snap.temp_tables {
        add_constraints(&mut b, t, &t.foreign_keys, "foreign key")?;
    }
    for t in &snap.temp_tables {
        for (name, def) in &t.indexes {
            let label = format!("index {name} of temp table {}", t.name);
            b.push(index_def(def, &label)?.to_string(), label);
        }
    }
    for s in &snap.sequences {
        if let (false, Some((t, c))) = (s.identity, &s.owned_by) {
            b.push(
                format!(
                    "ALTER SEQUENCE {} OWNED BY {}.{}",
                    table_ref(&s.name),
                    table_ref(t),
                    quote_ident(c)
                ),
                format!("ownership of temp sequence {}", s.name),
            );
        }
    }
    for s in &snap.sequences {
        b.push(
            format!(
                "SELECT pg_catalog.setval({}, {}, {})",
                quote_literal(&table_ref(&s.name)),
                s.last_value,
                s.is_called
            ),
            format!("position of temp sequence {}", s.name),
        );
    }
    // What we created belongs to the login user; give the rest back to their owners.
    let tables = snap
        .temp_tables
        .iter()
        .filter(|t| t.owner != login_user)
        .map(|t| ("TABLE", "table", &t.name, &t.owner));
    // Owned (serial and identity) sequences follow their table.
    let sequences = snap
        .sequences
        .iter()
        .filter(|s| s.owned_by.is_none() && s.owner != login_user)
        .map(|s| ("SEQUENCE", "sequence", &s.name, &s.owner));
    for (kind, what, name, owner) in tables.chain(sequences) {
        b.push(
            format!(
                "ALTER {kind} {} OWNER TO {}",
                table_ref(name),
                quote_ident(owner)
            ),
            format!("owner of temp {what} {name}"),
        );
    }

    for p in snap.prepared.iter().filter(|p| p.from_sql) {
        let label = format!("prepared statement {}", p.name);
        if prepare_name(&p.statement).is_none() {
            return Err(format!("{label}: the snapshot's text is not a PREPARE"));
        }
        let sql = stored(&p.statement, &label)?.to_string();
        b.send_query();
        b.push(sql, label);
        b.send_query();
    }
    for ch in &snap.listen {
        b.push(
            format!("LISTEN {}", quote_ident(ch)),
            format!("LISTEN channel {ch}"),
        );
    }
    for l in &snap.advisory_locks {
        advisory_lock(&mut b, l.key, l.shared, l.count);
    }
    if let Some(sa) = &snap.session_authorization
        && sa != login_user
    {
        b.push(
            set_config("session_authorization", sa),
            format!("session authorization {sa}"),
        );
    }
    if let Some(role) = &snap.role {
        b.push(set_config("role", role), format!("role {role}"));
    }
    if split {
        // Alone: after a failure PostgreSQL skips the rest of a Query, and this COMMIT must
        // still end the (then rolled back) transaction.
        b.send_query();
        b.push("COMMIT".into(), "commit of the restored state".into());
    }
    b.send_query();
    let mut plan = b.plan;

    let parsed: Vec<_> = snap.prepared.iter().filter(|p| !p.from_sql).collect();
    if !parsed.is_empty() {
        for p in parsed {
            message::parse(&mut plan.messages, &p.name, &p.statement, &p.param_types);
            plan.parses.push(format!("prepared statement {}", p.name));
        }
        message::sync(&mut plan.messages);
        plan.ready_count += 1;
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::snapshot::PreparedStatement;

    fn table() -> TempTable {
        TempTable {
            name: "t".into(),
            owner: "alice".into(),
            columns: vec![Column {
                name: "a".into(),
                data_type: "integer".into(),
                default: Some("42".into()),
                ..Column::default()
            }],
            constraints: vec![Constraint {
                name: "t_a_check".into(),
                definition: "CHECK ((a > 0))".into(),
            }],
            indexes: vec![(
                "t_a".into(),
                "CREATE INDEX t_a ON pg_temp.t USING btree (a)".into(),
            )],
            ..TempTable::default()
        }
    }

    fn snap() -> PgSnapshot {
        PgSnapshot {
            // What the snapshot says; replay must not believe it.
            startup_params: vec![("user".into(), "postgres".into())],
            temp_tables: vec![table()],
            prepared: vec![PreparedStatement {
                name: "s".into(),
                statement: "PREPARE s AS SELECT 1".into(),
                from_sql: true,
                ..PreparedStatement::default()
            }],
            ..PgSnapshot::default()
        }
    }

    fn sql(plan: &ReplayPlan) -> String {
        String::from_utf8_lossy(&plan.messages).into_owned()
    }

    #[test]
    fn owners_are_judged_by_the_live_login_user() {
        let as_alice = build(&snap(), "alice").unwrap();
        assert!(!sql(&as_alice).contains("OWNER TO"), "{}", sql(&as_alice));
        let as_bob = build(&snap(), "bob").unwrap();
        assert!(
            sql(&as_bob).contains("OWNER TO \"alice\""),
            "{}",
            sql(&as_bob)
        );
    }

    #[test]
    fn stored_text_that_reaches_past_itself_is_refused() {
        let escape = "1); COPY (SELECT 1) TO PROGRAM 'id'; --";
        type Edit = fn(&mut PgSnapshot, &str);
        let cases: [(Edit, &str); 7] = [
            (
                |s, e| s.temp_tables[0].columns[0].default = Some(e.into()),
                "column a of temp table t",
            ),
            (
                |s, e| s.temp_tables[0].columns[0].data_type = e.into(),
                "column a of temp table t",
            ),
            (
                |s, e| s.temp_tables[0].columns[0].collation = Some(e.into()),
                "column a of temp table t",
            ),
            (
                |s, e| s.temp_tables[0].constraints[0].definition = e.into(),
                "constraint t_a_check of temp table t",
            ),
            (
                |s, e| s.temp_tables[0].indexes[0].1 = format!("CREATE INDEX x ON t ({e})"),
                "index t_a of temp table t",
            ),
            (
                |s, e| s.prepared[0].statement = format!("PREPARE s AS SELECT {e}"),
                "prepared statement s",
            ),
            (
                |s, _| s.prepared[0].statement = "SELECT 1".into(),
                "prepared statement s",
            ),
        ];
        for (edit, what) in cases {
            let mut s = snap();
            edit(&mut s, escape);
            match build(&s, "alice") {
                Err(e) => assert!(e.starts_with(what), "{e}"),
                Ok(plan) => panic!("{what}: replayed {}", sql(&plan)),
            }
        }
        // An unterminated string would swallow what follows it.
        let mut s = snap();
        s.temp_tables[0].columns[0].default = Some("'open".into());
        assert!(build(&s, "alice").is_err());
        let mut s = snap();
        s.sequences = vec![TempSequence {
            name: "q".into(),
            data_type: "bigint; DROP TABLE x".into(),
            ..TempSequence::default()
        }];
        assert!(
            build(&s, "alice")
                .unwrap_err()
                .starts_with("temp sequence q")
        );
    }

    #[test]
    fn the_server_s_own_text_still_replays() {
        let mut s = snap();
        s.temp_tables[0].columns[0].default = Some("nextval('pg_temp.t_a_seq'::regclass)".into());
        s.temp_tables[0].columns[0].collation = Some("pg_catalog.\"C\"".into());
        s.prepared[0].statement = "PREPARE s(int) AS SELECT $1 + 1 -- ;".into();
        build(&s, "alice").unwrap();
    }
}
