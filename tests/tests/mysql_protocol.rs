//! The MySQL wire protocol at the byte level: malformed packets from one client get an ERR and
//! a closed connection without touching anyone else; errors torpor answers itself match the
//! server's; what a client is told (its connection id, the greeting) stays the same.

use std::time::Duration;

use mysql_async::Conn;
use tokio::io::AsyncWriteExt;
use torpor_tests::harness::{Opts, PASSWORD, TestEnv, USER};
use torpor_tests::mysql::{exec, text};
use torpor_tests::mywire::{MyRaw, Resp, com, packet, packet_with_len, parse_err};

async fn still_fine(c: &mut Conn, what: &str) {
    assert_eq!(
        text(c, "SELECT 40 + 2").await,
        "42",
        "bystander after {what}"
    );
    assert_eq!(text(c, "SELECT @mine").await, "bystander", "after {what}");
}

/// The connection must end (within the read timeout) and whatever it said must be ERRs.
async fn expect_err_and_close(raw: &mut MyRaw, what: &str) -> Vec<torpor_tests::mywire::MyErr> {
    let packets = raw
        .until_closed()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    let errs: Vec<_> = packets
        .iter()
        .map(|p| parse_err(p).unwrap_or_else(|_| panic!("{what}: a non-ERR packet {p:?}")))
        .collect();
    assert!(!errs.is_empty(), "{what}: closed without an ERR");
    errs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_statement_and_command_errors_match_the_server() {
    let (env, mut via) = TestEnv::my_raw_session().await;
    let mut real = env.my_raw_to(env.backend_addr()).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("execute 12345", {
            let mut p = vec![com::STMT_EXECUTE];
            p.extend_from_slice(&12345u32.to_le_bytes());
            p.extend_from_slice(&[0, 1, 0, 0, 0]);
            p
        }),
        ("fetch 12345", {
            let mut p = vec![0x1c];
            p.extend_from_slice(&12345u32.to_le_bytes());
            p.extend_from_slice(&1u32.to_le_bytes());
            p
        }),
        ("reset 12345", {
            let mut p = vec![0x1a];
            p.extend_from_slice(&12345u32.to_le_bytes());
            p
        }),
    ];
    for (what, p) in &cases {
        via.command(p).await.unwrap();
        real.command(p).await.unwrap();
        let a = via.response().await.unwrap();
        let b = real.response().await.unwrap();
        assert_eq!(a, b, "{what}: torpor vs server");
        assert!(a.err().is_some(), "{what}: {a:?}");
    }
    assert_eq!(execute_12345_code(&mut via).await, 1243);
    // While parked: the same answer, and no wake for it.
    env.sleep_ok().await;
    via.command(&cases[0].1).await.unwrap();
    let a = via.response().await.unwrap();
    let st = env.cluster_status().await;
    assert!(
        st["backend_pid"].is_null(),
        "an unknown statement id woke the cluster: {st}"
    );
    // Wakes the cluster (admin API) so a direct connection has a server to talk to.
    env.wake_ok().await;
    let mut real = env.my_raw_to(env.backend_addr()).await;
    real.command(&cases[0].1).await.unwrap();
    assert_eq!(a, real.response().await.unwrap(), "parked execute 12345");
    // Both connections still work after their errors.
    assert_eq!(via.value("SELECT 1").await.as_deref(), Some("1"));
    assert_eq!(real.value("SELECT 1").await.as_deref(), Some("1"));
    env.shutdown().await;
}

