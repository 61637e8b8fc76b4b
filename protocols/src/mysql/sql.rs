//! Cheap sniffing of MySQL/MariaDB query text for the session state the server cannot be asked
//! about: user variable names, temp tables created, SQL PREPAREs, GET_LOCK names, LOCK TABLES.
//!
//! Not a parser: a small lexer that knows string literals, quoted identifiers, comments
//! (`/*! ... */` executable comments are read as code) and `;` statement boundaries, and a few
//! keyword patterns at the start of each statement. Most queries never reach the lexer:
//! [`worth_scanning`] rejects them with a few byte scans.

/// What one statement (or part of it) tells about the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `@name` was used (read or written).
    UserVar(String),
    /// `CREATE [OR REPLACE] TEMPORARY TABLE|SEQUENCE [IF NOT EXISTS] [db.]name`.
    TempTable {
        schema: Option<String>,
        name: String,
    },
    /// `ALTER TABLE a RENAME [TO|AS] b` / `RENAME TABLE a TO b`: b is a temp table if a was.
    Rename {
        from: (Option<String>, String),
        to: (Option<String>, String),
    },
    /// `PREPARE name FROM ...`.
    Prepare { name: String, source: PrepareSource },
    /// `DEALLOCATE PREPARE name` / `DROP PREPARE name`.
    Deallocate(String),
    /// `GET_LOCK('literal', ...)`.
    GetLock(String),
    /// `LOCK TABLE(S) ...`, `FLUSH TABLES ... WITH READ LOCK`.
    LockTables,
    /// `UNLOCK TABLE(S)`.
    UnlockTables,
    /// `BEGIN` / `START TRANSACTION`: releases LOCK TABLES.
    BeginTransaction,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PrepareSource {
    /// The statement's text after FROM, verbatim (a string literal, maybe with an introducer):
    /// replayed as is, under the session's restored sql_mode and character_set_client.
    Literal(String),
    /// `FROM @var`: the variable's value is read at capture (best effort: it may have changed
    /// since the PREPARE).
    Var(String),
}

impl Default for PrepareSource {
    fn default() -> Self {
        PrepareSource::Literal(String::new())
    }
}

/// First keywords whose statements may carry an effect without an `@` in the text.
const KEYWORDS: &[&[u8]] = &[
    b"ALTER",
    b"BEGIN",
    b"CREATE",
    b"DEALLOCATE",
    b"DROP",
    b"EXECUTE",
    b"FLUSH",
    b"LOCK",
    b"PREPARE",
    b"RENAME",
    b"SET",
    b"START",
    b"UNLOCK",
];

