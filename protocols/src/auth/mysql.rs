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
    native_scramble_from(&sha1(&[password]), nonce_bytes)
}

/// The same response from `SHA1(pw)` alone, which a verified client's response reveals.
pub fn native_scramble_from(stage1: &[u8; 20], nonce_bytes: &[u8]) -> Vec<u8> {
    let stage2 = sha1(&[stage1]);
    xor(*stage1, sha1(&[nonce(nonce_bytes), &stage2]))
}

/// Checks a client's mysql_native_password response, in constant time.
pub fn native_verify(password: &[u8], nonce_bytes: &[u8], response: &[u8]) -> bool {
    ct_eq(&native_scramble(password, nonce_bytes), response)
}

/// Checks a mysql_native_password response against the stored `SHA1(SHA1(pw))` only, as the
/// server does: recover `SHA1(pw)` from the response and hash it again.
pub fn native_verify_stored(stored: &[u8; 20], nonce_bytes: &[u8], response: &[u8]) -> bool {
    native_recover(stored, nonce_bytes, response).is_some()
}

/// `SHA1(pw)` from a mysql_native_password response that verifies against `stored`.
pub fn native_recover(stored: &[u8; 20], nonce_bytes: &[u8], response: &[u8]) -> Option<[u8; 20]> {
    let resp = <[u8; 20]>::try_from(response).ok()?;
    let mask = sha1(&[nonce(nonce_bytes), stored]);
    let stage1: [u8; 20] = std::array::from_fn(|i| resp[i] ^ mask[i]);
    ct_eq(&sha1(&[&stage1]), stored).then_some(stage1)
}

/// The client's caching_sha2_password fast-path response to `nonce`.
pub fn sha2_scramble(password: &[u8], nonce_bytes: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    sha2_scramble_from(&sha256(&[password]), nonce_bytes)
}

/// The same response from `SHA256(pw)` alone, which a verified client's response reveals.
pub fn sha2_scramble_from(d1: &[u8; 32], nonce_bytes: &[u8]) -> Vec<u8> {
    let d2 = sha256(&[d1]);
    xor(*d1, sha256(&[&d2, nonce(nonce_bytes)]))
}

/// `SHA256(pw)` from a caching_sha2_password fast-path response that verifies against
/// `stored`, `SHA256(SHA256(pw))`.
pub fn sha2_recover(stored: &[u8; 32], nonce_bytes: &[u8], response: &[u8]) -> Option<[u8; 32]> {
    let resp = <[u8; 32]>::try_from(response).ok()?;
    let mask = sha256(&[stored, nonce(nonce_bytes)]);
    let d1: [u8; 32] = std::array::from_fn(|i| resp[i] ^ mask[i]);
    ct_eq(&sha256(&[&d1]), stored).then_some(d1)
}

/// What `password_hash` holds for a MySQL user, written `*<40 hex>:<64 hex>`: first
/// `SHA1(SHA1(pw))`, exactly what MariaDB stores for mysql_native_password (so `IDENTIFIED BY
/// PASSWORD '*…'` takes that part), then `SHA256(SHA256(pw))`, what caching_sha2_password's
/// fast path is checked against. Neither gives the password back.
#[derive(Clone, PartialEq, Eq)]
pub struct MyStored {
    pub native: [u8; 20],
    pub sha2: [u8; 32],
}

impl std::fmt::Debug for MyStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MyStored(<redacted>)")
    }
}

impl MyStored {
    pub fn from_password(password: &[u8]) -> MyStored {
        MyStored {
            native: native_stored(password),
            sha2: sha256(&[&sha256(&[password])]),
        }
    }

    pub fn parse(text: &str) -> Result<MyStored, String> {
        let bad = || {
            "not a MySQL password_hash: want *<40 hex digits>:<64 hex digits> (torpor hash-password --protocol mysql)".to_string()
        };
        let (native, sha2) = text
            .trim()
            .strip_prefix('*')
            .and_then(|t| t.split_once(':'))
            .ok_or_else(bad)?;
        Ok(MyStored {
            native: unhex(native).ok_or_else(bad)?,
            sha2: unhex(sha2).ok_or_else(bad)?,
        })
    }

    /// The mysql_native_password hash as MariaDB shows it: `*` and 40 upper-case hex digits.
    pub fn native_text(&self) -> String {
        format!("*{}", hex_upper(&self.native))
    }
}

impl MyStored {
    /// The keys a password sent in clear (caching_sha2_password's full authentication, over
    /// TLS) gives, when it is this one.
    pub fn check_cleartext(&self, password: &[u8]) -> Option<MyKeys> {
        let stage1 = sha1(&[password]);
        let d1 = sha256(&[password]);
        (ct_eq(&sha1(&[&stage1]), &self.native) && ct_eq(&sha256(&[&d1]), &self.sha2)).then_some(
            MyKeys {
                native: Some(stage1),
                sha2: Some(d1),
            },
        )
    }
}

/// What a verified login reveals of a password, enough to log in to a server that holds the
/// same hashes: `SHA1(pw)` from a mysql_native_password response, `SHA256(pw)` from a
/// caching_sha2_password one, both from a password sent in clear. Never the password.
#[derive(Clone, Default)]
pub struct MyKeys {
    pub native: Option<[u8; 20]>,
    pub sha2: Option<[u8; 32]>,
}

impl std::fmt::Debug for MyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MyKeys(<redacted>)")
    }
}

impl std::fmt::Display for MyStored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.native_text(), hex_upper(&self.sha2))
    }
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
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
    fn a_stored_hash_verifies_both_plugins_and_reveals_what_a_backend_login_needs() {
        let stored = MyStored::parse(&MyStored::from_password(b"pw").to_string()).unwrap();
        assert_eq!(
            stored.native_text(),
            "*D821809F681A40A6E379B50D0463EFAE20BDD122"
        );
        let native = native_scramble(b"pw", NONCE);
        let stage1 = native_recover(&stored.native, NONCE, &native).expect("verifies");
        assert_eq!(
            native_scramble_from(&stage1, b"another nonce 123456"),
            native_scramble(b"pw", b"another nonce 123456")
        );
        assert!(native_recover(&stored.native, NONCE, &native_scramble(b"px", NONCE)).is_none());
        let sha2 = sha2_scramble(b"pw", NONCE);
        let d1 = sha2_recover(&stored.sha2, NONCE, &sha2).expect("verifies");
        assert_eq!(
            sha2_scramble_from(&d1, b"another nonce 123456"),
            sha2_scramble(b"pw", b"another nonce 123456")
        );
        assert!(sha2_recover(&stored.sha2, NONCE, &sha2_scramble(b"px", NONCE)).is_none());
        for bad in [
            "",
            "*12",
            "D821809F681A40A6E379B50D0463EFAE20BDD122:00",
            "*zz:zz",
        ] {
            assert!(MyStored::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{stored:?}"), "MyStored(<redacted>)");
        let keys = stored.check_cleartext(b"pw").expect("the password");
        assert_eq!(keys.native, Some(stage1));
        assert_eq!(keys.sha2, Some(d1));
        assert!(stored.check_cleartext(b"px").is_none());
    }

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
