//! Whether a statement only reads: then it cannot change what the session holds (settings,
//! prepared statements, temp tables, sequences, locks, LISTEN), and a session that ran only such
//! statements since its last snapshot can move to another connection without a capture.

use super::lexer::{Lexer, Token, ident_name, is_kw};

/// Functions a read may call: each reads and changes nothing a session holds. Anything else
/// called (a user function, nextval, set_config, pg_advisory_lock, random) counts as a change.
const PURE: &[&str] = &[
    "abs",
    "array_agg",
    "avg",
    "bool_and",
    "bool_or",
    "btrim",
    "ceil",
    "ceiling",
    "char_length",
    "coalesce",
    "concat",
    "count",
    "current_setting",
    "date_trunc",
    "floor",
    "greatest",
    "json_build_object",
    "jsonb_build_object",
    "least",
    "length",
    "lower",
    "ltrim",
    "max",
    "min",
    "now",
    "nullif",
    "pg_backend_pid",
    "position",
    "replace",
    "round",
    "rtrim",
    "string_agg",
    "substr",
    "substring",
    "sum",
    "to_char",
    "trim",
    "trunc",
    "upper",
    "version",
];

/// Words after which a parenthesis groups (a subquery, a list, an expression) and calls
/// nothing; what is inside is looked at the same way.
const GROUPING: &[&str] = &[
    "all",
    "and",
    "any",
    "as",
    "between",
    "by",
    "case",
    "cast",
    "distinct",
    "else",
    "except",
    "exists",
    "filter",
    "from",
    "having",
    "ilike",
    "in",
    "intersect",
    "is",
    "join",
    "like",
    "limit",
    "not",
    "offset",
    "on",
    "or",
    "over",
    "partition",
    "row",
    "select",
    "some",
    "then",
    "union",
    "using",
    "values",
    "when",
    "where",
];

/// One SELECT, VALUES, TABLE or SHOW statement that calls only [`PURE`] functions and has no
/// INTO. A view whose definition has side effects is not looked into.
pub fn plainly_reads(sql: &str) -> bool {
    let mut lx = Lexer::new(sql, false);
    let Some(first) = lx.next() else {
        return true;
    };
    if !["select", "values", "table", "show"]
        .iter()
        .any(|k| is_kw(&first, k))
    {
        return false;
    }
    rest_reads(lx, Some(first))
}

/// `EXECUTE name [(args)]` of a statement `is_read` names, with arguments that call only
/// [`PURE`] functions.
pub fn executes_read(sql: &str, is_read: impl Fn(&str) -> bool) -> bool {
    let mut lx = Lexer::new(sql, false);
    if !lx.next().is_some_and(|t| is_kw(&t, "execute")) {
        return false;
    }
    let Some(name) = lx.next() else {
        return false;
    };
    if !ident_name(&name).is_some_and(|n| is_read(&n)) {
        return false;
    }
    // The argument list's parenthesis follows the name: not a call.
    rest_reads(lx, None)
}

/// `PREPARE name [(types)] AS <a statement that plainly reads>`: the name.
pub fn prepares_read(sql: &str) -> Option<String> {
    let mut lx = Lexer::new(sql, false);
    if !lx.next().is_some_and(|t| is_kw(&t, "prepare")) {
        return None;
    }
    let name = lx.next().as_ref().and_then(ident_name)?;
    let mut depth = 0usize;
    loop {
        match lx.next()? {
            Token::Open => depth += 1,
            Token::Close => depth = depth.checked_sub(1)?,
            ref t if depth == 0 && is_kw(t, "as") => break,
            Token::Semicolon => return None,
            _ => {}
        }
    }
    plainly_reads(sql.get(lx.pos()..)?).then_some(name)
}

/// The tokens after the first of one statement (`prev`): no INTO, no second statement, and a
/// parenthesis only where it groups or calls a [`PURE`] function.
fn rest_reads<'a>(lx: Lexer<'a>, mut prev: Option<Token<'a>>) -> bool {
    let mut before_prev: Option<Token<'a>> = None;
    let mut ended = false;
    for tok in lx {
        match &tok {
            _ if ended => return false,
            Token::Semicolon => ended = true,
            t if is_kw(t, "into") => return false,
            Token::Open if !opens_harmlessly(prev.as_ref(), before_prev.as_ref()) => return false,
            _ => {}
        }
        before_prev = prev.replace(tok);
    }
    true
}

