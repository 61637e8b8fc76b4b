//! Cheap looks at the queries that pass, for what the tracker can't ask the backend at
//! checkpoint: whether a query only reads, which temp tables are ON COMMIT DELETE ROWS, which
//! custom settings were set, whether a transaction can still be carried over a stop.

use super::lexer::{Lexer, Token, ident_name, is_kw, skip_to_semicolon};

/// If the first statement of `sql` is `CREATE [GLOBAL|LOCAL] TEMP|TEMPORARY TABLE [IF NOT
/// EXISTS] name ... ON COMMIT DELETE ROWS`, the table's relname as pg_class stores it.
/// Cheap for every other query: it stops at the first word unless that word is CREATE.
pub fn on_commit_delete_rows_table(sql: &str) -> Option<String> {
    let mut lx = Lexer::new(sql, false);
    ocdr_statement(&mut lx).unwrap_or(None)
}

/// Like [`on_commit_delete_rows_table`] but for every statement of a multi-statement query.
pub fn on_commit_delete_rows_tables(sql: &str) -> Vec<String> {
    let mut lx = Lexer::new(sql, false);
    let mut out = Vec::new();
    loop {
        match ocdr_statement(&mut lx) {
            Ok(found) => out.extend(found),
            Err(End) => return out,
        }
    }
}

struct End;

