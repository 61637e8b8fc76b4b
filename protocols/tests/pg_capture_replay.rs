//! Capture and replay against a real PostgreSQL 15: build session state on one connection,
//! capture it, close that connection, replay into a fresh one, and check that capturing the
//! new session gives the same snapshot and that the state behaves the same.
//!
//! Skipped (with a message) when the PostgreSQL 15 binaries or the `postgres` user are absent.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use protocols::pg::capture::{self, CatalogOutcome, QueryResult};
use protocols::pg::message;
use protocols::pg::replay;
use protocols::pg::snapshot::PgSnapshot;

const BIN: &str = "/usr/lib/postgresql/15/bin";

fn start_server() -> Option<Server> {
    if !Path::new(BIN).join("postgres").exists() {
        common::missing("the PostgreSQL 15 binaries are not installed");
        return None;
    }
    let ids = common::os_user("postgres").or_else(|| {
        common::missing("there is no postgres OS user");
        None
    })?;
    use std::os::unix::process::CommandExt;
    let dir = common::server_dir(ids);
    let data = dir.path().join("data");
    common::run_ok(
        Command::new(Path::new(BIN).join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-D",
            ])
            .arg(&data)
            .uid(ids.0)
            .gid(ids.1),
    );
    let port = common::free_port();
    let mut postgres = Command::new(Path::new(BIN).join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir.path())
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .uid(ids.0)
        .gid(ids.1);
    let server = Server::spawn(postgres, dir, port, "INT");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut c) = Conn::try_connect(port)
            && c.simple("SELECT 1").is_ok()
        {
            break;
        }
        assert!(Instant::now() < deadline, "postgres did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

/// A tiny blocking protocol client, enough to drive the plans.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Outcome {
    results: Vec<QueryResult>,
    tags: Vec<String>,
    errors: Vec<String>,
    parse_completes: usize,
}

impl Conn {
    fn try_connect(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Conn { s, buf: Vec::new() };
        let mut out = BytesMut::new();
        message::startup_message(&mut out, &startup());
        c.s.write_all(&out)?;
        let o = c.read_ready(1)?;
        if !o.errors.is_empty() {
            return Err(std::io::Error::other(o.errors.join("; ")));
        }
        Ok(c)
    }

