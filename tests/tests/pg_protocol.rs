//! The wire protocol at the byte level: malformed packets from one client get an error and a
//! closed connection without touching anyone else, and what a client is told (BackendKeyData,
//! ParameterStatus) stays the same across backends.

use torpor_tests::harness::{Opts, PASSWORD, Pg, TestEnv, USER};
use torpor_tests::wire::{Raw, error_fields, first_value, message_with_len, tags};

/// The proxy answers with one ErrorResponse and closes; returns its fields.
async fn expect_error_and_close(
    raw: &mut Raw,
    what: &str,
) -> std::collections::HashMap<char, String> {
    let msgs = raw
        .until_closed()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let errors: Vec<_> = msgs.iter().filter(|(t, _)| *t == b'E').collect();
    assert_eq!(
        errors.len(),
        1,
        "{what}: expected one ErrorResponse then close, got {:?}",
        tags(&msgs)
    );
    assert_eq!(
        msgs.last().map(|m| m.0),
        Some(b'E'),
        "{what}: {:?}",
        tags(&msgs)
    );
    error_fields(&errors[0].1)
}

/// Sends `bytes`; the proxy must refuse them with a protocol violation (08xxx) and close.
async fn refused_and_closed(raw: &mut Raw, bytes: &[u8], what: &str) {
    raw.send(bytes).await.unwrap();
    let f = expect_error_and_close(raw, what).await;
    assert!(
        f.get(&'C').is_some_and(|c| c.starts_with("08")),
        "{what}: {f:?}"
    );
}

async fn still_fine(s: &Pg, what: &str) {
    assert_eq!(
        s.text("SELECT 40 + 2").await,
        "42",
        "bystander after {what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets() {
    let (env, bystander) = TestEnv::pg_session(Opts::default()).await;
    still_fine(&bystander, "start").await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length 3", vec![0, 0, 0, 3]),
        ("length 0", vec![0, 0, 0, 0]),
        ("huge length", vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
        ("garbage version", vec![0, 0, 0, 8, 0x12, 0x34, 0x56, 0x78]),
        ("protocol 9.0", {
            let mut v = vec![0, 0, 0, 0, 0, 9, 0, 0];
            v.extend_from_slice(b"user\0app\0\0");
            let len = v.len() as u32;
            v[..4].copy_from_slice(&len.to_be_bytes());
            v
        }),
        ("unterminated parameters", {
            let mut v = vec![0, 0, 0, 0, 0, 3, 0, 0];
            v.extend_from_slice(b"user\0app");
            let len = v.len() as u32;
            v[..4].copy_from_slice(&len.to_be_bytes());
            v
        }),
    ];
    for (what, bytes) in cases {
        let mut raw = Raw::connect(env.listen).await.unwrap();
        refused_and_closed(&mut raw, &bytes, what).await;
        still_fine(&bystander, what).await;
    }
    // The proxy still accepts new clients.
    let late = env.connect().await;
    still_fine(&late, "all malformed startups").await;
    env.shutdown_after((bystander, late)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_after_auth() {
    let (env, bystander) = TestEnv::pg_session(Opts::default()).await;
    bystander.exec("SET application_name = 'bystander'").await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("Query with length 3", message_with_len(b'Q', 3, b"")),
        ("Query with length 0", message_with_len(b'Q', 0, b"")),
        (
            "Query of 1 GiB",
            message_with_len(b'Q', 1 << 30, b"SELECT 1"),
        ),
        ("Parse with length 2", message_with_len(b'P', 2, b"")),
    ];
    for (what, bytes) in cases {
        let (mut raw, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
        refused_and_closed(&mut raw, &bytes, what).await;
        still_fine(&bystander, what).await;
        assert_eq!(bystander.text("SHOW application_name").await, "bystander");
    }
    // The same while the session is parked (the bytes arrive before any wake).
    let (mut raw, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    raw.query("SET application_name = 'raw'").await.unwrap();
    env.sleep_ok().await;
    let parked = "parked Query with length 3";
    refused_and_closed(&mut raw, &message_with_len(b'Q', 3, b""), parked).await;
    still_fine(&bystander, "parked malformed").await;
    env.shutdown_after(bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_and_gss_requests_get_n() {
    let env = TestEnv::default().await;
    for (what, code) in [("SSLRequest", 80877103u32), ("GSSENCRequest", 80877104)] {
        let mut raw = Raw::connect(env.listen).await.unwrap();
        let mut pkt = 8u32.to_be_bytes().to_vec();
        pkt.extend_from_slice(&code.to_be_bytes());
        raw.send(&pkt).await.unwrap();
        let mut b = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(&mut raw.io, &mut b)
            .await
            .unwrap();
        assert_eq!(&b, b"N", "{what}");
    }
    env.shutdown().await;
}

/// Invariant 3: one BackendKeyData and consistent ParameterStatus for the client's whole life;
/// a new backend's startup chatter never reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sees_no_backend_change() {
    let env = TestEnv::default().await;
    let (mut raw, hello) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    let names: Vec<&str> = hello.params.iter().map(|(k, _)| k.as_str()).collect();
    for k in [
        "server_version",
        "client_encoding",
        "TimeZone",
        "session_authorization",
        "integer_datetimes",
    ] {
        assert!(names.contains(&k), "{k} missing from {names:?}");
    }
    let real_pid = first_value(&raw.query("SELECT pg_backend_pid()").await.unwrap());
    assert_ne!(
        real_pid,
        hello.key.0.to_string(),
        "the client should get a virtual key"
    );

    for cycle in 0..3 {
        env.sleep_ok().await;
        let msgs = raw.query("SELECT 1").await.unwrap();
        assert_eq!(
            tags(&msgs),
            "TDCZ",
            "cycle {cycle}: startup chatter leaked to the client"
        );
    }
    // A SET that changes a reported parameter reports it once, as postgres does.
    let msgs = raw.query("SET application_name = 'x'").await.unwrap();
    assert_eq!(tags(&msgs), "CSZ");
    env.sleep_ok().await;
    let msgs = raw
        .query("SELECT current_setting('application_name')")
        .await
        .unwrap();
    assert_eq!(
        tags(&msgs),
        "TDCZ",
        "restored setting re-announced to the client"
    );
    assert_eq!(first_value(&msgs), "x");

    // A client connecting during standby is told the same parameters (but its own key).
    env.sleep_ok().await;
    let (_late, late_hello) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    assert_eq!(env.cluster_status().await["state"], "standby");
    assert_eq!(late_hello.params, hello.params);
    assert_ne!(late_hello.key, hello.key);
    env.shutdown().await;
}
