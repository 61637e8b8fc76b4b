//! MySQL/MariaDB password scrambles.
//!
//! - mysql_native_password: `SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))`; the server stores
//!   `SHA1(SHA1(pw))` (shown as `*` + 40 hex digits in mysql.user).
//! - caching_sha2_password (fast path): `SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)`.
//!
//! The nonce is the 20-byte auth plugin data. Servers send it with a trailing NUL (the handshake
//! and AuthSwitchRequest both do); that NUL is not part of the nonce and is dropped here.
//! An empty password gives an empty response. Nothing here logs.

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Length of the nonce both plugins use.
pub const NONCE_LEN: usize = 20;

fn nonce(n: &[u8]) -> &[u8] {
    let n = match n {
        [head @ .., 0] if head.len() == NONCE_LEN => head,
        _ => n,
    };
    &n[..n.len().min(NONCE_LEN)]
}

fn xor<const N: usize>(a: [u8; N], b: [u8; N]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// What the server stores for mysql_native_password: `SHA1(SHA1(pw))`.
pub fn native_stored(password: &[u8]) -> [u8; 20] {
    sha1(&[&sha1(&[password])])
}

/// The client's mysql_native_password response to `nonce`.
pub fn native_scramble(password: &[u8], nonce_bytes: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let stage1 = sha1(&[password]);
    let stage2 = sha1(&[&stage1]);
    xor(stage1, sha1(&[nonce(nonce_bytes), &stage2]))
}

/// Checks a client's mysql_native_password response, in constant time.
pub fn native_verify(password: &[u8], nonce_bytes: &[u8], response: &[u8]) -> bool {
    ct_eq(&native_scramble(password, nonce_bytes), response)
}

/// Checks a mysql_native_password response against the stored `SHA1(SHA1(pw))` only, as the
/// server does: recover `SHA1(pw)` from the response and hash it again.
pub fn native_verify_stored(stored: &[u8; 20], nonce_bytes: &[u8], response: &[u8]) -> bool {
    let Ok(resp) = <[u8; 20]>::try_from(response) else {
        return false;
    };
    let mask = sha1(&[nonce(nonce_bytes), stored]);
    let stage1: [u8; 20] = std::array::from_fn(|i| resp[i] ^ mask[i]);
    ct_eq(&sha1(&[&stage1]), stored)
}

/// The client's caching_sha2_password fast-path response to `nonce`.
pub fn sha2_scramble(password: &[u8], nonce_bytes: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let d1 = sha256(&[password]);
    let d2 = sha256(&[&d1]);
    xor(d1, sha256(&[&d2, nonce(nonce_bytes)]))
}

/// Checks a caching_sha2_password fast-path response, in constant time.
pub fn sha2_verify(password: &[u8], nonce_bytes: &[u8], response: &[u8]) -> bool {
    ct_eq(&sha2_scramble(password, nonce_bytes), response)
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &[u8; 20] = b"abcdefghijklmnopqrst";

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    // Expected values from Python's hashlib (and MariaDB: PASSWORD('pw') = '*D821809F…'):
    // s1 = sha1(b'pw'); s2 = sha1(s1); xor(s1, sha1(nonce + s2))
    // d1 = sha256(b'pw'); d2 = sha256(d1); xor(d1, sha256(d2 + nonce))
    #[test]
    fn known_values() {
        assert_eq!(
            hex(&native_scramble(b"pw", NONCE)),
            "12909d72d875523f8c9d6da44cbd3a6c1ce794db"
        );
        assert_eq!(
            hex(&native_stored(b"pw")),
            "d821809f681a40a6e379b50d0463efae20bdd122"
        );
        assert_eq!(
            hex(&sha2_scramble(b"pw", NONCE)),
            "ad439090e1914151d1a7f6bf7c21561d283f2fba52fe39ce9dcd29d687813c2c"
        );
    }

    #[test]
    fn trailing_nul_and_empty_password() {
        let mut with_nul = NONCE.to_vec();
        with_nul.push(0);
        assert_eq!(
            native_scramble(b"pw", &with_nul),
            native_scramble(b"pw", NONCE)
        );
        assert_eq!(sha2_scramble(b"pw", &with_nul), sha2_scramble(b"pw", NONCE));
        assert!(native_scramble(b"", NONCE).is_empty());
        assert!(sha2_scramble(b"", NONCE).is_empty());
        assert!(native_verify(b"", NONCE, b""));
        assert!(!native_verify(b"", NONCE, b"x"));
    }

    #[test]
    fn verify() {
        let r = native_scramble(b"secret", NONCE);
        assert!(native_verify(b"secret", NONCE, &r));
        assert!(!native_verify(b"secreT", NONCE, &r));
        assert!(!native_verify(b"secret", b"abcdefghijklmnopqrsu", &r));
        assert!(native_verify_stored(&native_stored(b"secret"), NONCE, &r));
        assert!(!native_verify_stored(&native_stored(b"other"), NONCE, &r));
        assert!(!native_verify_stored(
            &native_stored(b"secret"),
            NONCE,
            &r[..19]
        ));
        let s = sha2_scramble(b"secret", NONCE);
        assert_eq!(s.len(), 32);
        assert!(sha2_verify(b"secret", NONCE, &s));
        assert!(!sha2_verify(b"secret", NONCE, &s[..31]));
        assert!(!sha2_verify(b"x", NONCE, &s));
    }
}
