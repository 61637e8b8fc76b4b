//! Envelope version 2: the body sealed with AES-256-GCM, the header its associated data.
//!
//! ```text
//! offset  size  field
//! 0       4     magic b"TRPR"
//! 4       2     schema version (u16), 2
//! 6       1     algorithm, 1 = AES-256-GCM
//! 7       8     id of the key that sealed it
//! 15      2+C   cluster name (u16 length, UTF-8)      ┐
//! ..      16    session uuid                          │ the key: who may read it
//! ..      2+U   user (u16 length, UTF-8)              │
//! ..      2+D   database (u16 length, UTF-8; empty    │
//!               when the session has none)            ┘
//! ..      12    nonce, random per snapshot
//! ..      ..    body sealed (rmp_serde named), then the 16-byte tag, to the end
//! ```
//!
//! Everything before the sealed body is the associated data, so none of it can be changed
//! without the tag failing. The reader compares the header with the key it was asked for
//! before it decrypts: a snapshot of another cluster, session, user or database is refused
//! by name, one sealed by a key not configured here names that key, and anything else that
//! fails to open was changed after it was written.

use ring::aead::NONCE_LEN;
use uuid::Uuid;

use crate::envelope::{MAGIC, Reader, header_len, version};
use crate::seal::{KEY_ID_LEN, Seal, TAG_LEN, fill_random};
use crate::{SnapshotKey, StoreError};

pub const VERSION: u16 = 2;
const AES_256_GCM: u8 = 1;

