//! Answers a client's next request (one simple Query, or an extended-protocol batch through
//! Sync) without a server, byte for byte as PostgreSQL 15 would, when every statement in it is
//! a probe or a `SET`/`RESET` the catalog can vouch for. Anything else goes to the server.

use std::collections::HashMap;

use bytes::BytesMut;

use super::catalog::{Accepted, Catalog};
use super::sql::{self, Cleanup, Probe, ProbeSet, Statement};
use crate::pg::frame;
use crate::pg::message::{self, Field, tag};
use crate::pg::parse;

/// What the session knows that an answer depends on.
pub struct View<'a> {
    /// Transaction status for ReadyForQuery: b'I', or b'T' in a carried read-only transaction.
    pub txn: u8,
    /// ParameterStatus values as the client knows them now.
    pub told: &'a [(String, String)],
    /// The values the client was told at startup: where RESET goes back to.
    pub initial: &'a [(String, String)],
    /// Named prepared statements the session holds whose text is a probe or empty.
    pub canned: &'a HashMap<String, Statement>,
    pub catalog: Option<&'a Catalog>,
    /// The probes torpor answers for this cluster.
    pub probes: &'a ProbeSet,
    /// Only probes: nothing that changes the session's state (used while attached to a
    /// backend that is being drained, whose snapshot is already taken).
    pub probes_only: bool,
}

#[derive(Debug)]
pub enum Outcome {
    Answered(Answer),
    /// Everything buffered so far could be answered, but the batch has no Sync yet.
    Incomplete,
    /// The server must answer this request.
    Server,
}

#[derive(Debug, Default)]
pub struct Answer {
    pub reply: BytesMut,
    /// Bytes of the client buffer the request took.
    pub consumed: usize,
    pub effects: Vec<Effect>,
}

/// What an answered request changed in the session: the server gets it at the next replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Set(Accepted),
    Reset {
        /// As the catalog spells it.
        name: String,
    },
    /// A named statement was prepared.
    Parsed {
        name: String,
        query: String,
        statement: Statement,
    },
    /// A named statement was closed.
    Closed {
        name: String,
    },
    /// The client was sent this ParameterStatus.
    Reported {
        name: String,
        value: String,
    },
    /// `SELECT pg_advisory_unlock_all()`: the session holds no advisory lock any more.
    UnlockAll,
    /// `UNLISTEN *`
    UnlistenAll,
    /// `RESET ALL`: every setting back to its value at connection start.
    ResetAll,
    /// A transaction block began; the next replay opens one.
    Begin,
    /// The transaction block ended.
    End,
}

/// The type of a function that returns nothing.
const VOID: u32 = 2278;

/// Reported settings RESET ALL leaves alone: fixed for the server's life, or tied to the
/// session's identity (GUC_NO_RESET_ALL).
const NOT_RESET_BY_ALL: &[&str] = &[
    "session_authorization",
    "is_superuser",
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "in_hot_standby",
];

/// Largest request worth simulating: probes are tiny.
const MAX_REQUEST: usize = 8 << 10;

pub fn answer(buf: &[u8], view: &View<'_>) -> Outcome {
    let Ok(Some((first, len))) = frame::message_len(buf, MAX_REQUEST) else {
        return Outcome::Server;
    };
    let mut a = Answerer {
        view,
        reply: BytesMut::new(),
        effects: Vec::new(),
        reported: Vec::new(),
        status: view.txn,
        flushed: false,
    };
    let done = if first == tag::QUERY {
        a.query(body(buf, 0, len)).map(|()| len)
    } else {
        match a.batch(buf) {
            Batch::Done(n) => Some(n),
            Batch::Incomplete => return Outcome::Incomplete,
            Batch::Server => None,
        }
    };
    let Some(consumed) = done else {
        return Outcome::Server;
    };
    a.finish();
    Outcome::Answered(Answer {
        reply: a.reply,
        consumed,
        effects: a.effects,
    })
}

fn body(buf: &[u8], off: usize, len: usize) -> &[u8] {
    buf.get(off + 5..off + len).unwrap_or_default()
}

enum Batch {
    Done(usize),
    Incomplete,
    Server,
}