async fn execute_12345_code(raw: &mut MyRaw) -> u16 {
    let mut p = vec![com::STMT_EXECUTE];
    p.extend_from_slice(&12345u32.to_le_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0]);
    raw.command(&p).await.unwrap();
    match raw.response().await.unwrap() {
        Resp::Err(e) => {
            assert_eq!(
                e.message,
                "Unknown prepared statement handler (12345) given to mysqld_stmt_execute"
            );
            e.code
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_command_byte_gets_the_server_error() {
    let (env, mut via) = TestEnv::my_raw_session().await;
    let mut real = env.my_raw_to(env.backend_addr()).await;
    via.command(&[0xee, 1, 2, 3]).await.unwrap();
    real.command(&[0xee, 1, 2, 3]).await.unwrap();
    let a = via.response().await.unwrap();
    let b = real.response().await.unwrap();
    assert_eq!(
        a.err().map(|e| e.code),
        b.err().map(|e| e.code),
        "{a:?} vs {b:?}"
    );
    assert_eq!(a.err().map(|e| e.code), Some(1047), "{a:?}");
    assert_eq!(via.value("SELECT 2").await.as_deref(), Some("2"));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_after_login() {
    let (env, mut bystander) = TestEnv::my_session(Opts::default()).await;
    exec(&mut bystander, "SET @mine = 'bystander'").await;

    // Header says 100 bytes, 10 arrive, then the client closes its side.
    let mut raw = env.my_raw().await;
    let left = half_close_after(
        &mut raw,
        &packet_with_len(100, 0, b"\x03SELECT 1;"),
        "truncated packet + half close",
    )
    .await;
    for p in &left {
        assert!(
            parse_err(p).is_ok(),
            "truncated packet: a non-ERR packet {p:?}"
        );
    }
    still_fine(&mut bystander, "truncated packet").await;

    // Header says 16 MiB - 1 (a packet to be continued), the bytes are a COM_QUERY and then
    // garbage, and the continuation is garbage too: too big for the server; an ERR, a close.
    let mut raw = env.my_raw().await;
    let mut body = b"\x03SELECT '".to_vec();
    body.resize(0xff_ffff, 0xa5);
    raw.send(&packet_with_len(0xff_ffff, 0, &body))
        .await
        .unwrap();
    raw.send(&packet(1, b"garbage\xff\x00\x01")).await.unwrap();
    let errs = expect_err_and_close(&mut raw, "16 MiB lie").await;
    eprintln!("16 MiB lie -> {errs:?}");
    still_fine(&mut bystander, "16 MiB lie").await;

    // A length field of 0: an empty command.
    let mut raw = env.my_raw().await;
    raw.send(&packet_with_len(0, 0, b"")).await.unwrap();
    let errs = expect_err_and_close(&mut raw, "empty packet").await;
    eprintln!("empty packet -> {errs:?}");
    still_fine(&mut bystander, "empty packet").await;

    // Long data for a statement with a truncated header (no parameter id).
    let mut raw = env.my_raw().await;
    let left = half_close_after(
        &mut raw,
        &packet(0, &[com::STMT_SEND_LONG_DATA, 1, 0]),
        "short long-data packet",
    )
    .await;
    assert!(
        left.last()
            .is_some_and(|p| parse_err(p).is_ok_and(|e| e.code == 1835)),
        "short long data: {left:?}"
    );
    still_fine(&mut bystander, "short long data").await;

    // The same truncation while the session is parked: no wake, a close.
    let mut raw = env.my_raw().await;
    assert_eq!(raw.value("SELECT 3").await.as_deref(), Some("3"));
    env.sleep_ok().await;
    half_close_after(
        &mut raw,
        &packet_with_len(100, 0, b"\x03SELECT 1;"),
        "parked truncated packet",
    )
    .await;
    let st = env.cluster_status().await;
    assert!(
        st["backend_pid"].is_null(),
        "a truncated packet woke the cluster: {st}"
    );
    still_fine(&mut bystander, "parked truncated packet").await;
    env.shutdown_after(bystander).await;
}

/// Sends `bytes`, closes the client's side, and waits for the proxy to close the connection
/// too (a proxy that waits for the rest of a packet would keep it open); what it sent meanwhile.
async fn half_close_after(raw: &mut MyRaw, bytes: &[u8], what: &str) -> Vec<Vec<u8>> {
    raw.send(bytes).await.unwrap();
    raw.io.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), raw.until_closed())
        .await
        .unwrap_or_else(|_| panic!("{what}: the proxy kept the connection open"))
        .unwrap()
}

/// Builds a HandshakeResponse payload for a connection's greeting.
type MakeResponse = Box<dyn Fn(&MyRaw) -> Vec<u8>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_handshake_responses() {
    let (env, mut bystander) = TestEnv::my_session(Opts::default()).await;
    exec(&mut bystander, "SET @mine = 'bystander'").await;

    let lying_auth = |raw: &MyRaw| {
        // A valid response, with the auth length byte claiming 200 bytes.
        let mut p = raw.handshake_response(USER, PASSWORD, Some("my"));
        let at = 32 + USER.len() + 1;
        p[at] = 200;
        p.truncate(at + 1 + 20);
        p
    };
    let cases: Vec<(&str, MakeResponse)> = vec![
        ("auth length lies", Box::new(lying_auth)),
        ("empty response", Box::new(|_| Vec::new())),
        (
            "only capabilities",
            Box::new(|_| vec![0x0f, 0xa2, 0x0a, 0x00]),
        ),
        (
            "no NUL after user name",
            Box::new(|raw| {
                let mut p = raw.handshake_response(USER, PASSWORD, None);
                p.truncate(32 + USER.len());
                p
            }),
        ),
    ];
    for (what, make) in cases {
        let mut raw = MyRaw::connect(env.listen).await.unwrap();
        let p = make(&raw);
        raw.send_packet(1, &p).await.unwrap();
        let errs = expect_err_and_close(&mut raw, what).await;
        eprintln!("{what} -> {errs:?}");
        still_fine(&mut bystander, what).await;
    }

    // Truncated: header says 100 bytes, 10 arrive, then the client closes its side.
    let mut raw = MyRaw::connect(env.listen).await.unwrap();
    half_close_after(
        &mut raw,
        &packet_with_len(100, 1, &[0u8; 10]),
        "truncated handshake response",
    )
    .await;
    still_fine(&mut bystander, "truncated handshake").await;

    // Truncated, and the client just waits: the handshake times out with an ERR.
    let mut raw = MyRaw::connect(env.listen).await.unwrap();
    raw.send(&packet_with_len(100, 1, &[0u8; 10]))
        .await
        .unwrap();
    let errs = expect_err_and_close(&mut raw, "stalled handshake").await;
    eprintln!("stalled handshake -> {errs:?}");
    still_fine(&mut bystander, "stalled handshake").await;

    // The proxy still accepts new clients.
    let mut late = env.my().await;
    assert_eq!(text(&mut late, "SELECT 1").await, "1");
    env.shutdown_after((bystander, late)).await;
}

/// The connection id and the greeting a client got stay valid across backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sees_no_backend_change() {
    let env = TestEnv::start(Opts::mysql()).await;
    let raw = MyRaw::connect(env.listen).await.unwrap();
    let hello = raw.greeting.clone();
    drop(raw);
    let real = MyRaw::connect(env.backend_addr()).await.unwrap();
    assert_eq!(hello.server_version, real.greeting.server_version);
    drop(real);
    let mut c = env.my().await;
    let id = c.id();
    for _ in 0..2 {
        env.sleep_ok().await;
        assert_eq!(text(&mut c, "SELECT 1").await, "1");
        assert_eq!(c.id(), id);
    }
    // A client connecting during standby is greeted the same way, with its own id.
    env.sleep_ok().await;
    let late = env.my_raw().await;
    assert!(env.cluster_status().await["backend_pid"].is_null());
    assert_eq!(late.greeting.server_version, hello.server_version);
    assert_ne!(late.greeting.connection_id, hello.connection_id);
    assert_ne!(late.greeting.connection_id, id);
    env.shutdown_after((c, late)).await;
}