pub(crate) fn encode(
    seal: &Seal,
    key: &SnapshotKey,
    mut body: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(64 + key.cluster.len() + key.user.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.push(AES_256_GCM);
    out.extend_from_slice(&seal.current_id());
    push_str(&mut out, "cluster name", &key.cluster)?;
    out.extend_from_slice(key.session.as_bytes());
    push_str(&mut out, "user name", &key.user)?;
    push_str(&mut out, "database name", &key.database)?;
    out.extend_from_slice(&nonce);
    seal.seal(nonce, &out, &mut body)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The body of a version 2 envelope for `key`, authenticated and decrypted.
pub fn open(seal: &Seal, key: &SnapshotKey, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut r = Reader { bytes, pos: 0 };
    let v = version(&mut r)?;
    if v != VERSION {
        return Err(StoreError::Corrupt(format!(
            "schema version {v} is not sealed"
        )));
    }
    let algorithm = r.take(1, "algorithm")?[0];
    if algorithm != AES_256_GCM {
        return Err(StoreError::Corrupt(format!(
            "unknown algorithm {algorithm}"
        )));
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(r.take(KEY_ID_LEN, "key id")?);
    let cluster = string(&mut r, "cluster name")?;
    let session = Uuid::from_slice(r.take(16, "session id")?)
        .map_err(|e| StoreError::Corrupt(format!("session id: {e}")))?;
    let user = string(&mut r, "user name")?;
    let database = string(&mut r, "database name")?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(r.take(NONCE_LEN, "nonce")?);
    let aad = &bytes[..r.pos];
    if bytes.len() - r.pos < TAG_LEN {
        return Err(StoreError::Corrupt(format!(
            "truncated: {} bytes, ends inside the sealed body",
            bytes.len()
        )));
    }

    if cluster != key.cluster || session != key.session {
        return Err(StoreError::WrongSession(format!(
            "asked for {key}, the stored snapshot is for {cluster}/{session}"
        )));
    }
    if user != key.user || database != key.database {
        return Err(StoreError::WrongUser(format!(
            "{key} belongs to user {:?} on database {:?}, not {:?} on {:?}",
            clip(&user),
            clip(&database),
            clip(&key.user),
            clip(&key.database)
        )));
    }
    let mut sealed = bytes[r.pos..].to_vec();
    let len = seal.open(id, nonce, aad, &mut sealed)?.len();
    sealed.truncate(len);
    Ok(sealed)
}

fn push_str(out: &mut Vec<u8>, what: &str, s: &str) -> Result<(), StoreError> {
    out.extend_from_slice(&header_len(what, s.len())?.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn string(r: &mut Reader, what: &str) -> Result<String, StoreError> {
    let len = usize::from(r.u16(what)?);
    let bytes = r.take(len, what)?;
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not UTF-8")))
}

/// Names in errors come from a stored object: keep them short.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decode, encode};
    use crate::seal::SealKey;

    fn key() -> SnapshotKey {
        SnapshotKey {
            cluster: "pg-main".into(),
            session: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            user: "alice".into(),
            database: "shop".into(),
        }
    }

    fn sk(byte: u8) -> SealKey {
        SealKey::from_bytes(&[byte; 32]).unwrap()
    }

    fn seal(byte: u8) -> Seal {
        Seal::new(sk(byte), Vec::new(), true)
    }

    fn value() -> Vec<String> {
        vec!["search_path".into(), "secret row data".into()]
    }

    #[test]
    fn roundtrip_hides_the_body() {
        let bytes = encode(&seal(1), &key(), &value()).unwrap();
        assert_eq!(&bytes[..4], MAGIC);
        assert_eq!(&bytes[4..6], &[0, 2]);
        assert!(!bytes.windows(11).any(|w| w == b"secret row "));
        let back: Vec<String> = decode(&seal(1), &key(), &bytes).unwrap();
        assert_eq!(back, value());
        // A fresh nonce each time.
        assert_ne!(bytes, encode(&seal(1), &key(), &value()).unwrap());
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let bytes = encode(&seal(1), &key(), &value()).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let r = decode::<Vec<String>>(&seal(1), &key(), &b);
            assert!(r.is_err(), "byte {i} flipped still opens");
        }
        // Inside the sealed body: tampered, by that name.
        let mut b = bytes.clone();
        let last = b.len() - 20;
        b[last] ^= 0x80;
        match decode::<Vec<String>>(&seal(1), &key(), &b) {
            Err(StoreError::Tampered(m)) => assert!(m.contains("changed"), "{m}"),
            other => panic!("expected Tampered, got {other:?}"),
        }
    }

    #[test]
    fn a_changed_header_field_is_tampered() {
        // Someone rewrites the user in the header to match another session's key.
        let bytes = encode(&seal(1), &key(), &value()).unwrap();
        let at = bytes.windows(5).position(|w| w == b"alice").unwrap();
        let mut b = bytes.clone();
        b[at..at + 5].copy_from_slice(b"brian");
        let other = SnapshotKey {
            user: "brian".into(),
            ..key()
        };
        assert!(matches!(
            decode::<Vec<String>>(&seal(1), &other, &b),
            Err(StoreError::Tampered(_))
        ));
    }

    #[test]
    fn wrong_key_names_the_key_id() {
        let bytes = encode(&seal(1), &key(), &value()).unwrap();
        let id = crate::seal::key_id_hex(&sk(1).id());
        match decode::<Vec<String>>(&seal(2), &key(), &bytes) {
            Err(StoreError::WrongKey(m)) => {
                assert!(m.contains(&id), "{m}");
                assert!(m.contains(&crate::seal::key_id_hex(&sk(2).id())), "{m}");
            }
            other => panic!("expected WrongKey, got {other:?}"),
        }
    }

    #[test]
    fn old_keys_still_open_after_a_rotation() {
        let before = encode(&seal(1), &key(), &value()).unwrap();
        let rotated = Seal::new(sk(2), vec![sk(1)], true);
        let back: Vec<String> = decode(&rotated, &key(), &before).unwrap();
        assert_eq!(back, value());
        // New snapshots use the new key: the old seal alone no longer opens them.
        let after = encode(&rotated, &key(), &value()).unwrap();
        assert!(matches!(
            decode::<Vec<String>>(&seal(1), &key(), &after),
            Err(StoreError::WrongKey(_))
        ));
    }

    #[test]
    fn another_session_user_or_database_is_refused() {
        let bytes = encode(&seal(1), &key(), &value()).unwrap();
        let cases = [
            (
                SnapshotKey {
                    session: Uuid::from_u128(1),
                    ..key()
                },
                "session",
            ),
            (
                SnapshotKey {
                    cluster: "pg-other".into(),
                    ..key()
                },
                "session",
            ),
            (
                SnapshotKey {
                    user: "mallory".into(),
                    ..key()
                },
                "user",
            ),
            (
                SnapshotKey {
                    database: "other".into(),
                    ..key()
                },
                "user",
            ),
        ];
        for (k, want) in cases {
            match (decode::<Vec<String>>(&seal(1), &k, &bytes), want) {
                (Err(StoreError::WrongSession(m)), "session") => assert!(m.contains("pg-main")),
                (Err(StoreError::WrongUser(m)), "user") => {
                    assert!(m.contains("alice"), "{m}")
                }
                (other, _) => panic!("{k:?}: expected wrong {want}, got {other:?}"),
            }
        }
    }

    #[test]
    fn unsealed_v1_is_refused_when_required_and_read_otherwise() {
        let v1 = crate::envelope::encode_v1(&key(), &value()).unwrap();
        match decode::<Vec<String>>(&seal(1), &key(), &v1) {
            Err(StoreError::Unsealed(m)) => assert!(m.contains("require_sealed"), "{m}"),
            other => panic!("expected Unsealed, got {other:?}"),
        }
        let lenient = Seal::new(sk(1), Vec::new(), false);
        let back: Vec<String> = decode(&lenient, &key(), &v1).unwrap();
        assert_eq!(back, value());
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = encode(&seal(1), &key(), &value()).unwrap();
        for len in 0..bytes.len() {
            assert!(
                decode::<Vec<String>>(&seal(1), &key(), &bytes[..len]).is_err(),
                "len {len}"
            );
        }
    }
}