struct Answerer<'a, 'v> {
    view: &'a View<'v>,
    reply: BytesMut,
    effects: Vec<Effect>,
    /// Reported settings changed by this request, in order, with their new values.
    reported: Vec<(String, String)>,
    /// Transaction status as the request goes on.
    status: u8,
    /// The request ended with a Flush: no ReadyForQuery yet.
    flushed: bool,
}

/// A prepared statement or portal of the batch.
#[derive(Clone)]
struct Prepared {
    statement: Statement,
    /// Result format for the one column, for portals.
    format: i16,
    executed: bool,
}

impl Answerer<'_, '_> {
    fn query(&mut self, body: &[u8]) -> Option<()> {
        let sql = parse::query_message(body).ok()?;
        let statements = sql::statements(sql)?;
        if statements.is_empty() {
            if !self.view.probes.allows(&Statement::Empty) {
                return None;
            }
            message::empty_query_response(&mut self.reply);
        }
        for s in &statements {
            self.describe_and_run(s)?;
        }
        Some(())
    }

    /// A simple-protocol statement: its row description, rows and completion.
    fn describe_and_run(&mut self, s: &Statement) -> Option<()> {
        if *s == Statement::Cleanup(Cleanup::Unlock) {
            self.settable()?;
            message::row_description(
                &mut self.reply,
                &[Field {
                    name: "pg_advisory_unlock_all",
                    table_oid: 0,
                    column: 0,
                    type_oid: VOID,
                    type_len: 4,
                    type_mod: -1,
                    format: 0,
                }],
            );
            message::data_row(&mut self.reply, &[Some(b"")]);
            message::command_complete(&mut self.reply, "SELECT 1");
            self.effects.push(Effect::UnlockAll);
            return Some(());
        }
        if let Statement::Probe(p) = s {
            let value = self.probe_value(*p)?;
            message::row_description(&mut self.reply, &[field(*p, 0)]);
            message::data_row(&mut self.reply, &[Some(value.as_bytes())]);
            message::command_complete(&mut self.reply, command_tag(*p));
            return Some(());
        }
        self.execute(s, 0, 0)
    }

    fn probe_value(&self, p: Probe) -> Option<String> {
        if !self.view.probes.allows(&Statement::Probe(p)) {
            return None;
        }
        match p {
            Probe::One => Some("1".into()),
            Probe::Version => self
                .view
                .catalog
                .map(|c| c.version.clone())
                .filter(|v| !v.is_empty()),
            Probe::ServerVersion => lookup(self.view.told, "server_version").map(str::to_string),
        }
    }

    /// Execute of a statement (extended) or its run after the description (simple). With a
    /// row limit of one a probe's portal is suspended after its row, as the server does.
    fn execute(&mut self, s: &Statement, format: i16, max_rows: i32) -> Option<()> {
        match s {
            Statement::Empty if self.view.probes.allows(s) => {
                message::empty_query_response(&mut self.reply)
            }
            Statement::Empty => return None,
            Statement::Probe(p) => {
                let value = self.probe_value(*p)?;
                let bytes = match (p, format) {
                    (Probe::One, 1) => 1i32.to_be_bytes().to_vec(),
                    _ => value.into_bytes(),
                };
                message::data_row(&mut self.reply, &[Some(&bytes)]);
                if max_rows == 1 {
                    message::portal_suspended(&mut self.reply);
                } else {
                    message::command_complete(&mut self.reply, command_tag(*p));
                }
            }
            Statement::Begin { tag } => {
                if self.status != b'I' || self.view.probes_only {
                    return None;
                }
                self.status = b'T';
                self.effects.push(Effect::Begin);
                message::command_complete(&mut self.reply, tag);
            }
            Statement::Commit | Statement::Rollback => {
                if self.status != b'T' || self.view.probes_only {
                    return None;
                }
                self.status = b'I';
                self.effects.push(Effect::End);
                let tag = if *s == Statement::Commit {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                message::command_complete(&mut self.reply, tag);
            }
            Statement::Set { name, value } => {
                let accepted = self.settable()?.check_set(name, value)?;
                if let Some(v) = &accepted.reported {
                    self.report(&accepted.name, v.clone());
                }
                self.effects.push(Effect::Set(accepted));
                message::command_complete(&mut self.reply, "SET");
            }
            Statement::Reset { name } => {
                let def = self.settable()?.resettable(name)?;
                let canonical = def.name.clone();
                if Catalog::reported(&canonical) {
                    let initial = lookup(self.view.initial, &canonical)?.to_string();
                    self.report(&canonical, initial);
                }
                self.effects.push(Effect::Reset { name: canonical });
                message::command_complete(&mut self.reply, "RESET");
            }
            Statement::Cleanup(c) => {
                self.settable()?;
                let tag = match c {
                    // Only in the simple protocol (see `describe_and_run`).
                    Cleanup::Unlock => return None,
                    // A parked session has no cursor: only WITH HOLD ones outlive a
                    // transaction, and they keep a session from parking.
                    Cleanup::Close => "CLOSE CURSOR ALL",
                    Cleanup::Unlisten => {
                        self.effects.push(Effect::UnlistenAll);
                        "UNLISTEN"
                    }
                    Cleanup::Reset => {
                        for (name, value) in self.view.told {
                            if !Catalog::reported(name) || NOT_RESET_BY_ALL.contains(&name.as_str())
                            {
                                continue;
                            }
                            if let Some(initial) = lookup(self.view.initial, name)
                                && initial != value
                            {
                                self.report(name, initial.to_string());
                            }
                        }
                        self.effects.push(Effect::ResetAll);
                        "RESET"
                    }
                };
                message::command_complete(&mut self.reply, tag);
            }
            Statement::Other => return None,
        }
        Some(())
    }

    /// The catalog, when this request may change settings: outside a transaction (a SET in
    /// one would be undone by its rollback) and not during a drain.
    fn settable(&self) -> Option<&Catalog> {
        if self.status != b'I' || self.view.probes_only {
            return None;
        }
        self.view.catalog
    }

    fn report(&mut self, name: &str, value: String) {
        match self.reported.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.reported.push((name.to_string(), value)),
        }
    }

