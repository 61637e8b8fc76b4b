//! Snapshots written by released envelope versions must stay readable.
//!
//! `tests/golden/v1.snap` was written by schema version 1 from [`GoldenV1`], unsealed;
//! `tests/golden/v2.snap` by version 2, sealed with [`GOLDEN_KEY`]. To create a file for a new
//! version, run `cargo test -p state-store --test golden -- --ignored` and commit it; never
//! regenerate an existing one.

// Test code: a step that fails panics with what it got.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::{Deserialize, Serialize};
use state_store::seal::SealKey;
use state_store::{Seal, SnapshotKey, StoreError, envelope};

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
const V2: &[u8] = include_bytes!("golden/v2.snap");

/// The key `v2.snap` is sealed with; a test key, never a real one.
const GOLDEN_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn key() -> SnapshotKey {
    SnapshotKey {
        cluster: "golden-cluster".into(),
        session: uuid::Uuid::from_u128(0x6f1c_2e0a_9b3d_4c5e_8f70_1a2b_3c4d_5e6f),
        user: "golden-user".into(),
        database: "golden-db".into(),
    }
}

fn seal(require_sealed: bool) -> Seal {
    Seal::new(
        SealKey::from_hex(GOLDEN_KEY, "golden key").unwrap(),
        Vec::new(),
        require_sealed,
    )
}

/// Reads v1 as a store with `require_sealed = false` does.
fn decode_v1<T: serde::de::DeserializeOwned>(
    key: &SnapshotKey,
    bytes: &[u8],
) -> Result<T, StoreError> {
    envelope::decode(&seal(false), key, bytes)
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
    let got: GoldenV1 = decode_v1(&key(), V1).unwrap();
    assert_eq!(got, value());
}

#[test]
fn v1_decodes_into_grown_struct() {
    let got: GoldenV1Grown = decode_v1(&key(), V1).unwrap();
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
    let got: GoldenV1Shrunk = decode_v1(&key(), V1).unwrap();
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
        decode_v1::<GoldenV1>(&other, V1),
        Err(StoreError::WrongSession(_))
    ));
}

/// Catches an accidental change of the v1 byte layout, which tests still write.
#[test]
fn v1_encoder_still_writes_v1_bytes() {
    assert_eq!(envelope::encode_v1(&key(), &value()).unwrap(), V1);
}

#[test]
fn v1_is_refused_when_sealing_is_required() {
    assert!(matches!(
        envelope::decode::<GoldenV1>(&seal(true), &key(), V1),
        Err(StoreError::Unsealed(_))
    ));
}

#[test]
fn v2_opens_with_its_key() {
    assert_eq!(&V2[..4], b"TRPR");
    assert_eq!(&V2[4..6], &[0, 2]);
    let got: GoldenV1 = envelope::decode(&seal(true), &key(), V2).unwrap();
    assert_eq!(got, value());
    let grown: GoldenV1Grown = envelope::decode(&seal(true), &key(), V2).unwrap();
    assert_eq!(grown.added, None);
}

#[test]
fn v2_is_refused_for_another_user_or_key() {
    let other = SnapshotKey {
        user: "someone-else".into(),
        ..key()
    };
    assert!(matches!(
        envelope::decode::<GoldenV1>(&seal(true), &other, V2),
        Err(StoreError::WrongUser(_))
    ));
    let wrong = Seal::new(
        SealKey::from_hex(&"ab".repeat(32), "other key").unwrap(),
        Vec::new(),
        true,
    );
    assert!(matches!(
        envelope::decode::<GoldenV1>(&wrong, &key(), V2),
        Err(StoreError::WrongKey(_))
    ));
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
    std::fs::write(
        &path,
        envelope::encode(&seal(true), &key(), &value()).unwrap(),
    )
    .unwrap();
}
