//! TLS towards clients: the certificate a cluster shows, read again on SIGHUP without touching
//! the connections already open, and what SCRAM's channel binding needs of it. Towards
//! database servers: [`Client`].

mod client;
mod end_point;
mod self_signed;

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::Acceptor;
use tokio::net::TcpStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

use crate::config::TlsConfig;
pub(crate) use client::Client;
pub(crate) use self_signed::make_if_missing;

/// ALPN name PostgreSQL clients send; required on a direct TLS connection (PostgreSQL 17).
pub(crate) const ALPN_POSTGRES: &[u8] = b"postgresql";

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("certificate {cert} and key {key}: {error}")]
    Config {
        cert: String,
        key: String,
        error: String,
    },
    #[error("making a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("TLS towards the database: {0}")]
    Client(String),
}

/// A cluster's certificate as loaded last.
pub(crate) struct Loaded {
    pub acceptor: TlsAcceptor,
    /// RFC 5929 tls-server-end-point: the hash of the certificate; `None` when its signature
    /// algorithm names no hash (SCRAM-SHA-256-PLUS is then not offered).
    pub end_point: Option<Arc<[u8]>>,
}

/// The certificate one cluster shows, reloadable.
pub(crate) struct Tls {
    source: TlsConfig,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<Loaded>>,
}

impl Tls {
    /// Loads `source`; PostgreSQL clusters speak ALPN `postgresql`.
    pub(crate) fn load(source: &TlsConfig, postgres: bool) -> Result<Tls, TlsError> {
        let alpn = if postgres {
            vec![ALPN_POSTGRES.to_vec()]
        } else {
            Vec::new()
        };
        let loaded = load(source, &alpn)?;
        Ok(Tls {
            source: source.clone(),
            alpn,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    /// The certificate to use for a new connection.
    pub(crate) fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again; on failure the certificate in use stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let loaded = Arc::new(load(&self.source, &self.alpn)?);
        match self.current.write() {
            Ok(mut c) => *c = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(())
    }

    pub(crate) fn cert_path(&self) -> &Path {
        &self.source.cert
    }
}

/// Runs the server side of a TLS handshake on `tcp` with `loaded`.
pub(crate) async fn accept(
    loaded: &Loaded,
    tcp: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    loaded.acceptor.accept(tcp).await
}

/// Runs the server side of a TLS handshake on `tcp` with the certificate `pick` chooses for
/// the server name the client sent (SNI), if it sent one: the stream, the certificate shown
/// and the name.
pub(crate) async fn accept_by_name(
    tcp: TcpStream,
    pick: impl FnOnce(Option<&str>) -> Option<Arc<Loaded>>,
) -> std::io::Result<(
    tokio_rustls::server::TlsStream<TcpStream>,
    Arc<Loaded>,
    Option<String>,
)> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await?;
    let name = start.client_hello().server_name().map(str::to_string);
    let Some(loaded) = pick(name.as_deref()) else {
        return Err(std::io::Error::other("no certificate to show"));
    };
    let stream = start.into_stream(loaded.acceptor.config().clone()).await?;
    Ok((stream, loaded, name))
}

fn load(source: &TlsConfig, alpn: &[Vec<u8>]) -> Result<Loaded, TlsError> {
    let read_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.display().to_string(),
        error: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&source.cert)
        .map_err(|e| read_err(&source.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&source.cert, &e))?;
    let Some(leaf) = certs.first() else {
        return Err(TlsError::NoCertificate {
            path: source.cert.display().to_string(),
        });
    };
    let end_point = end_point::hash(leaf).map(Arc::from);
    let key = PrivateKeyDer::from_pem_file(&source.key).map_err(|e| read_err(&source.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_err = |e: rustls::Error| TlsError::Config {
        cert: source.cert.display().to_string(),
        key: source.key.display().to_string(),
        error: e.to_string(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(config_err)?;
    config.alpn_protocols = alpn.to_vec();
    Ok(Loaded {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        end_point,
    })
}
