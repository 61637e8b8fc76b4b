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

use super::snapshot::{
    AdvisoryKey, AdvisoryLock, Column, Constraint, PgSnapshot, PreparedStatement, Setting,
    TempSequence, TempTable,
};
use super::sql::{prepare_name, quote_ident, quote_literal, rewrite_temp_schema, split_statements};

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

const META: &str = "SELECT pg_catalog.current_setting('client_encoding'), \
pg_catalog.current_setting('session_authorization'), pg_catalog.current_setting('role'), \
(SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = pg_catalog.pg_my_temp_schema()), \
pg_catalog.current_setting('standard_conforming_strings')";

// role and session_authorization are GUC_NO_SHOW_ALL (absent from pg_settings); META asks them.
const SETTINGS: &str = "SELECT s.name, pg_catalog.current_setting(s.name) \
FROM pg_catalog.pg_settings s WHERE s.source = 'session' \
AND s.name NOT IN ('role', 'session_authorization') ORDER BY s.name";

const PREPARED: &str = "SELECT p.name, p.statement, \
p.parameter_types::pg_catalog.oid[]::pg_catalog.text, p.from_sql \
FROM pg_catalog.pg_prepared_statements p ORDER BY p.prepare_time, p.name";

const LISTEN: &str = "SELECT pg_catalog.pg_listening_channels()";

const LOCKS: &str = "SELECT l.classid, l.objid, l.objsubid, l.mode FROM pg_catalog.pg_locks l \
WHERE l.locktype = 'advisory' AND l.pid = pg_catalog.pg_backend_pid() AND l.granted \
ORDER BY l.classid, l.objid, l.objsubid, l.mode";

/// Session state we cannot recreate that lives outside the temp schema, one text row per item.
const CURSOR_BLOCKERS: &str = "SELECT 'WITH HOLD cursor ' || pg_catalog.quote_ident(k.name) \
|| ' is open' FROM pg_catalog.pg_cursors k WHERE k.is_holdable";

