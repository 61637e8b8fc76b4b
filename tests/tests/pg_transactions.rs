//! Read-only transactions don't block a stop: a READ COMMITTED block that has only read is
//! carried over and reopened; anything more still blocks, and a drain called off leaves the
//! block as it was.

use torpor_tests::clients::pg_python;
use torpor_tests::harness::{PASSWORD, TestEnv, USER};
use torpor_tests::wire::{Raw, first_value, status, tags};

async fn query(raw: &mut Raw, sql: &str) -> Vec<(u8, bytes::BytesMut)> {
    let msgs = raw.query(sql).await.unwrap();
    assert!(
        !msgs.iter().any(|(t, _)| *t == b'E'),
        "{sql}: {}",
        tags(&msgs)
    );
    msgs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_transactions_are_carried_over_a_stop() {
    let (env, _setup) = TestEnv::pg_session_with(
        "CREATE TABLE items(x int); INSERT INTO items SELECT generate_series(1, 10)",
    )
    .await;
    let (mut a, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    let (mut b, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    // psycopg2's default: BEGIN, then a query the plain-read scan rejects.
    assert_eq!(status(&query(&mut a, "BEGIN").await), b'T');
    assert_eq!(
        first_value(&query(&mut a, "SELECT count(*) FROM items").await),
        "10"
    );
    assert_eq!(status(&query(&mut b, "BEGIN READ ONLY").await), b'T');
    let before = first_value(&query(&mut a, "SELECT now()::text").await);

    env.sleep_ok().await;

    // The first statement after the wake runs inside a transaction block again.
    let msgs = query(&mut a, "SELECT count(*) FROM items").await;
    assert_eq!((first_value(&msgs).as_str(), status(&msgs)), ("10", b'T'));
    let iso = query(&mut a, "SHOW transaction_isolation").await;
    assert_eq!(first_value(&iso), "read committed");
    // What the README says differs: now() is the reopened transaction's start.
    let after = first_value(&query(&mut a, "SELECT now()::text").await);
    assert_ne!(before, after);
    // A write after the carry is the client's to make, in its own transaction.
    query(&mut a, "INSERT INTO items VALUES (11)").await;
    let msgs = query(&mut a, "ROLLBACK").await;
    assert_eq!(status(&msgs), b'I');
    assert_eq!(
        first_value(&query(&mut a, "SELECT count(*) FROM items").await),
        "10"
    );

    let ro = query(&mut b, "SHOW transaction_read_only").await;
    assert_eq!((first_value(&ro).as_str(), status(&ro)), ("on", b'T'));
    assert_eq!(status(&query(&mut b, "COMMIT").await), b'I');
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_that_did_more_than_read_still_block() {
    let (env, _setup) = TestEnv::pg_session_with("CREATE TABLE items(x int)").await;
    let pid = env.running_pid().await;
    for (begin, statement, why) in [
        // Nothing in the text says it wrote: the backend does.
        ("BEGIN", "SELECT pg_current_xact_id()::text", "wrote"),
        ("BEGIN", "SELECT x FROM items FOR SHARE", "locks"),
        (
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            "SELECT 1",
            "open transaction",
        ),
        (
            "BEGIN",
            "SELECT 1 FROM items FOR UPDATE",
            "open transaction",
        ),
        ("BEGIN", "SAVEPOINT s", "open transaction"),
        ("BEGIN", "SET LOCAL work_mem = '2MB'", "open transaction"),
        ("BEGIN", "NOTIFY ch", "open transaction"),
    ] {
        let (mut c, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
        query(&mut c, begin).await;
        query(&mut c, statement).await;
        let (code, body) = env.sleep().await;
        assert_eq!(code, 409, "{begin}; {statement}: {body}");
        assert!(
            body["blockers"].to_string().contains(why),
            "{statement}: {body}"
        );
        assert_eq!(env.backend_pid().await, Some(pid));
        // The transaction is still the client's.
        assert_eq!(
            status(&query(&mut c, "SELECT 1").await),
            b'T',
            "{statement}"
        );
        assert_eq!(status(&query(&mut c, "ROLLBACK").await), b'I');
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_drain_leaves_a_carriable_transaction_intact() {
    let env = TestEnv::default().await;
    let (mut a, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    let (mut b, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    // A session lock, which the capture counts with transaction-level locks of its own.
    query(&mut a, "SELECT pg_advisory_lock(42)").await;
    query(&mut a, "BEGIN").await;
    query(&mut a, "SELECT count(*) FROM pg_class").await;
    let started = first_value(
        &query(
            &mut a,
            "SELECT xact_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .await,
    );
    // B wrote: the drain asks A, then is refused because of B.
    query(&mut b, "BEGIN").await;
    query(&mut b, "SELECT pg_current_xact_id()::text").await;
    let body = env.sleep_refused().await;
    assert!(body["blockers"].to_string().contains("wrote"), "{body}");

    let msgs = query(
        &mut a,
        "SELECT xact_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!((first_value(&msgs), status(&msgs)), (started, b'T'));
    let held = query(
        &mut a,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(first_value(&held), "1", "the capture left a lock behind");
    let assigned = query(&mut a, "SELECT pg_current_xact_id_if_assigned() IS NULL").await;
    assert_eq!(first_value(&assigned), "t");
    assert_eq!(status(&query(&mut a, "COMMIT").await), b'I');
    query(&mut b, "ROLLBACK").await;
    // With B done, A's session (lock and all) sleeps and comes back.
    env.sleep_ok().await;
    let held = query(
        &mut a,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(first_value(&held), "1");
    env.shutdown().await;
}

/// psycopg2 with its default autocommit off: one SELECT leaves it idle in a transaction, and
/// the database still stops; afterwards psycopg2 goes on in its transaction without a BEGIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_idle_in_a_read_transaction_lets_the_database_stop() {
    let (env, cmd) = pg_python("pg_txn.py").await;
    let mut client = torpor_tests::script::Script::spawn(cmd);
    client.expect("in transaction").await;
    // Idle in a transaction that only read: the drain carries it.
    env.sleep_ok().await;
    client.go().await;
    let out = client.finish().await;
    assert!(out.contains("ok"), "{out}");
    env.shutdown().await;
}
