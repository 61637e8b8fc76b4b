//! Capture and replay plans fed with fixtures copied from what a PostgreSQL 15.18 server
//! printed for the catalog query (no server needed here; pg_capture_replay.rs runs the real one).

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Buf;
use protocols::pg::capture::{self, CaptureError, CatalogOutcome, QueryResult};
use protocols::pg::replay;
use protocols::pg::snapshot::{
    AdvisoryKey, AdvisoryLock, PgSnapshot, PreparedStatement, Setting, TempSequence, TempTable,
};

fn res(rows: &[&[Option<&str>]]) -> QueryResult {
    QueryResult {
        rows: rows
            .iter()
            .map(|r| r.iter().map(|c| c.map(str::to_string)).collect())
            .collect(),
        copy_out: Vec::new(),
    }
}

fn copy(bytes: Vec<u8>) -> QueryResult {
    QueryResult {
        rows: Vec::new(),
        copy_out: bytes,
    }
}

/// Rows written as psql prints them: cells separated by `|`, `NULL` for a null.
fn table(rows: &[&str]) -> QueryResult {
    let rows: Vec<Vec<Option<&str>>> = rows
        .iter()
        .map(|r| r.split('|').map(|c| (c != "NULL").then_some(c)).collect())
        .collect();
    let rows: Vec<&[Option<&str>]> = rows.iter().map(Vec::as_slice).collect();
    res(&rows)
}

#[allow(non_snake_case)]
fn S(s: &str) -> Option<&str> {
    Some(s)
}

/// A binary COPY with `n` one-int4-column rows, as the server sends it.
fn binary_rows(n: usize) -> Vec<u8> {
    let mut v = b"PGCOPY\n\xff\r\n\0".to_vec();
    v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    for i in 0..n {
        v.extend_from_slice(&1i16.to_be_bytes());
        v.extend_from_slice(&4i32.to_be_bytes());
        v.extend_from_slice(&(i as i32).to_be_bytes());
    }
    v.extend_from_slice(&[0xff, 0xff]);
    v
}

fn catalog_fixture() -> Vec<QueryResult> {
    vec![
        res(&[&[S("UTF8"), S("bob"), S("carol"), S("pg_temp_3"), S("on")]]),
        res(&[
            &[S("DateStyle"), S("SQL, DMY")],
            &[S("search_path"), S("\"a, b\", public")],
            &[S("work_mem"), S("1536kB")],
        ]),
        res(&[
            &[
                S("p1"),
                S("PREPARE p1 (int, text) AS SELECT $1, $2; PREPARE p2 AS SELECT 1; SELECT 3"),
                S("{23,25}"),
                S("t"),
            ],
            &[S("s1"), S("SELECT $1::int + 1"), S("{23}"), S("f")],
        ]),
        res(&[&[S("Chan 1")], &[S("foo")]]),
        res(&[
            &[S("0"), S("42"), S("1"), S("ExclusiveLock")],
            &[S("1"), S("2"), S("2"), S("ShareLock")],
            &[S("4294967293"), S("7"), S("2"), S("ExclusiveLock")],
            &[S("4294967295"), S("4294967291"), S("1"), S("ExclusiveLock")],
        ]),
        res(&[]),
        res(&[]),
        res(&[
            &[S("16393"), S("parent"), S("carol"), S("{fillfactor=70}")],
            &[S("16409"), S("child"), S("carol"), None],
            &[S("16424"), S("ocdr"), S("carol"), None],
        ]),
        table(&[
            "16393|id|integer|t|nextval('parent_id_seq'::regclass)|||NULL",
            "16393|name|text|t|'x''y'::text|||NULL",
            "16393|code|character varying(10)|f|NULL|||pg_catalog.\"C\"",
            "16393|doubled|numeric|f|(price * (2)::numeric)||s|NULL",
            "16409|cid|bigint|t|NULL|a||NULL",
            "16409|pid|integer|f|NULL|||NULL",
            "16424|a|integer|f|NULL|||NULL",
        ]),
        res(&[
            &[S("16393"), S("parent_pkey"), S("p"), S("PRIMARY KEY (id)")],
            &[S("16409"), S("child_pkey"), S("p"), S("PRIMARY KEY (cid)")],
            &[
                S("16409"),
                S("child_pid_fkey"),
                S("f"),
                S("FOREIGN KEY (pid) REFERENCES pg_temp_3.parent(id) ON DELETE CASCADE"),
            ],
        ]),
        res(&[&[
            S("16409"),
            S("child_note_idx"),
            S("CREATE INDEX child_note_idx ON pg_temp.child USING btree (pid) WHERE (pid > 0)"),
        ]]),
        table(&[
            "parent_id_seq|carol|integer|1|1|1|2147483647|1|f|parent|id|a",
            "child_cid_seq|carol|bigint|100|5|1|9223372036854775807|1|f|child|cid|i",
            "standalone|bob|bigint|10|3|1|1000|1|t|NULL|NULL|NULL",
        ]),
    ]
}