/// Every kind of temp-schema object we cannot recreate, one text row per item.
const TEMP_BLOCKERS: &str = "WITH t AS (SELECT pg_catalog.pg_my_temp_schema() AS nsp) \
SELECT 'temporary ' || CASE c.relkind WHEN 'v' THEN 'view' \
 WHEN 'm' THEN 'materialized view' WHEN 'c' THEN 'composite type' \
 WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' \
 WHEN 'f' THEN 'foreign table' ELSE 'relation' END \
 || ' ' || pg_catalog.quote_ident(c.relname) || ' cannot be carried over' \
 FROM pg_catalog.pg_class c, t WHERE c.relnamespace = t.nsp AND c.relkind NOT IN ('r', 'S', 'i') \
UNION ALL SELECT 'temporary table ' || pg_catalog.quote_ident(c.relname) \
 || ' uses table access method ' || pg_catalog.quote_ident(a.amname) \
 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_am a ON a.oid = c.relam, t \
 WHERE c.relnamespace = t.nsp AND c.relkind = 'r' AND a.amname <> 'heap' \
UNION ALL SELECT 'temporary table ' || pg_catalog.quote_ident(c.relname) \
 || ' has row level security enabled' \
 FROM pg_catalog.pg_class c, t WHERE c.relnamespace = t.nsp AND c.relkind = 'r' \
 AND (c.relrowsecurity OR c.relforcerowsecurity) \
UNION ALL SELECT 'temporary table ' || pg_catalog.quote_ident(c.relname) || ' is a typed table' \
 FROM pg_catalog.pg_class c, t WHERE c.relnamespace = t.nsp AND c.relkind = 'r' AND c.reloftype <> 0 \
UNION ALL SELECT 'temporary table ' || pg_catalog.quote_ident(c.relname) \
 || ' takes part in inheritance or partitioning' \
 FROM pg_catalog.pg_class c, t WHERE c.relnamespace = t.nsp AND c.relkind = 'r' \
 AND EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid) \
UNION ALL SELECT 'trigger ' || pg_catalog.quote_ident(g.tgname) || ' on temporary table ' \
 || pg_catalog.quote_ident(c.relname) || ' cannot be carried over' \
 FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid, t \
 WHERE c.relnamespace = t.nsp AND NOT g.tgisinternal \
UNION ALL SELECT 'rule ' || pg_catalog.quote_ident(r.rulename) || ' on temporary table ' \
 || pg_catalog.quote_ident(c.relname) || ' cannot be carried over' \
 FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class, t \
 WHERE c.relnamespace = t.nsp AND c.relkind = 'r' \
UNION ALL SELECT 'policy ' || pg_catalog.quote_ident(p.polname) || ' on temporary table ' \
 || pg_catalog.quote_ident(c.relname) || ' cannot be carried over' \
 FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid, t \
 WHERE c.relnamespace = t.nsp \
UNION ALL SELECT 'statistics object ' || pg_catalog.quote_ident(x.stxname) \
 || ' on temporary table ' || pg_catalog.quote_ident(c.relname) || ' cannot be carried over' \
 FROM pg_catalog.pg_statistic_ext x JOIN pg_catalog.pg_class c ON c.oid = x.stxrelid, t \
 WHERE c.relnamespace = t.nsp \
UNION ALL SELECT 'comment on temporary object ' || pg_catalog.quote_ident(c.relname) \
 || ' cannot be carried over' \
 FROM pg_catalog.pg_description d JOIN pg_catalog.pg_class c ON c.oid = d.objoid, t \
 WHERE d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.relnamespace = t.nsp \
UNION ALL SELECT 'temporary type ' || pg_catalog.quote_ident(y.typname) || ' cannot be carried over' \
 FROM pg_catalog.pg_type y, t WHERE y.typnamespace = t.nsp AND y.typrelid = 0 AND y.typcategory <> 'A' \
UNION ALL SELECT 'temporary function ' || pg_catalog.quote_ident(f.proname) || ' cannot be carried over' \
 FROM pg_catalog.pg_proc f, t WHERE f.pronamespace = t.nsp \
UNION ALL SELECT 'temporary operator ' || o.oprname || ' cannot be carried over' \
 FROM pg_catalog.pg_operator o, t WHERE o.oprnamespace = t.nsp \
UNION ALL SELECT 'temporary collation ' || pg_catalog.quote_ident(o.collname) || ' cannot be carried over' \
 FROM pg_catalog.pg_collation o, t WHERE o.collnamespace = t.nsp \
UNION ALL SELECT 'temporary conversion ' || pg_catalog.quote_ident(o.conname) || ' cannot be carried over' \
 FROM pg_catalog.pg_conversion o, t WHERE o.connamespace = t.nsp \
UNION ALL SELECT 'temporary operator family ' || pg_catalog.quote_ident(o.opfname) || ' cannot be carried over' \
 FROM pg_catalog.pg_opfamily o, t WHERE o.opfnamespace = t.nsp \
UNION ALL SELECT 'temporary operator class ' || pg_catalog.quote_ident(o.opcname) || ' cannot be carried over' \
 FROM pg_catalog.pg_opclass o, t WHERE o.opcnamespace = t.nsp \
UNION ALL SELECT 'temporary text search configuration ' || pg_catalog.quote_ident(o.cfgname) || ' cannot be carried over' \
 FROM pg_catalog.pg_ts_config o, t WHERE o.cfgnamespace = t.nsp \
UNION ALL SELECT 'temporary text search dictionary ' || pg_catalog.quote_ident(o.dictname) || ' cannot be carried over' \
 FROM pg_catalog.pg_ts_dict o, t WHERE o.dictnamespace = t.nsp \
UNION ALL SELECT 'temporary text search parser ' || pg_catalog.quote_ident(o.prsname) || ' cannot be carried over' \
 FROM pg_catalog.pg_ts_parser o, t WHERE o.prsnamespace = t.nsp \
UNION ALL SELECT 'temporary text search template ' || pg_catalog.quote_ident(o.tmplname) || ' cannot be carried over' \
 FROM pg_catalog.pg_ts_template o, t WHERE o.tmplnamespace = t.nsp \
UNION ALL SELECT 'temporary ' || CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'table ' END \
 || pg_catalog.quote_ident(c.relname) || ' is not readable by the current role ' \
 || pg_catalog.quote_ident(current_user) \
 FROM pg_catalog.pg_class c, t WHERE c.relnamespace = t.nsp AND c.relkind IN ('r', 'S') \
 AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT') \
UNION ALL SELECT 'constraint trigger ' || pg_catalog.quote_ident(k.conname) || ' on temporary table ' \
 || pg_catalog.quote_ident(c.relname) || ' cannot be carried over' \
 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid, t \
 WHERE c.relnamespace = t.nsp AND k.contype = 't'";

const TABLES: &str = "SELECT c.oid, c.relname, pg_catalog.pg_get_userbyid(c.relowner), \
c.reloptions::pg_catalog.text FROM pg_catalog.pg_class c \
WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'r' ORDER BY c.oid";

const COLUMNS: &str = "SELECT a.attrelid, a.attname, \
pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, \
pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, \
CASE WHEN a.attcollation <> y.typcollation AND a.attcollation <> 0 \
 THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname) END \
FROM pg_catalog.pg_attribute a \
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
JOIN pg_catalog.pg_type y ON y.oid = a.atttypid \
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation \
LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace \
WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'r' \
AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum";

const CONSTRAINTS: &str = "SELECT k.conrelid, k.conname, k.contype, \
pg_catalog.pg_get_constraintdef(k.oid) FROM pg_catalog.pg_constraint k \
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'r' \
AND k.contype IN ('p', 'u', 'c', 'x', 'f') ORDER BY k.conrelid, k.oid";

const INDEXES: &str = "SELECT i.indrelid, x.relname, pg_catalog.pg_get_indexdef(i.indexrelid) \
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
JOIN pg_catalog.pg_class x ON x.oid = i.indexrelid \
WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relkind = 'r' \
AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.conrelid = i.indrelid \
 AND k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x')) ORDER BY i.indexrelid";