fn opens_harmlessly(prev: Option<&Token<'_>>, before: Option<&Token<'_>>) -> bool {
    match prev {
        Some(Token::Word(w)) => {
            let called = |list: &[&str]| list.iter().any(|k| w.eq_ignore_ascii_case(k));
            // `schema.f(` may be anyone's function.
            (called(PURE) && !matches!(before, Some(Token::Dot))) || called(GROUPING)
        }
        // A quoted name before a parenthesis is a call of whatever it names.
        Some(Token::Quoted(_)) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_what_is_not_one() {
        for sql in [
            "SELECT 1",
            "select a from t where b = 2;",
            "SHOW application_name",
            "SELECT count(*) FROM t",
            "SELECT count(*), max(x) FROM t WHERE (a = 1 OR b IN (1, 2))",
            "SELECT x FROM (SELECT y FROM t) s",
            "SELECT current_setting('application_name')",
            "SELECT CAST(1 AS int) + coalesce(NULL, 2)",
            "VALUES (1), (2)",
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM t)",
        ] {
            assert!(plainly_reads(sql), "{sql}");
        }
        for sql in [
            "SELECT nextval('s')",
            "SELECT set_config('a.b', '1', false)",
            "SELECT pg_advisory_lock(1)",
            "SELECT count(nextval('s'))",
            "SELECT x FROM (SELECT set_config('a.b', '1', false)) s",
            "SELECT public.count(x) FROM t",
            "SELECT \"count\"(x) FROM t",
            "SELECT my_func()",
            "SELECT 1 INTO t",
            "SELECT 1; SET a = 1",
            "SELECT 1::numeric(10, 2)",
            "SET application_name = 'x'",
            "INSERT INTO t VALUES (1)",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "SELECT random()",
        ] {
            assert!(!plainly_reads(sql), "{sql}");
        }
    }

    #[test]
    fn plain_reads() {
        assert!(plainly_reads(
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        ));
        assert!(plainly_reads("select 1;"));
        assert!(plainly_reads("SHOW search_path"));
        assert!(plainly_reads("select ';(' as x"));
        assert!(plainly_reads(""));
        assert!(!plainly_reads("select nextval('s')"));
        assert!(!plainly_reads("select pg_advisory_lock(1)"));
        assert!(!plainly_reads("SELECT * INTO TEMP t FROM x"));
        assert!(!plainly_reads("select 1; set a.b = 1"));
        assert!(!plainly_reads("SET search_path = x"));
        assert!(!plainly_reads("insert into t values (1)"));
        assert!(!plainly_reads("/* hi */ prepare p as select 1"));
        assert!(!plainly_reads("with x as (select 1) select * from x"));
    }

    #[test]
    fn executes_and_prepares_of_reads() {
        let known = |n: &str| n == "q";
        assert!(executes_read("EXECUTE q", known));
        assert!(executes_read("execute q(1, 'a')", known));
        assert!(executes_read("EXECUTE q(count(1))", known));
        assert!(!executes_read("EXECUTE q(nextval('s'))", known));
        assert!(!executes_read("EXECUTE other(1)", known));
        assert!(!executes_read("EXECUTE q; SET a = 1", known));
        assert!(!executes_read("SELECT 1", known));
        assert_eq!(
            prepares_read("PREPARE q(int) AS SELECT $1 + 1").as_deref(),
            Some("q")
        );
        assert_eq!(
            prepares_read("prepare \"Q\" as select count(*) from t").as_deref(),
            Some("Q")
        );
        assert_eq!(prepares_read("PREPARE q AS SELECT nextval('s')"), None);
        assert_eq!(prepares_read("PREPARE q AS INSERT INTO t VALUES (1)"), None);
        assert_eq!(prepares_read("PREPARE q(int AS SELECT 1"), None);
    }
}
