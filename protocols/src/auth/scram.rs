//! SCRAM-SHA-256 (RFC 5802, RFC 7677) the way PostgreSQL speaks it.
//!
//! - No channel binding: servers advertise only "SCRAM-SHA-256". Clients may send gs2 flag "n"
//!   or "y"; "p=" (channel binding requested) is refused as unsupported.
//! - The SCRAM user name is ignored (PostgreSQL takes the user from the startup packet), so
//!   clients send "n=" empty.
//! - SASLprep is not applied: passwords are used as raw UTF-8 bytes. For ASCII passwords without
//!   control characters this is exactly what PostgreSQL and libpq do. A non-ASCII password that
//!   SASLprep would change (e.g. NFKC-normalisable characters, non-ASCII spaces) will not match a
//!   verifier PostgreSQL computed from it.
//!
//! Nothing here logs; keys and proofs must never reach a log line.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

type HmacSha256 = Hmac<Sha256>;

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
    /// The server ended the exchange with "e=<reason>".
    #[error("server rejected SCRAM exchange: {0}")]
    ServerError(String),
}

fn malformed(what: &str) -> ScramError {
    ScramError::Malformed(what.to_owned())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// RFC 5802's SaltedPassword: Hi(password, salt, iterations).
pub fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    hi(password, salt, iterations)
}

/// PBKDF2-HMAC-SHA256 with one output block: RFC 5802's Hi().
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
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

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_nonce() -> String {
    let mut b = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut b);
    B64.encode(b)
}

/// What a server must know about a password to verify a SCRAM exchange (never the password).
#[derive(Clone)]
pub struct ScramSecret {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
    /// Set for [`ScramSecret::unknown_user`]: the exchange must fail even if the keys matched.
    doomed: bool,
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
        let salted = hi(password.as_bytes(), salt, iterations.max(1));
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramSecret {
            iterations: iterations.max(1),
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, &[b"Server Key"]),
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

/// Server side of one exchange, between server-first and client-final.
pub struct ScramServer {
    secret: ScramSecret,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ScramServer {
    /// `client_first` is the SASLInitialResponse data. Returns the state and the
    /// server-first-message to send in AuthenticationSASLContinue.
    pub fn start(secret: ScramSecret, client_first: &[u8]) -> Result<(Self, Vec<u8>), ScramError> {
        Self::start_with_nonce(secret, client_first, &random_nonce())
    }

    fn start_with_nonce(
        secret: ScramSecret,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let msg = utf8(client_first)?;
        let mut parts = msg.splitn(3, ',');
        match parts.next() {
            Some("n") | Some("y") => {}
            Some(f) if f.starts_with("p=") => {
                return Err(ScramError::Unsupported("channel binding".into()));
            }
            _ => return Err(malformed("bad gs2 channel binding flag")),
        }
        match parts.next() {
            Some("") => {}
            Some(_) => return Err(ScramError::Unsupported("authorization identity".into())),
            None => return Err(malformed("truncated gs2 header")),
        }
        let bare = parts.next().ok_or_else(|| malformed("missing message"))?;
        let gs2_header = msg[..msg.len() - bare.len()].to_owned();

        let mut attrs = bare.split(',');
        let first = attrs.next();
        if first.is_some_and(|a| a.starts_with("m=")) {
            return Err(ScramError::Unsupported("mandatory extension".into()));
        }
        attr(first, 'n')?; // ignored: the user comes from the startup packet
        let client_nonce = attr(attrs.next(), 'r')?;
        if !valid_nonce(client_nonce) {
            return Err(malformed("invalid client nonce"));
        }
        // Further attributes are optional extensions, to be ignored, but they must be well formed.
        if !attrs.all(|a| {
            let b = a.as_bytes();
            b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'='
        }) {
            return Err(malformed("invalid extension attribute"));
        }

        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&secret.salt),
            secret.iterations
        );
        let out = server_first.clone().into_bytes();
        Ok((
            ScramServer {
                secret,
                gs2_header,
                nonce,
                client_first_bare: bare.to_owned(),
                server_first,
            },
            out,
        ))
    }