    fn msg(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    let body = self.buf[5..1 + len].to_vec();
                    self.buf.drain(..1 + len);
                    return Ok((tag, body));
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::Error::other("eof"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn read_ready(&mut self, count: usize) -> std::io::Result<Outcome> {
        let mut o = Outcome {
            results: Vec::new(),
            tags: Vec::new(),
            errors: Vec::new(),
            parse_completes: 0,
        };
        let mut cur = QueryResult::default();
        let mut seen = 0;
        while seen < count {
            let (tag, body) = self.msg()?;
            match tag {
                b'D' => {
                    let n = i16::from_be_bytes([body[0], body[1]]) as usize;
                    let mut off = 2;
                    let mut row = Vec::with_capacity(n);
                    for _ in 0..n {
                        let l = i32::from_be_bytes(body[off..off + 4].try_into().unwrap());
                        off += 4;
                        if l < 0 {
                            row.push(None);
                        } else {
                            let l = l as usize;
                            row.push(Some(
                                String::from_utf8(body[off..off + l].to_vec()).unwrap(),
                            ));
                            off += l;
                        }
                    }
                    cur.rows.push(row);
                }
                b'd' => cur.copy_out.extend_from_slice(&body),
                b'C' => {
                    o.tags
                        .push(String::from_utf8_lossy(&body[..body.len() - 1]).into_owned());
                    o.results.push(std::mem::take(&mut cur));
                }
                b'E' => {
                    let fields: Vec<String> = body
                        .split(|b| *b == 0)
                        .filter(|f| f.first() == Some(&b'M'))
                        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                        .collect();
                    o.errors.push(fields.join(" "));
                }
                b'1' => o.parse_completes += 1,
                b'Z' => seen += 1,
                _ => {}
            }
        }
        Ok(o)
    }

    fn simple(&mut self, sql: &str) -> std::io::Result<Outcome> {
        let mut out = BytesMut::new();
        message::query(&mut out, sql);
        self.s.write_all(&out)?;
        self.read_ready(1)
    }

    fn ok(&mut self, sql: &str) -> Vec<QueryResult> {
        let o = self.simple(sql).unwrap();
        assert!(o.errors.is_empty(), "{sql}: {:?}", o.errors);
        o.results
    }

    fn one(&mut self, sql: &str) -> Option<String> {
        self.ok(sql)[0].rows[0][0].clone()
    }
}

fn startup() -> Vec<(String, String)> {
    vec![
        ("user".into(), "postgres".into()),
        ("database".into(), "postgres".into()),
        ("client_encoding".into(), "UTF8".into()),
    ]
}

fn capture_session(c: &mut Conn, ocdr: &[String]) -> Result<PgSnapshot, Vec<String>> {
    let mut results = c.ok(&capture::catalog_query());
    if let Some(q) = capture::temp_catalog_query(&results).unwrap() {
        results.extend(c.ok(&q));
    }
    let plan = match capture::plan(&results, ocdr).unwrap() {
        CatalogOutcome::Blocked(b) => return Err(b),
        CatalogOutcome::Continue(p) => p,
    };
    let mut plan = plan;
    plan.ask_custom_settings(&["app.tenant".to_string(), "app.never_set".to_string()]);
    let data = match plan.data_query() {
        Some(q) => c.ok(&q),
        None => Vec::new(),
    };
    let mut snap = plan.finish(&data).unwrap();
    snap.startup_params = startup();
    Ok(snap)
}

fn replay_into(c: &mut Conn, snap: &PgSnapshot) -> Outcome {
    let plan = replay::build(snap, "postgres").unwrap();
    c.s.write_all(&plan.messages).unwrap();
    let o = c.read_ready(plan.ready_count).unwrap();
    if o.errors.is_empty() {
        assert_eq!(o.tags.len(), plan.statements.len(), "{:?}", o.tags);
        assert_eq!(o.parse_completes, plan.parses.len());
    }
    o
}

fn normalized(mut s: PgSnapshot) -> PgSnapshot {
    s.prepared.sort_by(|a, b| a.name.cmp(&b.name));
    s.sequences.sort_by(|a, b| a.name.cmp(&b.name));
    s
}

/// Field by field, rows compared apart, so a failure prints something readable.
fn assert_same(a: PgSnapshot, b: PgSnapshot) {
    let (mut a, mut b) = (normalized(a), normalized(b));
    assert_eq!(a.settings, b.settings);
    assert_eq!(a.session_authorization, b.session_authorization);
    assert_eq!(a.role, b.role);
    assert_eq!(a.prepared, b.prepared);
    assert_eq!(a.sequences, b.sequences);
    assert_eq!(a.listen, b.listen);
    assert_eq!(a.advisory_locks, b.advisory_locks);
    assert_eq!(a.temp_tables.len(), b.temp_tables.len());
    for (x, y) in a.temp_tables.iter_mut().zip(b.temp_tables.iter_mut()) {
        assert!(x.rows == y.rows, "rows of {} differ", x.name);
        x.rows.clear();
        y.rows.clear();
        assert_eq!(x, y);
    }
    assert_eq!(a, b);
}

const SETUP: &str = r#"
CREATE ROLE bob; CREATE ROLE carol; GRANT carol TO bob;
"#;

const SESSION: &str = r#"
SET search_path = 'a, b', public;
SELECT set_config('work_mem', '1536kB', false);
SET statement_timeout = '5s';
SET TIME ZONE INTERVAL '+05:30' HOUR TO MINUTE;
SET application_name = 'it''s \ app';
SET app.tenant = '42';
SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE;
SET DateStyle = 'SQL, DMY';
SET log_statement = 'all';
SET SESSION AUTHORIZATION bob;
SET ROLE carol;
CREATE TEMP TABLE parent (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'x''y',
  code varchar(10) COLLATE "C" UNIQUE, price numeric(10,2) CHECK (price > 0),
  doubled numeric GENERATED ALWAYS AS (price * 2) STORED, created date DEFAULT '2020-01-02')
  WITH (fillfactor = 70);
CREATE TEMP TABLE child (cid bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 5)
  PRIMARY KEY, pid int REFERENCES parent(id) ON DELETE CASCADE, note text, tags text[],
  "Mixed Case" int GENERATED BY DEFAULT AS IDENTITY);
CREATE INDEX child_note_idx ON child (lower(note)) WHERE note IS NOT NULL;
CREATE INDEX ON parent USING hash (name);
CREATE TEMP SEQUENCE standalone INCREMENT 3 START 10 MAXVALUE 1000 CYCLE;
SELECT nextval('standalone'), nextval('standalone');
CREATE TEMP TABLE ocdr (a int) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE empty_one ();
INSERT INTO parent (name, code, price) VALUES ('a', 'A1', 1.5), ('b', 'B1', 2);
INSERT INTO child (pid, note, tags) VALUES (1, 'hello', '{x,y}'), (2, NULL, NULL);
INSERT INTO child (pid, note) SELECT 1, repeat('z', 1000) || g FROM generate_series(1, 300) g;
PREPARE p1 (int, text) AS SELECT $1, $2; PREPARE p2 AS SELECT count(*) FROM parent WHERE id = $1; SELECT 1;
LISTEN "Chan 1"; LISTEN foo;
SELECT pg_advisory_lock(42), pg_advisory_lock(-5), pg_advisory_lock_shared(1, 2), pg_advisory_lock(42);
CREATE TEMP TABLE carols (x int);
"#;

#[test]
fn capture_and_replay_round_trip() {
    let Some(server) = start_server() else { return };
    let port = server.port;
    let mut admin = Conn::try_connect(port).unwrap();
    admin.ok(SETUP);

    let mut old = Conn::try_connect(port).unwrap();
    old.ok(SESSION);
    // A protocol-level named statement (from_sql = false).
    let mut out = BytesMut::new();
    message::parse(&mut out, "proto1", "SELECT $1::int + 1", &[0]);
    message::sync(&mut out);
    old.s.write_all(&out).unwrap();
    assert!(old.read_ready(1).unwrap().errors.is_empty());

    let ocdr = protocols::pg::sql::on_commit_delete_rows_tables(SESSION);
    assert_eq!(ocdr, vec!["ocdr".to_string()]);
    let snap = capture_session(&mut old, &ocdr).unwrap();

    assert_eq!(snap.role.as_deref(), Some("carol"));
    assert_eq!(snap.session_authorization.as_deref(), Some("bob"));
    let setting = |n: &str| {
        snap.settings
            .iter()
            .find(|s| s.name == n)
            .map(|s| s.value.clone())
    };
    assert_eq!(setting("search_path").as_deref(), Some("\"a, b\", public"));
    assert_eq!(setting("app.tenant").as_deref(), Some("42"));
    assert_eq!(setting("app.never_set"), None);
    assert_eq!(setting("TimeZone").as_deref(), Some("<+05:30>-05:30"));
    assert_eq!(snap.temp_tables.len(), 5);
    assert!(
        snap.temp_tables
            .iter()
            .any(|t| t.name == "ocdr" && t.on_commit_delete_rows)
    );
    let p1 = snap.prepared.iter().find(|p| p.name == "p1").unwrap();
    assert_eq!(p1.statement, "PREPARE p1 (int, text) AS SELECT $1, $2");
    assert_eq!(p1.param_types, vec![23, 25]);
    let proto = snap.prepared.iter().find(|p| p.name == "proto1").unwrap();
    assert!(!proto.from_sql);
    assert_eq!(snap.listen, vec!["Chan 1".to_string(), "foo".to_string()]);
    assert_eq!(snap.advisory_locks.len(), 3);

    // Snapshot survives the storage encoding.
    let bytes = rmp_serde::to_vec_named(&snap).unwrap();
    let back: PgSnapshot = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, snap);