/// Examines one statement and leaves the lexer after its terminating semicolon.
/// `Err(End)` when there is no further statement.
fn ocdr_statement(lx: &mut Lexer<'_>) -> Result<Option<String>, End> {
    let first = lx.next().ok_or(End)?;
    if first == Token::Semicolon {
        return Ok(None);
    }
    if !is_kw(&first, "create") {
        skip_to_semicolon(lx, 0);
        return Ok(None);
    }
    let mut tok = lx.next();
    if tok
        .as_ref()
        .is_some_and(|t| is_kw(t, "global") || is_kw(t, "local"))
    {
        tok = lx.next();
    }
    if !tok
        .as_ref()
        .is_some_and(|t| is_kw(t, "temp") || is_kw(t, "temporary"))
    {
        skip_to_semicolon(lx, 0);
        return Ok(None);
    }
    if !lx.next().is_some_and(|t| is_kw(&t, "table")) {
        skip_to_semicolon(lx, 0);
        return Ok(None);
    }
    let mut tok = lx.next();
    if tok.as_ref().is_some_and(|t| is_kw(t, "if")) {
        let not = lx.next();
        let exists = lx.next();
        if !(not.is_some_and(|t| is_kw(&t, "not")) && exists.is_some_and(|t| is_kw(&t, "exists"))) {
            skip_to_semicolon(lx, 0);
            return Ok(None);
        }
        tok = lx.next();
    }
    // name or schema.name: the relname is the last part.
    let Some(mut name) = tok.as_ref().and_then(ident_name) else {
        skip_to_semicolon(lx, 0);
        return Ok(None);
    };
    let mut next = lx.next();
    while next == Some(Token::Dot) {
        match lx.next().as_ref().and_then(ident_name) {
            Some(part) => name = part,
            None => {
                skip_to_semicolon(lx, 0);
                return Ok(None);
            }
        }
        next = lx.next();
    }
    // Look for ON COMMIT DELETE ROWS at depth 0 before AS (CTAS query) or the end.
    let mut depth = 0usize;
    let mut window: [Option<Token<'_>>; 4] = [None, None, None, None];
    let mut cur = next;
    let mut found = false;
    while let Some(t) = cur {
        match t {
            Token::Semicolon if depth == 0 => break,
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && is_kw(&t, "as") {
            skip_to_semicolon(lx, 0);
            break;
        }
        window.rotate_left(1);
        window[3] = Some(t);
        if depth == 0
            && matches!(&window, [Some(a), Some(b), Some(c), Some(d)]
                if is_kw(a, "on") && is_kw(b, "commit") && is_kw(c, "delete") && is_kw(d, "rows"))
        {
            found = true;
        }
        cur = lx.next();
    }
    Ok(found.then_some(name))
}

/// Names of custom (dotted, `app.tenant` style) settings that `sql` may set for the session:
/// `SET [SESSION] a.b ...` and `set_config('a.b', ...)`. pg_settings doesn't list such
/// placeholders, so the proxy remembers the names and capture asks for their values.
/// One pass of the lexer, so comments and literals don't count and the time is linear in the
/// query's length. Cheap for queries without a dot or without "set".
pub fn custom_setting_names(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !sql.contains('.') || !contains_ignore_case(sql, "set") {
        return out;
    }
    let mut lx = Lexer::new(sql, false);
    let mut statement_start = true;
    while let Some(tok) = lx.next() {
        let first = std::mem::replace(&mut statement_start, tok == Token::Semicolon);
        if first && is_kw(&tok, "set") {
            out.extend(set_name(lx.clone()));
        } else if is_kw(&tok, "set_config") {
            out.extend(set_config_name(lx.clone()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// After SET: `[SESSION] a.b`. SET LOCAL ends with the transaction; it never reaches a
/// checkpoint.
fn set_name(mut lx: Lexer<'_>) -> Option<String> {
    let mut tok = lx.next();
    if tok.as_ref().is_some_and(|t| is_kw(t, "session")) {
        tok = lx.next();
    }
    let (a, dot, b) = (tok?, lx.next()?, lx.next()?);
    if dot != Token::Dot {
        return None;
    }
    Some(format!("{}.{}", setting_part(a)?, setting_part(b)?))
}

/// After set_config: `('a.b'`.
fn set_config_name(mut lx: Lexer<'_>) -> Option<String> {
    if lx.next()? != Token::Open || lx.next()? != Token::Other {
        return None;
    }
    let name = lx.plain_string()?;
    name.contains('.').then(|| name.to_ascii_lowercase())
}

fn setting_part(tok: Token<'_>) -> Option<String> {
    match tok {
        Token::Word(w) => Some(w.to_ascii_lowercase()),
        Token::Quoted(q) => Some(q),
        _ => None,
    }
}

fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Words after which a transaction can't be carried over a stop whatever the backend says:
/// settings and notifications the catalogs don't show (`SET LOCAL`, `NOTIFY`), transactional
/// LISTEN, savepoints, transaction-level advisory locks, and anything that writes or locks,
/// which the backend would refuse at checkpoint anyway.
const TAINTS: &[&str] = &[
    "set",
    "reset",
    "set_config",
    "notify",
    "pg_notify",
    "listen",
    "unlisten",
    "savepoint",
    "release",
    "discard",
    "load",
    "lock",
    "serializable",
    "repeatable",
    "insert",
    "update",
    "delete",
    "merge",
    "copy",
    "create",
    "drop",
    "alter",
    "truncate",
    "grant",
    "revoke",
    "call",
    "do",
    "prepare",
    "declare",
    "vacuum",
    "analyze",
    "cluster",
    "reindex",
    "refresh",
    "comment",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
];

/// Whether a statement run in a transaction block means the block can't be carried over a
/// stop. Words only: strings, quoted names and comments don't count.
pub fn taints_transaction(sql: &str) -> bool {
    Lexer::new(sql, false).any(|t| match t {
        Token::Word(w) => TAINTS.iter().any(|k| w.eq_ignore_ascii_case(k)),
        _ => false,
    })
}

/// Whether `sql`'s first word is PREPARE.
pub fn prepares(sql: &str) -> bool {
    matches!(Lexer::new(sql, false).next(), Some(ref t) if is_kw(t, "prepare"))
}

/// Whether `sql`'s first word is EXECUTE.
pub fn executes(sql: &str) -> bool {
    matches!(Lexer::new(sql, false).next(), Some(ref t) if is_kw(t, "execute"))
}

/// Whether `sql` may open a transaction block: a cheap over-estimate.
pub fn may_begin(sql: &str) -> bool {
    contains_ignore_case(sql, "begin") || contains_ignore_case(sql, "start")
}

/// Whether `sql` may drop prepared statements (DEALLOCATE, DISCARD): a cheap over-estimate.
pub fn may_drop_statements(sql: &str) -> bool {
    contains_ignore_case(sql, "deallocate") || contains_ignore_case(sql, "discard")
}

/// Cheap pre-check for [`on_commit_delete_rows_tables`]: most queries can't contain it.
pub fn may_create_on_commit_delete_rows(sql: &str) -> bool {
    contains_ignore_case(sql, "delete") && contains_ignore_case(sql, "create")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocdr_basic_forms() {
        for (sql, table) in [
            ("CREATE TEMP TABLE Foo (a int) ON COMMIT DELETE ROWS", "foo"),
            (
                "create temporary table \"My T\" (a int) on commit delete rows;",
                "My T",
            ),
            (
                "CREATE GLOBAL TEMPORARY TABLE IF NOT EXISTS pg_temp.x (a text default 'y') WITH (fillfactor=50) ON COMMIT DELETE ROWS",
                "x",
            ),
            (
                "  -- hi\n /* a /* nested */ comment */ CREATE LOCAL TEMP TABLE t2 ON COMMIT DELETE ROWS AS SELECT 1",
                "t2",
            ),
        ] {
            assert_eq!(
                on_commit_delete_rows_table(sql).as_deref(),
                Some(table),
                "{sql}"
            );
        }
    }

    #[test]
    fn ocdr_negatives() {
        for sql in [
            "SELECT 'CREATE TEMP TABLE x ON COMMIT DELETE ROWS'",
            "CREATE TABLE x (a int)",
            "CREATE TEMP TABLE x (a int) ON COMMIT PRESERVE ROWS",
            "CREATE TEMP TABLE x (a text default 'ON COMMIT DELETE ROWS')",
            "CREATE TEMP TABLE x (a int); SELECT 'on commit delete rows'",
            "CREATE TEMP TABLE x AS SELECT 1 AS on_commit",
            "",
            "-- only a comment",
        ] {
            assert_eq!(on_commit_delete_rows_table(sql), None, "{sql}");
        }
    }

    #[test]
    fn ocdr_truncates_long_names() {
        let long = "a".repeat(70);
        let got = on_commit_delete_rows_table(&format!(
            "create temp table {long} () on commit delete rows"
        ));
        assert_eq!(got, Some("a".repeat(63)));
    }

    #[test]
    fn ocdr_every_statement() {
        let got = on_commit_delete_rows_tables(
            "select 1; create temp table a () on commit delete rows; create temp table b (); \
             CREATE TEMP TABLE \"C\" (x int) ON COMMIT DELETE ROWS",
        );
        assert_eq!(got, vec!["a".to_string(), "C".to_string()]);
    }

    #[test]
    fn finds_set_and_set_config_names() {
        assert_eq!(
            custom_setting_names("SET myapp.Tenant = '42'"),
            vec!["myapp.tenant"]
        );
        assert_eq!(
            custom_setting_names("set session a.b to 1; select 1"),
            vec!["a.b"]
        );
        assert_eq!(
            custom_setting_names(
                "select set_config('x.y', '1', false), set_config( 'p.q','2',false)"
            ),
            vec!["p.q", "x.y"]
        );
        assert!(custom_setting_names("SET LOCAL a.b = 1").is_empty());
        assert!(custom_setting_names("SET work_mem = '4MB'").is_empty());
        assert!(custom_setting_names("select 1.5").is_empty());
        assert!(custom_setting_names("select set_config('search_path', 'a', false)").is_empty());
        assert!(
            custom_setting_names("select 1 /* set_config('a.b', '1') */, 'set_config(''c.d'''")
                .is_empty()
        );
        assert_eq!(
            custom_setting_names("select 1; SET a.b = 1; select set_config('it''s.x', '', false)"),
            vec!["a.b", "it's.x"]
        );
    }
}
