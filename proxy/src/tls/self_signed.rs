//! The embedded default's certificate: self-signed for localhost, made on first start so that
//! `psql "sslmode=require"` works out of the box. Clients that verify the server need a real
//! certificate in `[tls]`.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use super::TlsError;
use crate::config::TlsConfig;

/// Makes `tls.cert` and `tls.key` unless the certificate exists; true when it made them.
pub(crate) fn make_if_missing(tls: &TlsConfig) -> Result<bool, TlsError> {
    if tls.cert.exists() {
        return Ok(false);
    }
    let err = |e: &dyn std::fmt::Display| TlsError::SelfSigned(e.to_string());
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| err(&e))?;
    for dir in [tls.cert.parent(), tls.key.parent()].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(|e| err(&e))?;
    }
    // The key first, readable by its owner only; the certificate last, since its presence
    // says both are there.
    write(&tls.key, made.signing_key.serialize_pem().as_bytes(), 0o600).map_err(|e| err(&e))?;
    write(&tls.cert, made.cert.pem().as_bytes(), 0o644).map_err(|e| err(&e))?;
    Ok(true)
}

fn write(path: &std::path::Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn made_once_with_a_private_key_and_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let tls = TlsConfig {
            cert: dir.path().join("tls/cert.pem"),
            key: dir.path().join("tls/key.pem"),
        };
        assert!(make_if_missing(&tls).unwrap());
        let mode = std::fs::metadata(&tls.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = super::super::Tls::load(&tls, true).unwrap();
        assert!(loaded.current().end_point.is_some(), "binds with SHA-256");
        let cert = std::fs::read(&tls.cert).unwrap();
        assert!(!make_if_missing(&tls).unwrap());
        assert_eq!(std::fs::read(&tls.cert).unwrap(), cert, "kept");
    }
}
