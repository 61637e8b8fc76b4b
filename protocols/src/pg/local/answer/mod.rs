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

mod extended;

use extended::Batch;

/// What the session knows that an answer depends on.
pub struct View<'a> {
    /// Transaction status for ReadyForQuery: b'I', or b'T' in a carried read-only transaction,
    /// or b'E' once a wake failed in one: then only its end is answered.
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
pub(super) const MAX_REQUEST: usize = 8 << 10;

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

pub(super) fn body(buf: &[u8], off: usize, len: usize) -> &[u8] {
    buf.get(off + 5..off + len).unwrap_or_default()
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
        self.runs_now(s)?;
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
        self.runs_now(s)?;
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
                if !matches!(self.status, b'T' | b'E') || self.view.probes_only {
                    return None;
                }
                // A failed block ends rolled back, whichever the client asked for.
                let tag = if *s == Statement::Commit && self.status == b'T' {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                self.status = b'I';
                self.effects.push(Effect::End);
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

    /// In a failed transaction block only the statement that ends it runs: the session tells
    /// the client of anything else (SQLSTATE 25P02), as the server would.
    fn runs_now(&self, s: &Statement) -> Option<()> {
        let ends = matches!(s, Statement::Commit | Statement::Rollback);
        (self.status != b'E' || ends).then_some(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::local::{SettingDef, is_probe_traffic};

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

        /// [`Fixture::answer`] that torpor must give itself.
        fn answered(&self, buf: &[u8], txn: u8) -> Answer {
            match self.answer(buf, txn) {
                Outcome::Answered(a) => a,
                _ => panic!("not answered"),
            }
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
        let a = f.answered(&buf, b'I');
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
        let a = f.answered(&query("SET application_name = 'x'"), b'I');
        assert_eq!(tags(&a.reply), "CSZ");
        let a = f.answered(&query("SET application_name = ''"), b'I');
        assert_eq!(tags(&a.reply), "CZ");
        assert!(matches!(
            f.answer(&query("SET application_name = 'x'"), b'T'),
            Outcome::Server
        ));
    }

    #[test]
    fn plain_transaction_control_around_probes() {
        let f = Fixture::new();
        let a = f.answered(&query("BEGIN; SELECT 1"), b'I');
        assert_eq!(tags(&a.reply), "CTDCZ");
        assert_eq!(a.reply.last(), Some(&b'T'));
        assert_eq!(a.effects, vec![Effect::Begin]);
        assert!(matches!(f.answer(&query("BEGIN"), b'T'), Outcome::Server));
        assert!(matches!(f.answer(&query("COMMIT"), b'I'), Outcome::Server));
        let a = f.answered(&query("ROLLBACK"), b'T');
        assert_eq!(a.effects, vec![Effect::End]);
    }

    #[test]
    fn a_failed_block_answers_only_its_end() {
        let f = Fixture::new();
        for sql in ["ROLLBACK", "COMMIT", "abort"] {
            let a = f.answered(&query(sql), b'E');
            assert_eq!(tags(&a.reply), "CZ", "{sql}");
            assert!(a.reply.ends_with(b"ROLLBACK\0Z\0\0\0\x05I"), "{sql}");
            assert_eq!(a.effects, vec![Effect::End]);
        }
        let mut batch = BytesMut::new();
        message::parse(&mut batch, "", "ROLLBACK", &[]);
        message::bind_text(&mut batch, "", "", &[]);
        message::execute(&mut batch, "", 0);
        message::sync(&mut batch);
        assert_eq!(tags(&f.answered(&batch, b'E').reply), "12CZ");
        for sql in [
            "SELECT 1",
            "SET application_name = 'x'",
            "BEGIN",
            "SELECT 2",
        ] {
            let answer = f.answer(&query(sql), b'E');
            assert!(matches!(answer, Outcome::Server), "{sql}: {answer:?}");
        }
        let mut probe = BytesMut::new();
        message::parse(&mut probe, "", "SELECT 1", &[]);
        message::sync(&mut probe);
        assert!(matches!(f.answer(&probe, b'E'), Outcome::Server));
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
        let a = f.answered(&parse_describe, b'I');
        assert_eq!(tags(&a.reply), "1tT");
        assert!(matches!(a.effects.as_slice(), [Effect::Parsed { name, .. }] if name == "s1"));
        // An unnamed statement can't be left for the server to know of.
        let mut unnamed = BytesMut::new();
        message::parse(&mut unnamed, "", "SELECT 1", &[]);
        message::flush(&mut unnamed);
        assert!(matches!(f.answer(&unnamed, b'I'), Outcome::Server));
    }
}