fn captured() -> PgSnapshot {
    let CatalogOutcome::Continue(mut plan) =
        capture::plan(&catalog_fixture(), &["ocdr".to_string()]).unwrap()
    else {
        panic!("blocked")
    };
    plan.ask_custom_settings(&["app.tenant".into(), "work_mem".into()]);
    let q = plan.data_query().unwrap();
    let stmts: Vec<&str> = q.split(";\n").collect();
    // Two statements per advisory lock count its re-entry levels.
    assert_eq!(stmts.len(), 5 + 2 * 4);
    assert_eq!(
        stmts[5],
        "SELECT pg_catalog.pg_advisory_xact_lock(42::pg_catalog.int8)"
    );
    assert!(stmts[6].contains("pg_catalog.pg_advisory_unlock(42::pg_catalog.int8)"));
    assert_eq!(
        stmts[7],
        "SELECT pg_catalog.pg_advisory_xact_lock_shared(1::pg_catalog.int4, 2::pg_catalog.int4)"
    );
    assert!(
        stmts[8]
            .contains("pg_catalog.pg_advisory_lock_shared(1::pg_catalog.int4, 2::pg_catalog.int4)")
    );
    assert_eq!(
        &stmts[..5],
        vec![
            "COPY pg_temp.\"parent\" (\"id\", \"name\", \"code\") TO STDOUT (FORMAT binary)",
            "COPY pg_temp.\"child\" (\"cid\", \"pid\") TO STDOUT (FORMAT binary)",
            "COPY pg_temp.\"ocdr\" (\"a\") TO STDOUT (FORMAT binary)",
            "SELECT 0, last_value, is_called FROM pg_temp.\"parent_id_seq\" UNION ALL \
             SELECT 1, last_value, is_called FROM pg_temp.\"child_cid_seq\" UNION ALL \
             SELECT 2, last_value, is_called FROM pg_temp.\"standalone\"",
            "SELECT v.n, pg_catalog.current_setting(v.n, true) FROM (VALUES ('app.tenant')) v(n) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_settings s \
             WHERE pg_catalog.lower(s.name) = pg_catalog.lower(v.n))",
        ]
    );
    let data = [
        temp_data([2, 20_000, 0], [("2", "t"), ("1605", "t"), ("10", "f")]),
        vec![res(&[&[S("app.tenant"), S("42")]])],
        lock_levels(&[3, 1, 1, 2]),
    ]
    .concat();
    plan.finish(&data).unwrap()
}

