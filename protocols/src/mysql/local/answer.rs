//! The exact packets MariaDB sends for the statements [`super::sql`] recognises, and what they
//! change in the session.

use super::catalog::{Catalog, Change};
use super::sql::{self, Probe, ProbeSet, Statement};
use crate::mysql::handshake::caps;
use crate::mysql::packet::write_packet;
use crate::mysql::response::{OkPacket, SessionChange, err_packet, status, write_session_changes};

/// What the answer may rely on about the session.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Capabilities agreed with the client.
    pub capabilities: u32,
    /// The server status the session is in (AUTOCOMMIT, NO_BACKSLASH_ESCAPES, ANSI_QUOTES).
    pub status: u16,
    /// None: only probes may be answered.
    pub catalog: Option<&'a Catalog>,
    /// The session's session_track_* and old_mode are still the server's defaults.
    pub plain_session: bool,
    /// The probes torpor answers for this cluster.
    pub probes: &'a ProbeSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Whole packets, numbered from the `seq` given.
    pub reply: Vec<u8>,
    /// The status after the statements ran.
    pub status: u16,
    /// Assignments for the next replay, in order: (variable, SQL literal).
    pub changes: Vec<(String, String)>,
}

/// Status flags that belong to the session rather than to one statement.
pub const SESSION_STATUS: u16 =
    status::AUTOCOMMIT | status::IN_TRANS | status::NO_BACKSLASH_ESCAPES | status::ANSI_QUOTES;

/// The answer to a COM_QUERY text, or None when the server must answer it.
pub fn answer(text: &[u8], seq: u8, view: &View) -> Option<Answer> {
    let mut st = view.status & SESSION_STATUS;
    let statements = sql::parse(text, st & status::ANSI_QUOTES != 0)?;
    if statements.len() > 1 && view.capabilities & caps::MULTI_STATEMENTS == 0 {
        return None;
    }
    let deprecate_eof = view.capabilities & caps::DEPRECATE_EOF != 0;
    let mut out = Vec::new();
    let mut seq = seq;
    let mut changes = Vec::new();
    let n = statements.len();
    for (i, s) in statements.iter().enumerate() {
        let more = if i + 1 < n {
            status::MORE_RESULTS_EXISTS
        } else {
            0
        };
        match s {
            Statement::Empty => {
                seq = write_packet(&mut out, seq, &err_packet(1065, "42000", "Query was empty"));
            }
            Statement::Probe(p) if !view.probes.allows(*p) => return None,
            Statement::Probe(Probe::DoOne) => {
                seq = ok(&mut out, seq, st | more, &[], view.capabilities);
            }
            Statement::Probe(Probe::SelectOne) => {
                seq = select_one(&mut out, seq, st | more, deprecate_eof);
            }
            Statement::Set(_) | Statement::Names { .. } | Statement::Transaction { .. } => {
                // A SET inside a transaction may end it (autocommit) or be refused.
                if st & status::IN_TRANS != 0 {
                    return None;
                }
                let catalog = view.catalog.filter(|c| c.plain_defaults())?;
                let made = set_changes(s, catalog, view.plain_session)?;
                for c in &made {
                    st = apply(st, c);
                }
                let tracked = if view.capabilities & caps::SESSION_TRACK != 0 {
                    reported(&made, catalog, view.plain_session)?
                } else {
                    Vec::new()
                };
                seq = ok(&mut out, seq, st | more, &tracked, view.capabilities);
                changes.extend(made.into_iter().map(|c| (c.name, c.literal)));
            }
        }
    }
    Some(Answer {
        reply: out,
        status: st,
        changes,
    })
}

/// The OK packet for COM_PING (and anything else answered with a bare OK).
pub fn ok_packet(seq: u8, status: u16, capabilities: u32) -> Vec<u8> {
    let mut out = Vec::new();
    ok(&mut out, seq, status & SESSION_STATUS, &[], capabilities);
    out
}

fn set_changes(s: &Statement, catalog: &Catalog, plain: bool) -> Option<Vec<Change>> {
    match s {
        Statement::Set(assignments) => assignments
            .iter()
            .map(|a| catalog.assignment(a, plain))
            .collect(),
        Statement::Names { charset, collation } => {
            catalog.names(charset, collation.as_deref(), plain)
        }
        Statement::Transaction {
            isolation,
            read_only,
        } => catalog.transaction(*isolation, *read_only),
        Statement::Empty | Statement::Probe(_) => None,
    }
}

