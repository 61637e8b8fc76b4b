//! The MySQL codec against a real mariadbd (skipped with a message when MariaDB is not
//! installed), plus fuzz-style robustness checks over every payload the server sent.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;

use protocols::auth::mysql::{native_scramble, sha2_scramble};
use protocols::mysql::command::{self, PrepareOk};
use protocols::mysql::handshake::{
    AuthSwitch, CACHING_SHA2_PASSWORD, Handshake, HandshakeResponse, NATIVE_PASSWORD, caps,
    mariadb_caps,
};
use protocols::mysql::packet::{self, MAX_PAYLOAD, Reader};
use protocols::mysql::response::{
    self, Column, ErrPacket, OkPacket, SessionChange, column_type, status,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

const CLIENT: &str = "/usr/bin/mariadb";

/// A MariaDB with a user `t` (password `pw`) that may do anything.
fn start_server() -> Option<Server> {
    let server = common::start_mariadb()?;
    let sock = common::mariadb_socket(server.dir.path());
    common::run_ok(
        Command::new(CLIENT)
            .arg("--no-defaults")
            .arg(format!("--socket={}", sock.display()))
            .args([
                "-uroot",
                "-e",
                "CREATE USER t@'%' IDENTIFIED BY 'pw'; GRANT ALL ON *.* TO t@'%';",
            ]),
    );
    Some(server)
}

/// Every payload the server sent, for the robustness pass at the end.
#[derive(Default)]
struct Seen(Vec<Vec<u8>>);

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    seq: u8,
    caps: u32,
    mariadb_caps: u32,
}