/// The hot-path filter: false means the query cannot have any [`Effect`]. Costs a scan for
/// `@`, `;` and `get_lock`, and a look at the first word; allocates nothing.
pub fn worth_scanning(sql: &str) -> bool {
    let b = sql.as_bytes();
    if b.contains(&b'@') || contains_get_lock(b) {
        return true;
    }
    // A `;` followed by more than blanks: a multi-statement string, whose later statements
    // the first-word check below does not see.
    if let Some(i) = b.iter().position(|&c| c == b';')
        && b[i + 1..]
            .iter()
            .any(|c| !c.is_ascii_whitespace() && *c != b';')
    {
        return true;
    }
    let start = match b.iter().position(|c| !c.is_ascii_whitespace()) {
        Some(s) => s,
        None => return false,
    };
    let first = b[start];
    if !first.is_ascii_alphabetic() {
        // Comments, parentheses: let the lexer sort it out.
        return !first.is_ascii_digit();
    }
    let end = b[start..]
        .iter()
        .position(|c| !c.is_ascii_alphanumeric() && *c != b'_')
        .map_or(b.len(), |e| start + e);
    let word = &b[start..end];
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

fn contains_get_lock(b: &[u8]) -> bool {
    const PAT: &[u8] = b"get_lock";
    b.windows(PAT.len()).any(|w| w.eq_ignore_ascii_case(PAT))
}

/// All effects of a query string, in text order (multi-statement strings included).
pub fn sniff(sql: &str) -> Vec<Effect> {
    let mut out = Vec::new();
    if !worth_scanning(sql) {
        return out;
    }
    for stmt in statements(sql) {
        statement_effects(sql, &stmt, &mut out);
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Unquoted word (keyword or identifier).
    Word,
    /// `` `ident` ``, value unescaped.
    Quoted(String),
    /// '...' or "..." string literal, value unescaped (backslash escapes assumed on).
    Str(String),
    /// `@name`, `@'name'`, `` @`name` ``.
    UserVar(String),
    /// `@@...` system variable.
    SysVar,
    /// Any other single byte (punctuation, operators); numbers are Words.
    Punct(u8),
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    /// Byte range in the query text.
    pub start: usize,
    pub end: usize,
}

impl Token {
    pub(crate) fn word<'a>(&self, sql: &'a str) -> Option<&'a str> {
        match self.tok {
            Tok::Word => sql.get(self.start..self.end),
            _ => None,
        }
    }

    pub(crate) fn is_kw(&self, sql: &str, kw: &str) -> bool {
        self.word(sql).is_some_and(|w| w.eq_ignore_ascii_case(kw))
    }

    /// An identifier: a bare word or a backquoted name.
    fn ident(&self, sql: &str) -> Option<String> {
        match &self.tok {
            Tok::Word => self.word(sql).map(str::to_string),
            Tok::Quoted(s) => Some(s.clone()),
            _ => None,
        }
    }
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Splits the text into statements of tokens. `;` inside literals and comments does not split.
pub(crate) fn statements(sql: &str) -> Vec<Vec<Token>> {
    lex(sql.as_bytes(), true)
}

/// [`statements`] over bytes in any ASCII-compatible character set. `backslash`: strings take
/// backslash escapes (false under NO_BACKSLASH_ESCAPES, where `'a\'` is a whole string).
pub(crate) fn lex(b: &[u8], backslash: bool) -> Vec<Vec<Token>> {
    let mut out = Vec::new();
    let mut cur: Vec<Token> = Vec::new();
    let mut i = 0;
    let mut in_exec_comment = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Comments.
        if c == b'#' || (c == b'-' && b.get(i + 1) == Some(&b'-') && dash_comment(b, i + 2)) {
            i = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p + 1);
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let exec = b.get(i + 2) == Some(&b'!')
                || (b.get(i + 2) == Some(&b'M') && b.get(i + 3) == Some(&b'!'));
            if exec && !in_exec_comment {
                // `/*!50100 ...` or `/*M!100100 ...`: skip the marker and version, read on.
                i += if b[i + 2] == b'M' { 4 } else { 3 };
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                in_exec_comment = true;
                continue;
            }
            i = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2);
            continue;
        }
        if in_exec_comment && c == b'*' && b.get(i + 1) == Some(&b'/') {
            in_exec_comment = false;
            i += 2;
            continue;
        }
        let start = i;
        let tok = match c {
            b'\'' | b'"' => {
                let (value, end) = string_literal(b, i, backslash);
                i = end;
                Tok::Str(value)
            }
            b'`' => {
                let (value, end) = backquoted(b, i);
                i = end;
                Tok::Quoted(value)
            }
            b'@' => {
                let prev = start.checked_sub(1).map(|p| b[p]);
                if b.get(i + 1) == Some(&b'@') {
                    i += 2;
                    while i < b.len() && (is_ident_byte(b[i]) || b[i] == b'.') {
                        i += 1;
                    }
                    Tok::SysVar
                } else {
                    let (name, end) = user_var(b, i + 1, backslash);
                    i = end;
                    // `'user'@'host'` / `user@host` in account names is not a variable.
                    let account = prev
                        .is_some_and(|p| is_ident_byte(p) || p == b'\'' || p == b'"' || p == b'`');
                    match name {
                        Some(n) if !account => Tok::UserVar(n),
                        _ => Tok::Punct(b'@'),
                    }
                }
            }
            b';' => {
                i += 1;
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                continue;
            }
            _ if is_ident_byte(c) => {
                while i < b.len() && is_ident_byte(b[i]) {
                    i += 1;
                }
                Tok::Word
            }
            _ => {
                i += 1;
                Tok::Punct(c)
            }
        };
        cur.push(Token { tok, start, end: i });
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `--` starts a comment only when followed by whitespace, a control character or the end.
fn dash_comment(b: &[u8], i: usize) -> bool {
    b.get(i)
        .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control())
}

fn find(b: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|p| from + p)
}

