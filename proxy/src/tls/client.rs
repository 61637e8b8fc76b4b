//! TLS towards database servers (`[cluster.backend] tls`): `require` encrypts without checking
//! the certificate, as libpq's sslmode=require; `verify-full` checks it against `ca` and the
//! server's address.

use std::sync::Arc;

use controller::{BackendTls, TlsMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::TlsError;

/// What a session needs to start TLS with its cluster's server.
pub(crate) struct Client {
    pub config: Arc<ClientConfig>,
}

impl Client {
    /// `None` for `disable`.
    pub(crate) fn new(tls: &BackendTls) -> Result<Option<Client>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Client(e.to_string()))?;
        let config = match tls.mode {
            TlsMode::Disable => return Ok(None),
            TlsMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth(),
            TlsMode::VerifyFull => {
                let Some(ca) = &tls.ca else {
                    return Err(TlsError::Client("verify-full needs a ca file".into()));
                };
                let read = |e: &dyn std::fmt::Display| TlsError::Read {
                    path: ca.display().to_string(),
                    error: e.to_string(),
                };
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).map_err(|e| read(&e))? {
                    roots
                        .add(cert.map_err(|e| read(&e))?)
                        .map_err(|e| read(&e))?;
                }
                if roots.is_empty() {
                    return Err(TlsError::NoCertificate {
                        path: ca.display().to_string(),
                    });
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(Some(Client {
            config: Arc::new(config),
        }))
    }

    /// Runs the client side of a TLS handshake with the server at `addr`.
    pub(crate) async fn connect(
        &self,
        addr: std::net::SocketAddr,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = ServerName::IpAddress(addr.ip().into());
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }
}

/// `require`: any certificate, though the handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
