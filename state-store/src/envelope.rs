//! The byte format of a stored snapshot.
//!
//! All integers are big-endian. Every version starts with the magic `b"TRPR"` and the schema
//! version (u16). Version 2, what torpor writes, is sealed: see [`crate::sealed`]. Version 1,
//! still read unless `require_sealed`, is only checksummed:
//!
//! ```text
//! offset   size  field
//! 0        4     magic b"TRPR"
//! 4        2     schema version (u16), 1
//! 6        2     cluster name length C (u16)            ┐
//! 8        C     cluster name, UTF-8                    │ header
//! 8+C      16    session uuid, raw bytes                ┘
//! 24+C     4     crc32 (IEEE, crc32fast) of header ++ body
//! 28+C     ..    body: rmp_serde::to_vec_named(value), to the end of the object
//! ```
//!
//! The body uses MessagePack with field names so that a struct which later gains a
//! `#[serde(default)]` field still reads snapshots written before the field existed.
//! The header repeats the cluster and session so that a snapshot copied or misfiled under
//! another key is refused instead of replayed into the wrong session.
//!
//! A reader rejects versions newer than [`VERSION`]. A future version that changes this
//! layout must bump [`VERSION`] and keep a golden file of each older version under
//! `tests/golden/`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::seal::Seal;
use crate::{SnapshotKey, StoreError, sealed};

pub const MAGIC: &[u8; 4] = b"TRPR";
/// The version torpor writes.
pub const VERSION: u16 = sealed::VERSION;
const V1: u16 = 1;

const SESSION_LEN: usize = 16;
const CRC_LEN: usize = 4;

/// Seals `value` in an envelope for `key` (the current version).
pub fn encode<T: Serialize + ?Sized>(
    seal: &Seal,
    key: &SnapshotKey,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    sealed::encode(seal, key, body(value)?)
}

/// Opens an envelope of any version this build reads, refusing one written for another key,
/// and an unsealed one when `seal.require_sealed`.
pub fn decode<T: DeserializeOwned>(
    seal: &Seal,
    key: &SnapshotKey,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let mut r = Reader { bytes, pos: 0 };
    match version(&mut r)? {
        V1 if seal.require_sealed => Err(StoreError::Unsealed(format!(
            "{key}: written unsealed (envelope version 1) and require_sealed is on"
        ))),
        V1 => decode_v1(key, bytes),
        _ => {
            let body = sealed::open(seal, key, bytes)?;
            decode_body(key, &body)
        }
    }
}

fn body<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(|e| StoreError::Encode(e.to_string()))
}

fn decode_body<T: DeserializeOwned>(key: &SnapshotKey, body: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(body)
        .map_err(|e| StoreError::Corrupt(format!("{key}: body does not decode: {e}")))
}

/// Reads the magic and the version, refusing versions this build does not read.
pub(crate) fn version(r: &mut Reader) -> Result<u16, StoreError> {
    if r.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(StoreError::Corrupt(
            "bad magic, not a torpor snapshot".into(),
        ));
    }
    let version = r.u16("schema version")?;
    if version == 0 || version > VERSION {
        return Err(StoreError::Corrupt(format!(
            "schema version {version} is not one this build reads (1..={VERSION})"
        )));
    }
    Ok(version)
}

/// `value` in an unsealed version 1 envelope: what torpor wrote before sealing, kept to test
/// that such snapshots are still read, or refused with `require_sealed`.
pub fn encode_v1<T: Serialize + ?Sized>(
    key: &SnapshotKey,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    let body = body(value)?;
    let cluster = key.cluster.as_bytes();
    let cluster_len = header_len("cluster name", cluster.len())?;

    let mut header = Vec::with_capacity(2 + cluster.len() + SESSION_LEN);
    header.extend_from_slice(&cluster_len.to_be_bytes());
    header.extend_from_slice(cluster);
    header.extend_from_slice(key.session.as_bytes());

    let mut out = Vec::with_capacity(MAGIC.len() + 2 + header.len() + CRC_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&V1.to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&checksum(&header, &body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The length of a header field, which must fit its u16.
pub(crate) fn header_len(what: &str, len: usize) -> Result<u16, StoreError> {
    u16::try_from(len).map_err(|_| {
        StoreError::Encode(format!(
            "{what} is {len} bytes, at most {} fit in a snapshot header",
            u16::MAX
        ))
    })
}

/// Checks a version 1 envelope and decodes the value, refusing one written for another key.
pub fn decode_v1<T: DeserializeOwned>(key: &SnapshotKey, bytes: &[u8]) -> Result<T, StoreError> {
    let envelope = Envelope::parse(bytes)?;
    if envelope.cluster != key.cluster || envelope.session != key.session {
        return Err(StoreError::WrongSession(format!(
            "asked for {key}, the stored snapshot is for {}/{}",
            envelope.cluster, envelope.session
        )));
    }
    decode_body(key, envelope.body)
}

/// A parsed version 1 envelope whose magic, version and checksum have been verified.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub version: u16,
    pub cluster: String,
    pub session: Uuid,
    pub body: &'a [u8],
}

impl<'a> Envelope<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, StoreError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = version(&mut r)?;
        if version != V1 {
            return Err(StoreError::Corrupt(format!(
                "schema version {version} is not the unsealed version 1"
            )));
        }

        let header_start = r.pos;
        let cluster_len = usize::from(r.u16("cluster name length")?);
        let cluster = r.take(cluster_len, "cluster name")?;
        let session = r.take(SESSION_LEN, "session id")?;
        let header = &bytes[header_start..r.pos];
        let stored_crc = r.u32("checksum")?;
        let body = &bytes[r.pos..];

        let actual_crc = checksum(header, body);
        if actual_crc != stored_crc {
            return Err(StoreError::Corrupt(format!(
                "checksum mismatch (stored {stored_crc:08x}, computed {actual_crc:08x})"
            )));
        }

        let cluster = std::str::from_utf8(cluster)
            .map_err(|_| StoreError::Corrupt("cluster name is not UTF-8".into()))?
            .to_owned();
        let session = Uuid::from_slice(session)
            .map_err(|e| StoreError::Corrupt(format!("session id: {e}")))?;
        Ok(Envelope {
            version,
            cluster,
            session,
            body,
        })
    }
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(body);
    h.finalize()
}

pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "truncated: {} bytes, ends inside the {what}",
                    self.bytes.len()
                ))
            })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16, StoreError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, StoreError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        name: String,
        values: Vec<u32>,
        blob: Vec<u8>,
    }

    fn key() -> SnapshotKey {
        SnapshotKey {
            cluster: "pg-main".into(),
            session: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            user: String::new(),
            database: String::new(),
        }
    }

    fn sample() -> Sample {
        Sample {
            name: "settings".into(),
            values: vec![1, 2, 3, 70000],
            blob: (0..=255).collect(),
        }
    }

    fn corrupt_message(r: Result<Sample, StoreError>) -> String {
        match r {
            Err(StoreError::Corrupt(m)) => m,
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn roundtrip() {
        let bytes = encode_v1(&key(), &sample()).unwrap();
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(&bytes[4..6], &[0, 1]);
        let back: Sample = decode_v1(&key(), &bytes).unwrap();
        assert_eq!(back, sample());

        let env = Envelope::parse(&bytes).unwrap();
        assert_eq!(env.version, 1);
        assert_eq!(env.cluster, "pg-main");
        assert_eq!(env.session, key().session);
    }

    #[test]
    fn flipped_body_byte_fails_checksum() {
        let mut bytes = encode_v1(&key(), &sample()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(corrupt_message(decode_v1(&key(), &bytes)).contains("checksum"));
    }

    #[test]
    fn flipped_header_byte_fails_checksum() {
        let mut bytes = encode_v1(&key(), &sample()).unwrap();
        bytes[9] ^= 0x20; // inside the cluster name
        assert!(corrupt_message(decode_v1(&key(), &bytes)).contains("checksum"));
    }

    #[test]
    fn every_truncation_is_corrupt() {
        let bytes = encode_v1(&key(), &sample()).unwrap();
        for len in 0..bytes.len() {
            let msg = corrupt_message(decode_v1(&key(), &bytes[..len]));
            assert!(
                msg.contains("truncated") || msg.contains("checksum") || msg.contains("magic"),
                "len {len}: {msg}"
            );
        }
    }

    #[test]
    fn bad_magic() {
        let mut bytes = encode_v1(&key(), &sample()).unwrap();
        bytes[0] = b'X';
        assert!(corrupt_message(decode_v1(&key(), &bytes)).contains("magic"));
    }

    #[test]
    fn future_and_zero_version_rejected() {
        for v in [3u16, 0, u16::MAX] {
            let mut bytes = encode_v1(&key(), &sample()).unwrap();
            bytes[4..6].copy_from_slice(&v.to_be_bytes());
            let msg = corrupt_message(decode_v1(&key(), &bytes));
            assert!(msg.contains(&format!("version {v}")), "{msg}");
        }
    }

    #[test]
    fn body_of_another_type_is_corrupt() {
        let bytes = encode_v1(&key(), &"just a string").unwrap();
        assert!(corrupt_message(decode_v1(&key(), &bytes)).contains("body"));
    }

    #[test]
    fn other_session_or_cluster_is_refused() {
        let bytes = encode_v1(&key(), &sample()).unwrap();
        let other_session = SnapshotKey {
            session: Uuid::from_u128(1),
            ..key()
        };
        let other_cluster = SnapshotKey {
            cluster: "pg-other".into(),
            ..key()
        };
        for k in [other_session, other_cluster] {
            match decode_v1::<Sample>(&k, &bytes) {
                Err(StoreError::WrongSession(m)) => assert!(m.contains("pg-main"), "{m}"),
                other => panic!("expected WrongSession, got {other:?}"),
            }
        }
    }

    #[test]
    fn oversized_cluster_name_is_an_encode_error() {
        let k = SnapshotKey {
            cluster: "c".repeat(70_000),
            ..key()
        };
        assert!(matches!(
            encode_v1(&k, &sample()),
            Err(StoreError::Encode(_))
        ));
    }
}
