//! TLS for the tests: a CA and a server certificate for localhost and 127.0.0.1 made with
//! rcgen, and a tokio-postgres connector over tokio-rustls that trusts only that CA and offers
//! channel binding (tls-server-end-point), as libpq does.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

use crate::harness::{Opts, Pg, SLOW, TestConfig, TestEnv, client_config, serve_client};

/// A CA, and a certificate it signed for localhost and 127.0.0.1, as PEM files.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    ca_der: CertificateDer<'static>,
}

impl TestCa {
    /// Writes `<name>-ca.pem`, `<name>-cert.pem` and `<name>-key.pem` into `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        TestCa::for_names(dir, name, &["localhost", "127.0.0.1"])
    }

    /// Like [`TestCa::new`], the certificate covering `names` (host names or IP addresses).
    pub fn for_names(dir: &Path, name: &str, names: &[&str]) -> TestCa {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("torpor test CA {name}"));
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let params = CertificateParams::new(names).expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        let ca = TestCa {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-cert.pem")),
            key: dir.join(format!("{name}-key.pem")),
            ca_der: ca_cert.der().clone(),
        };
        std::fs::write(&ca.ca, ca_cert.pem()).expect("write CA");
        std::fs::write(&ca.cert, cert.pem()).expect("write certificate");
        std::fs::write(&ca.key, key.serialize_pem()).expect("write key");
        ca
    }

    /// `[tls]` (or `[cluster.tls]` with `table`) naming this certificate.
    pub fn toml(&self, table: &str) -> String {
        format!(
            "\n[{table}]\ncert = \"{}\"\nkey = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// A client configuration trusting only this CA, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("CA into the root store");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(config)
    }
}

/// tokio-postgres over TLS, verifying the server as `name` against one CA. rustls sends a
/// host name as the server name (SNI), an IP address not.
pub struct Connect {
    pub config: Arc<rustls::ClientConfig>,
    pub name: String,
}

impl TlsConnect<TcpStream> for Connect {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, tcp: TcpStream) -> Self::Future {
        Box::pin(async move {
            let name = ServerName::try_from(self.name).map_err(io::Error::other)?;
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(name, tcp)
                .await?;
            Ok(Stream(tls))
        })
    }
}

pub struct Stream(pub tokio_rustls::client::TlsStream<TcpStream>);

impl TlsStream for Stream {
    /// The certificates here are ECDSA with SHA-256: their end point is the SHA-256 of the
    /// certificate.
    fn channel_binding(&self) -> ChannelBinding {
        match self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            Some(cert) => ChannelBinding::tls_server_end_point(
                ring::digest::digest(&ring::digest::SHA256, cert)
                    .as_ref()
                    .to_vec(),
            ),
            None => ChannelBinding::none(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, b)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Connects over TLS (SSLRequest first), requiring channel binding when `bind`.
pub async fn connect_tls(
    addr: SocketAddr,
    ca: &TestCa,
    user: &str,
    password: &str,
    bind: bool,
) -> Result<Pg, tokio_postgres::Error> {
    let mut config = client_config(addr, user, password);
    if bind {
        config.channel_binding(tokio_postgres::config::ChannelBinding::Require);
    }
    connect_tls_as(addr, ca, "localhost", config).await
}

/// Connects with `config` over TLS (SSLRequest first), verifying the server as `name`.
pub async fn connect_tls_as(
    addr: SocketAddr,
    ca: &TestCa,
    name: &str,
    mut config: tokio_postgres::Config,
) -> Result<Pg, tokio_postgres::Error> {
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let tls = Connect {
        config: ca.client_config(&[]),
        name: name.to_string(),
    };
    let (client, conn) = tokio::time::timeout(SLOW, config.connect_raw(tcp, tls))
        .await
        .expect("connect timed out")?;
    Ok(serve_client(client, conn))
}

/// A torpor whose cluster shows a certificate from a new CA (`[tls]`), requiring TLS when
/// `require_tls`.
pub async fn tls_env(opts: &Opts, require_tls: bool) -> (TestEnv, TestCa) {
    let mut cfg = TestConfig::new(opts).await;
    let ca = TestCa::new(cfg.dir.path(), "a");
    if require_tls {
        cfg.toml = cfg
            .toml
            .replacen("idle_timeout", "require_tls = true\nidle_timeout", 1);
    }
    cfg.toml.push_str(&ca.toml("tls"));
    (TestEnv::start_config(cfg).await, ca)
}
