//! Where parked sessions live: a full cycle on an S3 API server, snapshots removed when their
//! session ends, and clear errors when a snapshot can't be restored.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use torpor_tests::harness::{Opts, SLOW, StoreKind, TestEnv, describe};

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

async fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + SLOW;
    while !f() {
        assert!(Instant::now() < deadline, "waited {SLOW:?} for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cycle_on_s3() {
    let env = TestEnv::start(Opts {
        store: StoreKind::S3,
        ..Opts::default()
    })
    .await;
    let objects = env.snapshot_dir();

    let s = env.connect().await;
    s.exec(
        "SET search_path TO pg_temp, public; SET myapp.who = 's3';
         CREATE TEMP TABLE t(id serial PRIMARY KEY, v text);
         INSERT INTO t(v) SELECT 'row ' || g FROM generate_series(1, 1000) g;",
    )
    .await;
    let stmt = s
        .prepare("SELECT v FROM t WHERE id = $1::int4")
        .await
        .unwrap();

    env.sleep_ok().await;
    let stored = files_under(&objects);
    assert_eq!(
        stored.len(),
        1,
        "one snapshot object expected under {}: {stored:?}",
        objects.display()
    );
    assert!(std::fs::read(&stored[0]).unwrap().starts_with(b"TRPR"));

    let row = s.query_one(&stmt, &[&500i32]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "row 500");
    assert_eq!(
        s.text("SELECT current_setting('myapp.who') || count(*) FROM t")
            .await,
        "s31000"
    );
    s.exec("INSERT INTO t(v) VALUES ('new')").await;
    assert_eq!(s.text("SELECT id FROM t WHERE v = 'new'").await, "1001");

    // The snapshot object goes away with its session.
    drop(s);
    wait_until("the snapshot object to be deleted", || {
        files_under(&objects).is_empty()
    })
    .await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_snapshot_lifecycle() {
    let env = TestEnv::default().await;
    let dir = env.snapshot_dir();
    let s = env.connect().await;
    s.exec("CREATE TEMP TABLE t AS SELECT 1 AS x").await;
    env.sleep_ok().await;
    let files = files_under(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.len() == 36 && name.chars().filter(|c| *c == '-').count() == 4,
        "not a uuid: {name}"
    );
    assert_eq!(s.text("SELECT x FROM t").await, "1");
    drop(s);
    wait_until("the snapshot file to be deleted", || {
        files_under(&dir).is_empty()
    })
    .await;
    env.shutdown().await;
}

/// The client is told, in an ErrorResponse, what couldn't be restored, and its connection ends.
async fn expect_restore_error(s: torpor_tests::harness::Pg, needles: &[&str]) -> String {
    let err = s
        .simple_query("SELECT 2")
        .await
        .expect_err("a session with lost state must not continue");
    let msg = describe(&err);
    let lower = msg.to_lowercase();
    for n in needles {
        assert!(lower.contains(n), "error should mention {n:?}: {msg}");
    }
    // The connection closes (ended() panics if it stays open).
    let _ = s.ended().await;
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_snapshot_is_a_clear_error() {
    let env = TestEnv::default().await;
    let dir = env.snapshot_dir();
    let victim = env.connect().await;
    victim
        .exec("SET application_name = 'victim'; CREATE TEMP TABLE t AS SELECT 1 AS x")
        .await;
    env.sleep_ok().await;
    let victim_file = files_under(&dir);
    assert_eq!(victim_file.len(), 1, "{victim_file:?}");

    // Another session with its own state, parked in a second sleep.
    let other = env.connect().await;
    other
        .exec("SET application_name = 'other'; CREATE TEMP TABLE t AS SELECT 2 AS x")
        .await;
    env.sleep_ok().await;
    assert_eq!(files_under(&dir).len(), 2);

    // Flip bytes in the middle of the victim's snapshot.
    let mut bytes = std::fs::read(&victim_file[0]).unwrap();
    let mid = bytes.len() / 2;
    let end = (mid + 8).min(bytes.len());
    for b in &mut bytes[mid..end] {
        *b ^= 0xa5;
    }
    std::fs::write(&victim_file[0], bytes).unwrap();

    let msg = expect_restore_error(victim, &["restore", "snapshot"]).await;
    eprintln!("victim was told: {msg}");
    assert_eq!(
        other
            .text("SELECT current_setting('application_name') || x FROM t")
            .await,
        "other2"
    );
    env.shutdown_after(other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_snapshot_is_a_clear_error() {
    let env = TestEnv::default().await;
    let dir = env.snapshot_dir();
    let victim = env.connect().await;
    victim.exec("SET application_name = 'victim'").await;
    env.sleep_ok().await;
    let files = files_under(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::remove_file(&files[0]).unwrap();
    let other = env.connect().await;
    let msg = expect_restore_error(victim, &["restore", "snapshot"]).await;
    eprintln!("victim was told: {msg}");
    assert_eq!(other.text("SELECT 1").await, "1");
    env.shutdown_after(other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_replay_statement_names_what_was_lost() {
    let (env, admin) = TestEnv::pg_session(Opts::default()).await;
    admin
        .exec("CREATE ROLE doomed NOLOGIN; GRANT doomed TO app; CREATE TABLE shared_t(x int); INSERT INTO shared_t VALUES (5);")
        .await;
    let role = env.connect().await;
    role.exec("SET ROLE doomed").await;
    let prep = env.connect().await;
    prep.exec("PREPARE uses_shared AS SELECT x FROM shared_t")
        .await;
    env.sleep_ok().await;

    // While they sleep, what their state depends on goes away.
    admin.exec("DROP ROLE doomed; DROP TABLE shared_t;").await;

    let msg = expect_restore_error(role, &["restore", "doomed"]).await;
    eprintln!("role session was told: {msg}");
    let msg = expect_restore_error(prep, &["restore", "uses_shared"]).await;
    eprintln!("prepared-statement session was told: {msg}");
    assert_eq!(admin.text("SELECT 1").await, "1");
    env.shutdown_after(admin).await;
}

/// SQL PREPAREs are replayed in queries of their own; a failure in a later one is still
/// named by its own item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_a_sql_prepare_names_its_own_item() {
    let (env, holder) = TestEnv::pg_session(Opts::default()).await;
    holder
        .exec("SET app.x = '1'; PREPARE p AS SELECT 1; SELECT pg_advisory_lock(4343)")
        .await;
    env.sleep_ok().await;
    let thief = env.connect().await;
    assert_eq!(thief.text("SELECT pg_try_advisory_lock(4343)").await, "t");
    // Not a probe (torpor answers those without waking the database).
    let err = holder
        .simple_query("SELECT current_setting('app.x')")
        .await
        .expect_err("a session with lost state must not continue");
    let msg = describe(&err);
    assert!(msg.contains("woke up: advisory lock 4343: "), "{msg}");
    let _ = holder.ended().await;
    env.shutdown_after(thief).await;
}

/// A parked session's advisory lock is not held by anyone while the cluster sleeps; if another
/// session takes it first, the parked session must fail loudly rather than run without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_lock_taken_while_parked_fails_the_wake_loudly() {
    let (env, holder) = TestEnv::pg_session(Opts::default()).await;
    holder.exec("SELECT pg_advisory_lock(4242)").await;
    env.sleep_ok().await;
    let thief = env.connect().await;
    assert_eq!(thief.text("SELECT pg_try_advisory_lock(4242)").await, "t");
    let msg = expect_restore_error(holder, &["restore", "lock"]).await;
    eprintln!("holder was told: {msg}");
    assert_eq!(thief.text("SELECT 1").await, "1");
    env.shutdown_after(thief).await;
}