/// A '...' or "..." literal starting at `i`: (unescaped value, index after it).
fn string_literal(b: &[u8], i: usize, backslash: bool) -> (String, usize) {
    let q = b[i];
    let mut v = Vec::new();
    let mut j = i + 1;
    while j < b.len() {
        let c = b[j];
        if c == b'\\' && backslash && j + 1 < b.len() {
            let e = b[j + 1];
            match e {
                b'n' => v.push(b'\n'),
                b't' => v.push(b'\t'),
                b'r' => v.push(b'\r'),
                b'0' => v.push(0),
                b'b' => v.push(8),
                b'Z' => v.push(26),
                b'%' | b'_' => v.extend_from_slice(&[b'\\', e]),
                _ => v.push(e),
            }
            j += 2;
        } else if c == q {
            if b.get(j + 1) == Some(&q) {
                v.push(q);
                j += 2;
            } else {
                return (String::from_utf8_lossy(&v).into_owned(), j + 1);
            }
        } else {
            v.push(c);
            j += 1;
        }
    }
    (String::from_utf8_lossy(&v).into_owned(), b.len())
}

fn backquoted(b: &[u8], i: usize) -> (String, usize) {
    let mut v = Vec::new();
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == b'`' {
            if b.get(j + 1) == Some(&b'`') {
                v.push(b'`');
                j += 2;
                continue;
            }
            return (String::from_utf8_lossy(&v).into_owned(), j + 1);
        }
        v.push(b[j]);
        j += 1;
    }
    (String::from_utf8_lossy(&v).into_owned(), b.len())
}

/// The name after `@` at `i`: bare (`[A-Za-z0-9_.$]`), or quoted with ` ' or ".
fn user_var(b: &[u8], i: usize, backslash: bool) -> (Option<String>, usize) {
    match b.get(i) {
        Some(b'`') => {
            let (n, e) = backquoted(b, i);
            (Some(n), e)
        }
        Some(b'\'') | Some(b'"') => {
            let (n, e) = string_literal(b, i, backslash);
            (Some(n), e)
        }
        _ => {
            let mut j = i;
            while j < b.len() && (is_ident_byte(b[j]) || b[j] == b'.') {
                j += 1;
            }
            if j == i {
                (None, i)
            } else {
                (Some(String::from_utf8_lossy(&b[i..j]).into_owned()), j)
            }
        }
    }
}

/// `[db.]name` at `toks[i..]`: ((schema, name), tokens used).
fn qualified(sql: &str, toks: &[Token], i: usize) -> Option<((Option<String>, String), usize)> {
    let first = toks.get(i)?.ident(sql)?;
    if let (Some(dot), Some(second)) = (toks.get(i + 1), toks.get(i + 2))
        && dot.tok == Tok::Punct(b'.')
        && let Some(name) = second.ident(sql)
    {
        return Some(((Some(first), name), 3));
    }
    // `db.name` lexes as one word when unquoted.
    if matches!(toks[i].tok, Tok::Word)
        && let Some((db, name)) = first.split_once('.')
        && !db.is_empty()
        && !name.is_empty()
    {
        return Some(((Some(db.to_string()), name.to_string()), 1));
    }
    Some(((None, first), 1))
}

