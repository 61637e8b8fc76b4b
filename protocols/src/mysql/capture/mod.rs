//! Checkpoint capture plan: what the proxy asks a MariaDB backend before parking a session.
//!
//! The proxy sends each round's queries pipelined, as separate COM_QUERY commands on the
//! session's own backend connection (text protocol), at a safe point (no transaction, nothing
//! in flight), and feeds the results back in order. Every query is a read: no SET, no USE.
//!
//! Round 1: session facts (schema, role, LAST_INSERT_ID), session variables that differ from
//! the global ones (`information_schema.SYSTEM_VARIABLES`), metadata locks of this connection
//! (`METADATA_LOCK_INFO`: GET_LOCK names, and LOCK TABLES / HANDLER / FTWRL as blockers), the
//! tracked lock names checked with IS_USED_LOCK (used only when METADATA_LOCK_INFO is absent),
//! every tracked user variable with its type, and `SHOW CREATE TABLE` + `SHOW FULL COLUMNS` for
//! each temp-table candidate.
//!
//! Round 2 (only when temp tables exist): one SELECT per table, each column read in a form that
//! round-trips exactly (see [`super::rows`]). When autocommit is off such a read opens a
//! transaction (InnoDB temp tables are transactional), so when any table was looked at the
//! round ends with `COMMIT AND NO CHAIN NO RELEASE`, which ends only that read-only
//! transaction (the session was outside a transaction when capture began).
//!
//! A temporary sequence is a temp table with `SEQUENCE=1` to SHOW CREATE TABLE; it comes back
//! with its one row, so it continues after its cached range, as after a server restart.
//!
//! Side effects that cannot be avoided: the diagnostics area (SHOW WARNINGS, @@warning_count,
//! a 1146 from a vanished temp table) and FOUND_ROWS()/ROW_COUNT() reflect the capture queries.

use super::rows::{self, ColumnKind};
use super::snapshot::{MySnapshot, TempTable, UserVar};
use super::sql::PrepareSource;
use super::sql::{quote_ident, quote_literal};
use super::tracked::{Tracked, TrackedPrepare};
use super::uservars::{sql_prepared, user_value};

mod variables;

