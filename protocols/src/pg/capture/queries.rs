//! The statements capture sends, and where each one's result sits in what `plan` is given.
//! Every name is schema-qualified with `pg_catalog.`: the session may have changed search_path.

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

/// One blocker row per object of each kind in the temp schema: what it is, its catalog, and
/// the catalog's name and namespace columns. Each clause ends in a space, as the text around
/// it does.
macro_rules! temp_schema_objects {
    ($(($what:literal, $catalog:ident, $name:ident, $nsp:ident)),* $(,)?) => {
        concat!($(
            "UNION ALL SELECT 'temporary ", $what, " ' || pg_catalog.quote_ident(o.",
            stringify!($name), ") || ' cannot be carried over' FROM pg_catalog.",
            stringify!($catalog), " o, t WHERE o.", stringify!($nsp), " = t.nsp ",
        )*)
    };
}

/// Every kind of temp-schema object we cannot recreate, one text row per item.
const TEMP_BLOCKERS: &str = concat!(
    "WITH t AS (SELECT pg_catalog.pg_my_temp_schema() AS nsp) \
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
",
    temp_schema_objects![
        ("collation", pg_collation, collname, collnamespace),
        ("conversion", pg_conversion, conname, connamespace),
        ("operator family", pg_opfamily, opfname, opfnamespace),
        ("operator class", pg_opclass, opcname, opcnamespace),
        (
            "text search configuration",
            pg_ts_config,
            cfgname,
            cfgnamespace
        ),
        (
            "text search dictionary",
            pg_ts_dict,
            dictname,
            dictnamespace
        ),
        ("text search parser", pg_ts_parser, prsname, prsnamespace),
        (
            "text search template",
            pg_ts_template,
            tmplname,
            tmplnamespace
        ),
    ],
    "UNION ALL SELECT 'temporary ' || CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'table ' END \
 || pg_catalog.quote_ident(c.relname) || ' is not readable by the current role ' \
 || pg_catalog.quote_ident(current_user) \
 FROM pg_catalog.pg_class c, t WHERE c.relnamespace = t.nsp AND c.relkind IN ('r', 'S') \
 AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT') \
UNION ALL SELECT 'constraint trigger ' || pg_catalog.quote_ident(k.conname) || ' on temporary table ' \
 || pg_catalog.quote_ident(c.relname) || ' cannot be carried over' \
 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid, t \
 WHERE c.relnamespace = t.nsp AND k.contype = 't'"
);

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
pub(super) const CATALOG: [&str; 6] = [META, SETTINGS, PREPARED, LISTEN, LOCKS, CURSOR_BLOCKERS];

/// Statements of round trip 2 (sessions with a temp schema), in result order.
pub(super) const TEMP_CATALOG: [&str; 6] = [
    TEMP_BLOCKERS,
    TABLES,
    COLUMNS,
    CONSTRAINTS,
    INDEXES,
    SEQUENCES,
];

/// Where each kind of result sits in what [`super::plan`] is given.
pub(super) mod at {
    pub(crate) const META: usize = 0;
    pub(crate) const SETTINGS: usize = 1;
    pub(crate) const PREPARED: usize = 2;
    pub(crate) const LISTEN: usize = 3;
    pub(crate) const LOCKS: usize = 4;
    pub(crate) const CURSOR_BLOCKERS: usize = 5;
    pub(crate) const TEMP_BLOCKERS: usize = 6;
    pub(crate) const TABLES: usize = 7;
    pub(crate) const COLUMNS: usize = 8;
    pub(crate) const CONSTRAINTS: usize = 9;
    pub(crate) const INDEXES: usize = 10;
    pub(crate) const SEQUENCES: usize = 11;
}
