//! `torpor hash-password`: what goes into `password_hash`, so the config never holds a
//! password. PostgreSQL: the server's own SCRAM-SHA-256 verifier (random salt, 4096
//! iterations). MySQL: `*<SHA1(SHA1(pw))>:<SHA256(SHA256(pw))>` ([`MyStored`]).

use protocols::auth::mysql::MyStored;
use protocols::auth::scram::ScramSecret;

use crate::config::Protocol;

/// The `password_hash` value for `password` (one line from stdin, its line ending removed).
pub fn hash(protocol: Protocol, password: &str) -> anyhow::Result<String> {
    let password = password.strip_suffix('\n').unwrap_or(password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    anyhow::ensure!(!password.is_empty(), "no password on standard input");
    anyhow::ensure!(
        !password.contains(['\n', '\0']),
        "the password must be one line without NUL bytes"
    );
    Ok(match protocol {
        Protocol::Postgres => ScramSecret::random_for(password).to_pg_verifier(),
        Protocol::Mysql => MyStored::from_password(password.as_bytes()).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_gets_a_hash_its_logins_verify() {
        let pg = hash(Protocol::Postgres, "s3cret\n").unwrap();
        assert!(pg.starts_with("SCRAM-SHA-256$4096:"), "{pg}");
        assert!(ScramSecret::from_pg_verifier(&pg).is_ok());
        assert_ne!(pg, hash(Protocol::Postgres, "s3cret").unwrap(), "salted");
        let my = hash(Protocol::Mysql, "s3cret\r\n").unwrap();
        assert_eq!(
            MyStored::parse(&my).unwrap(),
            MyStored::from_password(b"s3cret")
        );
        assert!(!my.contains("s3cret"));
        assert!(hash(Protocol::Mysql, "\n").is_err());
        assert!(hash(Protocol::Mysql, "a\nb\n").is_err());
    }
}