pub use variables::EXCLUDED_VARIABLES;
pub(crate) use variables::variable_rank;
use variables::{variable_literal, variables_query};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryResult {
    pub columns: Vec<ColumnInfo>,
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub column_type: u8,
    pub charset: u16,
    pub flags: u16,
    pub decimals: u8,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerError {
    pub code: u16,
    pub sql_state: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Send these (pipelined, one COM_QUERY each) and call `next` with their results.
    Queries(Vec<String>),
    Done(Box<MySnapshot>),
    /// Reasons the session cannot be parked now; nothing was changed.
    Blocked(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The results don't have the shape the queries asked for.
    #[error("unexpected capture result: {0}")]
    Unexpected(String),
    /// A capture query failed on the server.
    #[error("capture query for {what} failed: {code} {message}")]
    Server {
        what: String,
        code: u16,
        message: String,
    },
    /// `next` called with no round outstanding.
    #[error("capture is not waiting for results")]
    NotWaiting,
}

pub(crate) fn unexpected(msg: impl Into<String>) -> CaptureError {
    CaptureError::Unexpected(msg.into())
}

/// Answers to SHOW CREATE TABLE that mean "no temp table of that name": a temp table always
/// exists and is readable for the session that created it, so a name the tracker picked up
/// from a failed or foreign statement may also meet a denied access.
const NOT_A_TEMP_TABLE: &[u16] = &[
    1044, // ER_DBACCESS_DENIED_ERROR
    1049, // ER_BAD_DB_ERROR
    1142, // ER_TABLEACCESS_DENIED_ERROR
    1146, // ER_NO_SUCH_TABLE
];

const META: &str = "SELECT DATABASE(), CURRENT_ROLE(), LAST_INSERT_ID(), \
@@session.character_set_results, @@session.autocommit";

const LOCKS: &str = "SET STATEMENT sql_select_limit = 18446744073709551615, \
max_join_size = 18446744073709551615, max_statement_time = 0 FOR SELECT LOCK_TYPE, TABLE_SCHEMA, TABLE_NAME \
FROM information_schema.METADATA_LOCK_INFO WHERE THREAD_ID = CONNECTION_ID() \
LIMIT 18446744073709551615";

/// The session's sql_select_limit applies to our SELECTs too; an explicit LIMIT overrides it.
pub(crate) const NO_LIMIT: &str = "LIMIT 18446744073709551615";

/// Per-statement overrides (SET STATEMENT changes nothing after the statement): the session's
/// own limits must not cut or fail a capture read, and SHOW CREATE TABLE must print backquoted
/// names with every table option, whatever sql_mode (ANSI_QUOTES, NO_TABLE_OPTIONS, ...) and
/// sql_quote_show_create the session has. sql_select_limit applies to SHOW too.
pub(crate) const UNLIMITED: &str = "SET STATEMENT sql_select_limit = 18446744073709551615, \
max_join_size = 18446744073709551615, max_statement_time = 0 FOR ";
const PLAIN_SHOW: &str = "SET STATEMENT sql_select_limit = 18446744073709551615, \
max_statement_time = 0, sql_mode = '', sql_quote_show_create = 1 FOR ";

/// User variables per SELECT (4 columns each).
const VARS_PER_QUERY: usize = 100;

/// Where each round-1 query's result lands.
#[derive(Debug, Clone, Default)]
struct Layout {
    fallback_locks: bool,
    var_batches: usize,
    tables: Vec<(String, String)>,
}

/// A temp table found in round 1, waiting for its rows.
#[derive(Debug, Clone)]
struct PendingTable {
    table: TempTable,
    kinds: Vec<ColumnKind>,
    /// Primary key columns: rows are read in key order, so a recapture reads them alike.
    key: Vec<String>,
}

#[derive(Debug, Clone)]
enum Stage {
    New,
    Round1(Layout),
    Round2 { commit: bool },
    Finished,
}

#[derive(Debug, Clone)]
pub struct Capture {
    user_vars: Vec<String>,
    temp_tables: Vec<(String, String)>,
    prepared: Vec<TrackedPrepare>,
    lock_names: Vec<String>,
    stage: Stage,
    snap: MySnapshot,
    pending: Vec<PendingTable>,
}

impl Capture {
    pub fn new(tracked: &Tracked) -> Capture {
        let mut user_vars = tracked.user_vars().to_vec();
        // PREPARE FROM @v needs @v's text even if the variable list somehow lacks it.
        for p in tracked.prepared() {
            if let PrepareSource::Var(v) = &p.source
                && !user_vars.iter().any(|u| u.eq_ignore_ascii_case(v))
            {
                user_vars.push(v.clone());
            }
        }
        Capture {
            user_vars,
            temp_tables: tracked.temp_tables().to_vec(),
            prepared: tracked.prepared().to_vec(),
            lock_names: tracked.lock_names().to_vec(),
            stage: Stage::New,
            snap: MySnapshot::default(),
            pending: Vec::new(),
        }
    }

    /// Round 1 queries.
    pub fn first(&mut self) -> Vec<String> {
        let mut q = vec![META.to_string(), variables_query(), LOCKS.to_string()];
        let mut layout = Layout::default();
        if !self.lock_names.is_empty() {
            let cols: Vec<String> = self
                .lock_names
                .iter()
                .map(|n| format!("IS_USED_LOCK({}) <=> CONNECTION_ID()", quote_literal(n)))
                .collect();
            q.push(format!("SELECT {}", cols.join(", ")));
            layout.fallback_locks = true;
        }
        for chunk in self.user_vars.chunks(VARS_PER_QUERY) {
            let cols: Vec<String> = chunk
                .iter()
                .map(|n| {
                    let v = format!("@{}", quote_ident(n));
                    format!("{v}, HEX({v}), CHARSET({v}), COLLATION({v})")
                })
                .collect();
            q.push(format!("SELECT {}", cols.join(", ")));
            layout.var_batches += 1;
        }
        for (schema, name) in &self.temp_tables {
            let t = format!("{}.{}", quote_ident(schema), quote_ident(name));
            q.push(format!("{PLAIN_SHOW}SHOW CREATE TABLE {t}"));
            q.push(format!("{PLAIN_SHOW}SHOW FULL COLUMNS FROM {t}"));
            layout.tables.push((schema.clone(), name.clone()));
        }
        self.stage = Stage::Round1(layout);
        q
    }

    /// One entry per query of the last round, in order.
    pub fn next(
        &mut self,
        results: Vec<Result<QueryResult, ServerError>>,
    ) -> Result<Step, CaptureError> {
        match std::mem::replace(&mut self.stage, Stage::Finished) {
            Stage::Round1(layout) => self.round1(layout, results),
            Stage::Round2 { commit } => self.round2(commit, results),
            Stage::New | Stage::Finished => Err(CaptureError::NotWaiting),
        }
    }

    fn round1(
        &mut self,
        layout: Layout,
        results: Vec<Result<QueryResult, ServerError>>,
    ) -> Result<Step, CaptureError> {
        let expected =
            3 + usize::from(layout.fallback_locks) + layout.var_batches + 2 * layout.tables.len();
        if results.len() != expected {
            return Err(unexpected(format!(
                "round 1 gave {} results, expected {expected}",
                results.len()
            )));
        }
        let mut results = results.into_iter();
        let mut take = || results.next().ok_or_else(|| unexpected("missing result"));
        let mut blockers = Vec::new();

        let meta = ok(take()?, "session facts")?;
        let row = meta
            .rows
            .first()
            .ok_or_else(|| unexpected("session facts: no row"))?;
        self.snap.schema = opt_text(row, 0, "schema")?;
        self.snap.role = opt_text(row, 1, "role")?;
        self.snap.last_insert_id = parse(row, 2, "LAST_INSERT_ID")?;
        let results_charset = opt_text(row, 3, "character_set_results")?;
        let autocommit = text(row, 4, "autocommit")? != "0";

        let utf8_results = results_charset
            .as_deref()
            .is_none_or(|c| matches!(c, "utf8mb4" | "utf8mb3" | "utf8"));

        let vars = ok(take()?, "session variables")?;
        let mut variables = Vec::new();
        for row in &vars.rows {
            let name = text(row, 0, "variable name")?;
            let value = opt_text(row, 1, "variable value")?;
            let kind = text(row, 2, "variable type")?;
            let literal = variable_literal(&name, value.as_deref(), &kind);
            variables.push((name, literal));
        }
        variables.sort_by(|a, b| (variable_rank(&a.0), &a.0).cmp(&(variable_rank(&b.0), &b.0)));
        self.snap.variables = variables;

        let mli = take()?;
        let fallback = if layout.fallback_locks {
            Some(take()?)
        } else {
            None
        };
        match mli {
            Ok(locks) => {
                for row in &locks.rows {
                    let kind = text(row, 0, "lock type")?;
                    let schema = opt_text(row, 1, "lock name")?.unwrap_or_default();
                    let table = opt_text(row, 2, "lock table")?.unwrap_or_default();
                    if kind == "User lock" {
                        if !self.snap.named_locks.contains(&schema) {
                            self.snap.named_locks.push(schema);
                        }
                    } else {
                        let what = match (schema.is_empty(), table.is_empty()) {
                            (true, _) => String::new(),
                            (false, true) => format!(" on {schema}"),
                            (false, false) => format!(" on {schema}.{table}"),
                        };
                        let reason = format!(
                            "holds a {}{what} (LOCK TABLES, HANDLER or FLUSH TABLES WITH READ LOCK)",
                            kind.to_lowercase()
                        );
                        if !blockers.contains(&reason) {
                            blockers.push(reason);
                        }
                    }
                }
            }
            // METADATA_LOCK_INFO is a plugin; without it, check the names seen in the stream.
            Err(_) => {
                if let Some(r) = fallback {
                    let r = ok(r, "named locks")?;
                    let row = r
                        .rows
                        .first()
                        .ok_or_else(|| unexpected("named locks: no row"))?;
                    for (i, name) in self.lock_names.iter().enumerate() {
                        if opt_text(row, i, "named lock")?.as_deref() == Some("1") {
                            self.snap.named_locks.push(name.clone());
                        }
                    }
                }
            }
        }
        self.snap.named_locks.sort();

        for (b, chunk) in self.user_vars.chunks(VARS_PER_QUERY).enumerate() {
            let r = ok(take()?, "user variables")?;
            let row = r
                .rows
                .first()
                .ok_or_else(|| unexpected(format!("user variables batch {b}: no row")))?;
            for (i, name) in chunk.iter().enumerate() {
                let col = r
                    .columns
                    .get(4 * i)
                    .ok_or_else(|| unexpected("user variables: missing column"))?;
                let value = user_value(col, row, 4 * i)?;
                self.snap.user_vars.push(UserVar {
                    name: name.clone(),
                    value,
                });
            }
        }

        for p in &self.prepared {
            match sql_prepared(p, &self.snap.user_vars) {
                Ok(sp) => self.snap.sql_prepared.push(sp),
                Err(reason) => blockers.push(reason),
            }
        }

        for (schema, name) in &layout.tables {
            let label = format!("temporary table {schema}.{name}");
            let create = take()?;
            let columns = take()?;
            let create = match create {
                Err(e) if NOT_A_TEMP_TABLE.contains(&e.code) => continue,
                other => ok(other, &label)?,
            };
            let columns = ok(columns, &label)?;
            let row = create
                .rows
                .first()
                .ok_or_else(|| unexpected(format!("{label}: SHOW CREATE TABLE gave no row")))?;
            let raw = cell(row, 1).ok_or_else(|| unexpected(format!("{label}: no definition")))?;
            let Ok(create_text) = String::from_utf8(raw.to_vec()) else {
                blockers.push(format!("{label}: definition is not valid UTF-8"));
                continue;
            };
            let upper: String = create_text
                .chars()
                .take(32)
                .collect::<String>()
                .to_uppercase();
            if !upper.starts_with("CREATE TEMPORARY") {
                // A permanent table of that name: the temp table is gone.
                continue;
            }
            if !upper.starts_with("CREATE TEMPORARY TABLE") {
                blockers.push(format!(
                    "{label}: a temporary sequence cannot be carried over"
                ));
                continue;
            }
            if rows::qualify_create(&create_text, schema, name).is_none() {
                blockers.push(format!("{label}: definition could not be qualified"));
                continue;
            }
            let mut table = TempTable {
                schema: schema.clone(),
                name: name.clone(),
                create: create_text,
                ..TempTable::default()
            };
            let mut kinds = Vec::new();
            let mut table_key = Vec::new();
            for c in &columns.rows {
                if opt_text(c, 4, "column key")?.as_deref() == Some("PRI") {
                    table_key.push(text(c, 0, "column name")?);
                }
                let field = text(c, 0, "column name")?;
                let col_type = text(c, 1, "column type")?;
                let collation = opt_text(c, 2, "column collation")?;
                let extra = opt_text(c, 6, "column extra")?.unwrap_or_default();
                if extra.to_ascii_uppercase().contains("GENERATED") {
                    continue;
                }
                match rows::column_kind(&col_type, collation.as_deref()) {
                    Some(k) => {
                        table.columns.push(field);
                        kinds.push(k);
                    }
                    None => blockers.push(format!(
                        "{label}: column {field} of type {col_type} cannot be carried over"
                    )),
                }
            }
            if !utf8_results && !table.create.is_ascii() {
                blockers.push(format!(
                    "{label}: its definition has non-ASCII text and character_set_results is {}",
                    results_charset.as_deref().unwrap_or("NULL")
                ));
            }
            self.pending.push(PendingTable {
                table,
                kinds,
                key: table_key,
            });
        }

        if !blockers.is_empty() {
            return Ok(Step::Blocked(blockers));
        }
        // With autocommit off a read may have opened a transaction; the session had none.
        let commit = !autocommit && !layout.tables.is_empty();
        if self.pending.is_empty() && !commit {
            return Ok(Step::Done(Box::new(std::mem::take(&mut self.snap))));
        }
        let mut q: Vec<String> = self
            .pending
            .iter()
            .map(|p| rows::select_rows(&p.table, &p.kinds, &p.key))
            .collect();
        if commit {
            q.push("COMMIT AND NO CHAIN NO RELEASE".to_string());
        }
        self.stage = Stage::Round2 { commit };
        Ok(Step::Queries(q))
    }

    fn round2(
        &mut self,
        commit: bool,
        results: Vec<Result<QueryResult, ServerError>>,
    ) -> Result<Step, CaptureError> {
        let expected = self.pending.len() + usize::from(commit);
        if results.len() != expected {
            return Err(unexpected(format!(
                "round 2 gave {} results, expected {expected}",
                results.len()
            )));
        }
        let pending = std::mem::take(&mut self.pending);
        for (p, r) in pending.into_iter().zip(results) {
            let mut table = p.table;
            let label = format!("rows of temporary table {}.{}", table.schema, table.name);
            let r = ok(r, &label)?;
            rows::build_inserts(&mut table, &p.kinds, &r.rows).map_err(unexpected)?;
            self.snap.temp_tables.push(table);
        }
        Ok(Step::Done(Box::new(std::mem::take(&mut self.snap))))
    }
}

fn ok(r: Result<QueryResult, ServerError>, what: &str) -> Result<QueryResult, CaptureError> {
    r.map_err(|e| CaptureError::Server {
        what: what.to_string(),
        code: e.code,
        message: e.message,
    })
}

pub(crate) fn cell(row: &[Option<Vec<u8>>], i: usize) -> Option<&[u8]> {
    row.get(i).and_then(|c| c.as_deref())
}

pub(crate) fn opt_text(
    row: &[Option<Vec<u8>>],
    i: usize,
    what: &str,
) -> Result<Option<String>, CaptureError> {
    if i >= row.len() {
        return Err(unexpected(format!("{what}: missing column {i}")));
    }
    match cell(row, i) {
        None => Ok(None),
        Some(b) => String::from_utf8(b.to_vec())
            .map(Some)
            .map_err(|_| unexpected(format!("{what}: not UTF-8"))),
    }
}

pub(crate) fn text(row: &[Option<Vec<u8>>], i: usize, what: &str) -> Result<String, CaptureError> {
    opt_text(row, i, what)?.ok_or_else(|| unexpected(format!("{what}: NULL")))
}

fn parse<T: std::str::FromStr>(
    row: &[Option<Vec<u8>>],
    i: usize,
    what: &str,
) -> Result<T, CaptureError> {
    let t = text(row, i, what)?;
    t.parse()
        .map_err(|_| unexpected(format!("{what}: not a number: {t:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_one_shape() {
        let mut t = Tracked::default();
        t.observe("SET @a = 1", None, true);
        t.observe("CREATE TEMPORARY TABLE s.t (a int)", None, true);
        let mut c = Capture::new(&t);
        let q = c.first();
        assert_eq!(q.len(), 3 + 1 + 2);
        assert!(matches!(c.next(vec![]), Err(CaptureError::Unexpected(_))));
        assert!(matches!(c.next(vec![]), Err(CaptureError::NotWaiting)));
    }
}
