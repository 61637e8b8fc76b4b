//! The key derivation of RFC 5802 section 3, shared by the server's verifier and the client.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub(super) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

pub(super) fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// RFC 5802's SaltedPassword: Hi(password, salt, iterations), which is PBKDF2-HMAC-SHA256 with
/// one output block.
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let Ok(keyed) = <HmacSha256 as Mac>::new_from_slice(password) else {
        unreachable!("HMAC takes keys of any length")
    };
    let mut m = keyed.clone();
    m.update(salt);
    m.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = m.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut m = keyed.clone();
        m.update(&u);
        u = m.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

/// The keys RFC 5802 derives from a SaltedPassword. A server keeps only `stored_key` and
/// `server_key`; the client needs `client_key` too, to build its proof.
pub(super) struct Keys {
    pub(super) client_key: [u8; 32],
    pub(super) stored_key: [u8; 32],
    pub(super) server_key: [u8; 32],
}

impl Keys {
    pub(super) fn from_salted(salted: &[u8; 32]) -> Keys {
        let client_key = hmac(salted, &[b"Client Key"]);
        Keys {
            client_key,
            stored_key: sha256(&client_key),
            server_key: hmac(salted, &[b"Server Key"]),
        }
    }
}
