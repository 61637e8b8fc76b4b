//! Follows one session's message stream to know when it is at a safe point: nothing in flight,
//! no transaction, no COPY. Reads only message tags and, for the few statements whose effect the
//! catalogs don't record, the statement text.

use std::collections::{BTreeSet, HashMap};

use super::local::{self, Effect, Statement};
use super::message::tag;
use super::parse;
use super::snapshot::PgSnapshot;
use super::sql;

/// How many custom setting names one session's tracker keeps. Each costs memory in the proxy
/// and a row at every checkpoint; a session that sets more blocks the drain instead.
pub const MAX_CUSTOM_SETTINGS: usize = 1000;

/// How many prepared statements' names one tracker remembers as reads or not; past it a
/// statement counts as one that may change something.
const MAX_STATEMENTS: usize = 1000;

const TOO_MANY_CUSTOM_SETTINGS: &str =
    "more custom settings set than torpor tracks per session (1000)";

#[derive(Debug, Clone)]
pub struct Tracker {
    /// Query, Sync and FunctionCall messages still waiting for their ReadyForQuery.
    pending: u32,
    /// Extended-protocol messages sent since the last Sync.
    extended: bool,
    /// Transaction status from the last ReadyForQuery.
    txn: u8,
    copy: bool,
    /// Syncs sent since the last Execute or Query: if that statement turns out to be a COPY
    /// FROM STDIN, the backend ignores the Syncs that reach it in copy-in mode and answers
    /// none of them.
    syncs_since_execute: u32,
    /// The backend entered copy-in mode since the last Execute or Query.
    copy_in_started: bool,
    /// The client ended the copy (CopyDone/CopyFail) since the last Execute or Query.
    copy_in_ended: bool,
    /// Temp tables created with ON COMMIT DELETE ROWS: the catalogs don't keep that flag.
    on_commit_delete_rows: Vec<String>,
    /// Custom `a.b` settings the session set: pg_settings doesn't list them. At most
    /// [`MAX_CUSTOM_SETTINGS`]; past that `custom_overflow` keeps the session from a stop.
    custom_settings: BTreeSet<String>,
    custom_overflow: bool,
    /// The client sent something since the last snapshot (or since the backend connection
    /// was made) that may have changed what the session holds. A session that only read can
    /// keep its last snapshot, or needs none.
    changed: bool,
    /// Named statements whose text is a probe or empty, which torpor can run itself while
    /// the session is parked (pgjdbc's isValid becomes one after a few uses).
    canned: HashMap<String, Statement>,
    /// Names added to `canned` since the last ReadyForQuery: an error takes them back.
    canned_pending: Vec<String>,
    /// The transaction block ran something that keeps it from being carried over a stop.
    /// Until it ends the session counts as busy. A block without this still needs the
    /// backend's word at checkpoint.
    txn_tainted: bool,
    /// Named statements whose text would taint a transaction block.
    tainting: std::collections::HashSet<String>,
    /// The unnamed statement's text would.
    unnamed_taints: bool,
    /// A SQL PREPARE whose text would was seen: any EXECUTE might run it.
    sql_prepare_taints: bool,
    /// Prepared statements (protocol-level and SQL PREPARE share one namespace) and whether
    /// their text only reads: running one that does changes nothing the session holds.
    statements: HashMap<String, bool>,
    /// Names added to `statements` since the last ReadyForQuery: an error takes them back.
    statements_pending: Vec<String>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            pending: 0,
            extended: false,
            txn: b'I',
            copy: false,
            syncs_since_execute: 0,
            copy_in_started: false,
            copy_in_ended: false,
            on_commit_delete_rows: Vec::new(),
            custom_settings: BTreeSet::new(),
            custom_overflow: false,
            changed: false,
            canned: HashMap::new(),
            canned_pending: Vec::new(),
            txn_tainted: false,
            tainting: std::collections::HashSet::new(),
            unnamed_taints: false,
            sql_prepare_taints: false,
            statements: HashMap::new(),
            statements_pending: Vec::new(),
        }
    }
}