    /// ParameterStatus for what changed (only when the value differs from what the client
    /// was told), then ReadyForQuery, as the server sends them.
    fn finish(&mut self) {
        // The server reports changes in the order of its table of settings, sorted by name
        // without regard to case.
        let mut reported = std::mem::take(&mut self.reported);
        reported.sort_by_key(|(n, _)| n.to_ascii_lowercase());
        for (name, value) in reported {
            if lookup(self.view.told, &name) != Some(value.as_str()) {
                message::parameter_status(&mut self.reply, &name, &value);
                self.effects.push(Effect::Reported { name, value });
            }
        }
        if !self.flushed {
            message::ready_for_query(&mut self.reply, self.status);
        }
    }

    /// Parse/Bind/Describe/Execute/Close messages through the next Sync.
    fn batch(&mut self, buf: &[u8]) -> Batch {
        let mut unnamed: Option<Prepared> = None;
        let mut portal: Option<Prepared> = None;
        let mut named: HashMap<String, Statement> = HashMap::new();
        let mut closed: Vec<String> = Vec::new();
        let mut off = 0;
        loop {
            let (t, len) = match frame::message_len(&buf[off..], MAX_REQUEST) {
                Ok(Some(m)) => m,
                Ok(None) if off < MAX_REQUEST => return Batch::Incomplete,
                _ => return Batch::Server,
            };
            let b = body(buf, off, len);
            off += len;
            let step = match t {
                tag::SYNC => return Batch::Done(off),
                // The client wants what it asked so far. The next request may go to the
                // server, which must then hold everything this one made: named statements
                // do (the overlay carries them), the unnamed statement and portal don't, and
                // a setting's ParameterStatus would wait for the Sync.
                tag::FLUSH => {
                    if unnamed.is_some() || portal.is_some() || !self.reported.is_empty() {
                        return Batch::Server;
                    }
                    self.flushed = true;
                    return Batch::Done(off);
                }
                tag::PARSE => self.parse(b, &mut unnamed, &mut named, &closed),
                tag::BIND => {
                    let canned = self.view.canned;
                    let known = |name: &str| -> Option<Statement> {
                        if name.is_empty() {
                            return unnamed.as_ref().map(|p| p.statement.clone());
                        }
                        if closed.iter().any(|c| c == name) {
                            return None;
                        }
                        named.get(name).or_else(|| canned.get(name)).cloned()
                    };
                    bind(b, known).map(|p| {
                        portal = Some(p);
                        message::bind_complete(&mut self.reply);
                    })
                }
                tag::DESCRIBE => self.describe(b, unnamed.as_ref(), portal.as_ref(), &named),
                tag::EXECUTE => self.execute_portal(b, portal.as_mut()),
                tag::CLOSE => self.close(b, &mut named, &mut closed),
                _ => None,
            };
            if step.is_none() {
                return Batch::Server;
            }
        }
    }

