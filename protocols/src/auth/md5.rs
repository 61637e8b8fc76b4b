//! PostgreSQL's md5 password scheme: the client sends
//! `"md5" + hex(md5(hex(md5(password + user)) + salt))`.
//!
//! The server side stores `"md5" + hex(md5(password + user))` (pg_authid.rolpassword), so a proxy
//! holding only that stored form can still check or produce a response with [`md5_from_stored`].

use md5::{Digest, Md5};

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// The stored form: `"md5" + hex(md5(password + user))`.
pub fn md5_stored(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    format!("md5{}", hex(&h.finalize()))
}

/// The PasswordMessage a client sends for AuthenticationMD5Password with `salt`.
pub fn md5_password(user: &str, password: &str, salt: [u8; 4]) -> String {
    let stored = md5_stored(user, password);
    salted(&stored[3..], salt)
}

/// The response for `salt` from the stored form (`"md5"` + 32 hex digits); `None` if `stored`
/// is not in that form.
pub fn md5_from_stored(stored: &str, salt: [u8; 4]) -> Option<String> {
    let hex_part = stored.strip_prefix("md5")?;
    if hex_part.len() != 32 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(salted(&hex_part.to_ascii_lowercase(), salt))
}

fn salted(inner_hex: &str, salt: [u8; 4]) -> String {
    let mut h = Md5::new();
    h.update(inner_hex.as_bytes());
    h.update(salt);
    format!("md5{}", hex(&h.finalize()))
}

/// Compares a client's response with the expected one in constant time.
pub fn verify(expected: &str, response: &[u8]) -> bool {
    let e = expected.as_bytes();
    e.len() == response.len() && e.iter().zip(response).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values computed with Python's hashlib, e.g.
    // inner = hashlib.md5(b'postgres'+b'postgres').hexdigest()
    // 'md5' + hashlib.md5(inner.encode() + bytes([1,2,3,4])).hexdigest()
    #[test]
    fn known_values() {
        assert_eq!(
            md5_stored("postgres", "postgres"),
            "md53175bce1d3201d16594cebf9d7eb3f9d"
        );
        assert_eq!(
            md5_password("postgres", "postgres", [1, 2, 3, 4]),
            "md568be9ed08db75f318087ab337aaea044"
        );
        assert_eq!(
            md5_password("user", "pencil", [0xde, 0xad, 0xbe, 0xef]),
            "md50f5b636d891e9860623ac8ca91fc9dfc"
        );
    }

    #[test]
    fn from_stored_matches_password() {
        let stored = md5_stored("bob", "hunter2");
        assert_eq!(
            md5_from_stored(&stored, [9, 8, 7, 6]),
            Some(md5_password("bob", "hunter2", [9, 8, 7, 6]))
        );
        assert_eq!(
            md5_from_stored(
                &stored.to_uppercase().replacen("MD5", "md5", 1),
                [9, 8, 7, 6]
            ),
            Some(md5_password("bob", "hunter2", [9, 8, 7, 6]))
        );
        assert_eq!(md5_from_stored("md5abc", [0; 4]), None);
        assert_eq!(md5_from_stored("SCRAM-SHA-256$…", [0; 4]), None);
        assert_eq!(
            md5_from_stored(&format!("md5{}", "z".repeat(32)), [0; 4]),
            None
        );
    }

    #[test]
    fn verify_compares_exactly() {
        let e = md5_password("postgres", "postgres", [1, 2, 3, 4]);
        assert!(verify(&e, e.as_bytes()));
        assert!(!verify(&e, b"md568be9ed08db75f318087ab337aaea045"));
        assert!(!verify(&e, b""));
    }
}