impl Tracker {
    /// A complete frontend message on its way to the backend.
    pub fn client_message(&mut self, tag: u8, body: &[u8]) {
        match tag {
            tag::QUERY => {
                self.pending += 1;
                self.new_statement();
                match parse::query_message(body) {
                    Ok(q) => {
                        self.sniff(q);
                        let known = &self.statements;
                        let reads = sql::plainly_reads(q)
                            || sql::executes_read(q, |n| known.get(n) == Some(&true));
                        if !reads && sql::may_drop_statements(q) {
                            self.canned.clear();
                            self.statements.clear();
                        }
                        if sql::prepares(q) {
                            match sql::prepares_read(q) {
                                Some(name) => self.note_statement(&name, true),
                                None => {
                                    if let Some(name) = sql::prepare_name(q) {
                                        self.note_statement(&name, false);
                                    }
                                }
                            }
                        }
                        if !reads {
                            self.note_txn_statement(q);
                        }
                        self.note_change(!reads);
                    }
                    Err(_) => self.changed = true,
                }
            }
            tag::PARSE => {
                self.extended = true;
                match parse::parse_message(body) {
                    Ok(p) => {
                        self.sniff(p.query);
                        if !p.name.is_empty() {
                            self.note_parsed(p.name, p.query, p.param_types.is_empty());
                            self.note_statement(p.name, sql::plainly_reads(p.query));
                        }
                        let taints =
                            !sql::plainly_reads(p.query) && sql::taints_transaction(p.query);
                        if p.name.is_empty() {
                            self.unnamed_taints = taints;
                        } else if taints {
                            self.tainting.insert(p.name.to_string());
                        }
                        // A named statement is itself session state.
                        self.note_change(!p.name.is_empty() || !sql::plainly_reads(p.query));
                    }
                    Err(_) => self.changed = true,
                }
            }
            tag::BIND => {
                self.extended = true;
                // Executing a named statement may do anything its text does.
                let statement = body
                    .iter()
                    .position(|&b| b == 0)
                    .and_then(|end| body.get(end + 1..))
                    .and_then(|rest| rest.first());
                let name = body
                    .iter()
                    .position(|&b| b == 0)
                    .and_then(|end| body.get(end + 1..))
                    .and_then(|rest| rest.iter().position(|&b| b == 0).map(|n| &rest[..n]));
                // Running a named statement may do anything its text does.
                let reads = name
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .is_some_and(|n| self.statements.get(n) == Some(&true));
                if statement != Some(&0) && !reads {
                    self.changed = true;
                }
                let taints = match name {
                    Some([]) => self.unnamed_taints,
                    Some(n) => std::str::from_utf8(n).map_or(true, |n| self.tainting.contains(n)),
                    None => true,
                };
                self.txn_tainted |= taints;
            }
            tag::CLOSE | tag::FUNCTION_CALL => {
                if tag == tag::CLOSE
                    && let Ok((b'S', name)) = parse::close_message(body)
                {
                    self.canned.remove(name);
                    self.statements.remove(name);
                }
                self.extended |= tag == tag::CLOSE;
                self.pending += u32::from(tag == tag::FUNCTION_CALL);
                self.txn_tainted |= tag == tag::FUNCTION_CALL;
                self.changed = true;
            }
            tag::SYNC => {
                self.pending += 1;
                self.extended = false;
                if !self.copy_in_ended {
                    self.syncs_since_execute += 1;
                }
            }
            tag::EXECUTE => {
                self.extended = true;
                self.new_statement();
            }
            tag::DESCRIBE | tag::FLUSH => self.extended = true,
            tag::COPY_DONE | tag::COPY_FAIL => {
                self.copy_in_ended = true;
                self.forget_ignored_syncs();
            }
            _ => {}
        }
    }