/// The COPY results of the fixture's three temp tables (`rows` each) and the sequence query's
/// result for its three sequences (last_value, is_called).
fn temp_data(rows: [usize; 3], sequences: [(&str, &str); 3]) -> Vec<QueryResult> {
    let seq_rows: Vec<[Option<&str>; 3]> = ["0", "1", "2"]
        .into_iter()
        .zip(sequences)
        .map(|(i, (last, called))| [S(i), S(last), S(called)])
        .collect();
    let seq_rows: Vec<&[Option<&str>]> = seq_rows.iter().map(|r| &r[..]).collect();
    let copies = rows.into_iter().map(|n| copy(binary_rows(n)));
    copies.chain([res(&seq_rows)]).collect()
}

/// Results of the two statements per advisory lock: the guard, then (levels, relocked).
fn lock_levels(levels: &[u32]) -> Vec<QueryResult> {
    levels
        .iter()
        .flat_map(|n| {
            let n = n.to_string();
            [res(&[&[S("")]]), res(&[&[S(&n), S(&n)]])]
        })
        .collect()
}

#[test]
fn plan_and_finish_build_the_snapshot() {
    let snap = captured();
    assert_eq!(snap.session_authorization.as_deref(), Some("bob"));
    assert_eq!(snap.role.as_deref(), Some("carol"));
    assert_eq!(
        snap.settings.last(),
        Some(&Setting {
            name: "app.tenant".into(),
            value: "42".into()
        })
    );
    assert_eq!(snap.settings.len(), 4);
    assert_eq!(
        snap.prepared,
        vec![
            PreparedStatement {
                name: "p1".into(),
                statement: "PREPARE p1 (int, text) AS SELECT $1, $2".into(),
                param_types: vec![23, 25],
                from_sql: true,
            },
            PreparedStatement {
                name: "s1".into(),
                statement: "SELECT $1::int + 1".into(),
                param_types: vec![23],
                from_sql: false,
            },
        ]
    );
    assert_eq!(snap.listen, vec!["Chan 1", "foo"]);
    assert_eq!(
        snap.advisory_locks,
        vec![
            AdvisoryLock {
                key: AdvisoryKey::Single(42),
                shared: false,
                count: 3,
            },
            AdvisoryLock {
                key: AdvisoryKey::Pair(1, 2),
                shared: true,
                count: 1,
            },
            AdvisoryLock {
                key: AdvisoryKey::Pair(-3, 7),
                shared: false,
                count: 1,
            },
            AdvisoryLock {
                key: AdvisoryKey::Single(-5),
                shared: false,
                count: 2,
            },
        ]
    );
    let parent = &snap.temp_tables[0];
    assert_eq!(parent.reloptions, vec!["fillfactor=70"]);
    assert_eq!(parent.columns.len(), 4);
    assert!(parent.columns[3].generated);
    assert_eq!(
        parent.columns[2].collation.as_deref(),
        Some("pg_catalog.\"C\"")
    );
    let child = &snap.temp_tables[1];
    assert_eq!(child.columns[0].identity, Some('a'));
    // pg_temp_3 (this backend's temp schema) is rewritten for whatever the next backend gets.
    assert_eq!(
        child.foreign_keys[0].definition,
        "FOREIGN KEY (pid) REFERENCES pg_temp.parent(id) ON DELETE CASCADE"
    );
    assert_eq!(child.rows, binary_rows(20_000));
    assert!(snap.temp_tables[2].on_commit_delete_rows);
    assert_eq!(
        snap.sequences[2],
        TempSequence {
            name: "standalone".into(),
            owner: "bob".into(),
            data_type: "bigint".into(),
            start: 10,
            increment: 3,
            min: 1,
            max: 1000,
            cache: 1,
            cycle: true,
            last_value: 10,
            is_called: false,
            owned_by: None,
            identity: false,
        }
    );
    assert!(snap.sequences[1].identity);
}

#[test]
fn stale_on_commit_delete_rows_name_with_rows_is_ignored() {
    let CatalogOutcome::Continue(plan) =
        capture::plan(&catalog_fixture(), &["parent".to_string()]).unwrap()
    else {
        panic!("blocked")
    };
    let data = [
        temp_data([2, 0, 0], [("2", "t"), ("1", "f"), ("10", "f")]),
        lock_levels(&[1, 1, 1, 1]),
    ]
    .concat();
    let snap = plan.finish(&data).unwrap();
    assert!(!snap.temp_tables[0].on_commit_delete_rows);
}