    // A third session holding lock 42 makes the replay fail, naming the lock.
    drop(old);
    let mut other = Conn::try_connect(port).unwrap();
    other.ok("SELECT pg_advisory_lock(42)");
    let mut blocked = Conn::try_connect(port).unwrap();
    let o = replay_into(&mut blocked, &snap);
    assert_eq!(o.errors.len(), 1, "{:?}", o.errors);
    assert!(
        o.errors[0].contains("advisory lock 42 is held by another session"),
        "{:?}",
        o.errors
    );
    // Nothing of the failed replay stuck (one implicit transaction), except that Parse ran.
    assert_eq!(blocked.one("SELECT count(*) FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema()").as_deref(), Some("0"));
    drop(blocked);
    drop(other);
    // Locks of dropped connections go away asynchronously.
    std::thread::sleep(Duration::from_millis(300));

    let mut new = Conn::try_connect(port).unwrap();
    let o = replay_into(&mut new, &snap);
    assert!(o.errors.is_empty(), "{:?}", o.errors);

    let again = capture_session(&mut new, &ocdr).unwrap();
    assert_same(again, snap.clone());

    // Behaviour, not just catalogs.
    assert_eq!(
        new.one("SELECT current_user || '/' || session_user")
            .as_deref(),
        Some("carol/bob")
    );
    assert_eq!(
        new.one("SHOW search_path").as_deref(),
        Some("\"a, b\", public")
    );
    assert_eq!(new.one("SHOW log_statement").as_deref(), Some("all"));
    assert_eq!(
        new.one("SELECT current_setting('app.tenant')").as_deref(),
        Some("42")
    );
    assert_eq!(new.one("INSERT INTO parent (name, code, price) VALUES ('c', 'C1', 3) RETURNING id || ':' || doubled").as_deref(), Some("3:6.00"));
    assert_eq!(
        new.one("INSERT INTO child (pid) VALUES (3) RETURNING cid")
            .as_deref(),
        Some("1610")
    );
    assert_eq!(
        new.one("SELECT nextval('standalone')").as_deref(),
        Some("16")
    );
    assert_eq!(
        new.one("SELECT count(*) FROM child").as_deref(),
        Some("303")
    );
    let fk = new.simple("INSERT INTO child (pid) VALUES (99)").unwrap();
    assert!(fk.errors[0].contains("foreign key"), "{:?}", fk.errors);
    assert_eq!(new.one("EXECUTE p2(1)").as_deref(), Some("1"));
    assert_eq!(new.one("EXECUTE proto1(41)").as_deref(), Some("42"));
    new.ok("BEGIN; INSERT INTO ocdr VALUES (1); COMMIT");
    assert_eq!(new.one("SELECT count(*) FROM ocdr").as_deref(), Some("0"));
    assert_eq!(new.one("SELECT pg_catalog.pg_get_userbyid(relowner) FROM pg_catalog.pg_class WHERE relname IN ('carols', 'parent', 'standalone', 'child_cid_seq') GROUP BY 1").as_deref(), Some("carol"));
    drop(new);
    drop(server);
}

#[test]
fn blockers_are_reported() {
    let Some(server) = start_server() else { return };
    let mut c = Conn::try_connect(server.port).unwrap();
    c.ok("CREATE TEMP VIEW v AS SELECT 1; CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'; \
          CREATE DOMAIN pg_temp.d AS int; CREATE TEMP TABLE t (a int); \
          CREATE FUNCTION pg_temp.tf() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; \
          CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION pg_temp.tf(); \
          BEGIN; DECLARE cur CURSOR WITH HOLD FOR SELECT 1; COMMIT; \
          CREATE TEMP TABLE secret (a int); CREATE ROLE nobody; SET ROLE nobody");
    let mut blockers = capture_session(&mut c, &[]).unwrap_err();
    blockers.sort();
    assert_eq!(
        blockers,
        vec![
            "WITH HOLD cursor cur is open",
            "temporary function f cannot be carried over",
            "temporary function tf cannot be carried over",
            "temporary table secret is not readable by the current role nobody",
            "temporary table t is not readable by the current role nobody",
            "temporary type d cannot be carried over",
            "temporary view v cannot be carried over",
            "trigger tr on temporary table t cannot be carried over",
        ]
    );
}