/// The status flags a change moves.
fn apply(st: u16, c: &Change) -> u16 {
    let flag = |st: u16, f: u16, on: bool| if on { st | f } else { st & !f };
    match c.name.as_str() {
        "autocommit" => flag(st, status::AUTOCOMMIT, c.shown == "ON"),
        "sql_mode" => {
            let has = |m: &str| c.shown.split(',').any(|x| x == m);
            let st = flag(st, status::ANSI_QUOTES, has("ANSI_QUOTES"));
            flag(
                st,
                status::NO_BACKSLASH_ESCAPES,
                has("NO_BACKSLASH_ESCAPES"),
            )
        }
        _ => st,
    }
}

/// The tracked variables the server reports for these changes, in the order it reports them:
/// each tracked variable assigned to, once, with its final value. None when torpor can't tell.
fn reported(made: &[Change], catalog: &Catalog, plain: bool) -> Option<Vec<SessionChange>> {
    if !plain {
        return None;
    }
    let tracked = catalog.tracked()?;
    let mut names: Vec<&str> = Vec::new();
    for c in made {
        if !tracked.contains(&c.name) {
            continue;
        }
        if c.reported != Some(true) {
            return None;
        }
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
    }
    if names.len() > 1 {
        let order = catalog.tracked_order.as_ref()?;
        let mut ranked = Vec::with_capacity(names.len());
        for n in &names {
            ranked.push((order.iter().position(|o| o == n)?, *n));
        }
        ranked.sort();
        names = ranked.into_iter().map(|(_, n)| n).collect();
    }
    Some(
        names
            .into_iter()
            .filter_map(|n| made.iter().rev().find(|c| c.name == n))
            .map(|c| SessionChange::SystemVariable {
                name: c.name.clone(),
                value: c.shown.clone().into_bytes(),
            })
            .collect(),
    )
}

fn ok(out: &mut Vec<u8>, seq: u8, st: u16, tracked: &[SessionChange], capabilities: u32) -> u8 {
    let mut ok = OkPacket {
        status: st,
        ..OkPacket::default()
    };
    if !tracked.is_empty() && capabilities & caps::SESSION_TRACK != 0 {
        ok.status |= status::SESSION_STATE_CHANGED;
        write_session_changes(tracked, &mut ok.session_state);
    }
    let mut body = Vec::new();
    ok.write(0x00, capabilities, &mut body);
    write_packet(out, seq, &body)
}