fn statement_effects(sql: &str, toks: &[Token], out: &mut Vec<Effect>) {
    for (k, t) in toks.iter().enumerate() {
        match &t.tok {
            Tok::UserVar(n) => out.push(Effect::UserVar(n.clone())),
            Tok::Word if t.is_kw(sql, "get_lock") => {
                if let (Some(p), Some(arg)) = (toks.get(k + 1), toks.get(k + 2))
                    && p.tok == Tok::Punct(b'(')
                    && let Tok::Str(name) = &arg.tok
                {
                    out.push(Effect::GetLock(name.clone()));
                }
            }
            _ => {}
        }
    }
    let kw = |i: usize, w: &str| toks.get(i).is_some_and(|t| t.is_kw(sql, w));
    let Some(first) = toks.first() else { return };
    let Some(word) = first.word(sql) else { return };
    match word.to_ascii_uppercase().as_str() {
        "CREATE" => {
            let mut i = 1;
            if kw(i, "OR") && kw(i + 1, "REPLACE") {
                i += 2;
            }
            // A temporary sequence is a temp table with SEQUENCE=1 for SHOW CREATE TABLE.
            if !(kw(i, "TEMPORARY") && (kw(i + 1, "TABLE") || kw(i + 1, "SEQUENCE"))) {
                return;
            }
            i += 2;
            if kw(i, "IF") && kw(i + 1, "NOT") && kw(i + 2, "EXISTS") {
                i += 3;
            }
            if let Some(((schema, name), _)) = qualified(sql, toks, i) {
                out.push(Effect::TempTable { schema, name });
            }
        }
        "PREPARE" => {
            let Some(name) = toks.get(1).and_then(|t| t.ident(sql)) else {
                return;
            };
            if !kw(2, "FROM") {
                return;
            }
            let Some(src) = toks.get(3) else { return };
            let source = match &src.tok {
                Tok::UserVar(v) => PrepareSource::Var(v.clone()),
                _ => {
                    let end = toks.last().map_or(src.end, |t| t.end);
                    match sql.get(src.start..end) {
                        Some(text) => PrepareSource::Literal(text.to_string()),
                        None => return,
                    }
                }
            };
            out.push(Effect::Prepare { name, source });
        }
        "DEALLOCATE" | "DROP" if kw(1, "PREPARE") => {
            if let Some(name) = toks.get(2).and_then(|t| t.ident(sql)) {
                out.push(Effect::Deallocate(name));
            }
        }
        "LOCK" if kw(1, "TABLE") || kw(1, "TABLES") => out.push(Effect::LockTables),
        "UNLOCK" if kw(1, "TABLE") || kw(1, "TABLES") => out.push(Effect::UnlockTables),
        "FLUSH" => {
            let n = toks.len();
            if n >= 3 && kw(n - 3, "WITH") && kw(n - 2, "READ") && kw(n - 1, "LOCK") {
                out.push(Effect::LockTables);
            }
        }
        // `BEGIN NOT ATOMIC` is a compound statement, not a transaction.
        "BEGIN" if !kw(1, "NOT") => out.push(Effect::BeginTransaction),
        "START" if kw(1, "TRANSACTION") => out.push(Effect::BeginTransaction),
        "ALTER" => {
            let mut i = 1;
            if kw(i, "ONLINE") || kw(i, "IGNORE") {
                i += 1;
            }
            if !kw(i, "TABLE") {
                return;
            }
            i += 1;
            if kw(i, "IF") && kw(i + 1, "EXISTS") {
                i += 2;
            }
            let Some((from, used)) = qualified(sql, toks, i) else {
                return;
            };
            i += used;
            if !kw(i, "RENAME") {
                return;
            }
            i += 1;
            if kw(i, "TO") || kw(i, "AS") {
                i += 1;
            }
            if let Some((to, _)) = qualified(sql, toks, i) {
                out.push(Effect::Rename { from, to });
            }
        }
        "RENAME" if kw(1, "TABLE") || kw(1, "TABLES") => {
            let mut i = 2;
            if kw(i, "IF") && kw(i + 1, "EXISTS") {
                i += 2;
            }
            loop {
                let Some((from, used)) = qualified(sql, toks, i) else {
                    return;
                };
                i += used;
                if kw(i, "WAIT") || kw(i, "NOWAIT") {
                    return;
                }
                if !kw(i, "TO") {
                    return;
                }
                let Some((to, used)) = qualified(sql, toks, i + 1) else {
                    return;
                };
                i += 1 + used;
                out.push(Effect::Rename { from, to });
                if toks.get(i).map(|t| &t.tok) != Some(&Tok::Punct(b',')) {
                    return;
                }
                i += 1;
            }
        }
        _ => {}
    }
}

/// Always-quoted identifier: `` `a``b` ``.
pub fn quote_ident(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('`');
    for c in s.chars() {
        if c == '`' {
            out.push('`');
        }
        out.push(c);
    }
    out.push('`');
    out
}