#[test]
fn blockers_stop_the_plan() {
    let mut r = catalog_fixture();
    r[5] = res(&[&[S("WITH HOLD cursor c is open")]]);
    r[6] = res(&[&[S("temporary view v cannot be carried over")]]);
    let CatalogOutcome::Blocked(b) = capture::plan(&r, &[]).unwrap() else {
        panic!("not blocked")
    };
    assert_eq!(
        b,
        vec![
            "WITH HOLD cursor c is open",
            "temporary view v cannot be carried over"
        ]
    );

    // Without a temp schema there is no round trip 2.
    r.truncate(6);
    r[0] = res(&[&[S("LATIN1"), S("bob"), S("none"), None, S("on")]]);
    r[2] = res(&[&[S("q"), S("EXECUTE 'x'"), S("{}"), S("t")]]);
    let CatalogOutcome::Blocked(b) = capture::plan(&r, &[]).unwrap() else {
        panic!("not blocked")
    };
    assert_eq!(
        b,
        vec![
            "client_encoding LATIN1 is not supported for carry-over (only UTF8)",
            "prepared statement q: its PREPARE could not be isolated from the query text",
            "WITH HOLD cursor c is open",
        ]
    );
}

#[test]
fn malformed_results_are_errors_not_panics() {
    let mut r = catalog_fixture();
    r.pop();
    assert!(matches!(
        capture::plan(&r, &[]),
        Err(CaptureError::Unexpected(_))
    ));

    let mut r = catalog_fixture();
    r[4] = res(&[&[S("x"), S("42"), S("1"), S("ExclusiveLock")]]);
    assert!(capture::plan(&r, &[]).is_err());

    let mut r = catalog_fixture();
    r[1] = res(&[&[S("only one column")]]);
    assert!(capture::plan(&r, &[]).is_err());

    let mut r = catalog_fixture();
    r[8] = res(&[&[
        S("99999"),
        S("a"),
        S("int"),
        S("f"),
        None,
        S(""),
        S(""),
        None,
    ]]);
    assert!(capture::plan(&r, &[]).is_err());

    let CatalogOutcome::Continue(plan) = capture::plan(&catalog_fixture(), &[]).unwrap() else {
        panic!()
    };
    assert!(plan.clone().finish(&[]).is_err());
    let data = vec![
        copy(vec![]),
        copy(vec![]),
        copy(vec![]),
        res(&[&[S("7"), S("1"), S("t")]]),
    ];
    assert!(plan.finish(&data).is_err());
}

#[test]
fn temp_catalog_is_asked_only_with_a_temp_schema() {
    let with = catalog_fixture();
    let q = capture::temp_catalog_query(&with[..6]).unwrap().unwrap();
    assert_eq!(q.matches(";\n").count(), 5, "six statements");
    assert!(q.contains("pg_my_temp_schema()"));
    assert!(!capture::catalog_query().contains("pg_catalog.pg_class"));
    // Round trip 2's results missing: an error, never a snapshot without the temp tables.
    assert!(capture::plan(&with[..6], &[]).is_err());

    let mut without = catalog_fixture();
    without[0] = res(&[&[S("UTF8"), S("bob"), S("none"), None, S("on")]]);
    assert_eq!(capture::temp_catalog_query(&without[..6]).unwrap(), None);
    assert!(capture::plan(&without, &[]).is_err());
    let CatalogOutcome::Continue(plan) = capture::plan(&without[..6], &[]).unwrap() else {
        panic!()
    };
    assert!(plan.data_query().is_some(), "advisory locks still counted");
    let snap = plan.finish(&lock_levels(&[1, 2, 1, 1])).unwrap();
    assert!(snap.temp_tables.is_empty() && snap.sequences.is_empty());
    assert_eq!((snap.settings.len(), snap.prepared.len()), (3, 2));
    assert_eq!(snap.advisory_locks[1].count, 2);
    assert!(capture::temp_catalog_query(&[]).is_err());
}

