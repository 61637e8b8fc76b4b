//! The client side of one exchange: torpor logging in to a PostgreSQL backend.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::keys::{Keys, hmac, salted_password, sha256};
use super::{MAX_ITERATIONS, ScramError, attr, ct_eq, malformed, random_nonce, utf8, valid_nonce};

/// What a client proves itself with: the password, or the keys of one verifier.
enum Secret {
    Password(Vec<u8>),
    Keys(ScramKeys),
}

/// The keys a client's proof reveals to a server that verified it ([`super::ScramServer::
/// finish_keyed`]): enough to log in to a server holding the same verifier (same salt and
/// iteration count), never the password. Held for a session's life only; never logged.
#[derive(Clone)]
pub struct ScramKeys {
    pub(super) client_key: [u8; 32],
    pub(super) server_key: [u8; 32],
    pub(super) salt: Vec<u8>,
    pub(super) iterations: u32,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(<redacted>)")
    }
}

/// Client side of one exchange (the proxy authenticating to a backend).
pub struct ScramClient {
    secret: Secret,
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
    pub(super) fn with_nonce(user: &str, password: &str, nonce: &str) -> (Self, Vec<u8>) {
        let user = user.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={user},r={nonce}");
        let first = format!("n,,{client_first_bare}").into_bytes();
        (
            ScramClient {
                secret: Secret::Password(password.as_bytes().to_vec()),
                client_nonce: nonce.to_owned(),
                client_first_bare,
                server_signature: None,
            },
            first,
        )
    }

    /// A client proving itself with `keys` rather than a password: the server must hold the
    /// verifier they came from.
    pub fn with_keys(keys: ScramKeys) -> (Self, Vec<u8>) {
        let (mut client, first) = Self::with_nonce("", "", &random_nonce());
        client.secret = Secret::Keys(keys);
        (client, first)
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

        let Keys {
            client_key,
            stored_key,
            server_key,
        } = match &self.secret {
            Secret::Password(password) => Keys::from_salted(&salted(password, &salt, iterations)),
            Secret::Keys(keys) if keys.salt == salt && keys.iterations == iterations => Keys {
                client_key: keys.client_key,
                stored_key: sha256(&keys.client_key),
                server_key: keys.server_key,
            },
            Secret::Keys(_) => {
                return Err(ScramError::Unsupported(
                    "the database holds another SCRAM verifier for this user (salt or iteration count differ from password_hash)".into(),
                ));
            }
        };
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
