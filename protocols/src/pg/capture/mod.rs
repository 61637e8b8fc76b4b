//! Checkpoint capture plan: what the proxy asks a PostgreSQL 15 backend before parking a session.
//!
//! Up to three round trips, all simple-protocol queries on the session's own connection at a safe
//! point (ReadyForQuery 'I'). Nothing here changes session state: every statement is a read,
//! every name is schema-qualified with `pg_catalog.` because the session may have changed
//! search_path.
//!
//! 1. [`catalog_query`]: session facts (including whether the session has a temp schema),
//!    settings, prepared statements, LISTEN channels, advisory locks, WITH HOLD cursors.
//! 2. [`temp_catalog_query`], only for a session that has a temp schema: what cannot be
//!    carried over from it, and its tables, columns, constraints, indexes and sequences. Most
//!    sessions never touch a temp table, and these statements (the blocker list above all) cost
//!    about seven times as much backend CPU to plan as the rest.
//! 3. [`CapturePlan::data_query`]: the rows of every temp table (binary COPY), sequence
//!    positions, and custom (placeholder) settings the proxy saw being set.

use std::collections::BTreeSet;

use super::snapshot::{
    AdvisoryKey, AdvisoryLock, Column, Constraint, PgSnapshot, PreparedStatement, Setting,
    TempSequence, TempTable,
};
use super::sql::{prepare_name, quote_ident, quote_literal, rewrite_temp_schema, split_statements};

mod queries;
mod rows;

use queries::{CATALOG, TEMP_CATALOG, at};
use rows::{Row, advisory_key, boolean, num, opt_text, parse_text_array, rows_of, text};

/// One statement's result: its DataRows as text, or the concatenated CopyData of a COPY TO.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub rows: Vec<Vec<Option<String>>>,
    pub copy_out: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The results don't have the shape the query asked for (count, width, value syntax).
    #[error("unexpected capture result: {0}")]
    Unexpected(String),
}

fn unexpected(msg: impl Into<String>) -> CaptureError {
    CaptureError::Unexpected(msg.into())
}

#[derive(Debug)]
pub enum CatalogOutcome {
    /// Reasons this session cannot be parked now ("WITH HOLD cursor c is open").
    Blocked(Vec<String>),
    Continue(CapturePlan),
}

/// Round trip 1: one multi-statement simple query, one result per statement.
pub fn catalog_query() -> String {
    CATALOG.join(";\n")
}

/// Round trip 2, asked only when round trip 1 says the session has a temp schema (None: it
/// has none, so it holds no temp object of any kind). The backend assigns a session its temp
/// schema at the first temp object it creates and keeps it for the connection's life, so a
/// session without one has nothing these statements could find.
pub fn temp_catalog_query(catalog: &[QueryResult]) -> Result<Option<String>, CaptureError> {
    Ok(temp_schema(catalog)?.map(|_| TEMP_CATALOG.join(";\n")))
}

/// The session's temp schema name from round trip 1's facts, None if it has none.
fn temp_schema(results: &[QueryResult]) -> Result<Option<&str>, CaptureError> {
    let meta = rows_of(results, at::META, "session facts", 5)?;
    let meta = meta
        .first()
        .ok_or_else(|| unexpected("session facts: no row"))?;
    Ok(opt_text(meta, 3).filter(|s| !s.is_empty()))
}

/// What round trip 1 found; round trip 2 fills in rows and positions.
#[derive(Debug, Clone)]
pub struct CapturePlan {
    // Boxed so CatalogOutcome's variants stay similar in size.
    snapshot: Box<PgSnapshot>,
    /// Custom (dotted, placeholder) setting names to ask in round trip 2, lowercased: the
    /// server compares them without case.
    custom_settings: BTreeSet<String>,
}

