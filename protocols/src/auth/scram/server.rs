//! The server side of one exchange: torpor verifying a client's password.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::keys::{hmac, sha256};
use super::{
    ScramError, ScramKeys, ScramSecret, attr, ct_eq, malformed, random_nonce, utf8, valid_nonce,
};

/// Channel binding, as the server offered it and the client chose.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binding<'a> {
    /// The tls-server-end-point data, when SCRAM-SHA-256-PLUS was offered (the client is on
    /// TLS and the certificate names its hash).
    pub offered: Option<&'a [u8]>,
    /// The client chose SCRAM-SHA-256-PLUS.
    pub chosen: bool,
}

/// Server side of one exchange, between server-first and client-final.
pub struct ScramServer {
    secret: ScramSecret,
    /// What the client-final's `c=` must decode to: the gs2 header, then the binding data.
    cbind: Vec<u8>,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ScramServer {
    /// `client_first` is the SASLInitialResponse data. Returns the state and the
    /// server-first-message to send in AuthenticationSASLContinue.
    pub fn start(secret: ScramSecret, client_first: &[u8]) -> Result<(Self, Vec<u8>), ScramError> {
        Self::start_bound(secret, client_first, Binding::default())
    }

    /// As [`ScramServer::start`], with channel binding as offered and chosen.
    pub fn start_bound(
        secret: ScramSecret,
        client_first: &[u8],
        binding: Binding<'_>,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        Self::start_with_nonce(secret, client_first, binding, &random_nonce())
    }

    pub(super) fn start_with_nonce(
        secret: ScramSecret,
        client_first: &[u8],
        binding: Binding<'_>,
        server_nonce: &str,
    ) -> Result<(Self, Vec<u8>), ScramError> {
        let msg = utf8(client_first)?;
        let mut parts = msg.splitn(3, ',');
        let data: &[u8] = match (parts.next(), binding.chosen) {
            (Some("n"), false) => &[],
            (Some("y"), false) if binding.offered.is_some() => return Err(ScramError::Downgrade),
            (Some("y"), false) => &[],
            (Some("p=tls-server-end-point"), true) => binding
                .offered
                .ok_or_else(|| malformed("channel binding was not offered"))?,
            (Some(f), _) if f.starts_with("p=") && binding.chosen => {
                return Err(ScramError::Unsupported(
                    "channel binding types other than tls-server-end-point".into(),
                ));
            }
            (Some(f), false) if f.starts_with("p=") => {
                return Err(malformed(
                    "channel binding requested with SCRAM-SHA-256 rather than SCRAM-SHA-256-PLUS",
                ));
            }
            (Some("n" | "y"), true) => {
                return Err(malformed(
                    "SCRAM-SHA-256-PLUS chosen without channel binding",
                ));
            }
            _ => return Err(malformed("bad gs2 channel binding flag")),
        };
        match parts.next() {
            Some("") => {}
            Some(_) => return Err(ScramError::Unsupported("authorization identity".into())),
            None => return Err(malformed("truncated gs2 header")),
        }
        let bare = parts.next().ok_or_else(|| malformed("missing message"))?;
        let mut cbind = msg.as_bytes()[..msg.len() - bare.len()].to_vec();
        cbind.extend_from_slice(data);

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
                cbind,
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
        self.finish_keyed(client_final)
            .map(|(server_final, _)| server_final)
    }

    /// As [`ScramServer::finish`], with the keys the client's proof revealed: its ClientKey,
    /// which logs in to a server holding the same verifier without the password.
    pub fn finish_keyed(self, client_final: &[u8]) -> Result<(Vec<u8>, ScramKeys), ScramError> {
        let msg = utf8(client_final)?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or_else(|| malformed("missing proof"))?;
        let mut attrs = without_proof.split(',');
        let cbind = B64
            .decode(attr(attrs.next(), 'c')?)
            .map_err(|_| malformed("invalid base64 in channel binding"))?;
        if !ct_eq(&cbind, &self.cbind) {
            return Err(malformed("channel binding does not match"));
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
        let keys = ScramKeys {
            client_key,
            server_key: self.secret.server_key,
            salt: self.secret.salt.clone(),
            iterations: self.secret.iterations,
        };
        Ok((
            format!("v={}", B64.encode(server_signature)).into_bytes(),
            keys,
        ))
    }
}
