//! The keys that seal snapshots (AES-256-GCM, ring) and where they come from.
//!
//! A key is 32 random bytes, written as 64 hex characters on one line. Each key has an id,
//! the first 8 bytes of SHA-256 over a label and the key, so an envelope can say which key
//! sealed it (and an error which one is missing) without revealing anything about the key.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{StoreConfig, StoreError};

pub const KEY_LEN: usize = 32;
pub const KEY_ID_LEN: usize = 8;
pub const TAG_LEN: usize = 16;

/// One sealing key and its id.
pub struct SealKey {
    id: [u8; KEY_ID_LEN],
    key: LessSafeKey,
}

impl SealKey {
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<SealKey, StoreError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| StoreError::Config("key: not a valid AES-256 key".into()))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"torpor snapshot key id\0");
        ctx.update(bytes);
        let digest = ctx.finish();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
        Ok(SealKey {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    /// 64 hex characters, surrounding whitespace ignored. `source` names where the text came
    /// from, for the error.
    pub fn from_hex(text: &str, source: &str) -> Result<SealKey, StoreError> {
        let text = text.trim();
        let bad = || {
            StoreError::Config(format!(
                "{source}: a key is 64 hex characters (32 random bytes) on one line"
            ))
        };
        if text.len() != KEY_LEN * 2 {
            return Err(bad());
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = text
                .get(2 * i..2 * i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(bad)?;
        }
        SealKey::from_bytes(&bytes)
    }

    fn read(path: &Path) -> Result<SealKey, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            StoreError::Config(format!("key file {}: cannot read: {e}", path.display()))
        })?;
        SealKey::from_hex(&text, &format!("key file {}", path.display()))
    }

    pub fn id(&self) -> [u8; KEY_ID_LEN] {
        self.id
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealKey({})", key_id_hex(&self.id))
    }
}

pub fn key_id_hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key snapshots are sealed with, older keys still accepted for reading, and whether
/// unsealed (version 1) envelopes are still read.
#[derive(Debug)]
pub struct Seal {
    current: SealKey,
    old: Vec<SealKey>,
    pub require_sealed: bool,
}

impl Seal {
    pub fn new(current: SealKey, old: Vec<SealKey>, require_sealed: bool) -> Seal {
        Seal {
            current,
            old,
            require_sealed,
        }
    }

    /// The keys `cfg` names (`key_file` or `key_env`, plus `old_key_files`); None when it
    /// names no current key.
    pub fn from_config(cfg: &StoreConfig) -> Result<Option<Seal>, StoreError> {
        let current = match (&cfg.key_file, &cfg.key_env) {
            (Some(_), Some(_)) => {
                return Err(StoreError::Config(
                    "key_file and key_env: set one of them, not both".into(),
                ));
            }
            (Some(path), None) => SealKey::read(path)?,
            (None, Some(var)) => {
                let text = std::env::var(var).map_err(|e| {
                    StoreError::Config(format!("key_env: environment variable {var}: {e}"))
                })?;
                SealKey::from_hex(&text, &format!("key_env {var}"))?
            }
            (None, None) if cfg.old_key_files.is_empty() => return Ok(None),
            (None, None) => {
                return Err(StoreError::Config(
                    "old_key_files: only read alongside a current key (key_file or key_env)".into(),
                ));
            }
        };
        let old = cfg
            .old_key_files
            .iter()
            .map(|p| SealKey::read(p))
            .collect::<Result<_, _>>()?;
        Ok(Some(Seal::new(current, old, cfg.require_sealed)))
    }

    /// A key that lives only as long as this process: enough for a store that does too
    /// (`memory://`).
    pub fn ephemeral(require_sealed: bool) -> Result<Seal, StoreError> {
        let mut bytes = [0u8; KEY_LEN];
        fill_random(&mut bytes)?;
        Ok(Seal::new(
            SealKey::from_bytes(&bytes)?,
            Vec::new(),
            require_sealed,
        ))
    }

    pub fn current_id(&self) -> [u8; KEY_ID_LEN] {
        self.current.id
    }

    /// Every key id this seal opens, current first, for error messages.
    fn known_ids(&self) -> String {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|k| key_id_hex(&k.id))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Encrypts `body` in place with the current key and appends the tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        self.current
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
            .map_err(|_| StoreError::Encode("sealing failed".into()))
    }

    /// Decrypts `sealed` (ciphertext and tag) with the key named `id`.
    pub(crate) fn open<'a>(
        &self,
        id: [u8; KEY_ID_LEN],
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], StoreError> {
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| {
                StoreError::WrongKey(format!(
                    "sealed with key {}, which is not configured (keys here: {})",
                    key_id_hex(&id),
                    self.known_ids()
                ))
            })?;
        key.key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), sealed)
            .map_err(|_| {
                StoreError::Tampered(format!(
                    "does not authenticate under key {}: changed after it was written",
                    key_id_hex(&id)
                ))
            })
    }
}

pub(crate) fn fill_random(out: &mut [u8]) -> Result<(), StoreError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| StoreError::Encode("the system random source failed".into()))
}

/// Creates `path` holding a new random key (mode 0600), refusing to overwrite one.
pub fn write_key_file(path: &Path) -> Result<(), StoreError> {
    let mut bytes = [0u8; KEY_LEN];
    fill_random(&mut bytes)?;
    let fail = |e: std::io::Error| {
        StoreError::Config(format!("key file {}: cannot create: {e}", path.display()))
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(fail)?;
    writeln!(f, "{}", key_id_hex(&bytes)).map_err(fail)?;
    f.sync_all().map_err(fail)
}

/// A key file in a temp dir that lives as long as the dir returned with it.
#[cfg(test)]
pub(crate) fn test_key_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torpor.key");
    write_key_file(&path).unwrap();
    (dir, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_keys_and_ids() {
        let hex = "00".repeat(31) + "01";
        let a = SealKey::from_hex(&format!("  {hex}\n"), "t").unwrap();
        let b = SealKey::from_hex(&hex.to_uppercase(), "t").unwrap();
        assert_eq!(a.id(), b.id());
        let other = SealKey::from_hex(&"00".repeat(32), "t").unwrap();
        assert_ne!(a.id(), other.id());
        for bad in [
            "",
            "abc",
            &"0g".repeat(32),
            &"00".repeat(33),
            "é".repeat(32).as_str(),
        ] {
            match SealKey::from_hex(bad, "key file /k") {
                Err(StoreError::Config(m)) => assert!(m.contains("key file /k"), "{m}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        // The id, not the key, is what a Debug shows.
        assert!(!format!("{a:?}").contains(&hex));
    }

    #[test]
    fn written_key_files_are_private_and_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/torpor.key");
        write_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        SealKey::read(&path).unwrap();
        assert!(matches!(write_key_file(&path), Err(StoreError::Config(_))));
    }
}