    /// `client_final` is the SASLResponse data. Returns the server-final-message ("v=…") for
    /// AuthenticationSASLFinal when the proof verifies.
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let msg = utf8(client_final)?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("missing proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = B64
            .decode(attr(attrs.next(), 'c')?)
            .map_err(|_| malformed("invalid base64 in channel binding"))?;
        if cbind != self.gs2_header.as_bytes() {
            return Err(malformed("channel binding does not match gs2 header"));
        }
        if attr(attrs.next(), 'r')? != self.nonce {
            return Err(malformed("nonce mismatch"));
        }
        let proof: [u8; 32] = B64
            .decode(proof)
            .map_err(|_| malformed("invalid base64 in proof"))?
            .try_into()
            .map_err(|_| malformed("proof has wrong length"))?;

        let auth_message = [
            self.client_first_bare.as_bytes(),
            b",",
            self.server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac(&self.secret.stored_key, &auth_message);
        let mut client_key = proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let ok = ct_eq(&sha256(&client_key), &self.secret.stored_key);
        if !ok || self.secret.doomed {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.secret.server_key, &auth_message);
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// Client side of one exchange (the proxy authenticating to a backend).
pub struct ScramClient {
    password: Vec<u8>,
    client_nonce: String,
    client_first_bare: String,
    /// Set once the client-final is built; what the server must prove.
    server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    /// Returns the state and the client-first-message ("n,,n=,r=<nonce>") for
    /// SASLInitialResponse.
    pub fn new(password: &str) -> (Self, Vec<u8>) {
        Self::with_nonce("", password, &random_nonce())
    }

    /// `user` is written into the message with ',' and '=' escaped; PostgreSQL ignores it.
    fn with_nonce(user: &str, password: &str, nonce: &str) -> (Self, Vec<u8>) {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={user},r={nonce}");
        let first = format!("n,,{client_first_bare}").into_bytes();
        (
            ScramClient {
                password: password.as_bytes().to_vec(),
                client_nonce: nonce.to_owned(),
                client_first_bare,
                server_signature: None,
            },
            first,
        )
    }

    /// Takes the server-first-message (AuthenticationSASLContinue data) and returns the
    /// client-final-message for SASLResponse.
    pub fn handle_server_first(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        self.handle_server_first_with(server_first, salted_password)
    }

    /// Like [`Self::handle_server_first`], with the SaltedPassword (PBKDF2 over the password,
    /// salt and iteration count the server sent) coming from `salted`, so a caller that logs
    /// in again and again with the same password can remember it instead of paying 4096 HMAC
    /// rounds per connection.
    pub fn handle_server_first_with(
        &mut self,
        server_first: &[u8],
        salted: impl FnOnce(&[u8], &[u8], u32) -> [u8; 32],
    ) -> Result<Vec<u8>, ScramError> {
        let msg = utf8(server_first)?;
        let mut attrs = msg.split(',');
        let first = attrs.next();
        if first.is_some_and(|a| a.starts_with("m=")) {
            return Err(ScramError::Unsupported("mandatory extension".into()));
        }
        let nonce = attr(first, 'r')?;
        if !nonce.starts_with(&self.client_nonce)
            || nonce.len() <= self.client_nonce.len()
            || !valid_nonce(nonce)
        {
            return Err(malformed("server nonce does not extend client nonce"));
        }
        let salt = B64
            .decode(attr(attrs.next(), 's')?)
            .map_err(|_| malformed("invalid base64 in salt"))?;
        if salt.is_empty() {
            return Err(malformed("empty salt"));
        }
        let iterations: u32 = attr(attrs.next(), 'i')?
            .parse()
            .map_err(|_| malformed("invalid iteration count"))?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(malformed("iteration count out of range"));
        }

        let salted = salted(&self.password, &salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let stored_key = sha256(&client_key);
        let server_key = hmac(&salted, &[b"Server Key"]);
        // "biws" is base64("n,,"): no channel binding, no authzid.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = [
            self.client_first_bare.as_bytes(),
            b",",
            msg.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        let client_signature = hmac(&stored_key, &auth_message);
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature) {
            *p ^= s;
        }
        self.server_signature = Some(hmac(&server_key, &auth_message));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message (AuthenticationSASLFinal data).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let expected = self
            .server_signature
            .ok_or_else(|| malformed("server-final before server-first"))?;
        let msg = utf8(server_final)?;
        let first = msg.split(',').next();
        if let Some(e) = first.and_then(|a| a.strip_prefix("e=")) {
            return Err(ScramError::ServerError(e.to_owned()));
        }
        let got = B64
            .decode(attr(first, 'v')?)
            .map_err(|_| malformed("invalid base64 in server signature"))?;
        if ct_eq(&got, &expected) {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    // RFC 7677 section 3.
    const C_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const S_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn rfc_secret() -> ScramSecret {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramSecret::from_password("pencil", &salt, 4096)
    }

    #[test]
    fn rfc7677_client() {
        let (mut c, first) = ScramClient::with_nonce("user", "pencil", C_NONCE);
        assert_eq!(first, CLIENT_FIRST.as_bytes());
        let fin = c.handle_server_first(SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(fin).unwrap(), CLIENT_FINAL);
        c.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
        assert_eq!(
            c.verify_server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::ServerSignature)
        );
        assert_eq!(
            c.verify_server_final(b"e=invalid-proof"),
            Err(ScramError::ServerError("invalid-proof".into()))
        );
    }

    #[test]
    fn a_remembered_salted_password_gives_the_same_proof() {
        let salted = salted_password(
            b"pencil",
            &B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap(),
            4096,
        );
        let (mut c, _) = ScramClient::with_nonce("user", "pencil", C_NONCE);
        let mut asked = None;
        let fin = c
            .handle_server_first_with(SERVER_FIRST.as_bytes(), |pw, salt, i| {
                asked = Some((pw.to_vec(), salt.to_vec(), i));
                salted
            })
            .unwrap();
        assert_eq!(String::from_utf8(fin).unwrap(), CLIENT_FINAL);
        assert_eq!(asked.map(|a| a.2), Some(4096));
        c.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
    }

    #[test]
    fn rfc7677_server() {
        let (s, first) =
            ScramServer::start_with_nonce(rfc_secret(), CLIENT_FIRST.as_bytes(), S_NONCE).unwrap();
        assert_eq!(first, SERVER_FIRST.as_bytes());
        let fin = s.finish(CLIENT_FINAL.as_bytes()).unwrap();
        assert_eq!(fin, SERVER_FINAL.as_bytes());
    }

    #[test]
    fn pg_verifier_roundtrip() {
        let s = rfc_secret();
        let text = s.to_pg_verifier();
        assert!(text.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
        let back = ScramSecret::from_pg_verifier(&text).unwrap();
        assert_eq!(back.stored_key, s.stored_key);
        assert_eq!(back.server_key, s.server_key);
        assert!(ScramSecret::from_pg_verifier("md5abc").is_err());
        assert!(ScramSecret::from_pg_verifier("SCRAM-SHA-256$0:AA==$AA==:AA==").is_err());
        assert!(ScramSecret::from_pg_verifier("SCRAM-SHA-256$4096:AA==$AA==:AA==").is_err());
    }

    /// Runs a whole exchange; the final result is the server's verdict after the client checked
    /// the server's signature.
    fn exchange(secret: ScramSecret, password: &str) -> Result<(), ScramError> {
        let (mut c, first) = ScramClient::new(password);
        let (s, server_first) = ScramServer::start(secret, &first)?;
        let fin = c.handle_server_first(&server_first)?;
        let server_final = s.finish(&fin)?;
        c.verify_server_final(&server_final)
    }

    #[test]
    fn full_exchange() {
        exchange(ScramSecret::random_for("s3cret"), "s3cret").unwrap();
        exchange(ScramSecret::from_password("", b"salt", 1), "").unwrap();
    }

    #[test]
    fn wrong_password_is_bad_proof() {
        assert_eq!(
            exchange(ScramSecret::random_for("s3cret"), "s3creT"),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn unknown_user_always_fails() {
        for _ in 0..3 {
            assert_eq!(
                exchange(ScramSecret::unknown_user(), ""),
                Err(ScramError::BadProof)
            );
            assert_eq!(
                exchange(ScramSecret::unknown_user_named("ghost"), "x"),
                Err(ScramError::BadProof)
            );
        }
        // even a client that somehow produced the right proof for the random keys fails
        let mut doomed = rfc_secret();
        doomed.doomed = true;
        let (s, _) =
            ScramServer::start_with_nonce(doomed, CLIENT_FIRST.as_bytes(), S_NONCE).unwrap();
        assert_eq!(s.finish(CLIENT_FINAL.as_bytes()), Err(ScramError::BadProof));
        // a stable salt per name, different across names
        let salt_of = |s: &ScramSecret| s.salt.clone();
        assert_eq!(
            salt_of(&ScramSecret::unknown_user_named("a")),
            salt_of(&ScramSecret::unknown_user_named("a"))
        );
        assert_ne!(
            salt_of(&ScramSecret::unknown_user_named("a")),
            salt_of(&ScramSecret::unknown_user_named("b"))
        );
    }

    #[test]
    fn gs2_headers() {
        let secret = || ScramSecret::from_password("pw", b"salt", 2);
        // "y,," is accepted and must then be echoed as c=eSws
        let (s, sf) = ScramServer::start(secret(), b"y,,n=,r=abc").unwrap();
        let nonce = std::str::from_utf8(&sf).unwrap().split(',').next().unwrap()[2..].to_owned();
        assert!(matches!(
            s.finish(format!("c=biws,r={nonce},p=AAAA").as_bytes()),
            Err(ScramError::Malformed(_))
        ));
        assert!(matches!(
            ScramServer::start(secret(), b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::Unsupported(_))
        ));
        assert!(matches!(
            ScramServer::start(secret(), b"n,a=admin,n=,r=abc"),
            Err(ScramError::Unsupported(_))
        ));
        assert!(matches!(
            ScramServer::start(secret(), b"n,,m=ext,n=,r=abc"),
            Err(ScramError::Unsupported(_))
        ));
    }

    #[test]
    fn malformed_server_inputs() {
        let secret = || ScramSecret::from_password("pw", b"salt", 2);
        for bad in [
            &b""[..],
            b"n",
            b"n,",
            b"n,,",
            b"x,,n=,r=abc",
            b"n,,r=abc",
            b"n,,n=",
            b"n,,n=,r=",
            b"n,,n=,r=a,b",
            b"n,,n=,x=abc",
            b"n,,n=,r=\xff",
            b"n,,n=,r=a b",
        ] {
            assert!(
                matches!(
                    ScramServer::start(secret(), bad),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        let start = || ScramServer::start_with_nonce(secret(), b"n,,n=,r=abc", "xyz").unwrap();
        for bad in [
            "",
            "c=biws,r=abcxyz",
            "c=biws,r=abcxyz,p=",
            "c=biws,r=abcxyz,p=!!!",
            "c=biws,r=abcxyz,p=AAAA",
            "c=biws,r=abc,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "c=!!,r=abcxyz,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "c=eSws,r=abcxyz,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "r=abcxyz,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert!(
                matches!(
                    start().0.finish(bad.as_bytes()),
                    Err(ScramError::Malformed(_))
                ),
                "{bad}"
            );
        }
        // well-formed but wrong proof
        assert_eq!(
            start()
                .0
                .finish(b"c=biws,r=abcxyz,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn malformed_client_inputs() {
        for bad in [
            "",
            "r=other,s=AAAA,i=1",
            "r=NONCE,s=AAAA,i=1", // not longer than the client nonce
            "r=NONCEx,s=!!,i=1",
            "r=NONCEx,s=,i=1",
            "r=NONCEx,s=AAAA,i=0",
            "r=NONCEx,s=AAAA,i=-1",
            "r=NONCEx,s=AAAA,i=10000001",
            "r=NONCEx,s=AAAA,i=99999999999999",
            "r=NONCEx,s=AAAA",
            "s=AAAA,r=NONCEx,i=1",
        ] {
            let (mut c, _) = ScramClient::with_nonce("", "pw", "NONCE");
            assert!(
                matches!(
                    c.handle_server_first(bad.as_bytes()),
                    Err(ScramError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let (mut c, _) = ScramClient::with_nonce("", "pw", "NONCE");
        assert!(matches!(
            c.handle_server_first(b"m=x,r=NONCEx,s=AAAA,i=1"),
            Err(ScramError::Unsupported(_))
        ));
        assert!(matches!(
            c.verify_server_final(b"v=AAAA"),
            Err(ScramError::Malformed(_))
        ));
        c.handle_server_first(b"r=NONCEx,s=AAAA,i=1").unwrap();
        for bad in [&b""[..], b"v=", b"v=!!", b"x=1", b"\xff"] {
            assert!(c.verify_server_final(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn user_name_is_escaped() {
        let (_, first) = ScramClient::with_nonce("a,b=c", "pw", "N");
        assert_eq!(first, b"n,,n=a=2Cb=3Dc,r=N");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let prefixes: [&[u8]; 4] = [b"", b"n,,n=,r=", b"c=biws,r=", b"r=N"];
        for i in 0..20_000 {
            let len = rng.random_range(0..48);
            let mut input: Vec<u8> = prefixes[i % prefixes.len()].to_vec();
            input.extend((0..len).map(|_| rng.random::<u8>()));
            let secret = ScramSecret::from_password("pw", b"salt", 1);
            if let Ok((s, _)) = ScramServer::start(secret.clone(), &input) {
                let _ = s.finish(&input);
            }
            let (_, first) = ScramClient::with_nonce("", "pw", "N");
            let (s, _) = ScramServer::start(secret, &first).unwrap();
            let _ = s.finish(&input);
            let (mut c, _) = ScramClient::with_nonce("", "pw", "N");
            let _ = c.handle_server_first(&input);
            let _ = c.verify_server_final(&input);
        }
    }
}
