//! Whether a statement only reads: then it cannot change what the session holds (variables,
//! user variables, prepared statements, temp tables, named locks), and a session that ran only
//! such statements since its last snapshot can move to another connection without a capture.
//! Every doubt answers "no": a read taken for a change costs a capture, a change taken for a
//! read would lose state.

/// Functions a read may call: each reads and changes nothing a session holds. Anything else
/// called (a stored function, GET_LOCK, NEXTVAL, LAST_INSERT_ID(x), RAND, SLEEP) is a change.
const PURE: &[&str] = &[
    "abs",
    "avg",
    "ceil",
    "ceiling",
    "char_length",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "curdate",
    "current_date",
    "current_timestamp",
    "current_user",
    "database",
    "date",
    "date_format",
    "floor",
    "greatest",
    "group_concat",
    "hex",
    "if",
    "ifnull",
    "json_extract",
    "json_object",
    "lcase",
    "least",
    "left",
    "length",
    "lower",
    "ltrim",
    "max",
    "md5",
    "min",
    "now",
    "nullif",
    "replace",
    "right",
    "round",
    "rtrim",
    "schema",
    "substr",
    "substring",
    "sum",
    "trim",
    "truncate",
    "ucase",
    "unix_timestamp",
    "upper",
    "user",
    "version",
];

/// Words after which a parenthesis groups (a subquery, a list, an expression) and calls
/// nothing; what is inside is looked at the same way.
const GROUPING: &[&str] = &[
    "all", "and", "any", "as", "between", "by", "case", "div", "else", "exists", "from", "having",
    "in", "is", "join", "like", "limit", "mod", "not", "on", "or", "over", "select", "some",
    "then", "union", "using", "when", "where", "xor",
];

/// What may stand right before a grouping parenthesis, besides those words.
const OPERATORS: &[u8] = b"(,=<>+-*/%!|&^~";

/// A single SELECT, SHOW, DESCRIBE or EXPLAIN that calls only [`PURE`] functions, assigns no
/// user variable and writes nowhere (no INTO, no NEXT VALUE).
pub fn plainly_reads(sql: &str) -> bool {
    let b = sql.trim_start().as_bytes();
    let first = &b[..b
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(b.len())];
    if !["SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"]
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k.as_bytes()))
    {
        return false;
    }
    // A comment or a quoted name could hide a call from the scan of parentheses below.
    if ["/*", "--", "#", "`", ":="]
        .iter()
        .any(|w| contains(b, w.as_bytes()))
    {
        return false;
    }
    if let Some(i) = b.iter().position(|&c| c == b';')
        && b[i + 1..].iter().any(|c| !c.is_ascii_whitespace())
    {
        return false;
    }
    if ["INTO", "NEXT"].iter().any(|w| contains(b, w.as_bytes())) {
        return false;
    }
    b.iter()
        .enumerate()
        .filter(|&(_, &c)| c == b'(')
        .all(|(i, _)| groups_or_calls_pure(&b[..i]))
}

/// `before` is the text up to a '('.
fn groups_or_calls_pure(before: &[u8]) -> bool {
    let end = before.trim_ascii_end().len();
    let Some(&last) = end.checked_sub(1).and_then(|i| before.get(i)) else {
        return true;
    };
    if OPERATORS.contains(&last) {
        return true;
    }
    if !is_word(last) {
        return false;
    }
    let start = before[..end]
        .iter()
        .rposition(|&c| !is_word(c))
        .map_or(0, |i| i + 1);
    // `db.sum(...)` is a stored function, whatever its name.
    if start > 0 && before[start - 1] == b'.' {
        return false;
    }
    let Ok(word) = std::str::from_utf8(&before[start..end]) else {
        return false;
    };
    let known = |list: &[&str]| list.iter().any(|w| w.eq_ignore_ascii_case(word));
    known(PURE) || known(GROUPING)
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|x| x.eq_ignore_ascii_case(needle))
}

