//! Recognises the few statements torpor may answer without a server: health-check probes and
//! plain `SET`/`RESET` of one setting. Everything else is [`Statement::Other`], and the server
//! answers it. The grammar is deliberately tiny: a recogniser that refuses anything unusual
//! can only cost a wake, never a wrong answer.

/// A statement whose answer torpor knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Nothing but whitespace, comments and semicolons: EmptyQueryResponse.
    Empty,
    Probe(Probe),
    /// `SET [SESSION] name = value` / `SET name TO value`. `value` is what the server would
    /// pass to the setting: a literal's contents, a number as written, an unquoted word in
    /// lower case.
    Set {
        name: String,
        value: String,
    },
    /// `RESET name` or `SET name = DEFAULT`.
    Reset {
        name: String,
    },
    /// `BEGIN` / `START TRANSACTION` without options; the command tag the server answers.
    Begin {
        tag: &'static str,
    },
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// What a pool sends to hand a connection back clean (asyncpg's reset query):
    /// `SELECT pg_advisory_unlock_all()`, `CLOSE ALL`, `UNLISTEN *`, `RESET ALL`.
    Cleanup(Cleanup),
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// `SELECT pg_advisory_unlock_all()`
    Unlock,
    /// `CLOSE ALL`
    Close,
    /// `UNLISTEN *`
    Unlisten,
    /// `RESET ALL`
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Probe {
    /// `SELECT 1`
    One,
    /// `SELECT version()`
    Version,
    /// `SHOW server_version`
    ServerVersion,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Unquoted word, lower-cased as the server folds it.
    Word(String),
    /// `"..."` identifier.
    Quoted(String),
    /// `'...'` literal contents.
    Str(String),
    /// Digits with an optional fraction, as written.
    Number(String),
    Semicolon,
    Open,
    Close,
    Dot,
    Equals,
    Minus,
    Plus,
    Star,
}

/// The probes torpor answers for a cluster: the `health_probes` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSet {
    probes: Vec<Probe>,
    empty: bool,
}

impl Default for ProbeSet {
    /// `SELECT 1`, the empty query, `SELECT version()`, `SHOW server_version`.
    fn default() -> Self {
        ProbeSet {
            probes: vec![Probe::One, Probe::Version, Probe::ServerVersion],
            empty: true,
        }
    }
}

impl ProbeSet {
    /// The defaults, as the setting spells them.
    pub const DEFAULT: &[&str] = &["SELECT 1", "", "SELECT version()", "SHOW server_version"];

    /// Each entry must be one of the probes torpor can answer exactly (any spelling of it).
    pub fn parse(entries: &[String]) -> Result<ProbeSet, String> {
        let mut set = ProbeSet {
            probes: Vec::new(),
            empty: false,
        };
        for e in entries {
            match single(e) {
                Statement::Probe(p) => set.probes.push(p),
                Statement::Empty => set.empty = true,
                _ => {
                    return Err(format!(
                        "{e:?} is not a probe torpor can answer; it knows {:?}",
                        Self::DEFAULT
                    ));
                }
            }
        }
        Ok(set)
    }

    /// Whether `s` is a probe of this set.
    pub fn allows(&self, s: &Statement) -> bool {
        match s {
            Statement::Probe(p) => self.probes.contains(p),
            Statement::Empty => self.empty,
            _ => false,
        }
    }
}

/// Longest text worth looking at: probes and SETs are short, and the check runs on the hot path.
pub(super) const MAX_LOCAL_TEXT: usize = 1024;

