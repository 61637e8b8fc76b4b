//! The store against a real directory, the way a single-host deployment uses it.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use state_store::{SnapshotKey, Store, StoreConfig, StoreError};

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

/// A file store at `dir`, sealing with the key in `<dir>.key` (made on first use).
fn open(dir: &std::path::Path) -> Store {
    Store::open(&config(dir, None)).unwrap()
}

fn config(dir: &std::path::Path, key: Option<std::path::PathBuf>) -> StoreConfig {
    let key_file = key.unwrap_or_else(|| dir.with_extension("key"));
    if !key_file.exists() {
        state_store::seal::write_key_file(&key_file).unwrap();
    }
    StoreConfig {
        key_file: Some(key_file),
        ..StoreConfig::from_url(format!("file://{}", dir.display()))
    }
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
    let stored = store
        .put(&k, std::sync::Arc::new(snap.clone()))
        .await
        .unwrap();
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
    store
        .put(&k, std::sync::Arc::new(snap2.clone()))
        .await
        .unwrap();
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
    store
        .put(&k, std::sync::Arc::new(snap.clone()))
        .await
        .unwrap();
    let back: Snap = store.get(&k).await.unwrap();
    assert_eq!(back.rows.len(), snap.rows.len());
    assert!(back == snap);
}

#[tokio::test]
async fn tampered_file_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let k = key("c");
    store
        .put(
            &k,
            Snap {
                settings: vec![],
                rows: "x".repeat(100),
            }
            .into(),
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
        Err(StoreError::Tampered(_))
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
            Snap {
                settings: vec![],
                rows: "a".into(),
            }
            .into(),
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
    store
        .put(&k, std::sync::Arc::new(snap.clone()))
        .await
        .unwrap();
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

#[tokio::test]
async fn files_and_directories_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("state");
    let store = open(&root).instance("host-a").unwrap();
    let k = key("pg");
    store
        .put(
            &k,
            Snap {
                settings: vec![],
                rows: "r".into(),
            }
            .into(),
        )
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let file = root.join("host-a/pg").join(k.session.to_string());
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    for dir in [root.clone(), root.join("host-a"), root.join("host-a/pg")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
}

#[tokio::test]
async fn clear_removes_only_its_own_instance() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("state");
    let base = open(&root);
    // "a2" starts like "a": a prefix match of names must not reach it.
    let (a, a2) = (base.instance("a").unwrap(), base.instance("a2").unwrap());
    let snap = Snap {
        settings: vec![],
        rows: "r".into(),
    };
    let mine: Vec<_> = (0..3).map(|_| key("pg")).collect();
    for k in &mine {
        a.put(k, std::sync::Arc::new(snap.clone())).await.unwrap();
    }
    a.put(&key("my"), std::sync::Arc::new(snap.clone()))
        .await
        .unwrap();
    let theirs = key("pg");
    a2.put(&theirs, std::sync::Arc::new(snap.clone()))
        .await
        .unwrap();
    a.probe().await.unwrap();

    assert_eq!(a.clear().await.unwrap(), 4);
    for k in &mine {
        assert!(matches!(
            a.get::<Snap>(k).await,
            Err(StoreError::NotFound(_))
        ));
    }
    assert_eq!(a2.get::<Snap>(&theirs).await.unwrap(), snap);
    assert_eq!(a.clear().await.unwrap(), 0);
}

#[tokio::test]
async fn wrong_key_and_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("state");
    let k = key("pg");
    let snap = Snap {
        settings: vec![],
        rows: "r".into(),
    };
    open(&root)
        .put(&k, std::sync::Arc::new(snap.clone()))
        .await
        .unwrap();
    let old_key = root.with_extension("key");

    // Another key: refused, naming the key the snapshot needs.
    let new_key = tmp.path().join("new.key");
    let rotated = Store::open(&config(&root, Some(new_key.clone()))).unwrap();
    match rotated.get::<Snap>(&k).await {
        Err(StoreError::WrongKey(m)) => assert!(m.contains("sealed with key"), "{m}"),
        other => panic!("expected WrongKey, got {other:?}"),
    }
    // With the old key among old_key_files it opens, and new puts use the new key.
    let cfg = StoreConfig {
        old_key_files: vec![old_key],
        ..config(&root, Some(new_key.clone()))
    };
    let rotated = Store::open(&cfg).unwrap();
    assert_eq!(rotated.get::<Snap>(&k).await.unwrap(), snap);
    rotated
        .put(&k, std::sync::Arc::new(snap.clone()))
        .await
        .unwrap();
    assert!(matches!(
        open(&root).get::<Snap>(&k).await,
        Err(StoreError::WrongKey(_))
    ));
}

#[tokio::test]
async fn unsealed_snapshots_only_when_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("state");
    let store = open(&root);
    let k = key("pg");
    let snap = Snap {
        settings: vec![],
        rows: "r".into(),
    };
    std::fs::create_dir_all(root.join("pg")).unwrap();
    let v1 = state_store::envelope::encode_v1(&k, &snap).unwrap();
    std::fs::write(root.join("pg").join(k.session.to_string()), v1).unwrap();
    assert!(matches!(
        store.get::<Snap>(&k).await,
        Err(StoreError::Unsealed(_))
    ));
    let lenient = Store::open(&StoreConfig {
        require_sealed: false,
        ..config(&root, None)
    })
    .unwrap();
    assert_eq!(lenient.get::<Snap>(&k).await.unwrap(), snap);
}
