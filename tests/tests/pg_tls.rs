//! TLS between PostgreSQL clients and torpor: SSLRequest and direct TLS (ALPN `postgresql`),
//! SCRAM-SHA-256-PLUS channel binding, `require_tls`, and certificates read again on SIGHUP.
//! The certificates come from a CA each test makes (rcgen); clients verify against it.

use std::time::Duration;

use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use torpor_tests::binary;
use torpor_tests::clients::cli_stdout;
use torpor_tests::harness::{
    OTHER_PASSWORD, OTHER_USER, Opts, PASSWORD, SLOW, TestConfig, TestEnv, USER, connect_to,
};
use torpor_tests::tls::{TestCa, connect_tls, tls_env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_with_channel_binding_keeps_its_state_across_a_stop() {
    let (env, ca) = tls_env(&Opts::default(), false).await;
    let c = connect_tls(env.listen, &ca, USER, PASSWORD, true)
        .await
        .expect("TLS with channel binding");
    c.exec("CREATE TEMP TABLE t AS SELECT 41 AS x; SET application_name = 'over-tls'")
        .await;
    env.sleep_ok().await;
    assert_eq!(c.value("SELECT x + 1 FROM t").await.as_deref(), Some("42"));
    assert_eq!(
        c.value("SHOW application_name").await.as_deref(),
        Some("over-tls")
    );
    // Plaintext is still allowed without require_tls.
    let plain = env.connect().await;
    assert_eq!(plain.value("SELECT 1").await.as_deref(), Some("1"));
    // A wrong password over TLS fails as it does in plaintext.
    let e = connect_tls(env.listen, &ca, OTHER_USER, "wrong", true)
        .await
        .err()
        .expect("a wrong password");
    assert_eq!(e.code().map(|c| c.code()), Some("28P01"), "{e}");
    let other = connect_tls(env.listen, &ca, OTHER_USER, OTHER_PASSWORD, false)
        .await
        .expect("TLS without binding");
    assert_eq!(other.value("SELECT 2").await.as_deref(), Some("2"));
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_refuses_plaintext_clients_as_the_server_does() {
    let (env, ca) = tls_env(&Opts::default(), true).await;
    let e = connect_to(env.listen, USER, PASSWORD)
        .await
        .err()
        .expect("plaintext refused");
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "28000", "{db:?}");
    assert!(db.message().contains("requires TLS"), "{db:?}");
    let c = connect_tls(env.listen, &ca, USER, PASSWORD, true)
        .await
        .expect("TLS accepted");
    assert_eq!(c.value("SELECT 1").await.as_deref(), Some("1"));
    env.shutdown_after(c).await;
}

/// The first message torpor sends on a direct TLS connection after `startup`.
async fn direct(env: &TestEnv, ca: &TestCa, alpn: &[&[u8]]) -> Vec<u8> {
    let tcp = TcpStream::connect(env.listen).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(ca.client_config(alpn))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let mut startup = bytes::BytesMut::new();
    frontend::startup_message([("user", USER), ("database", USER)], &mut startup).unwrap();
    // torpor may have answered and closed already when there is no ALPN.
    let _ = tls.write_all(&startup).await;
    let mut first = vec![0u8; 5];
    tokio::time::timeout(SLOW, tls.read_exact(&mut first))
        .await
        .expect("an answer in time")
        .expect("read");
    let len = u32::from_be_bytes([first[1], first[2], first[3], first[4]]) as usize;
    let mut body = vec![0u8; len - 4];
    tls.read_exact(&mut body).await.expect("read the body");
    first.extend(body);
    first
}

/// PostgreSQL 17's `sslnegotiation=direct`: a TLS ClientHello in place of the SSLRequest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_alpn_postgresql() {
    let (env, ca) = tls_env(&Opts::default(), true).await;
    let m = direct(&env, &ca, &[b"postgresql"]).await;
    assert_eq!(m[0], b'R', "AuthenticationSASL expected: {m:?}");
    assert!(
        m.windows(18).any(|w| w == b"SCRAM-SHA-256-PLUS"),
        "channel binding offered on TLS"
    );
    let m = direct(&env, &ca, &[]).await;
    assert_eq!(m[0], b'E', "{m:?}");
    let text = String::from_utf8_lossy(&m);
    assert!(text.contains("08P01") && text.contains("ALPN"), "{text}");
    env.shutdown().await;
}