    /// A complete backend message on its way to the client.
    pub fn backend_message(&mut self, tag: u8, body: &[u8]) {
        match tag {
            tag::READY_FOR_QUERY => {
                self.canned_pending.clear();
                self.statements_pending.clear();
                self.pending = self.pending.saturating_sub(1);
                self.copy = false;
                if let Ok(status) = parse::ready_for_query(body) {
                    self.txn = status;
                    if status == b'I' {
                        self.txn_tainted = false;
                    }
                }
            }
            tag::COPY_IN_RESPONSE => {
                self.copy = true;
                self.copy_in_started = true;
                self.forget_ignored_syncs();
            }
            tag::COPY_OUT_RESPONSE | tag::COPY_BOTH_RESPONSE => self.copy = true,
            // A portal left open mid-result lives until the transaction ends.
            tag::PORTAL_SUSPENDED => self.txn_tainted = true,
            tag::COMMAND_COMPLETE => self.copy = false,
            tag::ERROR_RESPONSE => {
                self.copy = false;
                for name in self.canned_pending.drain(..) {
                    self.canned.remove(&name);
                }
                for name in self.statements_pending.drain(..) {
                    self.statements.remove(&name);
                }
            }
            _ => {}
        }
    }

    fn new_statement(&mut self) {
        self.syncs_since_execute = 0;
        self.copy_in_started = false;
        self.copy_in_ended = false;
    }

    /// Once the backend is in copy-in mode and the client has ended the copy, the Syncs the
    /// client sent in between were swallowed by the backend's copy loop.
    fn forget_ignored_syncs(&mut self) {
        if self.copy_in_started && self.copy_in_ended {
            self.pending = self.pending.saturating_sub(self.syncs_since_execute);
            self.syncs_since_execute = 0;
        }
    }

    /// A statement that may run in a transaction block (or open one) and isn't a plain read.
    fn note_txn_statement(&mut self, q: &str) {
        if self.txn == b'I' && !sql::may_begin(q) && !sql::prepares(q) {
            return;
        }
        let taints = sql::taints_transaction(q);
        if taints && sql::prepares(q) {
            self.sql_prepare_taints = true;
        }
        self.txn_tainted |= taints || (self.sql_prepare_taints && sql::executes(q));
    }

    /// A named statement is being prepared: keep it if torpor could answer it.
    fn note_parsed(&mut self, name: &str, query: &str, untyped: bool) {
        // Preparing an existing name fails on the server and leaves the old statement.
        if self.canned.contains_key(name) || !untyped || query.len() > local::MAX_CANNED_TEXT {
            return;
        }
        let statement = local::single(query);
        if matches!(statement, Statement::Probe(_) | Statement::Empty) {
            self.canned.insert(name.to_string(), statement);
            self.canned_pending.push(name.to_string());
        }
    }

    /// A statement is being prepared under `name`. Preparing a name that exists fails on the
    /// server and leaves the old one: only a new name is noted, and an error takes it back.
    fn note_statement(&mut self, name: &str, reads: bool) {
        if self.statements.contains_key(name) || self.statements.len() >= MAX_STATEMENTS {
            return;
        }
        self.statements.insert(name.to_string(), reads);
        self.statements_pending.push(name.to_string());
    }

    /// Named statements torpor can answer itself while parked.
    pub fn canned(&self) -> &HashMap<String, Statement> {
        &self.canned
    }

    /// What torpor answered for the session changed it: keep following it as the server
    /// will hold it after the next replay.
    pub fn apply(&mut self, effects: &[Effect]) {
        for e in effects {
            match e {
                Effect::Set(a) if a.name.contains('.') => self.note_custom_setting(&a.name),
                Effect::Parsed {
                    name, statement, ..
                } => {
                    self.canned.insert(name.clone(), statement.clone());
                }
                Effect::Closed { name } => {
                    self.canned.remove(name);
                }
                _ => {}
            }
        }
    }

    /// A snapshot was replayed into a fresh connection: its statements are the session's now.
    pub fn restored(&mut self, snap: &PgSnapshot) {
        self.canned.clear();
        self.statements.clear();
        for p in &snap.prepared {
            let reads = if p.from_sql {
                sql::prepares_read(&p.statement).is_some()
            } else {
                self.note_parsed(&p.name, &p.statement, p.param_types.is_empty());
                sql::plainly_reads(&p.statement)
            };
            self.note_statement(&p.name, reads);
        }
        self.canned_pending.clear();
        self.statements_pending.clear();
    }

    fn note_change(&mut self, changes: bool) {
        self.changed |= changes;
    }

