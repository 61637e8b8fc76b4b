//! Snapshots written by released envelope versions must stay readable.
//!
//! `tests/golden/v1.snap` was written by schema version 1 from [`GoldenV1`]. To create a file
//! for a new version, run `cargo test -p state-store --test golden -- --ignored` and commit it;
//! never regenerate an existing one.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use state_store::{SnapshotKey, StoreError, envelope};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct GoldenV1 {
    name: String,
    count: u32,
    tags: Vec<String>,
    flag: bool,
    data: Vec<u8>,
}

/// GoldenV1 after a later release added fields.
#[derive(Debug, PartialEq, Deserialize)]
struct GoldenV1Grown {
    name: String,
    count: u32,
    tags: Vec<String>,
    flag: bool,
    data: Vec<u8>,
    #[serde(default)]
    added: Option<u64>,
    #[serde(default)]
    more: Vec<String>,
}

/// GoldenV1 after a later release dropped fields.
#[derive(Debug, PartialEq, Deserialize)]
struct GoldenV1Shrunk {
    name: String,
    flag: bool,
}

const V1: &[u8] = include_bytes!("golden/v1.snap");

fn key() -> SnapshotKey {
    SnapshotKey {
        cluster: "golden-cluster".into(),
        session: uuid::Uuid::from_u128(0x6f1c_2e0a_9b3d_4c5e_8f70_1a2b_3c4d_5e6f),
    }
}

fn value() -> GoldenV1 {
    GoldenV1 {
        name: "search_path".into(),
        count: 42,
        tags: vec!["a".into(), "ünïcode".into()],
        flag: true,
        data: vec![0, 1, 2, 254, 255],
    }
}

#[test]
fn v1_decodes() {
    assert_eq!(&V1[..4], b"TRPR");
    assert_eq!(&V1[4..6], &[0, 1]);
    let got: GoldenV1 = envelope::decode(&key(), V1).unwrap();
    assert_eq!(got, value());
}

#[test]
fn v1_decodes_into_grown_struct() {
    let got: GoldenV1Grown = envelope::decode(&key(), V1).unwrap();
    assert_eq!(got.name, "search_path");
    assert_eq!(got.count, 42);
    assert_eq!(got.tags, ["a", "ünïcode"]);
    assert!(got.flag);
    assert_eq!(got.data, [0, 1, 2, 254, 255]);
    assert_eq!(got.added, None);
    assert!(got.more.is_empty());
}

#[test]
fn v1_decodes_into_shrunk_struct() {
    let got: GoldenV1Shrunk = envelope::decode(&key(), V1).unwrap();
    assert_eq!(
        got,
        GoldenV1Shrunk {
            name: "search_path".into(),
            flag: true
        }
    );
}

#[test]
fn v1_is_refused_for_another_session() {
    let other = SnapshotKey {
        session: uuid::Uuid::nil(),
        ..key()
    };
    assert!(matches!(
        envelope::decode::<GoldenV1>(&other, V1),
        Err(StoreError::WrongSession(_))
    ));
}

/// Catches an accidental change of the v1 byte layout while v1 is the version we write.
#[test]
fn current_encoder_still_writes_v1_bytes() {
    if envelope::VERSION == 1 {
        assert_eq!(envelope::encode(&key(), &value()).unwrap(), V1);
    }
}

#[test]
#[ignore = "writes a golden file; run by hand when adding a schema version"]
fn write_golden() {
    let path = format!(
        "{}/tests/golden/v{}.snap",
        env!("CARGO_MANIFEST_DIR"),
        envelope::VERSION
    );
    assert!(
        !std::path::Path::new(&path).exists(),
        "{path} exists; golden files are never regenerated"
    );
    std::fs::write(&path, envelope::encode(&key(), &value()).unwrap()).unwrap();
}
