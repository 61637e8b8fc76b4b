//! The store against a real directory, the way a single-host deployment uses it.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use state_store::{SnapshotKey, Store, StoreConfig, StoreError};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Snap {
    settings: Vec<(String, String)>,
    rows: String,
}

fn key(cluster: &str) -> SnapshotKey {
    SnapshotKey {
        cluster: cluster.into(),
        session: uuid::Uuid::new_v4(),
    }
}

fn big_text(len: usize) -> String {
    // Varied content so a misplaced chunk cannot compare equal.
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(&StoreConfig::from_url(format!("file://{}", dir.display()))).unwrap()
}

#[tokio::test]
async fn roundtrip_delete_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("not/yet/there");
    let store = open(&root);
    assert!(root.is_dir(), "open creates the directory");
    assert_eq!(store.describe(), format!("file://{}", root.display()));

    let k = key("pg-main");
    let snap = Snap {
        settings: vec![("search_path".into(), "app, public".into())],
        rows: "small".into(),
    };
    let stored = store.put(&k, &snap).await.unwrap();
    let on_disk = root.join("pg-main").join(k.session.to_string());
    assert!(on_disk.is_file(), "object at <cluster>/<session>");
    assert_eq!(stored as u64, std::fs::metadata(&on_disk).unwrap().len());
    assert_eq!(&std::fs::read(&on_disk).unwrap()[..4], b"TRPR");

    let back: Snap = store.get(&k).await.unwrap();
    assert_eq!(back, snap);

    // A second store on the same directory (a restarted proxy) sees the same snapshot.
    let again: Snap = open(&root).get(&k).await.unwrap();
    assert_eq!(again, snap);

    // Overwrite replaces.
    let snap2 = Snap {
        settings: vec![],
        rows: "second".into(),
    };
    store.put(&k, &snap2).await.unwrap();
    assert_eq!(store.get::<Snap>(&k).await.unwrap(), snap2);

    store.delete(&k).await.unwrap();
    assert!(!on_disk.exists());
    match store.get::<Snap>(&k).await {
        Err(StoreError::NotFound(m)) => assert!(m.contains(&k.session.to_string()), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Deleting what is not there is fine.
    store.delete(&k).await.unwrap();
    store.delete(&key("never-written")).await.unwrap();
}

#[tokio::test]
async fn twenty_megabytes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let k = key("big");
    let snap = Snap {
        settings: vec![],
        rows: big_text(20 * 1024 * 1024),
    };
    store.put(&k, &snap).await.unwrap();
    let back: Snap = store.get(&k).await.unwrap();
    assert_eq!(back.rows.len(), snap.rows.len());
    assert!(back == snap);
}

#[tokio::test]
async fn corrupted_file_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let k = key("c");
    store
        .put(
            &k,
            &Snap {
                settings: vec![],
                rows: "x".repeat(100),
            },
        )
        .await
        .unwrap();
    let path = tmp.path().join("c").join(k.session.to_string());
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() - 50;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        store.get::<Snap>(&k).await,
        Err(StoreError::Corrupt(_))
    ));
}

#[tokio::test]
async fn copied_object_is_wrong_session() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let a = key("pg");
    let b = key("pg");
    store
        .put(
            &a,
            &Snap {
                settings: vec![],
                rows: "a".into(),
            },
        )
        .await
        .unwrap();
    std::fs::copy(
        tmp.path().join("pg").join(a.session.to_string()),
        tmp.path().join("pg").join(b.session.to_string()),
    )
    .unwrap();
    match store.get::<Snap>(&b).await {
        Err(StoreError::WrongSession(m)) => assert!(m.contains(&a.session.to_string()), "{m}"),
        other => panic!("expected WrongSession, got {other:?}"),
    }
}

#[tokio::test]
async fn memory_store_roundtrip() {
    let store = Store::open(&StoreConfig::from_url("memory://")).unwrap();
    let k = key("m");
    assert!(matches!(
        store.get::<Snap>(&k).await,
        Err(StoreError::NotFound(_))
    ));
    let snap = Snap {
        settings: vec![("a".into(), "b".into())],
        rows: String::new(),
    };
    store.put(&k, &snap).await.unwrap();
    // Clones share the backend.
    assert_eq!(store.clone().get::<Snap>(&k).await.unwrap(), snap);
    store.delete(&k).await.unwrap();
    assert!(matches!(
        store.get::<Snap>(&k).await,
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn config_from_toml_like_json() {
    let cfg: StoreConfig = serde_json::from_str(
        r#"{"url":"s3://b/p","endpoint":"http://127.0.0.1:9000","allow_http":true,
            "access_key_id":"AK","secret_access_key":"SK"}"#,
    )
    .unwrap();
    assert_eq!(cfg.url, "s3://b/p");
    assert!(cfg.allow_http);
    assert_eq!(cfg.region, None);
    let err = serde_json::from_str::<StoreConfig>(r#"{"url":"memory://","secret":"x"}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn store_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Store>();
}