    /// Something may have changed what the session holds since [`Tracker::mark_saved`].
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// torpor answered requests that changed the session: the store no longer holds it.
    pub fn note_local_changes(&mut self) {
        self.changed = true;
    }

    /// The session's state is now what the store holds (a snapshot was put, or restored).
    pub fn mark_saved(&mut self) {
        self.changed = false;
    }

    fn sniff(&mut self, query: &str) {
        if sql::may_create_on_commit_delete_rows(query) {
            for table in sql::on_commit_delete_rows_tables(query) {
                if !self.on_commit_delete_rows.contains(&table) {
                    self.on_commit_delete_rows.push(table);
                }
            }
        }
        for name in sql::custom_setting_names(query) {
            self.note_custom_setting(&name);
        }
    }

    fn note_custom_setting(&mut self, name: &str) {
        if self.custom_settings.contains(name) {
            return;
        }
        if self.custom_settings.len() < MAX_CUSTOM_SETTINGS {
            self.custom_settings.insert(name.to_string());
        } else {
            self.custom_overflow = true;
        }
    }

    /// The transaction status the backend last reported.
    pub fn txn_status(&self) -> u8 {
        self.txn
    }

    /// The backend judged the open transaction block impossible to carry over a stop.
    pub fn note_uncarriable(&mut self) {
        if self.txn == b'T' {
            self.txn_tainted = true;
        }
    }

    /// A transaction was opened on a fresh connection before the client's next statement.
    pub fn reopened(&mut self, status: u8) {
        self.txn = status;
    }

    /// A request waits for the backend's answer (or a COPY is under way).
    pub fn in_flight(&self) -> bool {
        self.copy || self.pending > 0 || self.extended
    }

    pub fn is_idle(&self) -> bool {
        self.blocker().is_none()
    }