const SEQUENCES: &str = "SELECT c.relname, pg_catalog.pg_get_userbyid(c.relowner), \
pg_catalog.format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, \
s.seqcache, s.seqcycle, tc.relname, a.attname, d.deptype \
FROM pg_catalog.pg_sequence s JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid \
LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass \
 AND d.objid = s.seqrelid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
 AND d.deptype IN ('a', 'i') \
LEFT JOIN pg_catalog.pg_class tc ON tc.oid = d.refobjid \
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() ORDER BY s.seqrelid";

/// Statements of round trip 1, in result order.
const CATALOG: [&str; 6] = [META, SETTINGS, PREPARED, LISTEN, LOCKS, CURSOR_BLOCKERS];

/// Statements of round trip 2 (sessions with a temp schema), in result order.
const TEMP_CATALOG: [&str; 6] = [
    TEMP_BLOCKERS,
    TABLES,
    COLUMNS,
    CONSTRAINTS,
    INDEXES,
    SEQUENCES,
];

/// Where each kind of result sits in what [`plan`] is given.
mod at {
    pub const META: usize = 0;
    pub const SETTINGS: usize = 1;
    pub const PREPARED: usize = 2;
    pub const LISTEN: usize = 3;
    pub const LOCKS: usize = 4;
    pub const CURSOR_BLOCKERS: usize = 5;
    pub const TEMP_BLOCKERS: usize = 6;
    pub const TABLES: usize = 7;
    pub const COLUMNS: usize = 8;
    pub const CONSTRAINTS: usize = 9;
    pub const INDEXES: usize = 10;
    pub const SEQUENCES: usize = 11;
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
    /// Custom (dotted, placeholder) setting names to ask in round trip 2.
    custom_settings: Vec<String>,
}

type Row = Vec<Option<String>>;

fn rows_of<'a>(
    results: &'a [QueryResult],
    index: usize,
    what: &str,
    width: usize,
) -> Result<&'a [Row], CaptureError> {
    let result = results
        .get(index)
        .ok_or_else(|| unexpected(format!("no result for {what}")))?;
    if let Some(row) = result.rows.iter().find(|r| r.len() != width) {
        return Err(unexpected(format!(
            "{what}: row has {} columns, expected {width}",
            row.len()
        )));
    }
    Ok(&result.rows)
}

fn text<'a>(row: &'a Row, i: usize, what: &str) -> Result<&'a str, CaptureError> {
    row.get(i)
        .and_then(|c| c.as_deref())
        .ok_or_else(|| unexpected(format!("{what}: column {i} is NULL")))
}

fn opt_text(row: &Row, i: usize) -> Option<&str> {
    row.get(i).and_then(|c| c.as_deref())
}

fn num<T: std::str::FromStr>(row: &Row, i: usize, what: &str) -> Result<T, CaptureError> {
    let s = text(row, i, what)?;
    s.parse()
        .map_err(|_| unexpected(format!("{what}: column {i} is not a number: {s:?}")))
}

fn boolean(row: &Row, i: usize, what: &str) -> Result<bool, CaptureError> {
    match text(row, i, what)? {
        "t" => Ok(true),
        "f" => Ok(false),
        other => Err(unexpected(format!(
            "{what}: column {i} is not a boolean: {other:?}"
        ))),
    }
}

/// Parses PostgreSQL's text output of a one-dimensional array (`{a,"b c",NULL}`); NULL
/// elements are skipped.
fn parse_text_array(s: &str) -> Result<Vec<String>, CaptureError> {
    let inner = s
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| unexpected(format!("not an array: {s:?}")))?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => item.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => item.push(c),
                    None => return Err(unexpected(format!("unterminated array element: {s:?}"))),
                }
            }
            out.push(item);
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            if item != "NULL" {
                out.push(item);
            }
        }
        match chars.next() {
            None | Some(',') => {}
            Some(c) => return Err(unexpected(format!("bad array separator {c:?} in {s:?}"))),
        }
    }
    Ok(out)
}

/// Advisory lock key from pg_locks: objsubid 1 = one bigint split into classid (high 32 bits)
/// and objid (low 32 bits); objsubid 2 = two int4 keys stored as oids.
fn advisory_key(classid: u32, objid: u32, objsubid: u16) -> Option<AdvisoryKey> {
    match objsubid {
        1 => Some(AdvisoryKey::Single(
            ((u64::from(classid) << 32) | u64::from(objid)) as i64,
        )),
        2 => Some(AdvisoryKey::Pair(classid as i32, objid as i32)),
        _ => None,
    }
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
        custom_settings: Vec::new(),
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
    pub fn ask_custom_settings(&mut self, names: &[String]) {
        for n in names {
            if n.contains('.')
                && !self
                    .custom_settings
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(n))
            {
                self.custom_settings.push(n.clone());
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