#[test]
fn empty_session_needs_no_data_query_and_no_replay() {
    let mut r: Vec<QueryResult> = (0..6).map(|_| res(&[])).collect();
    r[0] = res(&[&[S("UTF8"), S("postgres"), S("none"), None, S("on")]]);
    let CatalogOutcome::Continue(plan) = capture::plan(&r, &[]).unwrap() else {
        panic!()
    };
    assert_eq!(plan.data_query(), None);
    let mut snap = plan.finish(&[]).unwrap();
    snap.startup_params = vec![("user".into(), "postgres".into())];
    let replay = replay::build(&snap, "postgres").unwrap();
    assert_eq!(replay.ready_count, 0);
    assert!(replay.messages.is_empty());
    assert!(replay.statements.is_empty());
}

/// Splits the replay bytes into (tag, body) messages.
fn messages(mut b: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let tag = b.get_u8();
        let len = b.get_u32() as usize - 4;
        out.push((tag, b[..len].to_vec()));
        b.advance(len);
    }
    out
}

#[test]
fn replay_order_labels_and_messages() {
    let mut snap = captured();
    snap.startup_params = vec![("user".into(), "postgres".into())];
    let plan = replay::build(&snap, "postgres").unwrap();
    assert_eq!(
        plan.statements,
        vec![
            "start of the restore",
            "setting DateStyle",
            "setting search_path",
            "setting work_mem",
            "setting app.tenant",
            "temp sequence parent_id_seq",
            "temp sequence standalone",
            "temp table parent",
            "temp table child",
            "temp table ocdr",
            "rows of temp table parent",
            "rows of temp table child",
            "constraint parent_pkey of temp table parent",
            "constraint child_pkey of temp table child",
            "foreign key child_pid_fkey of temp table child",
            "index child_note_idx of temp table child",
            "ownership of temp sequence parent_id_seq",
            "position of temp sequence parent_id_seq",
            "position of temp sequence child_cid_seq",
            "position of temp sequence standalone",
            "owner of temp table parent",
            "owner of temp table child",
            "owner of temp table ocdr",
            "owner of temp sequence standalone",
            "prepared statement p1",
            "LISTEN channel Chan 1",
            "LISTEN channel foo",
            "advisory lock 42",
            "shared advisory lock (1, 2)",
            "advisory lock (-3, 7)",
            "advisory lock -5",
            "session authorization bob",
            "role carol",
            "commit of the restored state",
        ]
    );
    assert_eq!(plan.parses, vec!["prepared statement s1"]);
    // BEGIN up to the owners; the PREPARE alone; LISTEN to role; COMMIT alone.
    assert_eq!(plan.queries, vec![24, 1, 8, 1]);
    assert_eq!(plan.ready_count, 5);

    let msgs = messages(&plan.messages);
    let queries: Vec<String> = msgs
        .iter()
        .filter(|m| m.0 == b'Q')
        .map(|m| String::from_utf8(m.1[..m.1.len() - 1].to_vec()).unwrap())
        .collect();
    let per_query: Vec<usize> = queries.iter().map(|q| q.split(";\n").count()).collect();
    assert_eq!(per_query, plan.queries);
    let stmts: Vec<&str> = queries.iter().flat_map(|q| q.split(";\n")).collect();
    assert_eq!(stmts.len(), plan.statements.len());
    assert_eq!(
        stmts[2],
        "SELECT pg_catalog.set_config('search_path', '\"a, b\", public', false)"
    );
    assert_eq!(
        stmts[7],
        "CREATE TEMP TABLE pg_temp.\"parent\" (\"id\" integer DEFAULT nextval('parent_id_seq'::regclass) NOT NULL, \
         \"name\" text DEFAULT 'x''y'::text NOT NULL, \"code\" character varying(10) COLLATE pg_catalog.\"C\", \
         \"doubled\" numeric GENERATED ALWAYS AS ((price * (2)::numeric)) STORED) WITH (fillfactor = '70')"
    );
    assert_eq!(
        stmts[8],
        "CREATE TEMP TABLE pg_temp.\"child\" (\"cid\" bigint GENERATED ALWAYS AS IDENTITY \
         (SEQUENCE NAME pg_temp.\"child_cid_seq\" INCREMENT BY 5 MINVALUE 1 MAXVALUE 9223372036854775807 \
         START WITH 100 CACHE 1 NO CYCLE) NOT NULL, \"pid\" integer)"
    );
    assert!(stmts[9].ends_with("ON COMMIT DELETE ROWS"));
    assert_eq!(
        stmts[11],
        "COPY pg_temp.\"child\" (\"cid\", \"pid\") FROM STDIN (FORMAT binary)"
    );
    assert_eq!(
        stmts[19],
        "SELECT pg_catalog.setval('pg_temp.\"standalone\"', 10, false)"
    );
    assert!(stmts[27].starts_with(
        "DO $torpor$BEGIN FOR i IN 1..3 LOOP IF NOT pg_catalog.pg_try_advisory_lock(42::pg_catalog.int8)"
    ));
    assert!(
        stmts[28].contains("pg_try_advisory_lock_shared(1::pg_catalog.int4, 2::pg_catalog.int4)")
    );
    // Exactly the statement's own text, alone in its Query: what pg_prepared_statements shows.
    assert_eq!(queries[1], "PREPARE p1 (int, text) AS SELECT $1, $2");
    assert_eq!(stmts[0], "BEGIN");
    assert_eq!(queries[3], "COMMIT");

    // CopyData for parent (one chunk), child (200 kB → four ≤ 64 KiB chunks), each followed by
    // CopyDone, then the PREPARE's Query, the rest, the COMMIT, then Parse and Sync.
    let tags: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    assert_eq!(tags, b"QdcddddcQQQPS".to_vec());
    let child: Vec<u8> = msgs[3..7].iter().flat_map(|m| m.1.clone()).collect();
    assert_eq!(child, binary_rows(20_000));
    assert!(msgs[3..7].iter().all(|m| m.1.len() <= 64 * 1024));
}