/// `SELECT 1`: one BIGINT-free column named `1` (INT, binary charset, NOT NULL), one row.
fn select_one(out: &mut Vec<u8>, seq: u8, st: u16, deprecate_eof: bool) -> u8 {
    const COLUMN: &[u8] = &[
        3, b'd', b'e', b'f', // catalog
        0, 0, 0, // schema, table, org_table
        1, b'1', // name
        0,    // org_name
        0x0c, // length of the fixed fields
        0x3f, 0x00, // binary
        1, 0, 0, 0,    // display length
        0x03, // MYSQL_TYPE_LONG
        0x81, 0x00, // NOT_NULL | BINARY
        0x00, // decimals
        0, 0,
    ];
    let eof = |st: u16| {
        let [s0, s1] = st.to_le_bytes();
        [0xfe, 0, 0, s0, s1]
    };
    let mut seq = write_packet(out, seq, &[1]);
    seq = write_packet(out, seq, COLUMN);
    if !deprecate_eof {
        seq = write_packet(out, seq, &eof(st));
    }
    seq = write_packet(out, seq, &[1, b'1']);
    if deprecate_eof {
        let [s0, s1] = st.to_le_bytes();
        write_packet(out, seq, &[0xfe, 0, 0, s0, s1, 0, 0])
    } else {
        write_packet(out, seq, &eof(st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::local::catalog::tests::catalog;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    const PYMYSQL: u32 = 0x003a_a20d;
    const TRACKING: u32 = PYMYSQL | caps::SESSION_TRACK | caps::MULTI_STATEMENTS;

    static PROBES: std::sync::LazyLock<ProbeSet> = std::sync::LazyLock::new(ProbeSet::default);

    fn view(c: &Catalog, capabilities: u32) -> View<'_> {
        View {
            capabilities,
            status: status::AUTOCOMMIT,
            catalog: Some(c),
            plain_session: true,
            probes: &PROBES,
        }
    }

    #[test]
    fn probes_as_mariadb_sends_them() {
        let c = catalog();
        let a = answer(b"/* ping */ select 1;", 1, &view(&c, PYMYSQL)).unwrap();
        assert_eq!(
            hex(&a.reply),
            "0100000101\
             17000002036465660000000131000c3f0001000000038100000000\
             05000003fe00000200\
             020000040131\
             05000005fe00000200"
        );
        let a = answer(b"SELECT 1", 1, &view(&c, PYMYSQL | caps::DEPRECATE_EOF)).unwrap();
        assert_eq!(
            hex(&a.reply),
            "0100000101\
             17000002036465660000000131000c3f0001000000038100000000\
             020000030131\
             07000004fe000002000000"
        );
        let a = answer(b"DO 1", 1, &view(&c, PYMYSQL)).unwrap();
        assert_eq!(hex(&a.reply), "0700000100000002000000");
        let a = answer(b" ; ", 1, &view(&c, PYMYSQL)).unwrap();
        assert_eq!(
            hex(&a.reply),
            "18000001ff290423343230303051756572792077617320656d707479"
        );
        assert_eq!(
            hex(&ok_packet(
                1,
                status::AUTOCOMMIT | status::CURSOR_EXISTS,
                PYMYSQL
            )),
            "0700000100000002000000"
        );
    }

    #[test]
    fn sets_as_mariadb_answers_them() {
        let mut c = catalog();
        let a = answer(b"SET NAMES utf8mb4", 1, &view(&c, PYMYSQL)).unwrap();
        assert_eq!(hex(&a.reply), "0700000100000002000000");
        assert_eq!(a.changes.len(), 4);
        let a = answer(b"SET AUTOCOMMIT = 0", 1, &view(&c, PYMYSQL)).unwrap();
        assert_eq!(hex(&a.reply), "0700000100000000000000");
        assert_eq!(a.status, 0);
        assert_eq!(a.changes, [("autocommit".to_string(), "'OFF'".to_string())]);
        // Session tracking: one variable needs no learned order.
        let a = answer(b"SET autocommit=0", 1, &view(&c, TRACKING)).unwrap();
        assert_eq!(
            hex(&a.reply),
            "1a000001000000004000000011000f0a6175746f636f6d6d6974034f4646"
        );
        let a = answer(b"SET character_set_results = NULL", 1, &view(&c, TRACKING)).unwrap();
        assert_eq!(
            hex(&a.reply),
            "220000010000000240000000190017156368617261637465725f7365745f726573756c747300"
        );
        // Several tracked variables need the order this server process reports them in.
        assert_eq!(answer(b"SET NAMES utf8mb4", 1, &view(&c, TRACKING)), None);
        c.tracked_order = Some(
            [
                "autocommit",
                "character_set_client",
                "character_set_connection",
                "character_set_results",
                "time_zone",
            ]
            .map(str::to_string)
            .to_vec(),
        );
        let a = answer(b"SET NAMES utf8mb4", 1, &view(&c, TRACKING)).unwrap();
        assert_eq!(
            hex(&a.reply),
            "6b000001000000024000000062001d146368617261637465725f7365745f636c69656e7407757466386d62340021186368617261637465725f7365745f636f6e6e656374696f6e07757466386d6234001e156368617261637465725f7365745f726573756c747307757466386d6234"
        );
        let a = answer(
            b"SET NAMES utf8mb4; SET autocommit=0",
            1,
            &view(&c, TRACKING),
        )
        .unwrap();
        assert!(
            hex(&a.reply).starts_with("6b000001000000"),
            "{}",
            hex(&a.reply)
        );
        assert_eq!(&a.reply[7..9], &[0x0a, 0x40]);
        assert!(
            hex(&a.reply).ends_with("1a000002000000004000000011000f0a6175746f636f6d6d6974034f4646")
        );
        // sql_mode moves the status flags.
        let a = answer(
            b"SET sql_mode='ANSI_QUOTES,NO_BACKSLASH_ESCAPES'",
            1,
            &view(&c, PYMYSQL),
        )
        .unwrap();
        assert_eq!(hex(&a.reply), "0700000100000002820000");
    }

    #[test]
    fn declines_what_it_cannot_vouch_for() {
        let c = catalog();
        for sql in [
            "SET autocommit=2",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET GLOBAL wait_timeout=60",
            "SET sql_log_bin=0",
            "SELECT 2",
            "SELECT 1; SELECT 1",
        ] {
            assert_eq!(answer(sql.as_bytes(), 1, &view(&c, PYMYSQL)), None, "{sql}");
        }
        let mut v = view(&c, PYMYSQL);
        v.catalog = None;
        assert_eq!(answer(b"SET autocommit=0", 1, &v), None);
        assert!(answer(b"SELECT 1", 1, &v).is_some());
        let mut v = view(&c, PYMYSQL);
        v.status |= status::IN_TRANS;
        assert_eq!(answer(b"SET autocommit=1", 1, &v), None);
        // A session that changed its own tracking is not a fresh one.
        let mut v = view(&c, TRACKING);
        v.plain_session = false;
        assert_eq!(answer(b"SET autocommit=1", 1, &v), None);
    }
}