/// A string literal that reads the same whatever sql_mode (ANSI_QUOTES, NO_BACKSLASH_ESCAPES)
/// and connection character set are: plain printable ASCII as '...', anything else as a
/// utf8mb4 hex literal.
pub fn quote_literal(s: &str) -> String {
    if s.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'\\') {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        format!("_utf8mb4 X'{}' COLLATE utf8mb4_bin", hex(s.as_bytes()))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

pub fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The character set a collation belongs to: its name up to the first `_` (`utf8mb4_bin` →
/// `utf8mb4`); no MariaDB character set name contains one.
pub fn charset_of(collation: &str) -> &str {
    collation.split('_').next().unwrap_or(collation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(sql: &str) -> Vec<String> {
        sniff(sql)
            .into_iter()
            .filter_map(|e| match e {
                Effect::UserVar(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plain_queries_are_not_scanned() {
        for q in [
            "SELECT 1",
            "select * from t where a = 'x'",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "select 1;",
            "  ",
            "",
        ] {
            assert!(!worth_scanning(q), "{q}");
            assert!(sniff(q).is_empty());
        }
        for q in [
            "SET @a = 1",
            "select get_LOCK('x', 1)",
            "select 1; create temporary table t (a int)",
            "/*!40101 SET @x = 1 */",
            "lock tables t read",
            "Prepare s from 'select 1'",
        ] {
            assert!(worth_scanning(q), "{q}");
        }
    }

    #[test]
    fn user_variables() {
        assert_eq!(
            vars("SET @a = 1, @`b c` := 2, @'d' = @\"e\", @f.g$ = @@session.sql_mode"),
            ["a", "b c", "d", "e", "f.g$"]
        );
        assert_eq!(vars("SELECT @@global.x, @@y"), Vec::<String>::new());
        // Not in strings, comments or quoted identifiers.
        assert_eq!(
            vars("SELECT '@a', \"@b\", `@c` /* @d */ -- @e\n # @f\n FROM t"),
            Vec::<String>::new()
        );
        assert_eq!(vars("SELECT 'it''s @x', 'a\\'@y' , @z"), ["z"]);
        // Account names are not variables.
        assert_eq!(
            vars("GRANT SELECT ON *.* TO 'u'@'localhost', u2@'%', `u3`@`h`"),
            Vec::<String>::new()
        );
        // Executable comments are code.
        assert_eq!(vars("/*!40101 SET @old = @@sql_mode */"), ["old"]);
        assert_eq!(vars("SELECT 1 /*M!100100 + @m */"), ["m"]);
        assert_eq!(vars("SELECT (@a+1)*-@b, x=@c"), ["a", "b", "c"]);
    }

    #[test]
    fn temp_tables_and_renames() {
        let e = sniff(
            "create temporary table if not exists shop.`my t` (a int); \
             CREATE OR REPLACE TEMPORARY TABLE t2 AS SELECT 1; create table perm (a int); \
             create temporary table s.x like y; CREATE TEMPORARY SEQUENCE sq",
        );
        assert_eq!(
            e,
            [
                Effect::TempTable {
                    schema: Some("shop".into()),
                    name: "my t".into()
                },
                Effect::TempTable {
                    schema: None,
                    name: "t2".into()
                },
                Effect::TempTable {
                    schema: Some("s".into()),
                    name: "x".into()
                },
                Effect::TempTable {
                    schema: None,
                    name: "sq".into()
                },
            ]
        );
        assert_eq!(
            sniff("ALTER TABLE t RENAME TO u"),
            [Effect::Rename {
                from: (None, "t".into()),
                to: (None, "u".into())
            }]
        );
        assert_eq!(
            sniff("rename table a to db.b, c to d").len(),
            2,
            "both renames"
        );
        assert!(sniff("SELECT 'create temporary table x (a int)'; SELECT 2").is_empty());
    }

    #[test]
    fn prepares_and_locks() {
        let e = sniff(
            "PREPARE s1 FROM 'SELECT ?; x'; prepare `s 2` from @q; DEALLOCATE PREPARE s1; \
             drop prepare s3; SELECT GET_LOCK('lk''1', 10), get_lock(@n, 1); \
             LOCK TABLES t READ; UNLOCK TABLES; BEGIN; BEGIN NOT ATOMIC SELECT 1; END; \
             START TRANSACTION READ ONLY; FLUSH TABLES WITH READ LOCK",
        );
        assert_eq!(
            e,
            [
                Effect::Prepare {
                    name: "s1".into(),
                    source: PrepareSource::Literal("'SELECT ?; x'".into())
                },
                Effect::UserVar("q".into()),
                Effect::Prepare {
                    name: "s 2".into(),
                    source: PrepareSource::Var("q".into())
                },
                Effect::Deallocate("s1".into()),
                Effect::Deallocate("s3".into()),
                Effect::GetLock("lk'1".into()),
                Effect::UserVar("n".into()),
                Effect::LockTables,
                Effect::UnlockTables,
                Effect::BeginTransaction,
                Effect::BeginTransaction,
                Effect::LockTables,
            ]
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(
            quote_literal("a\\b"),
            "_utf8mb4 X'615C62' COLLATE utf8mb4_bin"
        );
        assert_eq!(unhex(b"00ff7A"), Some(vec![0, 255, 0x7a]));
        assert_eq!(unhex(b"0"), None);
        assert_eq!(charset_of("utf8mb4_uca1400_ai_ci"), "utf8mb4");
    }
}