    fn parse(
        &mut self,
        b: &[u8],
        unnamed: &mut Option<Prepared>,
        named: &mut HashMap<String, Statement>,
        closed: &[String],
    ) -> Option<()> {
        let p = parse::parse_message(b).ok()?;
        if !p.param_types.is_empty() {
            return None;
        }
        let statement = sql::single(p.query);
        if statement == Statement::Other {
            return None;
        }
        if p.name.is_empty() {
            *unnamed = Some(Prepared {
                statement,
                format: 0,
                executed: false,
            });
        } else {
            // Only probes and empty statements are kept by name; a statement of that name
            // existing already is the server's error to give.
            let canned = matches!(statement, Statement::Probe(_) | Statement::Empty);
            let exists = (self.view.canned.contains_key(p.name)
                && !closed.iter().any(|c| c == p.name))
                || named.contains_key(p.name);
            if !canned || exists || self.view.probes_only {
                return None;
            }
            named.insert(p.name.to_string(), statement.clone());
            self.effects.push(Effect::Parsed {
                name: p.name.to_string(),
                query: p.query.to_string(),
                statement,
            });
        }
        message::parse_complete(&mut self.reply);
        Some(())
    }

    fn describe(
        &mut self,
        b: &[u8],
        unnamed: Option<&Prepared>,
        portal: Option<&Prepared>,
        named: &HashMap<String, Statement>,
    ) -> Option<()> {
        let (kind, name) = parse::describe_message(b).ok()?;
        if kind == b'P' {
            if !name.is_empty() {
                return None;
            }
            let p = portal?;
            self.row_description(&p.statement, p.format)?;
        } else {
            let statement = if name.is_empty() {
                unnamed?.statement.clone()
            } else {
                named
                    .get(name)
                    .or_else(|| self.view.canned.get(name))?
                    .clone()
            };
            message::parameter_description(&mut self.reply, &[]);
            self.row_description(&statement, 0)?;
        }
        Some(())
    }

    fn row_description(&mut self, s: &Statement, format: i16) -> Option<()> {
        match s {
            Statement::Probe(p) => {
                // The value must be known for the Execute that follows anyway.
                self.probe_value(*p)?;
                message::row_description(&mut self.reply, &[field(*p, format)]);
            }
            Statement::Other => return None,
            _ => message::no_data(&mut self.reply),
        }
        Some(())
    }

    fn execute_portal(&mut self, b: &[u8], portal: Option<&mut Prepared>) -> Option<()> {
        let (name, max_rows) = parse::execute_message(b).ok()?;
        let p = portal?;
        // What a second run of a portal returns is left to the server.
        if !name.is_empty() || p.executed {
            return None;
        }
        p.executed = true;
        let (statement, format) = (p.statement.clone(), p.format);
        self.execute(&statement, format, max_rows)
    }

    fn close(
        &mut self,
        b: &[u8],
        named: &mut HashMap<String, Statement>,
        closed: &mut Vec<String>,
    ) -> Option<()> {
        let (kind, name) = parse::close_message(b).ok()?;
        if self.view.probes_only {
            return None;
        }
        if kind == b'S' && !name.is_empty() {
            named.remove(name);
            closed.push(name.to_string());
            self.effects.push(Effect::Closed {
                name: name.to_string(),
            });
        } else if kind == b'P' && !name.is_empty() {
            return None;
        }
        message::close_complete(&mut self.reply);
        Some(())
    }
}

/// A Bind of the unnamed portal to a known statement without parameters.
fn bind(b: &[u8], known: impl Fn(&str) -> Option<Statement>) -> Option<Prepared> {
    let m = parse::bind_message(b).ok()?;
    if !m.portal.is_empty() || !m.params.is_empty() || m.param_formats.len() > 1 {
        return None;
    }
    let statement = known(m.statement)?;
    let columns = usize::from(matches!(statement, Statement::Probe(_)));
    let format = match m.result_formats.as_slice() {
        [] => 0,
        [f] => *f,
        _ => return None,
    };
    if !(format == 0 || format == 1)
        || (m.result_formats.len() > 1 && m.result_formats.len() != columns)
    {
        return None;
    }
    Some(Prepared {
        statement,
        format,
        executed: false,
    })
}

