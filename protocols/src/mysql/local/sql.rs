//! Recognises the few statements torpor may answer for a MySQL/MariaDB session without a
//! server: health-check probes and plain `SET`s of session variables. Anything else, or
//! anything unusual in these, is refused (`None`) and goes to the server: a recogniser that
//! refuses too much only costs a wake, one that accepts too much gives a wrong answer.

/// Longest query text looked at; probes and connect-time SETs are far shorter.
pub const MAX_TEXT: usize = 4096;

/// A statement whose answer torpor knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Only whitespace and semicolons: the server answers "Query was empty".
    Empty,
    Probe(Probe),
    /// `SET [SESSION|LOCAL] name = value, ...` and the `@@[session.|local.]name` forms.
    Set(Vec<Assignment>),
    /// `SET NAMES charset [COLLATE collation]`, names as written.
    Names {
        charset: String,
        collation: Option<String>,
    },
    /// `SET SESSION TRANSACTION ...`: the isolation level as tx_isolation spells it, read-only.
    Transaction {
        isolation: Option<&'static str>,
        read_only: Option<bool>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `SELECT 1`
    SelectOne,
    /// `DO 1`
    DoOne,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Lower case, as the server folds variable names.
    pub name: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Unsigned decimal digits, as written.
    Number(String),
    /// A quoted string's contents.
    Text(String),
    /// An unquoted word (or an identifier the server reads as a string), as written.
    Word(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// Letters, digits, `_` and `$`, as written.
    Word(String),
    /// `` `...` `` (and `"..."` under ANSI_QUOTES).
    Ident(String),
    /// `'...'` (and `"..."` without ANSI_QUOTES).
    Str(String),
    AtAt,
    Dot,
    Comma,
    Assign,
    Semicolon,
}

impl Tok {
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

/// The statements of a query text, or None when any part of it is not recognised. A text of
/// several statements is only valid for a client with CLIENT_MULTI_STATEMENTS: the caller checks.
/// `ansi_quotes`: the session's sql_mode has ANSI_QUOTES (`"..."` is an identifier).
pub fn parse(sql: &[u8], ansi_quotes: bool) -> Option<Vec<Statement>> {
    if sql.len() > MAX_TEXT {
        return None;
    }
    if sql.iter().all(|c| c.is_ascii_whitespace() || *c == b';') {
        // Comments alone are answered differently (with an OK): only this shape is "empty".
        return Some(vec![Statement::Empty]);
    }
    let toks = lex(sql, ansi_quotes)?;
    let mut parts: Vec<&[Tok]> = toks.split(|t| *t == Tok::Semicolon).collect();
    // Trailing semicolons end the text without another statement; empty ones in between or
    // ahead are left to the server.
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    if parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    parts.into_iter().map(statement).collect()
}

/// Longest text [`is_probe`] looks at: it runs for every query of a running session.
const MAX_PROBE: usize = 64;

/// Whether the text is only health-check probes of `probes`.
pub fn is_probe(sql: &[u8], probes: &ProbeSet) -> bool {
    sql.len() <= MAX_PROBE
        && parse(sql, false).is_some_and(|v| {
            v.iter()
                .all(|s| matches!(s, Statement::Probe(p) if probes.allows(*p)))
        })
}

/// The probes torpor answers for a cluster: the `health_probes` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSet {
    probes: Vec<Probe>,
    ping: bool,
}

impl Default for ProbeSet {
    fn default() -> Self {
        ProbeSet {
            probes: vec![Probe::SelectOne, Probe::DoOne],
            ping: true,
        }
    }
}

impl ProbeSet {
    /// The defaults, as the setting spells them; `COM_PING` is the protocol's ping command.
    pub const DEFAULT: &[&str] = &["SELECT 1", "DO 1", "COM_PING"];

    /// Each entry must be one of the probes torpor can answer exactly (any spelling of it).
    pub fn parse(entries: &[String]) -> Result<ProbeSet, String> {
        let mut set = ProbeSet {
            probes: Vec::new(),
            ping: false,
        };
        for e in entries {
            if e.trim().eq_ignore_ascii_case("COM_PING") {
                set.ping = true;
                continue;
            }
            match parse(e.as_bytes(), false).as_deref() {
                Some([Statement::Probe(p)]) => set.probes.push(*p),
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

    pub fn allows(&self, p: Probe) -> bool {
        self.probes.contains(&p)
    }

    /// COM_PING is answered while parked, and is no activity while the server runs.
    pub fn ping(&self) -> bool {
        self.ping
    }
}

/// Whether a statement may change what torpor assumes of a session it answers for: which
/// variables the server reports (session_track_*) and how it reads `utf8` (old_mode). Meant for
/// texts that [`crate::mysql::sql::worth_scanning`] let through.
pub fn may_customise(sql: &[u8]) -> bool {
    let at = |i: usize, word: &[u8]| {
        sql.get(i..i + word.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
    };
    sql.iter().enumerate().any(|(i, &c)| {
        c == b'_' && ((i >= 7 && at(i - 7, b"session_track")) || (i >= 3 && at(i - 3, b"old_mode")))
    })
}

fn statement(t: &[Tok]) -> Option<Statement> {
    let first = t.first()?;
    if t.len() == 2 && t[1] == Tok::Word("1".into()) {
        if first.is_kw("SELECT") {
            return Some(Statement::Probe(Probe::SelectOne));
        }
        if first.is_kw("DO") {
            return Some(Statement::Probe(Probe::DoOne));
        }
    }
    if !first.is_kw("SET") {
        return None;
    }
    let rest = &t[1..];
    if rest.first()?.is_kw("NAMES") {
        return names(&rest[1..]);
    }
    if rest.first()?.is_kw("SESSION") && rest.get(1)?.is_kw("TRANSACTION") {
        return transaction(&rest[2..]);
    }
    assignments(rest)
}

/// A name a charset or collation may be given as.
fn name_of(t: &Tok) -> Option<String> {
    match t {
        Tok::Word(w) | Tok::Ident(w) | Tok::Str(w) => Some(w.clone()),
        _ => None,
    }
}

fn names(t: &[Tok]) -> Option<Statement> {
    let charset = name_of(t.first()?)?;
    if t[0].is_kw("DEFAULT") {
        return None;
    }
    let collation = match t.get(1..)? {
        [] => None,
        [c, name] if c.is_kw("COLLATE") && !name.is_kw("DEFAULT") => Some(name_of(name)?),
        _ => return None,
    };
    Some(Statement::Names { charset, collation })
}

fn transaction(mut t: &[Tok]) -> Option<Statement> {
    let mut isolation = None;
    let mut read_only = None;
    loop {
        let words: Vec<&str> = t
            .iter()
            .take_while(|x| **x != Tok::Comma)
            .map(|x| match x {
                Tok::Word(w) => Some(w.as_str()),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
        match upper.as_slice() {
            ["ISOLATION", "LEVEL", level @ ..] if isolation.is_none() => {
                isolation = Some(match level {
                    ["READ", "UNCOMMITTED"] => "READ-UNCOMMITTED",
                    ["READ", "COMMITTED"] => "READ-COMMITTED",
                    ["REPEATABLE", "READ"] => "REPEATABLE-READ",
                    ["SERIALIZABLE"] => "SERIALIZABLE",
                    _ => return None,
                });
            }
            ["READ", "ONLY"] if read_only.is_none() => read_only = Some(true),
            ["READ", "WRITE"] if read_only.is_none() => read_only = Some(false),
            _ => return None,
        }
        t = &t[words.len()..];
        match t.first() {
            None => break,
            Some(Tok::Comma) => t = &t[1..],
            Some(_) => return None,
        }
    }
    Some(Statement::Transaction {
        isolation,
        read_only,
    })
}

fn assignments(mut t: &[Tok]) -> Option<Statement> {
    let mut out = Vec::new();
    loop {
        // Scope: SESSION and LOCAL are this session; GLOBAL and the rest are not ours.
        if t.first()?.is_kw("SESSION") || t.first()?.is_kw("LOCAL") {
            t = &t[1..];
        } else if t.first()? == &Tok::AtAt {
            t = &t[1..];
            if let [Tok::Word(scope), Tok::Dot, ..] = t {
                if !scope.eq_ignore_ascii_case("session") && !scope.eq_ignore_ascii_case("local") {
                    return None;
                }
                t = &t[2..];
            }
        }
        let name = match t.first()? {
            Tok::Word(w) if !w.bytes().all(|c| c.is_ascii_digit()) => w.to_ascii_lowercase(),
            Tok::Ident(w) => w.to_ascii_lowercase(),
            _ => return None,
        };
        if matches!(
            name.as_str(),
            "global" | "persist" | "persist_only" | "password" | "role" | "statement"
        ) || name.contains('@')
        {
            return None;
        }
        if t.get(1)? != &Tok::Assign {
            return None;
        }
        let value = match t.get(2)? {
            Tok::Word(w) if w.bytes().all(|c| c.is_ascii_digit()) => Value::Number(w.clone()),
            Tok::Word(w) => Value::Word(w.clone()),
            Tok::Str(s) => Value::Text(s.clone()),
            _ => return None,
        };
        out.push(Assignment { name, value });
        t = &t[3..];
        match t.first() {
            None => break,
            Some(Tok::Comma) => t = &t[1..],
            Some(_) => return None,
        }
    }
    Some(Statement::Set(out))
}

/// Tokens of the whole text, or None for anything outside the small language above: non-ASCII
/// bytes, backslashes in literals (their meaning depends on sql_mode), executable comments,
/// operators, parentheses, user variables.
fn lex(sql: &[u8], ansi_quotes: bool) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sql.len() {
        let c = sql[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => i += 1,
            b'#' => i = line_end(sql, i),
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql
                    .get(i + 2)
                    .is_none_or(|c| c.is_ascii_whitespace() || c.is_ascii_control()) =>
            {
                i = line_end(sql, i)
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                if matches!(sql.get(i + 2), Some(b'!' | b'M')) {
                    return None;
                }
                let end = sql[i + 2..].windows(2).position(|w| w == b"*/")?;
                i += 2 + end + 2;
            }
            b'\'' | b'"' | b'`' => {
                let (s, next) = quoted(sql, i, c)?;
                let ident = c == b'`' || (c == b'"' && ansi_quotes);
                out.push(if ident { Tok::Ident(s) } else { Tok::Str(s) });
                i = next;
            }
            _ if let Some((p, tok)) = PUNCTUATION.iter().find(|(p, _)| sql[i..].starts_with(p)) => {
                out.push(tok.clone());
                i += p.len();
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' => {
                let end = sql[i..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$'))
                    .map_or(sql.len(), |p| i + p);
                out.push(Tok::Word(
                    String::from_utf8_lossy(&sql[i..end]).into_owned(),
                ));
                i = end;
            }
            _ => return None,
        }
    }
    Some(out)
}

const PUNCTUATION: [(&[u8], Tok); 6] = [
    (b"@@", Tok::AtAt),
    (b".", Tok::Dot),
    (b",", Tok::Comma),
    (b"=", Tok::Assign),
    (b":=", Tok::Assign),
    (b";", Tok::Semicolon),
];

fn line_end(sql: &[u8], from: usize) -> usize {
    sql[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(sql.len(), |p| from + p + 1)
}

/// A quoted run starting at `sql[at] == q`, with `qq` for a quote inside: (contents, index
/// after the closing quote).
fn quoted(sql: &[u8], at: usize, q: u8) -> Option<(String, usize)> {
    let mut s = Vec::new();
    let mut i = at + 1;
    loop {
        let c = *sql.get(i)?;
        if c == b'\\' || !c.is_ascii() || c == 0 {
            return None;
        }
        if c == q {
            if sql.get(i + 1) == Some(&q) {
                s.push(q);
                i += 2;
                continue;
            }
            return Some((String::from_utf8(s).ok()?, i + 1));
        }
        s.push(c);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(sql: &str) -> Option<Statement> {
        let mut v = parse(sql.as_bytes(), false)?;
        assert_eq!(v.len(), 1, "{sql}");
        v.pop()
    }

    fn set(pairs: &[(&str, Value)]) -> Option<Statement> {
        Some(Statement::Set(
            pairs
                .iter()
                .map(|(n, v)| Assignment {
                    name: n.to_string(),
                    value: v.clone(),
                })
                .collect(),
        ))
    }

    #[test]
    fn probes_in_their_spellings() {
        for sql in [
            "SELECT 1",
            "select 1;",
            "Select  1 ;  ",
            "/* ping */ SELECT 1",
            "SELECT 1 -- x",
            "SELECT 1 #x",
            "SELECT\t1;;",
            "SELECT 1/*x*/",
        ] {
            assert_eq!(one(sql), Some(Statement::Probe(Probe::SelectOne)), "{sql}");
            assert!(is_probe(sql.as_bytes(), &ProbeSet::default()), "{sql}");
        }
        assert_eq!(one("DO 1"), Some(Statement::Probe(Probe::DoOne)));
        for sql in [
            "SELECT 01",
            "SELECT 1 FROM DUAL",
            "SELECT 1 AS x",
            "SELECT 2",
            "/*!SELECT 1*/",
            "/*M!100100 SELECT 1*/",
            "SELECT 1 --x",
            "SELECT 1; SELECT 2",
            ";SELECT 1",
            "SELECT 1;;SELECT 1",
            "/* ping */",
            "SELECT 'é'",
        ] {
            assert!(!is_probe(sql.as_bytes(), &ProbeSet::default()), "{sql}");
        }
        assert!(!is_probe(
            format!("SELECT 1 {}", "-- padding\n".repeat(8)).as_bytes(),
            &ProbeSet::default()
        ));
        let only_do = ProbeSet::parse(&["do 1;".into()]).unwrap();
        assert!(!is_probe(b"SELECT 1", &only_do));
        assert!(is_probe(b"DO 1", &only_do));
        assert!(!only_do.ping());
        assert!(ProbeSet::parse(&["com_ping".into()]).unwrap().ping());
        assert!(ProbeSet::parse(&["SELECT 2".into()]).is_err());
        assert_eq!(parse(b" ; ", false), Some(vec![Statement::Empty]));
        assert_eq!(parse(b"", false), Some(vec![Statement::Empty]));
        assert_eq!(
            parse(b"SELECT 1; DO 1;", false),
            Some(vec![
                Statement::Probe(Probe::SelectOne),
                Statement::Probe(Probe::DoOne)
            ])
        );
    }

    #[test]
    fn sets() {
        let n = |s: &str| Value::Number(s.into());
        let w = |s: &str| Value::Word(s.into());
        let t = |s: &str| Value::Text(s.into());
        for (sql, name, value) in [
            ("SET autocommit=0", "autocommit", n("0")),
            ("SET AUTOCOMMIT = 0", "autocommit", n("0")),
            ("SET @@session.autocommit = OFF", "autocommit", w("OFF")),
            ("SeT  LOCAL `AutoCommit` := 'on'", "autocommit", t("on")),
            (
                "SET character_set_results = NULL",
                "character_set_results",
                w("NULL"),
            ),
            ("SET sql_mode = 'it''s'", "sql_mode", t("it's")),
        ] {
            assert_eq!(one(sql), set(&[(name, value)]), "{sql}");
        }
        assert_eq!(
            one("SET @@autocommit=1, SESSION sql_mode = \"ANSI_QUOTES\", @@local.wait_timeout=5"),
            set(&[
                ("autocommit", n("1")),
                ("sql_mode", t("ANSI_QUOTES")),
                ("wait_timeout", n("5"))
            ])
        );
        // Double quotes are an identifier under ANSI_QUOTES; the server reads it as a string.
        assert_eq!(
            parse(b"SET sql_mode = \"x\"", true),
            None,
            "an identifier is not a value here"
        );
        for sql in [
            "SET GLOBAL autocommit=0",
            "SET @@global.autocommit=0",
            "SET autocommit=0, GLOBAL wait_timeout=5",
            "SET @x = 1",
            "SET autocommit = @x",
            "SET sql_mode = CONCAT(@@sql_mode, ',X')",
            "SET autocommit = -1",
            "SET autocommit = 1 + 1",
            "SET wait_timeout = 1.5",
            "SET a.b = 1",
            "SET autocommit",
            "SET sql_mode = 'a\\'b'",
            "SET PASSWORD = 'x'",
            "SET ROLE r",
            "SET STATEMENT max_statement_time=1 FOR SELECT 1",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET GLOBAL TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET CHARACTER SET utf8mb4",
            "SET NAMES DEFAULT",
            "SET NAMES utf8mb4 COLLATE DEFAULT",
            "SET NAMES utf8mb4, autocommit=0",
            "SET time_zone = _latin1'+00:00'",
            "SET sql_mode = 'é'",
        ] {
            assert_eq!(parse(sql.as_bytes(), false), None, "{sql}");
        }
    }

    #[test]
    fn customisations_are_seen() {
        for sql in [
            "SET SESSION_TRACK_SYSTEM_VARIABLES = ''",
            "set @@session_track_state_change=1",
            "SET old_mode = ''",
            "SET STATEMENT OLD_MODE='' FOR SELECT 1",
        ] {
            assert!(may_customise(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SET sql_mode = ''",
            "SELECT session_trac_k",
            "SELECT oldmode, _x",
        ] {
            assert!(!may_customise(sql.as_bytes()), "{sql}");
        }
    }

    #[test]
    fn names_and_transactions() {
        assert_eq!(
            one("SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'"),
            Some(Statement::Names {
                charset: "utf8mb4".into(),
                collation: Some("utf8mb4_general_ci".into())
            })
        );
        assert_eq!(
            one("set names `latin1`"),
            Some(Statement::Names {
                charset: "latin1".into(),
                collation: None
            })
        );
        assert_eq!(
            one("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            Some(Statement::Transaction {
                isolation: Some("READ-COMMITTED"),
                read_only: None
            })
        );
        assert_eq!(
            one("set session transaction read only, isolation level serializable"),
            Some(Statement::Transaction {
                isolation: Some("SERIALIZABLE"),
                read_only: Some(true)
            })
        );
        assert_eq!(
            parse(b"SET SESSION TRANSACTION READ ONLY, READ WRITE", false),
            None
        );
        assert_eq!(
            parse(b"SET SESSION TRANSACTION ISOLATION LEVEL READ", false),
            None
        );
    }
}
