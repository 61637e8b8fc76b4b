//! What a server keeps of a password (RFC 5802's StoredKey and ServerKey, with the salt and
//! iteration count), and PostgreSQL's stored form of it.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;

use super::keys::{Keys, hmac, salted_password};
use super::{DEFAULT_ITERATIONS, MAX_ITERATIONS, ScramError, malformed};

/// What a server must know about a password to verify a SCRAM exchange (never the password).
#[derive(Clone)]
pub struct ScramSecret {
    pub(super) iterations: u32,
    pub(super) salt: Vec<u8>,
    pub(super) stored_key: [u8; 32],
    pub(super) server_key: [u8; 32],
    /// Set for [`ScramSecret::unknown_user`]: the exchange must fail even if the keys matched.
    pub(super) doomed: bool,
}

impl std::fmt::Debug for ScramSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramSecret {
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = salted_password(password.as_bytes(), salt, iterations.max(1));
        let keys = Keys::from_salted(&salted);
        ScramSecret {
            iterations: iterations.max(1),
            salt: salt.to_vec(),
            stored_key: keys.stored_key,
            server_key: keys.server_key,
            doomed: false,
        }
    }

    /// A fresh verifier: random 16-byte salt, [`DEFAULT_ITERATIONS`].
    pub fn random_for(password: &str) -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Self::from_password(password, &salt, DEFAULT_ITERATIONS)
    }

    /// A secret for a user that does not exist: the exchange runs normally and always ends in
    /// [`ScramError::BadProof`]. The salt is random per call, so a client that asks twice can see
    /// it change; prefer [`ScramSecret::unknown_user_named`], which keeps it stable.
    pub fn unknown_user() -> Self {
        let mut salt = [0u8; 16];
        let mut keys = [0u8; 64];
        rand::rng().fill_bytes(&mut salt);
        rand::rng().fill_bytes(&mut keys);
        Self::doomed(salt.to_vec(), &keys)
    }

    /// Like [`ScramSecret::unknown_user`], but the salt is derived from the user name and a
    /// per-process random key, so repeated attempts for the same name see the same salt, as they
    /// would for a real user.
    pub fn unknown_user_named(user: &str) -> Self {
        static KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let key = KEY.get_or_init(|| {
            let mut k = [0u8; 32];
            rand::rng().fill_bytes(&mut k);
            k
        });
        let salt = hmac(key, &[b"salt", user.as_bytes()]);
        let mut keys = [0u8; 64];
        rand::rng().fill_bytes(&mut keys);
        Self::doomed(salt[..16].to_vec(), &keys)
    }

    fn doomed(salt: Vec<u8>, keys: &[u8; 64]) -> Self {
        let mut stored_key = [0u8; 32];
        let mut server_key = [0u8; 32];
        stored_key.copy_from_slice(&keys[..32]);
        server_key.copy_from_slice(&keys[32..]);
        ScramSecret {
            iterations: DEFAULT_ITERATIONS,
            salt,
            stored_key,
            server_key,
            doomed: true,
        }
    }

    /// Parses PostgreSQL's stored form (pg_authid.rolpassword):
    /// `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
    pub fn from_pg_verifier(s: &str) -> Result<Self, ScramError> {
        let bad = || malformed("not a SCRAM-SHA-256 verifier");
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or_else(bad)?;
        let (params, keys) = rest.split_once('$').ok_or_else(bad)?;
        let (iter, salt) = params.split_once(':').ok_or_else(bad)?;
        let (stored, server) = keys.split_once(':').ok_or_else(bad)?;
        let iterations: u32 = iter.parse().map_err(|_| bad())?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(bad());
        }
        let salt = B64.decode(salt).map_err(|_| bad())?;
        let key = |k: &str| -> Result<[u8; 32], ScramError> {
            B64.decode(k)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(bad)
        };
        Ok(ScramSecret {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
            doomed: false,
        })
    }

    /// The form PostgreSQL stores and accepts in `CREATE ROLE … PASSWORD '…'`.
    pub fn to_pg_verifier(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(self.stored_key),
            B64.encode(self.server_key)
        )
    }
}