fn field(p: Probe, format: i16) -> Field<'static> {
    let (name, type_oid, type_len) = match p {
        Probe::One => ("?column?", 23, 4),
        Probe::Version => ("version", 25, -1),
        Probe::ServerVersion => ("server_version", 25, -1),
    };
    Field {
        name,
        table_oid: 0,
        column: 0,
        type_oid,
        type_len,
        type_mod: -1,
        format,
    }
}

fn command_tag(p: Probe) -> &'static str {
    match p {
        Probe::One | Probe::Version => "SELECT 1",
        Probe::ServerVersion => "SHOW",
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether every whole message in `buf` belongs to health-check probes: a simple Query of a
/// probe or nothing, or Parse/Bind/Describe/Execute/Sync of one. Such traffic still reaches a
/// running server but does not count as activity. Cheap for ordinary queries: it stops at the
/// first message that is not a probe.
pub fn is_probe_traffic(
    buf: &[u8],
    canned: &HashMap<String, Statement>,
    probes: &ProbeSet,
) -> bool {
    let canned_text = |q: &str| probes.allows(&sql::single(q));
    let mut off = 0;
    let mut unnamed_probe = false;
    let mut any = false;
    while let Ok(Some((t, len))) = frame::message_len(&buf[off..], MAX_REQUEST) {
        let b = body(buf, off, len);
        off += len;
        any = true;
        let probe = match t {
            tag::QUERY => parse::query_message(b).is_ok_and(|q| {
                q.len() <= 64
                    && sql::statements(q).is_some_and(|v| match v.as_slice() {
                        [] => probes.allows(&Statement::Empty),
                        v => v.iter().all(|s| probes.allows(s)),
                    })
            }),
            tag::PARSE => parse::parse_message(b).is_ok_and(|p| {
                let ok = p.query.len() <= 64 && p.param_types.is_empty() && canned_text(p.query);
                if p.name.is_empty() {
                    unnamed_probe = ok;
                }
                ok
            }),
            // Most Binds name a statement that is no probe: don't decode them for nothing.
            tag::BIND if !unnamed_probe && canned.is_empty() => false,
            tag::BIND => parse::bind_message(b).is_ok_and(|m| {
                if m.statement.is_empty() {
                    unnamed_probe
                } else {
                    canned.get(m.statement).is_some_and(|s| probes.allows(s))
                }
            }),
            tag::DESCRIBE | tag::EXECUTE | tag::SYNC | tag::FLUSH => true,
            // Drivers close the statements of earlier probes ahead of the next request.
            tag::CLOSE => parse::close_message(b)
                .is_ok_and(|(kind, name)| kind == b'P' || canned.contains_key(name)),
            _ => false,
        };
        if !probe {
            return false;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::local::SettingDef;

    fn query(sql: &str) -> BytesMut {
        let mut b = BytesMut::new();
        message::query(&mut b, sql);
        b
    }

    fn catalog() -> Catalog {
        let mut c = Catalog {
            version: "PostgreSQL 15.18".into(),
            ..Catalog::default()
        };
        c.settings.insert(
            "application_name".into(),
            SettingDef {
                name: "application_name".into(),
                vartype: "string".into(),
                context: "user".into(),
                ..SettingDef::default()
            },
        );
        c
    }

    struct Fixture {
        told: Vec<(String, String)>,
        canned: HashMap<String, Statement>,
        catalog: Catalog,
        probes: ProbeSet,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                told: vec![
                    ("application_name".into(), "".into()),
                    ("server_version".into(), "15.18".into()),
                ],
                canned: HashMap::new(),
                catalog: catalog(),
                probes: ProbeSet::default(),
            }
        }

        fn answer(&self, buf: &[u8], txn: u8) -> Outcome {
            answer(
                buf,
                &View {
                    txn,
                    told: &self.told,
                    initial: &self.told,
                    canned: &self.canned,
                    catalog: Some(&self.catalog),
                    probes: &self.probes,
                    probes_only: false,
                },
            )
        }
    }

    fn tags(b: &[u8]) -> String {
        let mut out = String::new();
        let mut off = 0;
        while let Ok(Some((t, len))) = frame::message_len(&b[off..], usize::MAX) {
            out.push(t as char);
            off += len;
        }
        out
    }

    #[test]
    fn a_probe_is_answered_and_consumes_only_its_message() {
        let f = Fixture::new();
        let mut buf = query("SELECT 1");
        buf.extend_from_slice(&query("SELECT 2"));
        let Outcome::Answered(a) = f.answer(&buf, b'I') else {
            panic!("not answered");
        };
        assert_eq!(tags(&a.reply), "TDCZ");
        assert_eq!(a.consumed, query("SELECT 1").len());
        assert!(matches!(
            f.answer(&buf[a.consumed..], b'I'),
            Outcome::Server
        ));
    }

    #[test]
    fn probes_left_out_of_the_setting_go_to_the_server() {
        let mut f = Fixture::new();
        f.probes = ProbeSet::parse(&["SELECT 1".into()]).unwrap();
        assert!(matches!(f.answer(&query(""), b'I'), Outcome::Server));
        assert!(matches!(
            f.answer(&query("SHOW server_version"), b'I'),
            Outcome::Server
        ));
        assert!(matches!(
            f.answer(&query("select 1;"), b'I'),
            Outcome::Answered(_)
        ));
        assert!(!is_probe_traffic(&query(""), &f.canned, &f.probes));
        assert!(is_probe_traffic(&query("SELECT 1"), &f.canned, &f.probes));
        assert!(ProbeSet::parse(&["SELECT 2".into()]).is_err());
    }

    #[test]
    fn a_set_reports_only_a_change_and_not_inside_a_transaction() {
        let f = Fixture::new();
        let Outcome::Answered(a) = f.answer(&query("SET application_name = 'x'"), b'I') else {
            panic!("not answered");
        };
        assert_eq!(tags(&a.reply), "CSZ");
        let Outcome::Answered(a) = f.answer(&query("SET application_name = ''"), b'I') else {
            panic!("not answered");
        };
        assert_eq!(tags(&a.reply), "CZ");
        assert!(matches!(
            f.answer(&query("SET application_name = 'x'"), b'T'),
            Outcome::Server
        ));
    }

    #[test]
    fn plain_transaction_control_around_probes() {
        let f = Fixture::new();
        let Outcome::Answered(a) = f.answer(&query("BEGIN; SELECT 1"), b'I') else {
            panic!("not answered");
        };
        assert_eq!(tags(&a.reply), "CTDCZ");
        assert_eq!(a.reply.last(), Some(&b'T'));
        assert_eq!(a.effects, vec![Effect::Begin]);
        assert!(matches!(f.answer(&query("BEGIN"), b'T'), Outcome::Server));
        assert!(matches!(f.answer(&query("COMMIT"), b'I'), Outcome::Server));
        let Outcome::Answered(a) = f.answer(&query("ROLLBACK"), b'T') else {
            panic!("not answered");
        };
        assert_eq!(a.effects, vec![Effect::End]);
    }

    #[test]
    fn an_extended_batch_waits_for_its_sync_and_a_flush_answers_what_came_before() {
        let f = Fixture::new();
        let mut parse_describe = BytesMut::new();
        message::parse(&mut parse_describe, "s1", "SELECT 1", &[]);
        message::describe(&mut parse_describe, b'S', "s1");
        assert!(matches!(
            f.answer(&parse_describe, b'I'),
            Outcome::Incomplete
        ));
        message::flush(&mut parse_describe);
        let Outcome::Answered(a) = f.answer(&parse_describe, b'I') else {
            panic!("not answered");
        };
        assert_eq!(tags(&a.reply), "1tT");
        assert!(matches!(a.effects.as_slice(), [Effect::Parsed { name, .. }] if name == "s1"));
        // An unnamed statement can't be left for the server to know of.
        let mut unnamed = BytesMut::new();
        message::parse(&mut unnamed, "", "SELECT 1", &[]);
        message::flush(&mut unnamed);
        assert!(matches!(f.answer(&unnamed, b'I'), Outcome::Server));
    }
}