impl Conn {
    fn read(&mut self, seen: &mut Seen) -> Vec<u8> {
        loop {
            if let Some(l) = packet::logical_packet(&self.buf, 1 << 26).unwrap() {
                self.buf.drain(..l.consumed);
                assert_eq!(l.seq, self.seq, "sequence id");
                self.seq = l.next_seq;
                seen.0.push(l.payload.clone());
                return l.payload;
            }
            let mut chunk = [0u8; 8192];
            let n = self.s.read(&mut chunk).unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn send(&mut self, payload: &[u8]) {
        let mut out = Vec::new();
        self.seq = packet::write_packet(&mut out, self.seq, payload);
        self.s.write_all(&out).unwrap();
    }

    /// The next payload, or `None` if the server closed the connection first.
    fn try_read(&mut self, seen: &mut Seen) -> Option<Vec<u8>> {
        loop {
            if let Some(l) = packet::logical_packet(&self.buf, 1 << 26).unwrap() {
                self.buf.drain(..l.consumed);
                self.seq = l.next_seq;
                seen.0.push(l.payload.clone());
                return Some(l.payload);
            }
            let mut chunk = [0u8; 8192];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn command(&mut self, payload: &[u8]) {
        self.seq = 0;
        self.send(payload);
    }
}

const WANT: u32 = caps::SESSION_TRACK
    | caps::DEPRECATE_EOF
    | caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::CONNECT_ATTRS
    | caps::MULTI_RESULTS
    | caps::MULTI_STATEMENTS
    | caps::TRANSACTIONS;

fn scramble_for(plugin: &str, pw: &[u8], nonce: &[u8]) -> Vec<u8> {
    match plugin {
        NATIVE_PASSWORD => native_scramble(pw, nonce),
        CACHING_SHA2_PASSWORD => sha2_scramble(pw, nonce),
        other => panic!("unexpected auth plugin {other}"),
    }
}

/// Connects and authenticates; `plugin` is the one the client claims first (the server may
/// switch). Returns the connection and whether an auth switch happened, or the ERR packet.
fn connect(
    port: u16,
    user: &str,
    pw: &str,
    plugin: &str,
    want_mariadb: u32,
    seen: &mut Seen,
) -> Result<(Conn, bool), ErrPacket> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut c = Conn {
        s,
        buf: Vec::new(),
        seq: 0,
        caps: 0,
        mariadb_caps: 0,
    };
    let hs = c.read(seen);
    let h = Handshake::parse(&hs).unwrap();
    assert!(h.is_mariadb(), "{}", h.server_version);
    assert_eq!(h.scramble.len(), 20);
    assert_eq!(h.auth_plugin, NATIVE_PASSWORD);
    // A MariaDB server clears CLIENT_MYSQL and announces extended capabilities.
    assert_eq!(h.capabilities & caps::MYSQL, 0);
    assert_ne!(h.mariadb_caps & mariadb_caps::STMT_BULK_OPERATIONS, 0);
    assert_ne!(h.capabilities & caps::SESSION_TRACK, 0);
    let mut again = Vec::new();
    h.write(&mut again);
    assert_eq!(again, hs, "handshake re-encodes byte for byte");

    c.caps = WANT & h.capabilities;
    c.mariadb_caps = want_mariadb & h.mariadb_caps;
    let resp = HandshakeResponse {
        capabilities: c.caps,
        max_packet: 1 << 24,
        charset: 45,
        username: user.into(),
        auth_response: scramble_for(plugin, pw.as_bytes(), &h.scramble),
        database: None,
        auth_plugin: Some(plugin.into()),
        attrs: vec![("_client_name".into(), "torpor-test".into())],
        mariadb_caps: c.mariadb_caps,
    };
    let mut out = Vec::new();
    resp.write(&mut out);
    assert_eq!(HandshakeResponse::parse(&out).unwrap(), resp);
    c.send(&out);
    let mut switched = false;
    loop {
        let p = c.read(seen);
        match p.first() {
            Some(0x00) => {
                let ok = OkPacket::parse(&p, c.caps).unwrap();
                assert_ne!(ok.status & status::AUTOCOMMIT, 0);
                return Ok((c, switched));
            }
            Some(0xFF) => return Err(ErrPacket::parse(&p).unwrap()),
            Some(0xFE) => {
                let sw = AuthSwitch::parse(&p).unwrap();
                assert_eq!(sw.data.len(), 20);
                switched = true;
                c.send(&scramble_for(&sw.plugin, pw.as_bytes(), &sw.data));
            }
            other => panic!("unexpected auth reply {other:?}"),
        }
    }
}

fn expect_ok(c: &mut Conn, seen: &mut Seen) -> (Vec<u8>, OkPacket) {
    let p = c.read(seen);
    assert_eq!(p.first(), Some(&0x00), "{:?}", ErrPacket::parse(&p));
    let ok = OkPacket::parse(&p, c.caps).unwrap();
    (p, ok)
}

/// Column definitions and raw row payloads of one result set, up to the OK-as-EOF.
fn result_set(c: &mut Conn, seen: &mut Seen) -> Result<(Vec<Column>, Vec<Vec<u8>>), ErrPacket> {
    let first = c.read(seen);
    if first.first() == Some(&0xFF) {
        return Err(ErrPacket::parse(&first).unwrap());
    }
    let n = response::column_count(&first).unwrap();
    let ext = c.mariadb_caps & mariadb_caps::EXTENDED_TYPE_INFO != 0;
    let cols = (0..n)
        .map(|_| Column::parse_with(&c.read(seen), ext).unwrap())
        .collect();
    let mut rows = Vec::new();
    loop {
        let p = c.read(seen);
        if p.first() == Some(&0xFE) && p.len() < MAX_PAYLOAD {
            let end = OkPacket::parse(&p, c.caps).unwrap();
            assert_eq!(end.status & status::MORE_RESULTS_EXISTS, 0);
            return Ok((cols, rows));
        }
        assert_ne!(p.first(), Some(&0xFF), "{:?}", ErrPacket::parse(&p));
        rows.push(p);
    }
}

fn prepare(c: &mut Conn, sql: &str, seen: &mut Seen) -> PrepareOk {
    c.command(&command::stmt_prepare(sql));
    let p = c.read(seen);
    assert_eq!(p.first(), Some(&0x00), "{:?}", ErrPacket::parse(&p));
    let ok = PrepareOk::parse(&p).unwrap();
    for _ in 0..ok.num_params + ok.num_columns {
        let ext = c.mariadb_caps & mariadb_caps::EXTENDED_TYPE_INFO != 0;
        Column::parse_with(&c.read(seen), ext).unwrap();
    }
    ok
}

fn execute_packet(stmt: u32, values: [&[u8]; 2], bound: bool) -> Vec<u8> {
    let mut p = vec![command::com::STMT_EXECUTE];
    p.extend_from_slice(&stmt.to_le_bytes());
    p.extend_from_slice(&[command::cursor::NO_CURSOR, 1, 0, 0, 0]);
    p.push(0); // null bitmap: no NULLs
    p.push(bound as u8);
    if bound {
        p.extend_from_slice(&[column_type::VAR_STRING, 0, column_type::VAR_STRING, 0]);
    }
    for v in values {
        packet::put_lenenc_bytes(&mut p, v);
    }
    p
}

/// The single string value of a one-column binary result set.
fn single_binary_value(c: &mut Conn, seen: &mut Seen) -> Result<Vec<u8>, ErrPacket> {
    let (cols, rows) = result_set(c, seen)?;
    assert_eq!(cols.len(), 1);
    assert_eq!(rows.len(), 1);
    let mut r = Reader::new(&rows[0]);
    assert_eq!(r.u8().unwrap(), 0x00);
    let bitmap = r.u8().unwrap();
    assert_eq!(bitmap, 0, "value is not NULL");
    let v = r.lenenc_bytes().unwrap().to_vec();
    assert!(r.is_empty());
    Ok(v)
}

#[test]
fn against_mariadbd() {
    let Some(server) = start_server() else {
        return;
    };
    let mut seen = Seen::default();

    // Wrong password.
    let err = connect(server.port, "t", "nope", NATIVE_PASSWORD, 0, &mut seen)
        .err()
        .expect("wrong password accepted");
    assert_eq!(err.code, 1045);
    assert_eq!(err.sql_state, "28000");
    assert!(err.message.contains("Access denied"), "{}", err.message);

    let (mut c, switched) = connect(
        server.port,
        "t",
        "pw",
        NATIVE_PASSWORD,
        mariadb_caps::EXTENDED_TYPE_INFO,
        &mut seen,
    )
    .unwrap();
    assert!(!switched);
    assert_ne!(c.mariadb_caps & mariadb_caps::EXTENDED_TYPE_INFO, 0);

    // sql_mode is not in MariaDB's default session_track_system_variables.
    c.command(&command::query(
        "SET SESSION session_track_system_variables='*'",
    ));
    expect_ok(&mut c, &mut seen);

    c.command(&command::query("SET SESSION sql_mode='ANSI'"));
    let (raw, ok) = expect_ok(&mut c, &mut seen);
    assert_ne!(ok.status & status::SESSION_STATE_CHANGED, 0);
    let changes = response::session_changes(&ok.session_state).unwrap();
    let mode = changes
        .iter()
        .find_map(|ch| match ch {
            SessionChange::SystemVariable { name, value } if name == "sql_mode" => {
                Some(String::from_utf8(value.clone()).unwrap())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no sql_mode in {changes:?}"));
    assert!(mode.split(',').any(|m| m == "ANSI"), "{mode}");
    let mut rewritten = Vec::new();
    ok.write(0x00, c.caps, &mut rewritten);
    assert_eq!(rewritten, raw, "OK re-encodes byte for byte");

    let stripped = response::strip_session_track(&raw).unwrap();
    assert!(stripped.len() < raw.len());
    let plain = OkPacket::parse(&stripped, c.caps & !caps::SESSION_TRACK).unwrap();
    assert_eq!(plain.status, ok.status & !status::SESSION_STATE_CHANGED);
    assert_eq!(plain.info, ok.info);
    assert!(plain.session_state.is_empty());
    assert_eq!(
        (plain.affected_rows, plain.last_insert_id, plain.warnings),
        (ok.affected_rows, ok.last_insert_id, ok.warnings)
    );

    // Schema change via COM_INIT_DB is tracked too.
    c.command(&command::init_db("mysql"));
    let (_, ok) = expect_ok(&mut c, &mut seen);
    let changes = response::session_changes(&ok.session_state).unwrap();
    assert!(
        changes.contains(&SessionChange::Schema("mysql".into())),
        "{changes:?}"
    );

    c.command(&command::ping());
    expect_ok(&mut c, &mut seen);

    // A text result set.
    c.command(&command::query(
        "SELECT 1 AS one, 'héllo' AS s, NULL AS n, user AS u FROM mysql.user WHERE user = 'root' LIMIT 1",
    ));
    let (cols, rows) = result_set(&mut c, &mut seen).unwrap();
    let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["one", "s", "n", "u"]);
    assert_eq!(cols[3].org_table, "user");
    assert_eq!(cols[3].schema, "mysql");
    assert_eq!(cols[0].column_type, column_type::LONG);
    assert_eq!(rows.len(), 1);
    let row = response::text_row(&rows[0], cols.len()).unwrap();
    assert_eq!(
        row,
        [
            Some(b"1".to_vec()),
            Some("héllo".as_bytes().to_vec()),
            None,
            Some(b"root".to_vec())
        ]
    );

    // ERR from a bad statement.
    c.command(&command::query("SELECT * FROM no_such_table"));
    let p = c.read(&mut seen);
    let e = ErrPacket::parse(&p).unwrap();
    assert_eq!((e.code, e.sql_state.as_str()), (1146, "42S02"), "{e:?}");

    // Prepared statement with two parameters, executed with types, then without.
    let sql = "SELECT CONCAT(?, ?) AS c";
    let prep = prepare(&mut c, sql, &mut seen);
    assert_eq!((prep.num_params, prep.num_columns), (2, 1));
    let typed = execute_packet(prep.stmt_id, [b"ab", b"cd"], true);
    let ex = command::parse_execute(&typed, prep.num_params).unwrap();
    assert!(ex.new_params_bound);
    let types = ex.types.unwrap().to_vec();
    c.command(&typed);
    assert_eq!(single_binary_value(&mut c, &mut seen).unwrap(), b"abcd");
    let untyped = execute_packet(prep.stmt_id, [b"ef", b"gh"], false);
    assert_eq!(command::stmt_id(&untyped), Some(prep.stmt_id));
    c.command(&untyped);
    assert_eq!(single_binary_value(&mut c, &mut seen).unwrap(), b"efgh");

    // A fresh connection ("new backend"), where the client authenticates with a plugin the
    // server does not use, so it has to switch.
    let (mut c2, switched) =
        connect(server.port, "t", "pw", CACHING_SHA2_PASSWORD, 0, &mut seen).unwrap();
    assert!(switched, "expected an auth switch to mysql_native_password");
    // Re-prepare, then replay the client's untyped execute with the types it bound earlier.
    c2.command(&command::query("SELECT 0 FROM DUAL WHERE 1 = 0"));
    result_set(&mut c2, &mut seen).unwrap();
    let fresh = prepare(&mut c2, sql, &mut seen);
    let mut replay = untyped.clone();
    assert!(command::set_stmt_id(&mut replay, fresh.stmt_id));
    let replay = command::execute_with_types(&replay, fresh.num_params, &types).unwrap();
    assert_eq!(
        command::parse_execute(&replay, 2).unwrap().types,
        Some(&types[..])
    );
    c2.command(&replay);
    assert_eq!(single_binary_value(&mut c2, &mut seen).unwrap(), b"efgh");

    // Close, then the id is gone.
    c2.command(&command::stmt_close(fresh.stmt_id));
    c2.command(&replay);
    let p = c2.read(&mut seen);
    let e = ErrPacket::parse(&p).unwrap();
    assert_eq!(e.code, 1243, "{e:?}"); // ER_UNKNOWN_STMT_HANDLER

    c.command(&command::quit());
    c2.command(&command::quit());

    // Every prefix of every payload the server sent goes through every parser without panic.
    assert!(seen.0.len() > 20);
    for p in &seen.0 {
        for cut in 0..=p.len() {
            parse_everything(&p[..cut]);
        }
    }
}

fn parse_everything(b: &[u8]) {
    let _ = packet::packet_len(b, MAX_PAYLOAD);
    let _ = packet::logical_packet(b, MAX_PAYLOAD);
    let _ = Handshake::parse(b);
    let _ = HandshakeResponse::parse(b);
    let _ = AuthSwitch::parse(b);
    let _ = protocols::mysql::handshake::is_ssl_request(b);
    for caps in [caps::PROTOCOL_41, caps::PROTOCOL_41 | caps::SESSION_TRACK] {
        let _ = OkPacket::parse(b, caps);
    }
    let _ = response::strip_session_track(b);
    let _ = response::session_changes(b);
    let _ = ErrPacket::parse(b);
    let _ = response::eof(b);
    let _ = Column::parse(b);
    let _ = Column::parse_with(b, true);
    for n in [0, 1, 3, 1000, usize::MAX] {
        let _ = response::text_row(b, n);
    }
    let _ = response::column_count(b);
    let _ = PrepareOk::parse(b);
    let _ = command::stmt_id(b);
    for n in [0, 1, 2, 9, u16::MAX] {
        let _ = command::parse_execute(b, n);
        let _ = command::execute_with_types(b, n, &vec![0xfd; 2 * n as usize]);
    }
    let _ = command::parse_long_data(b);
    let mut m = b.to_vec();
    let _ = command::set_stmt_id(&mut m, 1);
    let _ = command::set_prepare_ok_id(&mut m, 1);
    let mut r = Reader::new(b);
    while r.lenenc_bytes_opt().is_ok() && !r.is_empty() {}
}

/// Why `execute_with_types` exists: MariaDB 10.11 has no types for a freshly prepared statement,
/// and an execute with new-params-bound = 0 crashes the server (signal 11 in
/// Item_param::convert_str_value, seen on 10.11.14). A proxy must never forward one as is.
#[test]
fn untyped_execute_on_fresh_statement_is_not_served() {
    let Some(server) = start_server() else {
        return;
    };
    let mut seen = Seen::default();
    let (mut c, _) = connect(server.port, "t", "pw", NATIVE_PASSWORD, 0, &mut seen).unwrap();
    let prep = prepare(&mut c, "SELECT CONCAT(?, ?) AS c", &mut seen);
    c.command(&execute_packet(prep.stmt_id, [b"ef", b"gh"], false));
    match c.try_read(&mut seen) {
        None => eprintln!("mariadbd dropped the connection (crashed) on an untyped execute"),
        Some(p) => assert_ne!(
            p.first(),
            Some(&1),
            "untyped execute on a fresh statement returned a result set"
        ),
    }
}

#[test]
fn random_bytes_never_panic() {
    // xorshift: deterministic, so a failure reproduces.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = (next() % 80) as usize;
        let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias the first byte toward real headers so the deeper paths run.
        if let Some(f) = b.first_mut() {
            *f = [0x00, 0x01, 0x0a, 0xFE, 0xFF, 0x17, 0x18, *f][(next() % 8) as usize];
        }
        parse_everything(&b);
    }
}
