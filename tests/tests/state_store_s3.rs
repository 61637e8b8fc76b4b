//! The snapshot store against a real S3 API server over HTTP with SigV4.

use serde::{Deserialize, Serialize};
use state_store::{SnapshotKey, Store, StoreConfig, StoreError};
use torpor_tests::s3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Snap {
    settings: Vec<(String, String)>,
    rows: String,
}

fn key(cluster: &str) -> SnapshotKey {
    SnapshotKey {
        cluster: cluster.into(),
        session: uuid::Uuid::new_v4(),
        user: "app".into(),
        database: "app".into(),
    }
}

fn snap(rows: &str) -> Snap {
    Snap {
        settings: vec![("search_path".into(), "app, public".into())],
        rows: rows.into(),
    }
}

/// A store under `prefix` of a bucket on an S3 API server of its own, which keeps its objects
/// in the temp dir returned with it.
async fn on_s3(prefix: &str) -> (tempfile::TempDir, s3::S3Server, Store) {
    let dir = tempfile::tempdir().unwrap();
    let server = s3::start(dir.path()).await.unwrap();
    let store = Store::open(&server.store_config(prefix)).unwrap();
    (dir, server, store)
}

#[tokio::test]
async fn put_get_delete_not_found() {
    let (_dir, server, store) = on_s3("snapshots/eu").await;
    assert!(
        store
            .describe()
            .starts_with("s3://torpor-test/snapshots/eu")
    );

    let k = key("pg-main");
    store.put(&k, snap("one").into()).await.unwrap();
    let object = server.object_path(&format!("snapshots/eu/pg-main/{}", k.session));
    assert!(object.is_file(), "{} missing", object.display());
    assert_eq!(&std::fs::read(&object).unwrap()[..4], b"TRPR");

    assert_eq!(store.get::<Snap>(&k).await.unwrap(), snap("one"));
    store.put(&k, snap("two").into()).await.unwrap();
    assert_eq!(store.get::<Snap>(&k).await.unwrap(), snap("two"));

    store.delete(&k).await.unwrap();
    assert!(!object.exists());
    match store.get::<Snap>(&k).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains(&k.session.to_string()), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    store.delete(&k).await.unwrap();
}

#[tokio::test]
async fn no_prefix_keys_are_cluster_slash_session() {
    let (_dir, server, store) = on_s3("").await;
    let k = key("c1");
    store.put(&k, snap("x").into()).await.unwrap();
    assert!(server.object_path(&format!("c1/{}", k.session)).is_file());
}

#[tokio::test]
async fn copied_object_is_wrong_session() {
    let (_dir, server, store) = on_s3("p").await;
    let a = key("pg");
    let b = key("pg");
    store.put(&a, snap("a").into()).await.unwrap();
    std::fs::copy(
        server.object_path(&format!("p/pg/{}", a.session)),
        server.object_path(&format!("p/pg/{}", b.session)),
    )
    .unwrap();
    match store.get::<Snap>(&b).await {
        Err(StoreError::WrongSession(m)) => assert!(m.contains(&a.session.to_string()), "{m}"),
        other => panic!("expected WrongSession, got {other:?}"),
    }
}

#[tokio::test]
async fn twenty_megabytes() {
    let (_dir, _server, store) = on_s3("big").await;
    let k = key("pg");
    let mut x: u32 = 0x2545_f491;
    let rows: String = (0..20 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let value = snap(&rows);
    store
        .put(&k, std::sync::Arc::new(value.clone()))
        .await
        .unwrap();
    let back: Snap = store.get(&k).await.unwrap();
    assert_eq!(back.rows.len(), rows.len());
    assert!(back == value);
}

#[tokio::test]
async fn wrong_secret_is_a_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3::start(dir.path()).await.unwrap();
    let cfg = StoreConfig {
        secret_access_key: Some("not-the-secret".into()),
        ..server.store_config("p")
    };
    let store = Store::open(&cfg).unwrap();
    match store.put(&key("pg"), snap("x").into()).await {
        Err(StoreError::Backend(m)) => assert!(!m.contains("not-the-secret"), "{m}"),
        other => panic!("expected Backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn dropped_server_stops_serving() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3::start(dir.path()).await.unwrap();
    let addr = server.endpoint.trim_start_matches("http://").to_owned();
    tokio::net::TcpStream::connect(&addr).await.unwrap();
    drop(server);
    // The abort lands at the task's next poll; give it a moment.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{addr} still accepts connections after the server was dropped");
}

#[tokio::test]
async fn probe_finds_bad_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let server = s3::start(dir.path()).await.unwrap();
    let good = Store::open(&server.store_config("p")).unwrap();
    good.probe().await.unwrap();
    // The probe cleans up after itself.
    assert!(!server.object_path("p/.torpor-probe").exists());

    // (A missing bucket can't be shown here: s3s-fs creates bucket directories on put.)
    let mut wrong = server.store_config("p");
    wrong.secret_access_key = Some("not-the-secret".into());
    let e = Store::open(&wrong).unwrap().probe().await.unwrap_err();
    assert!(e.to_string().contains("probe put"), "{e}");
}

/// On S3 a prefix is a string: clearing instance "a" must not reach "a2", nor a store
/// with no instance above it.
#[tokio::test]
async fn clear_removes_only_its_own_instance() {
    let (_dir, server, base) = on_s3("p").await;
    let (a, a2) = (base.instance("a").unwrap(), base.instance("a2").unwrap());
    let mine = [key("pg"), key("pg"), key("my")];
    for k in &mine {
        a.put(k, snap("mine").into()).await.unwrap();
    }
    let theirs = key("pg");
    a2.put(&theirs, snap("theirs").into()).await.unwrap();
    assert!(
        server
            .object_path(&format!("p/a/pg/{}", mine[0].session))
            .is_file()
    );

    assert_eq!(a.clear().await.unwrap(), 3);
    for k in &mine {
        assert!(matches!(
            a.get::<Snap>(k).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert_eq!(a2.get::<Snap>(&theirs).await.unwrap(), snap("theirs"));
    assert_eq!(a.clear().await.unwrap(), 0);
}
