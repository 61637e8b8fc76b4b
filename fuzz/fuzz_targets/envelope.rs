//! The snapshot envelope: an object from the store decoded into either protocol's snapshot
//! with a fixed test key, as a session reads its snapshot at a wake. Arbitrary bytes reach the
//! header checks of both versions and the tag check of a sealed one. An unsealed version 1
//! envelope is only checksummed (whoever can write the store can write one, unless
//! require_sealed), so the harness can set its checksum and let its body reach the snapshot
//! decoder. What decodes seals again and opens to the same snapshot.
//!
//! Input: one mode byte (bit 0: a MySQL snapshot; bit 1: set a version 1 checksum; bit 2:
//! require_sealed), then the object.
#![no_main]

use std::fmt::Debug;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use protocols::mysql::snapshot::MySnapshot;
use protocols::pg::snapshot::PgSnapshot;
use serde::Serialize;
use serde::de::DeserializeOwned;
use state_store::SnapshotKey;
use state_store::envelope::{decode, encode};
use state_store::seal::{Seal, SealKey};

/// The test key and snapshot key of state-store's golden files (so those are seeds here), once
/// reading unsealed envelopes and once refusing them.
static SEALS: LazyLock<[Seal; 2]> = LazyLock::new(|| {
    [false, true].map(|require_sealed| {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
        let key = SealKey::from_bytes(&bytes).unwrap_or_else(|e| panic!("{e}"));
        Seal::new(key, Vec::new(), require_sealed)
    })
});

static KEY: LazyLock<SnapshotKey> = LazyLock::new(|| SnapshotKey {
    cluster: "golden-cluster".into(),
    session: uuid::Uuid::from_u128(0x6f1c_2e0a_9b3d_4c5e_8f70_1a2b_3c4d_5e6f),
    user: "golden-user".into(),
    database: "golden-db".into(),
});

fuzz_target!(|data: &[u8]| torpor_fuzz::timed(data, run));

fn run(data: &[u8]) {
    let Some((&mode, object)) = data.split_first() else {
        return;
    };
    let mut object = object.to_vec();
    if mode & 2 != 0 {
        set_v1_checksum(&mut object);
    }
    let seal = &SEALS[usize::from(mode & 4 != 0)];
    if mode & 1 != 0 {
        reseal::<MySnapshot>(seal, &object);
    } else {
        reseal::<PgSnapshot>(seal, &object);
    }
}

fn reseal<T: Serialize + DeserializeOwned + Debug>(seal: &Seal, object: &[u8]) {
    let Ok(snapshot) = decode::<T>(seal, &KEY, object) else {
        return;
    };
    let sealed = encode(seal, &KEY, &snapshot).unwrap_or_else(|e| panic!("{e}"));
    let again = decode::<T>(seal, &KEY, &sealed).unwrap_or_else(|e| panic!("{e}"));
    // Debug, not PartialEq: a MySQL user variable may hold a NaN.
    assert_eq!(format!("{again:?}"), format!("{snapshot:?}"));
}

/// Version 1: magic, version, cluster (u16 length + bytes), session (16), crc32 of the header
/// (from the cluster length to the session) and the body, body.
fn set_v1_checksum(object: &mut [u8]) {
    if object.get(4..6) != Some(&[0, 1]) || object.len() < 8 {
        return;
    }
    let header_end = 8 + usize::from(u16::from_be_bytes([object[6], object[7]])) + 16;
    if object.len() < header_end + 4 {
        return;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&object[6..header_end]);
    crc.update(&object[header_end + 4..]);
    object[header_end..header_end + 4].copy_from_slice(&crc.finalize().to_be_bytes());
}
