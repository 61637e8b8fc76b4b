//! Sealed snapshots end to end, on a real postgres and a real mariadbd: what one user's
//! session stored never wakes into another's session, and a snapshot changed in the store is
//! refused with an error that says why, before any of it reaches the database.

use std::path::{Path, PathBuf};

use mysql_async::prelude::Queryable;
use protocols::pg::snapshot::PgSnapshot;
use state_store::{SnapshotKey, envelope, sealed};
use torpor_tests::harness::{
    OTHER_PASSWORD, OTHER_USER, Opts, Pg, SLOW, StoreKind, TestEnv, USER, describe,
};
use torpor_tests::mysql::{exec, exec_each, text, try_connect_my};

/// The object the last sleep added under `dir`, beside the ones in `before`.
fn new_object(dir: &Path, before: &[&PathBuf]) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| !before.contains(&p))
        .collect();
    assert_eq!(found.len(), 1, "one new snapshot expected: {found:?}");
    found.remove(0)
}

fn session_of(object: &Path) -> uuid::Uuid {
    let name = object.file_name().unwrap().to_string_lossy();
    uuid::Uuid::parse_str(&name).unwrap()
}

/// `bytes`, a sealed snapshot, with its header saying it belongs to another session, user and
/// database: what someone who may write to the store, but has no key, can do.
fn relabel(bytes: &[u8], session: uuid::Uuid, user: &str, database: &str) -> Vec<u8> {
    let field_end =
        |at: usize| at + 2 + usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    // magic, version, algorithm, key id; then the cluster name.
    let cluster_end = field_end(4 + 2 + 1 + 8);
    let user_at = cluster_end + 16;
    let nonce_at = field_end(field_end(user_at));
    let mut out = bytes[..cluster_end].to_vec();
    out.extend_from_slice(session.as_bytes());
    for s in [user, database] {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&bytes[nonce_at..]);
    out
}

/// The session's next statement fails with an error about its snapshot, and its connection
/// ends; returns the error.
async fn refused(s: Pg) -> String {
    let err = tokio::time::timeout(SLOW, s.simple_query("SELECT 2"))
        .await
        .expect("no answer")
        .expect_err("a session whose snapshot can't open must not go on");
    let msg = describe(&err);
    assert!(msg.contains("snapshot"), "{msg}");
    let _ = s.ended().await;
    msg
}

