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

#[cfg(test)]
mod tests {
    use super::{TxnEffect::*, effect};

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
