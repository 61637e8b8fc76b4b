//! What a statement does to the transaction it runs in. With autocommit off, MariaDB reports
//! an open transaction after any statement, even a plain SELECT; only one that wrote something
//! (or that the client opened on purpose) holds state a new backend couldn't have.

use super::sql::statements;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEffect {
    /// Reads only (or ends a transaction): nothing uncommitted comes from it.
    Reads,
    /// May have changed data or taken row locks: the open transaction must not be dropped.
    Writes,
    /// BEGIN, START TRANSACTION, XA START: the client opened the transaction on purpose.
    Begins,
}

/// Classifies a query string; anything not recognised counts as a write.
pub fn effect(sql: &str) -> TxnEffect {
    let b = sql.as_bytes();
    let multi = b.iter().position(|&c| c == b';').is_some_and(|i| {
        b[i + 1..]
            .iter()
            .any(|c| !c.is_ascii_whitespace() && *c != b';')
    });
    let start = b.iter().position(|c| !c.is_ascii_whitespace());
    if !multi && let Some(s) = start.filter(|&s| b[s].is_ascii_alphabetic()) {
        let end = b[s..]
            .iter()
            .position(|c| !c.is_ascii_alphanumeric() && *c != b'_')
            .map_or(b.len(), |e| s + e);
        let second = sql[end..].split_ascii_whitespace().next().unwrap_or("");
        return classify(&sql[s..end], second, sql);
    }
    // Comments first, or several statements: go through the lexer.
    let mut result = TxnEffect::Reads;
    for stmt in statements(sql) {
        let first = stmt.first().and_then(|t| t.word(sql)).unwrap_or("");
        let second = stmt.get(1).and_then(|t| t.word(sql)).unwrap_or("");
        let text = match (stmt.first(), stmt.last()) {
            (Some(a), Some(z)) => sql.get(a.start..z.end).unwrap_or(""),
            _ => "",
        };
        match classify(first, second, text) {
            TxnEffect::Reads => {}
            TxnEffect::Begins => result = TxnEffect::Begins,
            TxnEffect::Writes if result == TxnEffect::Reads => result = TxnEffect::Writes,
            TxnEffect::Writes => {}
        }
    }
    result
}

fn classify(first: &str, second: &str, text: &str) -> TxnEffect {
    let is = |k: &str| first.eq_ignore_ascii_case(k);
    if is("BEGIN") && !second.eq_ignore_ascii_case("NOT") || is("START") || is("XA") {
        return TxnEffect::Begins;
    }
    if is("SELECT") || is("WITH") || is("VALUES") || is("TABLE") {
        return if locks_rows(text) {
            TxnEffect::Writes
        } else {
            TxnEffect::Reads
        };
    }
    let reads = [
        "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "HELP", "USE", "SET", "DO", "COMMIT", "ROLLBACK",
    ];
    if reads.iter().any(|k| is(k)) {
        TxnEffect::Reads
    } else {
        TxnEffect::Writes
    }
}

/// `FOR UPDATE`, `FOR SHARE`, `LOCK IN SHARE MODE`: a SELECT that takes row locks.
fn locks_rows(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    upper.contains("FOR UPDATE")
        || upper.contains("LOCK IN SHARE MODE")
        || upper.contains("FOR SHARE")
}

/// One SELECT, SHOW, DESCRIBE or EXPLAIN with no parentheses, no user variable, no INTO and no NEXT
/// (`NEXT VALUE FOR seq`): it calls no function, touches no variable, creates nothing, so it
/// cannot change what the session holds. Anything else counts as a change. Looks at bytes only:
/// a parenthesis inside a string literal also counts, which errs on the safe side.
pub fn plainly_reads(sql: &str) -> bool {
    let b = sql.trim_start().as_bytes();
    let word_end = b
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(b.len());
    let first = &b[..word_end];
    if !["SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"]
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k.as_bytes()))
    {
        return false;
    }
    // `@@x` reads a system variable; a lone `@` names a user variable, which may be set.
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'(' => return false,
            b'@' if b.get(i + 1) == Some(&b'@') => i += 1,
            b'@' => return false,
            _ => {}
        }
        i += 1;
    }
    if let Some(i) = b.iter().position(|&c| c == b';')
        && b[i + 1..].iter().any(|c| !c.is_ascii_whitespace())
    {
        return false;
    }
    !["INTO", "NEXT"].iter().any(|w| {
        b.windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::{TxnEffect::*, effect, plainly_reads};

    #[test]
    fn plain_reads() {
        for sql in [
            "SELECT c FROM sbtest1 WHERE id=?",
            "  show tables;",
            "SELECT @@max_allowed_packet, @@wait_timeout",
        ] {
            assert!(plainly_reads(sql), "{sql}");
        }
        for sql in [
            "SELECT SUM(k) FROM t",
            "select @x",
            "SELECT @@x, @y",
            "SELECT a INTO @v FROM t",
            "SELECT NEXT VALUE FOR s",
            "SELECT 1; SET @a = 1",
            "SET NAMES latin1",
            "/* x */ SELECT 1",
        ] {
            assert!(!plainly_reads(sql), "{sql}");
        }
    }

    #[test]
    fn classifies() {
        assert_eq!(effect("select * from t"), Reads);
        assert_eq!(effect("  SHOW TABLES"), Reads);
        assert_eq!(effect("SELECT * FROM t FOR UPDATE"), Writes);
        assert_eq!(effect("select 1 lock in share mode"), Writes);
        assert_eq!(effect("INSERT INTO t VALUES (1)"), Writes);
        assert_eq!(effect("update t set a = 1"), Writes);
        assert_eq!(effect("BEGIN"), Begins);
        assert_eq!(effect("start transaction read only"), Begins);
        assert_eq!(effect("BEGIN NOT ATOMIC SELECT 1; END"), Writes);
        assert_eq!(effect("SELECT 1; INSERT INTO t VALUES (1)"), Writes);
        assert_eq!(effect("SELECT 1; SELECT 2;"), Reads);
        assert_eq!(effect("/* hi */ SELECT 1"), Reads);
        assert_eq!(effect("/* hi */ DELETE FROM t"), Writes);
        assert_eq!(effect("SELECT 1; BEGIN"), Begins);
        assert_eq!(effect("CALL p()"), Writes);
        assert_eq!(effect(""), Reads);
    }
}
