//! Each kind of session state survives a forced scale-to-zero: set it up through torpor, sleep
//! the cluster (the backend pid must be gone), then use the state on the new backend.

use torpor_tests::harness::{OTHER_USER, Opts, Pg, TestEnv, USER, describe, sqlstate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_survive_sleep() {
    let (env, s) = TestEnv::pg_session(Opts::default()).await;
    let setup = env.connect_with("CREATE SCHEMA IF NOT EXISTS tenant_a; CREATE ROLE reporter NOLOGIN; GRANT reporter TO app;").await;
    drop(setup);

    s.exec(
        "SET search_path TO tenant_a, public;
         SET timezone = 'America/Sao_Paulo';
         SET application_name = 'e2e-settings';
         SELECT set_config('work_mem', '7MB', false);
         SET myapp.tenant = '42';
         SET statement_timeout = '123s';
         SET extra_float_digits = 2;",
    )
    .await;
    let before_pid = s.text("SELECT pg_backend_pid()").await;
    let told_before = s.reported();
    assert_eq!(
        told_before.get("application_name").map(String::as_str),
        Some("e2e-settings")
    );
    assert_eq!(
        told_before.get("TimeZone").map(String::as_str),
        Some("America/Sao_Paulo")
    );

    env.sleep_ok().await;

    assert_eq!(s.text("SHOW search_path").await, "tenant_a, public");
    assert_eq!(s.text("SHOW timezone").await, "America/Sao_Paulo");
    assert_eq!(s.text("SHOW application_name").await, "e2e-settings");
    assert_eq!(s.text("SELECT current_setting('work_mem')").await, "7MB");
    assert_eq!(s.text("SELECT current_setting('myapp.tenant')").await, "42");
    assert_eq!(s.text("SHOW statement_timeout").await, "123s");
    assert_eq!(s.text("SHOW extra_float_digits").await, "2");
    // The search_path is really in effect: an unqualified CREATE lands in tenant_a.
    s.exec("CREATE TEMP TABLE probe(x int); DROP TABLE probe; CREATE TABLE IF NOT EXISTS where_am_i(x int)")
        .await;
    assert_eq!(
        s.text("SELECT schemaname FROM pg_tables WHERE tablename = 'where_am_i'")
            .await,
        "tenant_a"
    );
    let after_pid = s.text("SELECT pg_backend_pid()").await;
    assert_ne!(
        before_pid, after_pid,
        "the session should be on a new backend"
    );

    // What the client was told stays what it was told.
    let told_after = s.reported();
    for k in [
        "application_name",
        "TimeZone",
        "DateStyle",
        "client_encoding",
        "is_superuser",
        "session_authorization",
    ] {
        assert_eq!(told_before.get(k), told_after.get(k), "ParameterStatus {k}");
    }

    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_role_and_session_authorization_survive_sleep() {
    let (env, admin) = TestEnv::pg_session_with("CREATE ROLE auditor NOLOGIN; GRANT auditor TO app; CREATE TABLE secret_stuff(x int); REVOKE ALL ON secret_stuff FROM PUBLIC;").await;

    // SET ROLE in one session, SET SESSION AUTHORIZATION in another.
    let role = env.connect_with("SET ROLE auditor").await;
    assert_eq!(role.text("SELECT current_user").await, "auditor");

    let auth = env
        .connect_with(&format!("SET SESSION AUTHORIZATION {OTHER_USER}"))
        .await;
    // The session is the other user when asked, and in what the client was told.
    let is_other_user = async |c: &Pg| {
        assert_eq!(c.text("SELECT session_user").await, OTHER_USER);
        let told = c.reported().get("session_authorization").cloned();
        assert_eq!(told.as_deref(), Some(OTHER_USER));
    };
    is_other_user(&auth).await;

    env.sleep_ok().await;

    assert_eq!(role.text("SELECT current_user").await, "auditor");
    assert_eq!(role.text("SELECT session_user").await, USER);
    assert_eq!(role.text("SHOW role").await, "auditor");
    // auditor has no rights on the table: the role is really in effect, not just displayed.
    let err = role
        .simple_query("SELECT * FROM secret_stuff")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), Some("42501"), "{}", describe(&err));

    is_other_user(&auth).await;
    assert_eq!(auth.text("SELECT current_user").await, OTHER_USER);
    // RESET SESSION AUTHORIZATION goes back to the login user, as on the original backend.
    auth.exec("RESET SESSION AUTHORIZATION").await;
    assert_eq!(auth.text("SELECT session_user").await, USER);

    env.shutdown_after((admin, role, auth)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_survive_sleep() {
    let (env, s) = TestEnv::pg_session(Opts::default()).await;

    // Protocol-level named statements (Parse with a name), with parameter types.
    let typed = s
        .prepare("SELECT $1::int8 * 2 AS doubled, upper($2::text) AS shout")
        .await
        .unwrap();
    let inferred = s
        .prepare_typed(
            "SELECT $1 + 1, $2 || '!'",
            &[
                tokio_postgres::types::Type::INT4,
                tokio_postgres::types::Type::TEXT,
            ],
        )
        .await
        .unwrap();
    let row = s.query_one(&typed, &[&21i64, &"hi"]).await.unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, String>(1)),
        (42, "HI".into())
    );

    // SQL-level PREPARE.
    s.exec("PREPARE sq(int, text) AS SELECT $1 * 10, $2 || '-sql'")
        .await;
    let before: Vec<String> = prepared_names(&s).await;

    env.sleep_ok().await;

    let row = s.query_one(&typed, &[&50i64, &"again"]).await.unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, String>(1)),
        (100, "AGAIN".into())
    );
    let row = s.query_one(&inferred, &[&1i32, &"x"]).await.unwrap();
    assert_eq!(
        (row.get::<_, i32>(0), row.get::<_, String>(1)),
        (2, "x!".into())
    );
    let rows = s.simple_query("EXECUTE sq(7, 'a')").await.unwrap();
    let vals: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some(format!("{}|{}", r.get(0).unwrap(), r.get(1).unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(vals, vec!["70|a-sql"]);
    // Same names, same types, same SQL/protocol origin.
    assert_eq!(prepared_names(&s).await, before);
    // A typed parameter is still typed: text for an int8 is refused by the server.
    let err = s
        .query_one(&typed, &[&"not a number", &"x"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("serializ") || err.as_db_error().is_some(),
        "{err}"
    );

    env.shutdown_after(s).await;
}

/// pg_prepared_statements shows a SQL PREPARE's own text after a wake, as before the sleep, not
/// the replay torpor sent to restore it among other state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_shows_its_own_text_after_sleep() {
    let (env, s) = TestEnv::pg_session_with("SET application_name = 'prepare-text'").await;
    s.exec("PREPARE s AS SELECT $1::int + 1").await;
    s.exec("PREPARE other AS SELECT 'two'").await;
    s.exec("LISTEN prepare_text").await;
    const ONE: &str = "SELECT statement FROM pg_prepared_statements WHERE name = 's'";
    const ALL: &str = "SELECT string_agg(name || ' = ' || statement, ' | ' ORDER BY name) \
                       FROM pg_prepared_statements WHERE from_sql";
    let before = s.text(ONE).await;
    assert_eq!(before, "PREPARE s AS SELECT $1::int + 1");
    let all_before = s.text(ALL).await;
    let pid_before = s.text("SELECT pg_backend_pid()").await;

    env.sleep_ok().await;

    assert_eq!(s.text(ONE).await, before);
    assert_eq!(s.text(ALL).await, all_before);
    assert_ne!(s.text("SELECT pg_backend_pid()").await, pid_before);
    assert_eq!(s.text("EXECUTE s(41)").await, "42");
    assert_eq!(s.text("EXECUTE other").await, "two");
    assert_eq!(s.text("SHOW application_name").await, "prepare-text");

    env.shutdown_after(s).await;
}

async fn prepared_names(s: &Pg) -> Vec<String> {
    let rows = s
        .simple_query(
            "SELECT name || ':' || parameter_types::text || ':' || from_sql FROM pg_prepared_statements ORDER BY name",
        )
        .await
        .unwrap();
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_tables_survive_sleep() {
    let (env, s) = TestEnv::pg_session(Opts::default()).await;
    s.exec(
        r#"CREATE TEMP TABLE kinds(
             id serial PRIMARY KEY,
             ident int GENERATED ALWAYS AS IDENTITY,
             code text UNIQUE,
             n int CHECK (n >= 0),
             label text DEFAULT 'none',
             blob bytea,
             amount numeric(12,4),
             at timestamptz,
             doc jsonb,
             tags text[],
             nums int[]
           );
           CREATE INDEX kinds_amount_idx ON kinds (amount);
           INSERT INTO kinds(code, n, blob, amount, at, doc, tags, nums) VALUES
             ('a', 1, '\x00ff10', 12.3456, '2024-02-29 12:34:56.789+00', '{"k": [1, "two", null]}', '{x,"y z",NULL}', '{1,2,3}'),
             ('b', 0, NULL, NULL, NULL, NULL, NULL, NULL),
             ('c', 5, '', -0.0001, '1970-01-01 00:00:00+00', '[]', '{}', '{}');
           CREATE TEMP TABLE scratch(x int) ON COMMIT DELETE ROWS;"#,
    )
    .await;
    let dump = "SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', id, ident, code, n, label, encode(blob, 'hex'), amount, at AT TIME ZONE 'UTC', doc, tags, nums), E'\\n' ORDER BY id) FROM kinds";
    let before = s.text(dump).await;

    // Big table: 100k rows.
    s.exec("CREATE TEMP TABLE big AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 100000) g")
        .await;
    let big = "SELECT count(*)::text || ':' || sum(id)::text || ':' || md5(string_agg(h, '' ORDER BY id)) FROM big";
    let big_before = s.text(big).await;

    env.sleep_ok().await;

    assert_eq!(s.text(dump).await, before);
    assert_eq!(s.text(big).await, big_before);
    assert!(big_before.starts_with("100000:5000050000:"));

    // Sequences continue after the old max.
    s.exec("INSERT INTO kinds(code, n) VALUES ('d', 2)").await;
    assert_eq!(
        s.text("SELECT id || ',' || ident || ',' || label FROM kinds WHERE code = 'd'")
            .await,
        "4,4,none"
    );
    // Constraints are enforced.
    for (sql, code, what) in [
        ("INSERT INTO kinds(code, n) VALUES ('a', 3)", "23505", ""),
        (
            "INSERT INTO kinds(id, code, n) VALUES (1, 'zz', 3)",
            "23505",
            "",
        ),
        ("INSERT INTO kinds(code, n) VALUES ('e', -1)", "23514", ""),
        (
            "INSERT INTO kinds(ident, code, n) VALUES (99, 'f', 1)",
            "428C9",
            "identity GENERATED ALWAYS: ",
        ),
    ] {
        let err = s.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&err), Some(code), "{what}{}", describe(&err));
    }
    // The extra index exists on the temp table.
    assert_eq!(
        s.text("SELECT count(*) FROM pg_indexes WHERE tablename = 'kinds' AND indexname = 'kinds_amount_idx' AND schemaname LIKE 'pg_temp%'").await,
        "1"
    );
    // Still temp tables, of this session only.
    assert_eq!(
        s.text("SELECT count(*) FROM pg_class WHERE relname IN ('kinds', 'big', 'scratch') AND relnamespace = pg_my_temp_schema()").await,
        "3"
    );
    let other = env.connect().await;
    let err = other.simple_query("SELECT * FROM kinds").await.unwrap_err();
    assert_eq!(sqlstate(&err), Some("42P01"), "{}", describe(&err));
    // ON COMMIT DELETE ROWS behaves as before.
    s.exec("BEGIN; INSERT INTO scratch VALUES (1), (2);").await;
    assert_eq!(s.text("SELECT count(*) FROM scratch").await, "2");
    s.exec("COMMIT").await;
    assert_eq!(s.text("SELECT count(*) FROM scratch").await, "0");

    env.shutdown_after((s, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_survives_sleep() {
    let (env, mut s) = TestEnv::pg_session(Opts::default()).await;
    s.exec("LISTEN jobs; LISTEN \"Mixed Case\"").await;

    env.sleep_ok().await;

    // Wake this session (and the cluster) with a query, then notify from elsewhere.
    assert_eq!(
        s.text("SELECT string_agg(c, ',' ORDER BY c) FROM pg_listening_channels() c")
            .await,
        "Mixed Case,jobs"
    );
    let other = env
        .connect_with("NOTIFY jobs, 'payload-1'; SELECT pg_notify('Mixed Case', 'payload-2')")
        .await;
    let mut got = Vec::new();
    for _ in 0..2 {
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.notifications.recv())
            .await
            .expect("no notification within 30 s")
            .expect("connection ended");
        got.push(format!("{}:{}", n.channel(), n.payload()));
    }
    got.sort();
    assert_eq!(got, vec!["Mixed Case:payload-2", "jobs:payload-1"]);

    env.shutdown_after((s, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_survive_sleep() {
    let (env, s) = TestEnv::pg_session_with("SELECT pg_advisory_lock(42); SELECT pg_advisory_lock(7, 8); SELECT pg_advisory_lock_shared(99);").await;
    let held = "SELECT string_agg(classid || '/' || objid || '/' || objsubid || '/' || mode, ',' ORDER BY classid, objid, mode) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()";
    let before = s.text(held).await;
    assert_eq!(before.split(',').count(), 3, "{before}");

    env.sleep_ok().await;

    // The first query after the wake already sees the locks: they were re-acquired before it ran.
    assert_eq!(s.text(held).await, before);

    let other = env.connect().await;
    assert_eq!(other.text("SELECT pg_try_advisory_lock(42)").await, "f");
    assert_eq!(other.text("SELECT pg_try_advisory_lock(7, 8)").await, "f");
    // Shared stays shared: another shared holder is fine, an exclusive one is not.
    assert_eq!(
        other.text("SELECT pg_try_advisory_lock_shared(99)").await,
        "t"
    );
    assert_eq!(other.text("SELECT pg_try_advisory_lock(99)").await, "f");
    other.exec("SELECT pg_advisory_unlock_shared(99)").await;

    // Unlocking after the wake works as on the old backend.
    assert_eq!(s.text("SELECT pg_advisory_unlock(42)").await, "t");
    assert_eq!(other.text("SELECT pg_try_advisory_lock(42)").await, "t");
    assert_eq!(s.text("SELECT pg_advisory_unlock(42)").await, "f");

    env.shutdown_after((s, other)).await;
}

/// Session advisory locks are re-entrant: taken twice, they need two unlocks. pg_locks shows one
/// row either way, so the count has to be carried some other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_lock_taken_twice_needs_two_unlocks_after_sleep() {
    let (env, s) =
        TestEnv::pg_session_with("SELECT pg_advisory_lock(42); SELECT pg_advisory_lock(42);").await;

    env.sleep_ok().await;

    assert_eq!(s.text("SELECT pg_advisory_unlock(42)").await, "t");
    let other = env.connect().await;
    assert_eq!(
        other.text("SELECT pg_try_advisory_lock(42)").await,
        "f",
        "after one of two unlocks the session must still hold lock 42"
    );
    assert_eq!(s.text("SELECT pg_advisory_unlock(42)").await, "t");
    assert_eq!(other.text("SELECT pg_try_advisory_lock(42)").await, "t");

    env.shutdown_after((s, other)).await;
}

/// A session that only read since its last snapshot keeps that snapshot (the next drain puts
/// nothing new) and still has everything after the next wake; one that never changed anything
/// needs no snapshot at all; a change is captured again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_only_read_keep_their_snapshot() {
    let (env, c) = TestEnv::pg_session(Opts::default()).await;
    let reader = env.connect().await;
    c.exec(
        "CREATE TEMP TABLE k (id int PRIMARY KEY, v text);
         INSERT INTO k VALUES (1, 'a'), (2, 'b');
         SET search_path = pg_temp, public;",
    )
    .await;
    reader.exec("SELECT 1").await;
    env.sleep_ok().await;
    let first = env.stored_snapshots();
    assert_eq!(
        first.len(),
        1,
        "only the session with state has a snapshot: {first:?}"
    );

    assert_eq!(c.text("SELECT v FROM k WHERE id = 2").await, "b");
    reader.exec("SELECT 2").await;
    env.sleep_ok().await;
    assert_eq!(
        env.stored_snapshots(),
        first,
        "a reads-only drain rewrote the snapshot"
    );
    assert_eq!(c.text("SELECT v FROM k WHERE id = 1").await, "a");
    assert_eq!(c.text("SHOW search_path").await, "pg_temp, public");
    assert_eq!(reader.text("SELECT 3").await, "3");

    c.exec("INSERT INTO k VALUES (3, 'c')").await;
    env.sleep_ok().await;
    assert_ne!(env.stored_snapshots(), first, "a change must be captured");
    assert_eq!(
        c.text("SELECT string_agg(v, ',' ORDER BY id) FROM k").await,
        "a,b,c"
    );
    env.shutdown().await;
}