    /// Why this session can't be checkpointed right now.
    pub fn blocker(&self) -> Option<&'static str> {
        if self.copy {
            Some("COPY in progress")
        } else if self.pending > 0 || self.extended {
            Some("query in flight")
        } else if self.txn == b'E' || (self.txn == b'T' && self.txn_tainted) {
            Some("open transaction")
        } else if self.custom_overflow {
            Some(TOO_MANY_CUSTOM_SETTINGS)
        } else {
            None
        }
    }

    pub fn on_commit_delete_rows(&self) -> &[String] {
        &self.on_commit_delete_rows
    }

    pub fn custom_settings(&self) -> &BTreeSet<String> {
        &self.custom_settings
    }

    /// After a replay on a fresh backend the session is idle outside a transaction.
    pub fn reset_to_idle(&mut self) {
        self.pending = 0;
        self.extended = false;
        self.txn = b'I';
        self.txn_tainted = false;
        self.copy = false;
        self.new_statement();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfq(status: u8) -> [u8; 1] {
        [status]
    }

    #[test]
    fn simple_query_round_trip() {
        let mut t = Tracker::default();
        assert!(t.is_idle());
        t.client_message(tag::QUERY, b"select 1\0");
        assert_eq!(t.blocker(), Some("query in flight"));
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle());
    }

    #[test]
    fn a_transaction_that_may_only_have_read_is_for_the_backend_to_judge() {
        let mut t = Tracker::default();
        t.client_message(tag::QUERY, b"begin\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'T'));
        t.client_message(tag::QUERY, b"select count(*) from t where x = 'set'\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'T'));
        assert!(t.is_idle());
        assert_eq!(t.txn_status(), b'T');
        t.client_message(tag::QUERY, b"commit\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle());
    }

    #[test]
    fn transaction_blocks_until_commit() {
        let mut t = Tracker::default();
        t.client_message(tag::QUERY, b"begin; set local work_mem = '1MB'\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'T'));
        assert_eq!(t.blocker(), Some("open transaction"));
        t.client_message(tag::QUERY, b"commit\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle());
    }

    #[test]
    fn extended_protocol_needs_sync() {
        let mut t = Tracker::default();
        t.client_message(tag::BIND, b"");
        t.client_message(tag::EXECUTE, b"");
        assert!(!t.is_idle());
        t.client_message(tag::SYNC, b"");
        assert!(!t.is_idle());
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle());
    }

    #[test]
    fn copy_is_a_blocker() {
        let mut t = Tracker::default();
        t.client_message(tag::QUERY, b"copy t from stdin\0");
        t.backend_message(tag::COPY_IN_RESPONSE, b"");
        assert_eq!(t.blocker(), Some("COPY in progress"));
        t.backend_message(tag::COMMAND_COMPLETE, b"COPY 1\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle());
    }

    #[test]
    fn extended_copy_in_ignores_the_sync_sent_before_the_data() {
        // tokio-postgres: Bind, Execute, Sync; then CopyData, CopyDone, Sync after CopyInResponse.
        let mut t = Tracker::default();
        t.client_message(tag::BIND, b"");
        t.client_message(tag::EXECUTE, b"");
        t.client_message(tag::SYNC, b"");
        t.backend_message(tag::BIND_COMPLETE, b"");
        t.backend_message(tag::COPY_IN_RESPONSE, b"");
        t.client_message(tag::COPY_DATA, b"x");
        t.client_message(tag::COPY_DONE, b"");
        t.client_message(tag::SYNC, b"");
        assert!(!t.is_idle());
        t.backend_message(tag::COMMAND_COMPLETE, b"COPY 1\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle(), "{:?}", t);
    }

    #[test]
    fn copy_done_sent_before_copy_in_response_still_counts() {
        let mut t = Tracker::default();
        t.client_message(tag::EXECUTE, b"");
        t.client_message(tag::SYNC, b"");
        t.client_message(tag::COPY_DATA, b"x");
        t.client_message(tag::COPY_DONE, b"");
        t.client_message(tag::SYNC, b"");
        t.backend_message(tag::COPY_IN_RESPONSE, b"");
        t.backend_message(tag::COMMAND_COMPLETE, b"COPY 1\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle(), "{:?}", t);
    }

    #[test]
    fn syncs_of_earlier_statements_are_not_forgotten() {
        let mut t = Tracker::default();
        t.client_message(tag::EXECUTE, b"");
        t.client_message(tag::SYNC, b"");
        t.client_message(tag::QUERY, b"copy t from stdin\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        t.backend_message(tag::COPY_IN_RESPONSE, b"");
        t.client_message(tag::COPY_DONE, b"");
        assert!(!t.is_idle());
        t.backend_message(tag::COMMAND_COMPLETE, b"COPY 0\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle(), "{:?}", t);
    }

    #[test]
    fn what_taints_a_transaction() {
        for q in [
            "begin isolation level serializable",
            "notify ch",
            "select pg_notify('ch', 'x')",
            "savepoint a",
            "select pg_advisory_xact_lock(1)",
            "update t set x = 1",
            "select set_config('a.b', 'c', true)",
        ] {
            let mut t = Tracker::default();
            t.client_message(tag::QUERY, b"begin\0");
            t.backend_message(tag::READY_FOR_QUERY, &rfq(b'T'));
            let msg = format!("{q}\0");
            t.client_message(tag::QUERY, msg.as_bytes());
            t.backend_message(tag::READY_FOR_QUERY, &rfq(b'T'));
            assert_eq!(t.blocker(), Some("open transaction"), "{q}");
            t.client_message(tag::QUERY, b"rollback\0");
            t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
            assert!(t.is_idle(), "{q}");
        }
        // A failed transaction can't be carried.
        let mut t = Tracker::default();
        t.client_message(tag::QUERY, b"select 1/0\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'E'));
        assert_eq!(t.blocker(), Some("open transaction"));
    }

    fn query(t: &mut Tracker, sql: &str) {
        t.client_message(tag::QUERY, format!("{sql}\0").as_bytes());
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
    }

    /// Feeds the tracker whole frontend messages from `build`.
    fn send(t: &mut Tracker, build: impl FnOnce(&mut bytes::BytesMut)) {
        let mut out = bytes::BytesMut::new();
        build(&mut out);
        let mut buf = &out[..];
        while let Ok(Some((tag, len))) = super::super::frame::message_len(buf, usize::MAX) {
            t.client_message(tag, &buf[5..len]);
            buf = &buf[len..];
        }
    }

    fn bind_and_run(t: &mut Tracker, name: &str) {
        send(t, |o| {
            crate::pg::message::bind_text(o, "", name, &[]);
            crate::pg::message::execute(o, "", 0);
        });
        send(t, |o| {
            o.extend_from_slice(&[tag::SYNC, 0, 0, 0, 4]);
        });
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
    }

    #[test]
    fn running_a_prepared_read_changes_nothing() {
        let mut t = Tracker::default();
        send(&mut t, |o| {
            crate::pg::message::parse(o, "r", "SELECT count(*) FROM t WHERE a = $1", &[]);
            crate::pg::message::parse(o, "w", "SELECT nextval('s')", &[]);
        });
        bind_and_run(&mut t, "r");
        assert!(t.changed(), "a named statement is itself state");
        t.mark_saved();
        bind_and_run(&mut t, "r");
        assert!(!t.changed());
        bind_and_run(&mut t, "w");
        assert!(t.changed());

        t.mark_saved();
        query(&mut t, "PREPARE q(int) AS SELECT $1 + 1");
        t.mark_saved();
        query(&mut t, "EXECUTE q(1)");
        assert!(!t.changed());
        // Preparing a name that exists fails and leaves the old statement.
        query(&mut t, "PREPARE w2 AS SELECT nextval('s')");
        t.mark_saved();
        t.client_message(tag::QUERY, b"PREPARE w2 AS SELECT 1\0");
        t.backend_message(tag::ERROR_RESPONSE, b"");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        t.mark_saved();
        query(&mut t, "EXECUTE w2");
        assert!(t.changed());
        // A failed PREPARE of a new name is forgotten, so a later one decides.
        t.mark_saved();
        t.client_message(tag::QUERY, b"PREPARE n AS SELECT 1 FROM nowhere\0");
        t.backend_message(tag::ERROR_RESPONSE, b"");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        query(&mut t, "PREPARE n AS SELECT nextval('s')");
        t.mark_saved();
        query(&mut t, "EXECUTE n");
        assert!(t.changed());
        // DEALLOCATE forgets what was known.
        t.mark_saved();
        query(&mut t, "DEALLOCATE q");
        t.mark_saved();
        query(&mut t, "EXECUTE q(1)");
        assert!(t.changed());
    }

    /// 100,000 set_config calls in a comment once took the proxy tens of seconds to track.
    #[test]
    fn set_config_calls_in_a_comment_are_tracked_fast_and_not_at_all() {
        let mut sql = String::from("select 1 /* ");
        for i in 0..100_000 {
            sql.push_str(&format!("set_config('x.a{i}' "));
        }
        sql.push_str("*/");
        let mut t = Tracker::default();
        let started = std::time::Instant::now();
        query(&mut t, &sql);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(t.custom_settings().is_empty());
        assert!(t.is_idle());
    }

    #[test]
    fn past_the_cap_of_custom_settings_the_drain_is_blocked() {
        let mut t = Tracker::default();
        let calls: Vec<String> = (0..MAX_CUSTOM_SETTINGS)
            .map(|i| format!("set_config('x.a{i}', '1', false)"))
            .collect();
        query(&mut t, &format!("select {}", calls.join(", ")));
        assert_eq!(t.custom_settings().len(), MAX_CUSTOM_SETTINGS);
        assert!(t.is_idle());
        query(&mut t, "select set_config('x.a0', '2', false)");
        assert!(t.is_idle(), "a name already tracked is no new one");
        query(&mut t, "select set_config('x.one_more', '1', false)");
        assert_eq!(t.custom_settings().len(), MAX_CUSTOM_SETTINGS);
        let why = t.blocker().unwrap_or_default();
        assert!(why.contains(&MAX_CUSTOM_SETTINGS.to_string()), "{why}");
    }

    #[test]
    fn pipelined_queries_wait_for_every_ready() {
        let mut t = Tracker::default();
        t.client_message(tag::QUERY, b"select 1\0");
        t.client_message(tag::QUERY, b"select 2\0");
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(!t.is_idle());
        t.backend_message(tag::READY_FOR_QUERY, &rfq(b'I'));
        assert!(t.is_idle());
    }
}