/// Tokens of `sql`, or None at anything outside the tiny grammar (escape strings, dollar
/// quotes, operators, parameters, backslashes in literals, unterminated comments or quotes).
fn tokens(sql: &str) -> Option<Vec<Tok>> {
    if sql.len() > MAX_LOCAL_TEXT {
        return None;
    }
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            c if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                loop {
                    if i >= b.len() {
                        return None;
                    }
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push(Tok::Dot);
                i += 1;
            }
            c if let Some(tok) = punctuation(c) => {
                out.push(tok);
                i += 1;
            }
            b'\'' => {
                let s;
                (s, i) = quoted(b, i)?;
                // 'a' 'b' on separate lines concatenate; not worth knowing.
                if b.get(i) == Some(&b'\'') {
                    return None;
                }
                out.push(Tok::Str(s));
            }
            b'"' => {
                let s;
                (s, i) = quoted(b, i)?;
                if s.is_empty() {
                    return None;
                }
                out.push(Tok::Quoted(s));
            }
            c if c.is_ascii_digit() || c == b'.' => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if b.get(i) == Some(&b'.') {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                // Exponents, hex and a number run into a word are left to the server.
                if b.get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                {
                    return None;
                }
                out.push(Tok::Number(sql[start..i].to_string()));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$')
                {
                    i += 1;
                }
                // A word glued to a quote is a typed literal or an escape string: E'..', U&'..'.
                if matches!(b.get(i), Some(b'\'') | Some(b'&')) {
                    return None;
                }
                out.push(Tok::Word(sql[start..i].to_ascii_lowercase()));
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The one-byte token `c` is, if any (`.` is a token only when no digit follows it).
fn punctuation(c: u8) -> Option<Tok> {
    Some(match c {
        b';' => Tok::Semicolon,
        b'(' => Tok::Open,
        b')' => Tok::Close,
        b'=' => Tok::Equals,
        b'-' => Tok::Minus,
        b'*' => Tok::Star,
        b'+' => Tok::Plus,
        _ => return None,
    })
}

/// The contents of the literal or quoted identifier that opens at `b[start]` (its quote
/// doubled inside stands for itself), and where it ends. None when it doesn't end, or for a
/// backslash in a literal, whose meaning depends on standard_conforming_strings.
fn quoted(b: &[u8], start: usize) -> Option<(String, usize)> {
    let q = b[start];
    let mut s = Vec::new();
    let mut i = start + 1;
    loop {
        match b.get(i) {
            None => return None,
            Some(&c) if c == q && b.get(i + 1) == Some(&q) => {
                s.push(q);
                i += 2;
            }
            Some(&c) if c == q => break,
            Some(b'\\') if q == b'\'' => return None,
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
    Some((String::from_utf8(s).ok()?, i + 1))
}

fn word(t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(x)) if x == w)
}

/// An identifier as the server stores it; names longer than NAMEDATALEN-1 are left alone.
fn ident(t: Option<&Tok>) -> Option<String> {
    let s = match t? {
        Tok::Word(w) => w.clone(),
        Tok::Quoted(q) => q.clone(),
        _ => return None,
    };
    (s.len() <= 63).then_some(s)
}

/// Every statement of a simple Query's text, empty ones dropped as the server drops them.
/// None when any of them is beyond the grammar.
pub fn statements(sql: &str) -> Option<Vec<Statement>> {
    let toks = tokens(sql)?;
    let mut out = Vec::new();
    for part in toks.split(|t| *t == Tok::Semicolon) {
        if part.is_empty() {
            continue;
        }
        out.push(statement(part));
    }
    Some(out)
}

/// The one statement of `sql`, for an extended-protocol Parse (which refuses several).
pub fn single(sql: &str) -> Statement {
    match statements(sql) {
        None => Statement::Other,
        Some(v) if v.is_empty() => Statement::Empty,
        Some(mut v) if v.len() == 1 => v.pop().unwrap_or(Statement::Other),
        Some(_) => Statement::Other,
    }
}

/// False when `sql` can't be a probe or the empty query, found without lexing it: with no
/// comment and no quote, a probe is made only of the letters of `select`, `version`, `show`
/// and `server_version`, digits, parentheses, semicolons and whitespace. Most queries have
/// some other letter, and every query a running server gets is asked this.
pub(super) fn may_be_probe(sql: &str) -> bool {
    let b = sql.as_bytes();
    let hidden = b.windows(2).any(|w| w == b"--" || w == b"/*")
        || b.iter().any(|c| matches!(c, b'\'' | b'"' | b'$' | b'\\'));
    hidden
        || b.iter().all(|c| {
            b"selctvrionhw_0123456789.();".contains(&c.to_ascii_lowercase())
                || c.is_ascii_whitespace()
        })
}

/// Just the probe, if `sql` is one (trailing semicolons allowed).
pub fn probe(sql: &str) -> Option<Probe> {
    if sql.len() > 64 {
        return None;
    }
    match single(sql) {
        Statement::Probe(p) => Some(p),
        _ => None,
    }
}

fn statement(t: &[Tok]) -> Statement {
    let w = |i: usize, s: &str| word(t.get(i), s);
    if w(0, "select") {
        if t.len() == 2 && t[1] == Tok::Number("1".into()) {
            return Statement::Probe(Probe::One);
        }
        if t.len() == 4 && w(1, "version") && t[2] == Tok::Open && t[3] == Tok::Close {
            return Statement::Probe(Probe::Version);
        }
        if t.len() == 4 && w(1, "pg_advisory_unlock_all") && t[2] == Tok::Open && t[3] == Tok::Close
        {
            return Statement::Cleanup(Cleanup::Unlock);
        }
        return Statement::Other;
    }
    if t.len() == 2 && w(0, "close") && w(1, "all") {
        return Statement::Cleanup(Cleanup::Close);
    }
    if t.len() == 2 && w(0, "unlisten") && t[1] == Tok::Star {
        return Statement::Cleanup(Cleanup::Unlisten);
    }
    if t.len() == 2 && w(0, "reset") && w(1, "all") {
        return Statement::Cleanup(Cleanup::Reset);
    }
    let plain_txn = t.len() == 1 || (t.len() == 2 && (w(1, "work") || w(1, "transaction")));
    if plain_txn {
        if w(0, "begin") {
            return Statement::Begin { tag: "BEGIN" };
        }
        if w(0, "commit") || w(0, "end") {
            return Statement::Commit;
        }
        if w(0, "rollback") || w(0, "abort") {
            return Statement::Rollback;
        }
    }
    if w(0, "start") && t.len() == 2 && w(1, "transaction") {
        return Statement::Begin {
            tag: "START TRANSACTION",
        };
    }
    if w(0, "show") && t.len() == 2 && w(1, "server_version") {
        return Statement::Probe(Probe::ServerVersion);
    }
    if w(0, "reset") {
        return match name(&t[1..]) {
            Some((name, 0)) => Statement::Reset { name },
            _ => Statement::Other,
        };
    }
    if w(0, "set") {
        let rest = if w(1, "session") && !w(2, "authorization") && !w(2, "characteristics") {
            &t[2..]
        } else {
            &t[1..]
        };
        let Some((name, after)) = name_prefix(rest) else {
            return Statement::Other;
        };
        let rest = &rest[after..];
        let value = match rest.first() {
            Some(Tok::Equals) => &rest[1..],
            Some(Tok::Word(w)) if w == "to" => &rest[1..],
            _ => return Statement::Other,
        };
        // Special forms the grammar gives their own meaning.
        if [
            "time",
            "names",
            "local",
            "transaction",
            "role",
            "schema",
            "xml",
        ]
        .contains(&name.as_str())
        {
            return Statement::Other;
        }
        return match value {
            [Tok::Word(d)] if d == "default" => Statement::Reset { name },
            [Tok::Str(s)] => Statement::Set {
                name,
                value: s.clone(),
            },
            [Tok::Quoted(s)] => Statement::Set {
                name,
                value: s.clone(),
            },
            [Tok::Word(w)] => Statement::Set {
                name,
                value: w.clone(),
            },
            [Tok::Number(n)] | [Tok::Plus, Tok::Number(n)] => Statement::Set {
                name,
                value: n.clone(),
            },
            [Tok::Minus, Tok::Number(n)] => Statement::Set {
                name,
                value: format!("-{n}"),
            },
            _ => Statement::Other,
        };
    }
    Statement::Other
}

/// `name` or `class.name` filling the whole slice, with how many tokens follow (0 here).
fn name(t: &[Tok]) -> Option<(String, usize)> {
    let (n, used) = name_prefix(t)?;
    Some((n, t.len() - used))
}

/// A setting name at the start of `t`: the name as the server stores it and tokens used.
fn name_prefix(t: &[Tok]) -> Option<(String, usize)> {
    let first = ident(t.first())?;
    if t.get(1) == Some(&Tok::Dot) {
        let second = ident(t.get(2))?;
        if t.get(3) == Some(&Tok::Dot) {
            return None;
        }
        return Some((format!("{first}.{second}"), 3));
    }
    Some((first, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_may_be_a_probe_is_lexed() {
        for q in [
            "SELECT 1",
            " select  version ( ) ;",
            "SHOW server_version",
            "",
            ";",
            "/* hi */ SELECT 1",
            "SELECT \"version\"()",
            "select 1 -- x",
        ] {
            assert!(may_be_probe(q), "{q}");
        }
        for q in [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "SELECT 2 + 2",
            "BEGIN",
            "SET x = 1",
        ] {
            assert!(!may_be_probe(q), "{q}");
        }
        // Everything the lexer takes for a probe passes the filter too.
        for q in [
            "SELECT 1",
            "SeLeCt VeRsIoN()",
            "show SERVER_VERSION;;",
            " \n",
        ] {
            assert!(single(q) == Statement::Empty || probe(q).is_some());
            assert!(may_be_probe(q), "{q}");
        }
    }

    fn set(name: &str, value: &str) -> Statement {
        Statement::Set {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn probes_in_their_common_spellings() {
        for sql in [
            "SELECT 1",
            "select 1;",
            "/* ping */ SELECT 1",
            "-- ping\nselect 1 ;;",
            "  SeLeCt\t1  ",
            "/* a /* nested */ comment */ SELECT 1",
        ] {
            assert_eq!(probe(sql), Some(Probe::One), "{sql:?}");
        }
        assert_eq!(probe("SELECT version()"), Some(Probe::Version));
        assert_eq!(probe("select VERSION ( ) ;"), Some(Probe::Version));
        assert_eq!(probe("SHOW server_version"), Some(Probe::ServerVersion));
        for sql in [
            "SELECT 1, 2",
            "SELECT 1 AS x",
            "SELECT 10",
            "SELECT 1.0",
            "SELECT '1'",
            "SELECT 1; SELECT 1",
            "SELECT pg_sleep(1)",
            "SELECT \"version\"()",
            "SHOW server_version_num",
            "/* unterminated SELECT 1",
            "SELECT 1 /* unterminated",
            "select 1e0",
        ] {
            assert_eq!(probe(sql), None, "{sql:?}");
        }
    }

    #[test]
    fn empty_queries() {
        for sql in ["", ";", "  ;  ;", "-- nothing", "/* */ ;"] {
            assert_eq!(single(sql), Statement::Empty, "{sql:?}");
            assert_eq!(statements(sql), Some(vec![]), "{sql:?}");
        }
    }

    #[test]
    fn sets_and_resets() {
        assert_eq!(
            single("SET extra_float_digits = 3"),
            set("extra_float_digits", "3")
        );
        assert_eq!(
            single("set extra_float_digits to -15"),
            set("extra_float_digits", "-15")
        );
        assert_eq!(
            single("SET application_name = 'PostgreSQL JDBC Driver'"),
            set("application_name", "PostgreSQL JDBC Driver")
        );
        assert_eq!(
            single("SET SESSION DateStyle TO ISO"),
            set("datestyle", "iso")
        );
        assert_eq!(single("SET search_path = \"My\""), set("search_path", "My"));
        assert_eq!(
            single("SET app.tenant = 'it''s'"),
            set("app.tenant", "it's")
        );
        assert_eq!(
            single("SET statement_timeout = 0.5"),
            set("statement_timeout", "0.5")
        );
        assert_eq!(
            single("RESET application_name"),
            Statement::Reset {
                name: "application_name".into()
            }
        );
        assert_eq!(
            single("SET work_mem = DEFAULT"),
            Statement::Reset {
                name: "work_mem".into()
            }
        );
        for sql in [
            "SET LOCAL work_mem = '1MB'",
            "SET TIME ZONE 'UTC'",
            "SET NAMES 'UTF8'",
            "SET SESSION AUTHORIZATION x",
            "SET ROLE x",
            "SET search_path = a, b",
            "SET x = E'a'",
            "SET x = 'a\\b'",
            "SET x = $1",
            "SET a.b.c = 1",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "RESET ALL x",
            "SET x = 1e3",
            "SET x = 'a' 'b'",
        ] {
            assert_eq!(single(sql), Statement::Other, "{sql:?}");
        }
    }

    #[test]
    fn plain_transaction_control() {
        assert_eq!(single("BEGIN"), Statement::Begin { tag: "BEGIN" });
        assert_eq!(single("begin work;"), Statement::Begin { tag: "BEGIN" });
        assert_eq!(
            single("START TRANSACTION"),
            Statement::Begin {
                tag: "START TRANSACTION"
            }
        );
        assert_eq!(single("COMMIT"), Statement::Commit);
        assert_eq!(single("end transaction"), Statement::Commit);
        assert_eq!(single("ROLLBACK"), Statement::Rollback);
        assert_eq!(single("abort"), Statement::Rollback);
        for sql in [
            "BEGIN READ ONLY",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
            "START TRANSACTION READ WRITE",
            "COMMIT AND CHAIN",
            "ROLLBACK TO SAVEPOINT a",
            "COMMIT PREPARED 'x'",
        ] {
            assert_eq!(single(sql), Statement::Other, "{sql:?}");
        }
    }

    #[test]
    fn a_pools_cleanup() {
        assert_eq!(
            statements("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;"),
            Some(vec![
                Statement::Cleanup(Cleanup::Unlock),
                Statement::Cleanup(Cleanup::Close),
                Statement::Cleanup(Cleanup::Unlisten),
                Statement::Cleanup(Cleanup::Reset),
            ])
        );
        assert_eq!(single("UNLISTEN ch"), Statement::Other);
        assert_eq!(single("CLOSE c"), Statement::Other);
        assert_eq!(single("SELECT 2 * 3"), Statement::Other);
    }

    #[test]
    fn several_statements() {
        assert_eq!(
            statements("SET a.b = 1; SELECT 1;"),
            Some(vec![set("a.b", "1"), Statement::Probe(Probe::One)])
        );
        assert_eq!(single("SET a.b = 1; SELECT 1"), Statement::Other);
    }
}