#[test]
fn replay_skips_login_user_authorization_and_owners() {
    let snap = PgSnapshot {
        startup_params: vec![("user".into(), "alice".into())],
        session_authorization: Some("alice".into()),
        temp_tables: vec![TempTable {
            name: "t".into(),
            owner: "alice".into(),
            ..TempTable::default()
        }],
        ..PgSnapshot::default()
    };
    let plan = replay::build(&snap, "alice").unwrap();
    assert_eq!(plan.statements, vec!["temp table t"]);
    assert_eq!(plan.ready_count, 1);
}

#[test]
fn snapshot_roundtrips_through_rmp_serde() {
    let mut snap = captured();
    snap.startup_params = vec![("user".into(), "postgres".into())];
    snap.parameter_status = vec![("server_version".into(), "15.18".into())];
    let bytes = rmp_serde::to_vec_named(&snap).unwrap();
    let back: PgSnapshot = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, snap);
}

#[test]
fn snapshot_from_an_older_version_reads_with_defaults() {
    #[derive(serde::Serialize)]
    struct Old {
        startup_params: Vec<(String, String)>,
        listen: Vec<String>,
    }
    let bytes = rmp_serde::to_vec_named(&Old {
        startup_params: vec![("user".into(), "u".into())],
        listen: vec!["x".into()],
    })
    .unwrap();
    let snap: PgSnapshot = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(snap.listen, vec!["x"]);
    assert!(snap.temp_tables.is_empty());
    assert_eq!(snap.role, None);
}