/// `EXECUTE name [USING @a, 1]`: the name of the SQL prepared statement it runs, when its
/// arguments call nothing and assign nothing.
pub fn executed(sql: &str) -> Option<&str> {
    let s = sql.trim();
    let s = s.strip_suffix(';').unwrap_or(s).trim_end();
    let (word, rest) = s.split_once(|c: char| c.is_ascii_whitespace())?;
    if !word.eq_ignore_ascii_case("EXECUTE") {
        return None;
    }
    let rest = rest.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii() && is_word(c as u8)))
        .unwrap_or(rest.len());
    let (name, args) = rest.split_at(end);
    if name.is_empty() {
        return None;
    }
    let args = args.trim_start();
    if args.is_empty() {
        return Some(name);
    }
    let (using, values) = args.split_at_checked(5)?;
    let plain = using.eq_ignore_ascii_case("USING")
        && values.starts_with(|c: char| c.is_ascii_whitespace())
        && !["(", ";", ":=", "/*", "--", "#", "`"]
            .iter()
            .any(|w| values.contains(w));
    plain.then_some(name)
}

/// The text of `PREPARE name FROM '...'` as written (quotes included), when it plainly reads.
/// A quote inside means escapes this check does not undo: no.
pub fn literal_reads(literal: &str) -> bool {
    let l = literal.trim();
    let Some(q) = l.chars().next().filter(|c| *c == '\'' || *c == '"') else {
        return false;
    };
    l.len() >= 2
        && l.ends_with(q)
        && !l[1..l.len() - 1].contains(q)
        && !l.contains('\\')
        && plainly_reads(&l[1..l.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::{executed, literal_reads, plainly_reads};

    #[test]
    fn reads() {
        for sql in [
            "SELECT c FROM sbtest1 WHERE id=?",
            "  show tables;",
            "SELECT @@max_allowed_packet, @@wait_timeout",
            "SELECT SUM(k) FROM t",
            "select @x",
            "SELECT @@x, @y",
            "SELECT count(*) FROM t7",
            "SELECT c FROM t WHERE id IN (1, 2) AND (k > 3 OR k < 1)",
            "SELECT * FROM (SELECT a FROM t) AS d WHERE EXISTS (SELECT 1)",
            "SELECT IFNULL(MAX(a), 0) + (2 * 3) FROM t",
            "SELECT 1",
        ] {
            assert!(plainly_reads(sql), "{sql}");
        }
    }

    #[test]
    fn changes() {
        for sql in [
            "SELECT a INTO @v FROM t",
            "SELECT @v := 1",
            "SELECT NEXT VALUE FOR s",
            "SELECT nextval(s)",
            "SELECT GET_LOCK('a', 1)",
            "select release_lock ('a')",
            "SELECT LAST_INSERT_ID(5)",
            "SELECT f(1)",
            "SELECT db.count(1)",
            "SELECT `count`(1)",
            "SELECT f/**/(1)",
            "SELECT f -- ,\n(1)",
            "SELECT f # ,\n(1)",
            "SELECT 1; SET @a = 1",
            "SET NAMES latin1",
            "/* x */ SELECT 1",
            "DO GET_LOCK('a', 1)",
            "SELECT 'a(' ",
            "",
        ] {
            assert!(!plainly_reads(sql), "{sql}");
        }
    }

    #[test]
    fn executes() {
        assert_eq!(executed("EXECUTE q"), Some("q"));
        assert_eq!(executed(" execute q USING 1;"), Some("q"));
        assert_eq!(executed("EXECUTE q USING @a, 'x', 2"), Some("q"));
        assert_eq!(executed("EXECUTE q USING f(1)"), None);
        assert_eq!(executed("EXECUTE q USING @a := 1"), None);
        assert_eq!(executed("EXECUTE IMMEDIATE 'SELECT 1'"), None);
        assert_eq!(executed("EXECUTE `q`"), None);
        assert_eq!(executed("EXECUTE q; SET @a = 1"), None);
        assert_eq!(executed("EXECUTEq"), None);
        assert_eq!(executed("SELECT 1"), None);
    }

    #[test]
    fn literals() {
        assert!(literal_reads("'SELECT ? + 1'"));
        assert!(literal_reads("\"SELECT count(*) FROM t\""));
        assert!(!literal_reads("'SELECT GET_LOCK(?, 1)'"));
        assert!(!literal_reads("'SELECT ''a'''"));
        assert!(!literal_reads("'SELECT \\'a\\''"));
        assert!(!literal_reads("_utf8mb4'SELECT 1'"));
        assert!(!literal_reads("'"));
    }
}
