//! TLS for the driver's PostgreSQL clients: a self-signed certificate for torpor, and a
//! tokio-postgres connector over tokio-rustls that trusts it (one signature check more than
//! libpq's `sslmode=require`, which trusts any certificate) and offers channel binding
//! (tls-server-end-point) as libpq does, so torpor runs SCRAM-SHA-256-PLUS as for pgbench.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Result;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::Client;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

use crate::torpor::{PASSWORD, USER};

/// A self-signed certificate for localhost and 127.0.0.1 (ECDSA P-256, like torpor's embedded
/// default), written into a directory for torpor to serve and trusted by [`Server::connect`].
pub(crate) struct Server {
    /// The `[tls]` table that serves it.
    pub toml: String,
    client: Arc<rustls::ClientConfig>,
}

impl Server {
    pub(crate) fn make(dir: &Path) -> Result<Server> {
        let made =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
        let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert, made.cert.pem())?;
        std::fs::write(&key, made.signing_key.serialize_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(made.cert.der().clone())?;
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Server {
            toml: format!(
                "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            ),
            client: Arc::new(client),
        })
    }

    /// A session over TLS (SSLRequest first), logged in as the bench user.
    pub(crate) async fn connect(&self, addr: SocketAddr) -> Result<Client> {
        let tls = Connect {
            config: self.client.clone(),
            server: addr.ip().into(),
        };
        let (client, conn) = tokio_postgres::Config::new()
            .user(USER)
            .password(PASSWORD)
            .dbname(USER)
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .connect_raw(TcpStream::connect(addr).await?, tls)
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

struct Connect {
    config: Arc<rustls::ClientConfig>,
    server: ServerName<'static>,
}

impl TlsConnect<TcpStream> for Connect {
    type Stream = Tls;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Tls>> + Send>>;

    fn connect(self, tcp: TcpStream) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move { Ok(Tls(connector.connect(self.server, tcp).await?)) })
    }
}

struct Tls(tokio_rustls::client::TlsStream<TcpStream>);

impl TlsStream for Tls {
    /// rcgen's certificate is signed with ECDSA SHA-256: the end point is its SHA-256.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session.peer_certificates().and_then(|c| c.first()) {
            Some(cert) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, cert);
                ChannelBinding::tls_server_end_point(digest.as_ref().to_vec())
            }
            None => ChannelBinding::none(),
        }
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