/// Round trip 1's and 2's rows for one statement; without a temp schema there was no round
/// trip 2 and each of its statements would have found nothing.
fn catalog_rows<'a>(
    results: &'a [QueryResult],
    index: usize,
    what: &str,
    width: usize,
) -> Result<&'a [Row], CaptureError> {
    if index >= CATALOG.len() && results.len() == CATALOG.len() {
        return Ok(&[]);
    }
    rows_of(results, index, what, width)
}

/// Round trips 1 and 2 → blockers, or the plan for the data query.
/// `results`: round trip 1's results, followed by round trip 2's when the session has a temp
/// schema ([`temp_catalog_query`] returned Some).
/// `on_commit_delete_rows`: temp table names the proxy saw created with ON COMMIT DELETE ROWS.
pub fn plan(
    results: &[QueryResult],
    on_commit_delete_rows: &[String],
) -> Result<CatalogOutcome, CaptureError> {
    let expected = match temp_schema(results)? {
        Some(_) => CATALOG.len() + TEMP_CATALOG.len(),
        None => CATALOG.len(),
    };
    if results.len() != expected {
        return Err(unexpected(format!(
            "catalog queries gave {} results, expected {expected}",
            results.len(),
        )));
    }
    let mut snap = PgSnapshot::default();
    let mut blockers = Vec::new();

    let meta = catalog_rows(results, at::META, "session facts", 5)?;
    let meta = meta
        .first()
        .ok_or_else(|| unexpected("session facts: no row"))?;
    let encoding = text(meta, 0, "client_encoding")?;
    // The proxy hands us text as Rust strings and replays it as UTF-8 bytes.
    if encoding != "UTF8" && encoding != "SQL_ASCII" {
        blockers.push(format!(
            "client_encoding {encoding} is not supported for carry-over (only UTF8)"
        ));
    }
    snap.session_authorization = Some(text(meta, 1, "session_authorization")?.to_string());
    snap.role = match text(meta, 2, "role")? {
        "none" => None,
        r => Some(r.to_string()),
    };
    let temp_schema = opt_text(meta, 3).unwrap_or("").to_string();
    let backslash_strings = text(meta, 4, "standard_conforming_strings")? == "off";

    for row in catalog_rows(results, at::SETTINGS, "settings", 2)? {
        snap.settings.push(Setting {
            name: text(row, 0, "settings")?.to_string(),
            value: text(row, 1, "settings")?.to_string(),
        });
    }

    for row in catalog_rows(results, at::PREPARED, "prepared statements", 4)? {
        let name = text(row, 0, "prepared statements")?.to_string();
        let statement = text(row, 1, "prepared statements")?;
        let param_types = parse_text_array(text(row, 2, "prepared statements")?)?
            .iter()
            .map(|t| {
                t.parse::<u32>()
                    .map_err(|_| unexpected(format!("parameter type oid {t:?}")))
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let from_sql = boolean(row, 3, "prepared statements")?;
        let statement = if from_sql {
            // pg_prepared_statements holds the whole query string the PREPARE came in, which
            // may contain other statements: cut out the last PREPARE of this name.
            match split_statements(statement, backslash_strings)
                .into_iter()
                .rev()
                .find(|s| prepare_name(s).as_deref() == Some(name.as_str()))
            {
                Some(s) => s.to_string(),
                None => {
                    blockers.push(format!(
                        "prepared statement {name}: its PREPARE could not be isolated from the query text"
                    ));
                    continue;
                }
            }
        } else {
            statement.to_string()
        };
        snap.prepared.push(PreparedStatement {
            name,
            statement,
            param_types,
            from_sql,
        });
    }

    for row in catalog_rows(results, at::LISTEN, "listen channels", 1)? {
        snap.listen
            .push(text(row, 0, "listen channels")?.to_string());
    }

    for row in catalog_rows(results, at::LOCKS, "advisory locks", 4)? {
        let classid: u32 = num(row, 0, "advisory locks")?;
        let objid: u32 = num(row, 1, "advisory locks")?;
        let objsubid: u16 = num(row, 2, "advisory locks")?;
        let key = advisory_key(classid, objid, objsubid)
            .ok_or_else(|| unexpected(format!("advisory lock objsubid {objsubid}")))?;
        let shared = match text(row, 3, "advisory locks")? {
            "ExclusiveLock" => false,
            "ShareLock" => true,
            other => return Err(unexpected(format!("advisory lock mode {other:?}"))),
        };
        snap.advisory_locks.push(AdvisoryLock {
            key,
            shared,
            count: 1,
        });
    }

    for i in [at::CURSOR_BLOCKERS, at::TEMP_BLOCKERS] {
        for row in catalog_rows(results, i, "blockers", 1)? {
            blockers.push(text(row, 0, "blockers")?.to_string());
        }
    }

    // Temp tables, keyed by oid text for the per-table statements that follow.
    let mut oids: Vec<String> = Vec::new();
    for row in catalog_rows(results, at::TABLES, "temp tables", 4)? {
        oids.push(text(row, 0, "temp tables")?.to_string());
        let name = text(row, 1, "temp tables")?.to_string();
        let reloptions = match opt_text(row, 3) {
            Some(a) => parse_text_array(a)?,
            None => Vec::new(),
        };
        snap.temp_tables.push(TempTable {
            on_commit_delete_rows: on_commit_delete_rows.contains(&name),
            name,
            owner: text(row, 2, "temp tables")?.to_string(),
            reloptions,
            ..TempTable::default()
        });
    }
    let table_index = |oid: &str, what: &str| {
        oids.iter()
            .position(|o| o == oid)
            .ok_or_else(|| unexpected(format!("{what}: unknown table oid {oid}")))
    };

    for row in catalog_rows(results, at::COLUMNS, "columns", 8)? {
        let t = table_index(text(row, 0, "columns")?, "columns")?;
        let identity = match opt_text(row, 5).unwrap_or("") {
            "" => None,
            "a" => Some('a'),
            "d" => Some('d'),
            other => return Err(unexpected(format!("attidentity {other:?}"))),
        };
        let generated = match opt_text(row, 6).unwrap_or("") {
            "" => false,
            "s" => true,
            other => return Err(unexpected(format!("attgenerated {other:?}"))),
        };
        let default = opt_text(row, 4).map(|d| rewrite_temp_schema(d, &temp_schema));
        snap.temp_tables[t].columns.push(Column {
            name: text(row, 1, "columns")?.to_string(),
            data_type: text(row, 2, "columns")?.to_string(),
            collation: opt_text(row, 7).map(str::to_string),
            not_null: boolean(row, 3, "columns")?,
            default,
            identity,
            generated,
        });
    }

    for row in catalog_rows(results, at::CONSTRAINTS, "constraints", 4)? {
        let t = table_index(text(row, 0, "constraints")?, "constraints")?;
        let constraint = Constraint {
            name: text(row, 1, "constraints")?.to_string(),
            definition: rewrite_temp_schema(text(row, 3, "constraints")?, &temp_schema),
        };
        let table = &mut snap.temp_tables[t];
        if text(row, 2, "constraints")? == "f" {
            table.foreign_keys.push(constraint);
        } else {
            table.constraints.push(constraint);
        }
    }

    for row in catalog_rows(results, at::INDEXES, "indexes", 3)? {
        let t = table_index(text(row, 0, "indexes")?, "indexes")?;
        let name = text(row, 1, "indexes")?.to_string();
        let def = rewrite_temp_schema(text(row, 2, "indexes")?, &temp_schema);
        snap.temp_tables[t].indexes.push((name, def));
    }

    for row in catalog_rows(results, at::SEQUENCES, "sequences", 12)? {
        let owned_by = match (opt_text(row, 9), opt_text(row, 10)) {
            (Some(t), Some(c)) => Some((t.to_string(), c.to_string())),
            _ => None,
        };
        let identity = opt_text(row, 11) == Some("i");
        snap.sequences.push(TempSequence {
            name: text(row, 0, "sequences")?.to_string(),
            owner: text(row, 1, "sequences")?.to_string(),
            data_type: text(row, 2, "sequences")?.to_string(),
            start: num(row, 3, "sequences")?,
            increment: num(row, 4, "sequences")?,
            min: num(row, 5, "sequences")?,
            max: num(row, 6, "sequences")?,
            cache: num(row, 7, "sequences")?,
            cycle: boolean(row, 8, "sequences")?,
            owned_by,
            identity,
            ..TempSequence::default()
        });
    }

    if !blockers.is_empty() {
        return Ok(CatalogOutcome::Blocked(blockers));
    }
    Ok(CatalogOutcome::Continue(CapturePlan {
        snapshot: Box::new(snap),
        custom_settings: BTreeSet::new(),
    }))
}

/// Two statements that count how many times the session holds `lock`: pg_locks shows one row
/// whatever the count. A transaction-level hold on the same key keeps the lock ours while the
/// session-level levels are released one by one (each pg_advisory_unlock returns true while
/// one remained) and then taken again the same number of times; it ends with the capture
/// query's implicit transaction.
fn count_lock_levels(lock: &AdvisoryLock) -> [String; 2] {
    let args = match lock.key {
        AdvisoryKey::Single(k) => format!("{k}::pg_catalog.int8"),
        AdvisoryKey::Pair(a, b) => format!("{a}::pg_catalog.int4, {b}::pg_catalog.int4"),
    };
    let shared = if lock.shared { "_shared" } else { "" };
    [
        format!("SELECT pg_catalog.pg_advisory_xact_lock{shared}({args})"),
        format!(
            "WITH RECURSIVE u(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM u \
             WHERE pg_catalog.pg_advisory_unlock{shared}({args})), \
             c AS (SELECT pg_catalog.max(n) AS n FROM u) \
             SELECT c.n, (SELECT pg_catalog.count(*) FROM (SELECT pg_catalog.pg_advisory_lock{shared}({args}) \
             FROM pg_catalog.generate_series(1, c.n)) s) FROM c"
        ),
    ]
}

/// An empty binary COPY: 11-byte signature, flags, header extension length, trailer -1.
fn binary_copy_is_empty(rows: &[u8]) -> bool {
    rows.is_empty() || (rows.len() == 21 && rows.ends_with(&[0xff, 0xff]))
}

impl CapturePlan {
    /// Custom settings (`app.tenant` style placeholders) are invisible in pg_settings, so the
    /// proxy passes the names it saw in SET / set_config; round trip 2 asks their values.
    /// Names without a dot are ignored (they are ordinary settings).
    pub fn ask_custom_settings<'a>(&mut self, names: impl IntoIterator<Item = &'a String>) {
        for n in names {
            if n.contains('.') {
                self.custom_settings.insert(n.to_ascii_lowercase());
            }
        }
    }

    /// Round trip 2: `COPY ... TO STDOUT (FORMAT binary)` per temp table, then one statement
    /// with every sequence position, then custom settings. None if there is nothing to ask.
    pub fn data_query(&self) -> Option<String> {
        let mut stmts: Vec<String> = self
            .snapshot
            .temp_tables
            .iter()
            .map(|t| format!("COPY {} TO STDOUT (FORMAT binary)", copy_target(t)))
            .collect();
        if !self.snapshot.sequences.is_empty() {
            let parts: Vec<String> = self
                .snapshot
                .sequences
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    format!(
                        "SELECT {i}, last_value, is_called FROM pg_temp.{}",
                        quote_ident(&s.name)
                    )
                })
                .collect();
            stmts.push(parts.join(" UNION ALL "));
        }
        if !self.custom_settings.is_empty() {
            let values: Vec<String> = self
                .custom_settings
                .iter()
                .map(|n| format!("({})", quote_literal(n)))
                .collect();
            stmts.push(format!(
                "SELECT v.n, pg_catalog.current_setting(v.n, true) FROM (VALUES {}) v(n) \
                 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_settings s \
                 WHERE pg_catalog.lower(s.name) = pg_catalog.lower(v.n))",
                values.join(", ")
            ));
        }
        for lock in &self.snapshot.advisory_locks {
            stmts.extend(count_lock_levels(lock));
        }
        (!stmts.is_empty()).then(|| stmts.join(";\n"))
    }

    /// Builds the snapshot from round trip 2's results (empty when `data_query` was None).
    /// startup_params / parameter_status are left empty for the proxy.
    pub fn finish(self, results: &[QueryResult]) -> Result<PgSnapshot, CaptureError> {
        let mut snap = *self.snapshot;
        let expected = snap.temp_tables.len()
            + usize::from(!snap.sequences.is_empty())
            + usize::from(!self.custom_settings.is_empty())
            + 2 * snap.advisory_locks.len();
        if results.len() != expected {
            return Err(unexpected(format!(
                "data query gave {} results, expected {expected}",
                results.len()
            )));
        }
        let mut next = 0;
        for table in &mut snap.temp_tables {
            table.rows = results[next].copy_out.clone();
            next += 1;
            // At idle an ON COMMIT DELETE ROWS table is always empty; rows mean the proxy's
            // list is stale (the table was recreated without the clause).
            if table.on_commit_delete_rows && !binary_copy_is_empty(&table.rows) {
                table.on_commit_delete_rows = false;
            }
        }
        if !snap.sequences.is_empty() {
            let rows = rows_of(results, next, "sequence positions", 3)?;
            next += 1;
            if rows.len() != snap.sequences.len() {
                return Err(unexpected(format!(
                    "sequence positions: {} rows for {} sequences",
                    rows.len(),
                    snap.sequences.len()
                )));
            }
            for row in rows {
                let i: usize = num(row, 0, "sequence positions")?;
                let seq = snap
                    .sequences
                    .get_mut(i)
                    .ok_or_else(|| unexpected(format!("sequence positions: index {i}")))?;
                seq.last_value = num(row, 1, "sequence positions")?;
                seq.is_called = boolean(row, 2, "sequence positions")?;
            }
        }
        if !self.custom_settings.is_empty() {
            for row in rows_of(results, next, "custom settings", 2)? {
                // NULL: never set in this session.
                if let Some(value) = opt_text(row, 1) {
                    snap.settings.push(Setting {
                        name: text(row, 0, "custom settings")?.to_string(),
                        value: value.to_string(),
                    });
                }
            }
            next += 1;
        }
        for lock in &mut snap.advisory_locks {
            // The first of the pair only took the transaction-level guard.
            let rows = rows_of(results, next + 1, "advisory lock levels", 2)?;
            next += 2;
            let levels: u32 = match rows.first() {
                Some(row) => num(row, 0, "advisory lock levels")?,
                None => return Err(unexpected("advisory lock levels: no row")),
            };
            if levels == 0 {
                return Err(unexpected(format!(
                    "advisory lock {} was listed but no level could be counted",
                    lock.key
                )));
            }
            lock.count = levels;
        }
        Ok(snap)
    }
}

/// `pg_temp."t" ("a", "b")`: the columns COPY moves (generated ones excluded; PostgreSQL
/// recomputes them). Without non-generated columns the list is left out, which COPY accepts.
pub(crate) fn copy_target(t: &TempTable) -> String {
    let cols: Vec<String> = t
        .columns
        .iter()
        .filter(|c| !c.generated)
        .map(|c| quote_ident(&c.name))
        .collect();
    if cols.is_empty() {
        format!("pg_temp.{}", quote_ident(&t.name))
    } else {
        format!("pg_temp.{} ({})", quote_ident(&t.name), cols.join(", "))
    }
}