/// Bytes sent after the SSLRequest, before the handshake, are refused (CVE-2021-23214), not
/// read as the first bytes of the TLS session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_sent_before_the_handshake_are_refused() {
    let (env, _ca) = tls_env(&Opts::default(), false).await;
    let mut tcp = TcpStream::connect(env.listen).await.unwrap();
    let mut ssl = bytes::BytesMut::new();
    frontend::ssl_request(&mut ssl);
    let mut startup = bytes::BytesMut::new();
    frontend::startup_message([("user", USER), ("database", USER)], &mut startup).unwrap();
    ssl.extend_from_slice(&startup);
    tcp.write_all(&ssl).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(SLOW, tcp.read_to_end(&mut answer))
        .await
        .expect("closed in time")
        .ok();
    assert_eq!(answer.first(), Some(&b'S'), "{answer:?}");
    assert!(
        !answer.windows(14).any(|w| w == b"SCRAM-SHA-256\0"),
        "the bytes sent early were answered: {answer:?}"
    );
    // The cluster goes on.
    let c = env.connect().await;
    assert_eq!(c.value("SELECT 1").await.as_deref(), Some("1"));
    env.shutdown_after(c).await;
}

/// SIGHUP reads the certificate files again; connections already open stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_read_again_on_sighup() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    let a = TestCa::new(cfg.dir.path(), "a");
    let b = TestCa::new(cfg.dir.path(), "b");
    let (cert, key) = (
        cfg.dir.path().join("server.pem"),
        cfg.dir.path().join("server.key"),
    );
    std::fs::copy(&a.cert, &cert).unwrap();
    std::fs::copy(&a.key, &key).unwrap();
    cfg.toml.push_str(&format!(
        "\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    std::fs::write(&cfg.config_path, &cfg.toml).unwrap();
    let mut proc = binary::up(&cfg.config_path).await;
    let open = connect_tls(cfg.listen, &a, USER, PASSWORD, true)
        .await
        .expect("certificate a");
    assert!(
        connect_tls(cfg.listen, &b, USER, PASSWORD, false)
            .await
            .is_err()
    );

    std::fs::copy(&b.cert, &cert).unwrap();
    std::fs::copy(&b.key, &key).unwrap();
    proc.signal(libc::SIGHUP);
    let deadline = tokio::time::Instant::now() + SLOW;
    let fresh = loop {
        if let Ok(c) = connect_tls(cfg.listen, &b, USER, PASSWORD, true).await {
            break c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "certificate b never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        connect_tls(cfg.listen, &a, USER, PASSWORD, false)
            .await
            .is_err()
    );
    assert_eq!(
        open.value("SELECT 'still here'").await.as_deref(),
        Some("still here")
    );
    assert_eq!(fresh.value("SELECT 1").await.as_deref(), Some("1"));
    drop((open, fresh));
    proc.stop().await;
}

/// psql (libpq 15) with sslmode=verify-full against the test's CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_verifies_the_certificate() {
    let (env, ca) = tls_env(&Opts::default(), true).await;
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user={USER} dbname={USER} sslmode=verify-full sslrootcert={}",
        env.listen.port(),
        ca.ca.display()
    );
    let stdout = cli_stdout(
        tokio::process::Command::new("psql")
            .arg(&conninfo)
            .args(["-X", "-A", "-t", "-c", "\\conninfo", "-c", "SELECT 6 * 7"])
            .env("PGPASSWORD", PASSWORD),
    )
    .await;
    assert!(stdout.contains("SSL connection"), "{stdout}");
    assert!(stdout.contains("42"), "{stdout}");
    env.shutdown().await;
}
