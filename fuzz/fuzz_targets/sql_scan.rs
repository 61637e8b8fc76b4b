//! The SQL scanners: PostgreSQL's statement splitter, the tracker's cheap looks at passing
//! queries (custom-setting names among them) and the local-answer recogniser; MySQL's effect
//! sniffer, transaction classifier, local-answer recogniser and CONNECTION_ID() rewrite. The
//! input is the query text (lossily UTF-8 where the scanner takes a `str`).
//!
//! Besides never panicking: a value quoted by either quoter stays one literal (it splits no
//! statement, and what the local-answer recogniser reads back is the value itself).
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::mysql;
use protocols::pg;
use protocols::pg::local::Statement;

fuzz_target!(|data: &[u8]| torpor_fuzz::timed(data, run));

fn run(data: &[u8]) {
    let sql = String::from_utf8_lossy(data);
    pg_scans(&sql);
    pg_quoting(&sql);
    mysql_scans(data, &sql);
}

fn pg_scans(sql: &str) {
    use pg::sql::*;
    for backslash_strings in [false, true] {
        for stmt in split_statements(sql, backslash_strings) {
            assert!(!stmt.is_empty() && stmt.trim() == stmt, "{stmt:?}");
            let _ = prepare_name(stmt);
        }
    }
    let _ = plainly_reads(sql);
    let _ = on_commit_delete_rows_table(sql);
    let _ = on_commit_delete_rows_tables(sql);
    for name in custom_setting_names(sql) {
        assert!(name.contains('.'), "{name:?}");
    }
    let _ = taints_transaction(sql);
    let _ = prepares(sql);
    let _ = executes(sql);
    let _ = may_begin(sql);
    let _ = may_drop_statements(sql);
    let _ = may_create_on_commit_delete_rows(sql);
    let _ = rewrite_temp_schema(sql, "pg_temp_3");
    let _ = pg::local::statements(sql);
    let _ = pg::local::single(sql);
    let _ = pg::local::probe(sql);
}

/// `value`, quoted, is one literal however strings are read.
fn pg_quoting(value: &str) {
    use pg::sql::{quote_ident, quote_literal, split_statements};
    let literal = quote_literal(value);
    for quoted in [&literal, &quote_ident(value)] {
        let text = format!("SELECT {quoted}; SELECT 2");
        for backslash_strings in [false, true] {
            let stmts = split_statements(&text, backslash_strings);
            assert_eq!(stmts, [format!("SELECT {quoted}").as_str(), "SELECT 2"]);
        }
    }
    if let Some(v) = pg::local::statements(&format!("SET a.b = {literal}"))
        && let [Statement::Set { value: read, .. }] = &v[..]
    {
        assert_eq!(read, value);
    }
}

fn mysql_scans(data: &[u8], sql: &str) {
    use mysql::sql::*;
    let worth = worth_scanning(sql);
    let effects = sniff(sql);
    assert!(worth || effects.is_empty());
    let mut tracked = mysql::tracked::Tracked::default();
    tracked.observe(sql, Some("db"), true);
    tracked.observe_prepared(sql, None);
    let _ = mysql::txn::effect(sql);
    let _ = mysql::reads::plainly_reads(sql);
    let _ = mysql::reads::executed(sql);
    let _ = mysql::reads::literal_reads(sql);
    let _ = mysql::local::parse(data, false);
    let _ = mysql::local::parse(data, true);
    let _ = mysql::local::may_customise(data);
    let _ = mysql::contained::is_contained(sql);
    let _ = mysql::contained::is_value(sql);
    let literal = quote_literal(sql);
    assert!(mysql::contained::is_contained(&literal), "{literal:?}");
    assert!(mysql::contained::is_value(&literal), "{literal:?}");
    assert!(mysql::contained::is_contained(&quote_ident(sql)));
    assert_eq!(unhex(hex(data).as_bytes()).as_deref(), Some(data));
    let _ = charset_of(sql);
    connection_id(data);
}

/// The CONNECTION_ID() rewrite: only text that names the function changes, and it grows at
/// most about fivefold (a call's literal, an alias per select-list item, within budget).
fn connection_id(data: &[u8]) {
    use mysql::connection_id::{mentions, rewrite};
    for backslash in [true, false] {
        if let Some(out) = rewrite(data, 1 << 30, backslash) {
            assert!(mentions(data));
            assert!(out.len() <= 5 * data.len() + 4096, "grew to {}", out.len());
        }
    }
}
