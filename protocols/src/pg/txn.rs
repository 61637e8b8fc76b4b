//! Carrying a transaction over a stop. A READ COMMITTED transaction that has only read holds
//! nothing the next server can't give back: it is reopened with the same isolation level and
//! read-only flag before the client's next statement, and the client stays in its block.
//!
//! The backend itself judges whether the transaction only read, at checkpoint, inside a
//! savepoint that the capture always rolls back to, so neither the judgement nor the capture
//! can end, abort or add to the client's transaction if the drain is called off.

/// Opens the savepoint and asks the backend what the transaction holds.
pub const FACTS_QUERY: &str = "SAVEPOINT torpor_capture; \
SELECT pg_catalog.pg_current_xact_id_if_assigned() IS NULL, \
pg_catalog.current_setting('transaction_isolation'), \
pg_catalog.current_setting('transaction_read_only'), \
pg_catalog.current_setting('transaction_deferrable'), \
(SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l \
 WHERE l.pid = pg_catalog.pg_backend_pid() AND l.locktype NOT IN ('virtualxid', 'advisory') \
 AND l.mode <> 'AccessShareLock'), \
(SELECT pg_catalog.count(*) FROM pg_catalog.pg_cursors)";

/// Undoes whatever the capture did inside the transaction (it takes transaction-level
/// advisory locks to count session-level ones) and leaves the savepoint.
pub const UNDO_QUERY: &str =
    "ROLLBACK TO SAVEPOINT torpor_capture; RELEASE SAVEPOINT torpor_capture";

/// The statement that reopens the transaction, or why it can't be carried. `row` is the
/// second result of [`FACTS_QUERY`].
pub fn judge(row: &[Option<String>]) -> Result<String, String> {
    let col = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
    if col(0) != "t" {
        return Err("open transaction that wrote".into());
    }
    let isolation = col(1);
    if isolation != "read committed" {
        return Err(format!("open transaction at isolation level {isolation}"));
    }
    if col(4) != "0" {
        return Err("open transaction holding locks beyond reads".into());
    }
    if col(5) != "0" {
        return Err("open transaction with an open cursor or portal".into());
    }
    let access = if col(2) == "on" {
        "READ ONLY"
    } else {
        "READ WRITE"
    };
    let deferrable = if col(3) == "on" {
        "DEFERRABLE"
    } else {
        "NOT DEFERRABLE"
    };
    Ok(format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED {access} {deferrable}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn a_read_committed_transaction_that_only_read_is_carried() {
        assert_eq!(
            judge(&row(&["t", "read committed", "off", "off", "0", "0"])),
            Ok("BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE NOT DEFERRABLE".into())
        );
        assert_eq!(
            judge(&row(&["t", "read committed", "on", "off", "0", "0"])),
            Ok("BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY NOT DEFERRABLE".into())
        );
    }

    #[test]
    fn anything_more_is_refused_with_its_reason() {
        for (r, why) in [
            (["f", "read committed", "off", "off", "0", "0"], "wrote"),
            (
                ["t", "repeatable read", "off", "off", "0", "0"],
                "repeatable read",
            ),
            (["t", "serializable", "on", "on", "0", "0"], "serializable"),
            (["t", "read committed", "off", "off", "1", "0"], "locks"),
            (["t", "read committed", "off", "off", "0", "2"], "cursor"),
        ] {
            let e = judge(&row(&r)).unwrap_err();
            assert!(e.starts_with("open transaction") && e.contains(why), "{e}");
        }
        assert!(judge(&[]).is_err());
    }
}
