//! Statement text as capture and replay need it: split, named, pointed at the new temp schema.

use super::lexer::{Lexer, Token, ident_name, is_kw};

/// Splits a query string into statements at top-level semicolons (the text of each, trimmed,
/// without its semicolon; empty statements dropped).
pub fn split_statements(sql: &str, backslash_strings: bool) -> Vec<&str> {
    let mut lx = Lexer::new(sql, backslash_strings);
    let mut out = Vec::new();
    let mut start = 0;
    let mut depth = 0usize;
    while let Some(t) = lx.next() {
        match t {
            Token::Open => depth += 1,
            Token::Close => depth = depth.saturating_sub(1),
            Token::Semicolon if depth == 0 => {
                let end = lx.pos() - 1;
                push_trimmed(&mut out, &sql[start..end]);
                start = lx.pos();
            }
            _ => {}
        }
    }
    push_trimmed(&mut out, &sql[start..]);
    out
}

fn push_trimmed<'a>(out: &mut Vec<&'a str>, s: &'a str) {
    let t = s.trim();
    // A statement of comments only is no statement.
    if Lexer::new(t, false).next().is_some() {
        out.push(t);
    }
}

/// Whether `fragment`, pasted into SQL, stays a piece of one statement: no semicolon outside
/// quotes and comments, parentheses balanced, and nothing (a string, a quoted name, a
/// comment) left open at its end, whether strings take backslash escapes or not. Replay
/// pastes the text the server printed for a default, a constraint or an index; a snapshot
/// whose text reaches past itself is refused rather than run.
pub fn is_contained(fragment: &str) -> bool {
    let text = format!("{fragment}\n;");
    [false, true].into_iter().all(|backslash_strings| {
        let mut lx = Lexer::new(&text, backslash_strings);
        let mut depth = 0usize;
        while let Some(t) = lx.next() {
            match t {
                Token::Open => depth += 1,
                Token::Close => match depth.checked_sub(1) {
                    Some(d) => depth = d,
                    None => return false,
                },
                Token::Semicolon => return depth == 0 && lx.pos() == text.len(),
                _ => {}
            }
        }
        false
    })
}

/// The prepared-statement name if `stmt` is `PREPARE name ...`.
pub fn prepare_name(stmt: &str) -> Option<String> {
    let mut lx = Lexer::new(stmt, false);
    if !lx.next().is_some_and(|t| is_kw(&t, "prepare")) {
        return None;
    }
    lx.next().as_ref().and_then(ident_name)
}

/// Rewrites `pg_temp_N.` (this session's temp schema, possibly quoted) to `pg_temp.` outside
/// string literals, so deparsed DDL points at whatever temp schema the new backend gets.
pub fn rewrite_temp_schema(sql: &str, temp_schema: &str) -> String {
    if temp_schema.is_empty() || !sql.contains(temp_schema) {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len());
    let mut lx = Lexer::new(sql, false);
    let mut copied = 0;
    while let Some(t) = lx.next() {
        let is_schema = match &t {
            Token::Word(w) => *w == temp_schema,
            Token::Quoted(q) => q == temp_schema,
            _ => false,
        };
        if is_schema && sql[lx.pos()..].starts_with('.') {
            out.push_str(&sql[copied..lx.token_start()]);
            out.push_str("pg_temp");
            copied = lx.pos();
        }
    }
    out.push_str(&sql[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting() {
        let s = "PREPARE a AS SELECT ';'; /* ; */ PREPARE b AS SELECT $x$;$x$, $1 -- ;\n; SELECT E'\\';' ;";
        assert_eq!(
            split_statements(s, false),
            vec![
                "PREPARE a AS SELECT ';'",
                "/* ; */ PREPARE b AS SELECT $x$;$x$, $1 -- ;",
                "SELECT E'\\';'"
            ]
        );
        // standard_conforming_strings off: backslash escapes the quote in a plain string.
        assert_eq!(split_statements("SELECT '\\';'; SELECT 2", true).len(), 2);
        assert_eq!(split_statements("SELECT '\\';'; SELECT 2", false).len(), 2);
        assert_eq!(
            split_statements("SELECT 1;;  ; -- x", false),
            vec!["SELECT 1"]
        );
    }

    #[test]
    fn prepare_names() {
        for (sql, name) in [
            ("PREPARE Foo (int) AS SELECT $1", "foo"),
            ("/* c */ prepare \"Q\" AS SELECT 1", "Q"),
        ] {
            assert_eq!(prepare_name(sql).as_deref(), Some(name), "{sql}");
        }
        assert_eq!(prepare_name("SELECT 1"), None);
    }

    #[test]
    fn temp_schema_rewrite() {
        assert_eq!(
            rewrite_temp_schema(
                "FOREIGN KEY (a) REFERENCES pg_temp_3.p(id) CHECK (x <> 'pg_temp_3.q') \"pg_temp_3\".r",
                "pg_temp_3"
            ),
            "FOREIGN KEY (a) REFERENCES pg_temp.p(id) CHECK (x <> 'pg_temp_3.q') pg_temp.r"
        );
        assert_eq!(
            rewrite_temp_schema("pg_temp_30.x", "pg_temp_3"),
            "pg_temp_30.x"
        );
        assert_eq!(rewrite_temp_schema("a.b", ""), "a.b");
    }
}
