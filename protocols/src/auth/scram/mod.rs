//! SCRAM-SHA-256 (RFC 5802, RFC 7677) the way PostgreSQL speaks it.
//!
//! - Channel binding: tls-server-end-point only, through SCRAM-SHA-256-PLUS, which a server
//!   offers to a client on TLS ([`Binding`]). A client that says it could bind ("y") when the
//!   server offered binding is refused, as a downgrade.
//! - The SCRAM user name is ignored (PostgreSQL takes the user from the startup packet), so
//!   clients send "n=" empty.
//! - SASLprep is not applied: passwords are used as raw UTF-8 bytes. For ASCII passwords without
//!   control characters this is exactly what PostgreSQL and libpq do. A non-ASCII password that
//!   SASLprep would change (e.g. NFKC-normalisable characters, non-ASCII spaces) will not match a
//!   verifier PostgreSQL computed from it.
//!
//! Nothing here logs; keys and proofs must never reach a log line.
//!
//! - [`ScramServer`] (server.rs): torpor verifying a client.
//! - [`ScramClient`] (client.rs): torpor logging in to a backend.
//! - [`ScramSecret`] (secret.rs): what a server keeps of a password, and PostgreSQL's stored form.
//! - keys.rs: the key derivation both sides share (PBKDF2, ClientKey, StoredKey, ServerKey).
//!
//! What stays here is the message syntax both sides parse.

mod client;
mod keys;
mod secret;
mod server;
#[cfg(test)]
mod tests;

pub use client::{ScramClient, ScramKeys};
pub use keys::salted_password;
pub use secret::ScramSecret;
pub use server::{Binding, ScramServer};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;

pub const MECHANISM: &str = "SCRAM-SHA-256";
/// Iterations used for new verifiers; PostgreSQL's default `scram_iterations`.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Upper bound on a server-chosen iteration count, so a hostile server cannot make a client spin.
pub const MAX_ITERATIONS: u32 = 10_000_000;
const NONCE_BYTES: usize = 18;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    /// The client's proof did not verify: wrong password or unknown user.
    #[error("password authentication failed")]
    BadProof,
    /// The server's signature did not verify: it does not know the password.
    #[error("server signature mismatch")]
    ServerSignature,
    #[error("unsupported SCRAM feature: {0}")]
    Unsupported(String),
    /// The client supports channel binding but thinks the server does not, though it offered
    /// SCRAM-SHA-256-PLUS: someone between them may have removed it.
    #[error(
        "SCRAM channel binding negotiation error: the client supports channel binding but thinks the server does not, though this server offered it"
    )]
    Downgrade,
    /// The server ended the exchange with "e=<reason>".
    #[error("server rejected SCRAM exchange: {0}")]
    ServerError(String),
}

fn malformed(what: &str) -> ScramError {
    ScramError::Malformed(what.to_owned())
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_nonce() -> String {
    let mut b = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// Splits "k=value" attributes; SCRAM values never contain ','.
fn attr(part: Option<&str>, key: char) -> Result<&str, ScramError> {
    let part = part.ok_or_else(|| ScramError::Malformed(format!("missing attribute '{key}'")))?;
    let mut chars = part.chars();
    if chars.next() == Some(key) && chars.next() == Some('=') {
        Ok(&part[2..])
    } else {
        Err(ScramError::Malformed(format!("expected attribute '{key}'")))
    }
}

/// A nonce is printable ASCII except ','.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn utf8(b: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(b).map_err(|_| malformed("invalid UTF-8"))
}