async fn viewer(env: &TestEnv) -> Pg {
    env.try_connect(OTHER_USER, OTHER_PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("connect as {OTHER_USER}: {}", describe(&e)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_snapshot_never_wakes_into_a_session() {
    let env = TestEnv::default().await;
    let dir = env.snapshot_dir();
    let a = env.connect().await;
    a.exec(
        "SET myapp.owner = 'alice'; CREATE TEMP TABLE secret AS SELECT 'a-row' AS v; \
         PREPARE a_stmt AS SELECT v FROM secret",
    )
    .await;
    env.sleep_ok().await;
    let a_file = new_object(&dir, &[]);
    // Two sessions of another user, each with a snapshot of its own.
    let b = viewer(&env).await;
    b.exec("CREATE TEMP TABLE mine AS SELECT 'b-row' AS v")
        .await;
    env.sleep_ok().await;
    let b_file = new_object(&dir, &[&a_file]);
    let c = viewer(&env).await;
    c.exec("CREATE TEMP TABLE mine AS SELECT 'c-row' AS v")
        .await;
    env.sleep_ok().await;
    let c_file = new_object(&dir, &[&a_file, &b_file]);

    // A's object copied over B's.
    std::fs::copy(&a_file, &b_file).unwrap();
    let msg = refused(b).await;
    assert!(msg.contains("another session"), "{msg}");
    // A's object relabelled as C's, its session, user and database: the header is sealed.
    let relabelled = relabel(
        &std::fs::read(&a_file).unwrap(),
        session_of(&c_file),
        OTHER_USER,
        OTHER_USER,
    );
    std::fs::write(&c_file, relabelled).unwrap();
    let msg = refused(c).await;
    assert!(msg.contains("tampered"), "{msg}");
    assert!(!msg.contains("a-row") && !msg.contains("alice"), "{msg}");

    // A's own session has all of its state, and another of the viewer's none of it.
    assert_eq!(a.text("EXECUTE a_stmt").await, "a-row");
    assert_eq!(
        a.text("SELECT current_setting('myapp.owner')").await,
        "alice"
    );
    let d = viewer(&env).await;
    let err = d.simple_query("SELECT v FROM secret").await.unwrap_err();
    assert!(
        describe(&err).contains("does not exist"),
        "{}",
        describe(&err)
    );
    env.shutdown_after((a, d)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_snapshot_is_refused() {
    let env = TestEnv::default().await;
    let dir = env.snapshot_dir();
    let seal = env.seal();
    let key = |object: &Path| SnapshotKey {
        cluster: env.cluster.clone(),
        session: session_of(object),
        user: USER.into(),
        database: USER.into(),
    };

    // The prepared statement's text changed in place, without the key: AES-GCM encrypts as
    // a stream, so flipping stored bits flips the same bits of the text.
    let a = env.connect().await;
    a.exec("PREPARE q AS SELECT 'harmless-text'::text").await;
    env.sleep_ok().await;
    let a_file = new_object(&dir, &[]);
    let mut bytes = std::fs::read(&a_file).unwrap();
    let plain = sealed::open(&seal, &key(&a_file), &bytes).unwrap();
    let old: &[u8] = b"'harmless-text'";
    let new: &[u8] = b"1;DROP TABLE t;";
    let at = plain.windows(old.len()).position(|w| w == old).unwrap();
    let body = bytes.len() - 16 - plain.len();
    for (i, (o, n)) in old.iter().zip(new).enumerate() {
        bytes[body + at + i] ^= o ^ n;
    }
    std::fs::write(&a_file, &bytes).unwrap();
    let msg = refused(a).await;
    assert!(msg.contains("tampered"), "{msg}");

    // Even sealed with the right key (a stolen key, or a bug), a statement that reaches past
    // its PREPARE is not sent: here it would run a shell command as the postgres user.
    let marker = std::env::temp_dir().join(format!("torpor-replay-{}", uuid::Uuid::new_v4()));
    let b = env.connect().await;
    b.exec("PREPARE q AS SELECT 1").await;
    env.sleep_ok().await;
    let b_file = new_object(&dir, &[&a_file]);
    let mut snap: PgSnapshot =
        envelope::decode(&seal, &key(&b_file), &std::fs::read(&b_file).unwrap()).unwrap();
    assert_eq!(snap.prepared.len(), 1, "{snap:?}");
    snap.prepared[0].statement = format!(
        "PREPARE q AS SELECT 1; COPY (SELECT 1) TO PROGRAM 'touch {}'",
        marker.display()
    );
    let resealed = envelope::encode(&seal, &key(&b_file), &snap).unwrap();
    std::fs::write(&b_file, resealed).unwrap();
    let msg = refused(b).await;
    assert!(msg.contains("prepared statement q"), "{msg}");
    assert!(!marker.exists(), "the snapshot's command ran");
    let other = env.connect().await;
    assert_eq!(other.text("SELECT 1").await, "1");
    env.shutdown_after(other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_snapshot_never_wakes_into_a_mysql_session() {
    let env = TestEnv::start(Opts {
        store: StoreKind::S3,
        ..Opts::mysql()
    })
    .await;
    let dir = env.snapshot_dir();
    let mut a = env.my().await;
    exec_each(
        &mut a,
        &[
            "CREATE TEMPORARY TABLE secret (v TEXT)",
            "INSERT INTO secret VALUES ('a-row')",
            "SET @owner = 'alice'",
        ],
    )
    .await;
    env.sleep_ok().await;
    let a_file = new_object(&dir, &[]);
    let mut b = try_connect_my(env.listen, OTHER_USER, OTHER_PASSWORD, Some(&env.cluster))
        .await
        .unwrap();
    exec(&mut b, "SET @owner = 'bob'").await;
    env.sleep_ok().await;
    let b_file = new_object(&dir, &[&a_file]);

    // A's object copied over B's, in the S3 server's own files.
    std::fs::copy(&a_file, &b_file).unwrap();
    let err = tokio::time::timeout(SLOW, b.query_drop("SELECT @owner"))
        .await
        .expect("no answer")
        .expect_err("B must not wake with A's snapshot");
    let msg = err.to_string();
    assert!(
        msg.contains("snapshot") && msg.contains("another session"),
        "{msg}"
    );
    assert!(!msg.contains("alice") && !msg.contains("a-row"), "{msg}");

    assert_eq!(
        text(&mut a, "SELECT CONCAT(v, @owner) FROM secret").await,
        "a-rowalice"
    );
    let mut c = try_connect_my(env.listen, OTHER_USER, OTHER_PASSWORD, Some(&env.cluster))
        .await
        .unwrap();
    assert_eq!(
        torpor_tests::mysql::value(&mut c, "SELECT @owner").await,
        None
    );
    env.shutdown_after((a, c)).await;
}
