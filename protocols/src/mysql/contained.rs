//! Whether text from a snapshot can be pasted into a replay command without reaching past
//! itself: replay refuses a snapshot whose stored text holds a second statement.

/// `text` has no `;` outside strings, quoted names and comments, and leaves none of those
/// open, whether strings take backslash escapes or not (NO_BACKSLASH_ESCAPES may be on).
/// Versioned comments (`/*!...*/`) count as code, as the server runs them.
pub fn is_contained(text: &str) -> bool {
    [true, false]
        .into_iter()
        .all(|backslash| scan(text.as_bytes(), backslash).is_some())
}

/// `text` is one SQL value: a number or a bare word (`ON`, `NULL`, `DEFAULT`), or a single
/// string literal, optionally after a character set introducer and with a COLLATE clause, as
/// `SET SESSION x = ` takes it and as capture writes it ([`quote_literal`]'s
/// `_utf8mb4 X'...' COLLATE utf8mb4_bin` for a value that isn't plain printable ASCII).
///
/// [`quote_literal`]: super::sql::quote_literal
pub fn is_value(text: &str) -> bool {
    let b = text.as_bytes();
    if !b.is_empty() && b.iter().all(is_word) {
        return true;
    }
    let quote = b.iter().position(|c| *c == b'\'' || *c == b'"');
    match quote {
        // At most an introducer and a prefix (`_utf8mb4 X`), one blank apart.
        Some(at)
            if b[..at].split(|c| *c == b' ').count() <= 2
                && b[..at].iter().all(|c| *c == b' ' || is_word(c)) =>
        {
            // The string must end where the text (or its COLLATE clause) begins, in both
            // escape modes.
            [true, false].into_iter().all(|backslash| {
                string_end(b, at, backslash).is_some_and(|end| is_collate_or_nothing(&b[end..]))
            })
        }
        _ => false,
    }
}

fn is_word(c: &u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'+')
}

/// Empty, or ` COLLATE name`.
fn is_collate_or_nothing(tail: &[u8]) -> bool {
    const COLLATE: &[u8] = b" COLLATE ";
    tail.is_empty()
        || tail
            .get(..COLLATE.len())
            .is_some_and(|k| k.eq_ignore_ascii_case(COLLATE))
            && tail.len() > COLLATE.len()
            && tail[COLLATE.len()..].iter().all(is_word)
}

/// Scans `b` as code; None at a `;` or at anything left open.
fn scan(b: &[u8], backslash: bool) -> Option<()> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b';' => return None,
            b'\'' | b'"' | b'`' => i = string_end(b, i, backslash)?,
            b'#' => i = line_end(b, i),
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                i = line_end(b, i)
            }
            b'/' if b.get(i + 1) == Some(&b'*') && !matches!(b.get(i + 2), Some(b'!' | b'M')) => {
                i = b[i + 2..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map(|p| i + 2 + p + 2)?;
            }
            _ => i += 1,
        }
    }
    Some(())
}

fn line_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|c| *c == b'\n')
        .map_or(b.len(), |p| from + p + 1)
}

/// Where the quoted string (or name) opening at `at` ends; None if it never closes.
fn string_end(b: &[u8], at: usize, backslash: bool) -> Option<usize> {
    let q = b[at];
    let mut i = at + 1;
    loop {
        match b.get(i)? {
            b'\\' if backslash && q != b'`' => i += 2,
            c if *c == q && b.get(i + 1) == Some(&q) => i += 2,
            c if *c == q => return Some(i + 1),
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_text() {
        for ok in [
            "CREATE TEMPORARY TABLE `t` (`a` int DEFAULT 'x;y') ENGINE=InnoDB",
            "INSERT INTO `s`.`t` (`a`) VALUES (1, _utf8mb4 X'C3A9')",
            "'SELECT 1 -- c'",
            "SELECT 1 /* ; */",
            "`we;ird` -- trailing ;",
        ] {
            assert!(is_contained(ok), "{ok}");
        }
        for bad in [
            "SELECT 1; DROP TABLE t",
            "'open",
            "/* open",
            "`open",
            // Closed only where backslashes escape: the rest runs without them.
            r"'\'; DROP TABLE t; -- '",
            "/*! SELECT 1; DROP TABLE t */",
        ] {
            assert!(!is_contained(bad), "{bad}");
        }
    }

    #[test]
    fn values() {
        for ok in [
            "4096",
            "-1.5e3",
            "ON",
            "NULL",
            "'STRICT_TRANS_TABLES'",
            "'it''s'",
            "_utf8mb4'x'",
        ] {
            assert!(is_value(ok), "{ok}");
        }
        for bad in [
            "",
            "'a' , b = 1",
            "1; DROP TABLE t",
            "(SELECT 1)",
            r"'a\'",
            "'a' 'b'",
            "a b 'c'",
            "'a' COLLATE",
            "'a' COLLATE x y",
            "'a' COLLATE x; DROP TABLE t",
            "_utf8mb4 X'41' COLLATE utf8mb4_bin; DROP TABLE t",
        ] {
            assert!(!is_value(bad), "{bad}");
        }
    }

    /// Capture writes a value that isn't plain printable ASCII (a backslash, an accent) as a
    /// hex literal with an introducer and a collation; replay took only the bare forms and
    /// refused the snapshot. Found by the sql_scan fuzz target.
    #[test]
    fn every_quoted_literal_is_a_value() {
        use crate::mysql::sql::quote_literal;
        for s in [
            "",
            "plain",
            "it's",
            r"a\b",
            "é",
            "\n",
            "x'; DROP TABLE t; -- ",
            "`;\"",
        ] {
            let literal = quote_literal(s);
            assert!(is_value(&literal), "{literal}");
            assert!(is_contained(&literal), "{literal}");
        }
        assert!(is_value("_utf8mb4 X'C3A9' COLLATE utf8mb4_bin"));
        assert!(is_value("_utf8mb4 'x'"));
    }
}
