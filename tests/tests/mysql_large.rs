//! MySQL commands over one packet (16 MiB) and commands torpor won't hold: a 20 MB query
//! answers as it does straight from the server, attached or parked; one over the server's
//! max_allowed_packet gets 1153 and the connection closes; a client that hangs up midway lets
//! the database sleep; one over `[proxy] max_buffered_bytes` gets the server's out-of-memory
//! error (1041) or, parked, 1153 without a wake, and the other sessions go on.

use std::time::Duration;

use torpor_tests::harness::{Opts, SLOW, TestConfig, TestEnv};
use torpor_tests::mywire::{MyRaw, Resp, packet, parse_err};

const MAX_PAYLOAD: usize = 0xFF_FFFF;

/// A COM_QUERY of `sql` in as many packets as it takes.
fn command(sql: &str) -> Vec<u8> {
    let mut payload = vec![0x03];
    payload.extend_from_slice(sql.as_bytes());
    let mut out = Vec::with_capacity(payload.len() + 64);
    let mut chunks = payload.chunks(MAX_PAYLOAD);
    let mut seq = 0u8;
    loop {
        let chunk = chunks.next().unwrap_or_default();
        out.extend(packet(seq, chunk));
        seq = seq.wrapping_add(1);
        if chunk.len() < MAX_PAYLOAD {
            return out;
        }
    }
}

/// `SELECT LENGTH('xx…')` with `n` x's.
fn length_of(n: usize) -> Vec<u8> {
    command(&format!("SELECT LENGTH('{}')", "x".repeat(n)))
}

/// A MySQL cluster whose server takes commands up to 64 MiB, with `proxy` (TOML lines) as
/// its `[proxy]` table.
async fn env(proxy: &str) -> TestEnv {
    let mut cfg = TestConfig::new(&Opts::mysql()).await;
    cfg.toml = cfg.toml.replace(
        r#"innodb_flush_log_at_trx_commit = "0""#,
        r#"innodb_flush_log_at_trx_commit = "0", max_allowed_packet = "64M""#,
    );
    if !proxy.is_empty() {
        cfg.toml.push_str(&format!("\n[proxy]\n{proxy}\n"));
    }
    TestEnv::start_config(cfg).await
}

/// Sends `bytes`, which torpor must read in time even while it can't answer yet.
async fn send(raw: &mut MyRaw, bytes: &[u8]) {
    tokio::time::timeout(SLOW, raw.send(bytes))
        .await
        .expect("torpor stopped reading")
        .expect("send");
}

/// A client whose session is attached.
async fn attached(env: &TestEnv) -> MyRaw {
    let mut raw = env.my_raw().await;
    assert_eq!(raw.value("SELECT 1").await.as_deref(), Some("1"));
    raw
}

/// The session still answers queries.
async fn answers(raw: &mut MyRaw) {
    assert_eq!(raw.value("SELECT 7").await.as_deref(), Some("7"));
}

async fn answer(raw: &mut MyRaw, wire: &[u8]) -> Resp {
    send(raw, wire).await;
    tokio::time::timeout(SLOW, raw.response())
        .await
        .expect("no answer in time")
        .expect("answer")
}

/// The error the server sends, then the connection's end.
async fn error_then_close(raw: &mut MyRaw) -> u16 {
    let (_, p) = raw
        .recv()
        .await
        .expect("recv")
        .expect("closed without an error");
    let err = parse_err(&p).expect("an ERR packet");
    assert!(
        raw.recv().await.is_ok_and(|p| p.is_none()),
        "still open after {err:?}"
    );
    err.code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_20_mb_query_answers_as_straight_from_the_server() {
    let env = env("").await;
    let wire = length_of(20 << 20);
    let mut raw = attached(&env).await;
    let mut direct = env.my_raw_to(env.backend_addr()).await;
    let want = answer(&mut direct, &wire).await;
    assert!(matches!(want, Resp::Rows(_)), "{want:?}");
    drop(direct);

    assert_eq!(answer(&mut raw, &wire).await, want);
    answers(&mut raw).await;
    // Parked, the whole command is held, then the database wakes for it.
    env.sleep_ok().await;
    assert_eq!(answer(&mut raw, &wire).await, want);
    answers(&mut raw).await;
    env.shutdown_after(raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_allowed_packet_the_client_gets_1153_and_the_connection_ends() {
    let env = env("").await;
    let mut other = attached(&env).await;
    let mut raw = attached(&env).await;
    send(&mut raw, &length_of(70 << 20)).await;
    answers(&mut other).await;
    assert_eq!(error_then_close(&mut raw).await, 1153);
    env.shutdown_after(other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_midway_through_a_command_lets_the_database_sleep() {
    let env = env("").await;
    let mut raw = attached(&env).await;
    let wire = length_of(20 << 20);
    // The first packet whole, and 2 MiB of the next.
    send(&mut raw, &wire[..4 + MAX_PAYLOAD + (2 << 20)]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(raw);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = env.sleep().await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the database never slept: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_over_the_budget_gets_the_servers_out_of_memory_error() {
    let env = env("max_buffered_bytes = 4194304").await;
    let mut a = attached(&env).await;
    let mut b = attached(&env).await;

    // Over the whole budget: 1041, and the session goes on.
    let resp = answer(&mut a, &length_of(6 << 20)).await;
    assert_eq!(resp.err().map(|e| e.code), Some(1041), "{resp:?}");
    answers(&mut a).await;

    // The budget is the proxy's: what one session holds counts for the others.
    let held = length_of(3 << 20);
    send(&mut a, &held[..1 << 20]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = answer(&mut b, &length_of(2 << 20)).await;
    assert_eq!(resp.err().map(|e| e.code), Some(1041), "{resp:?}");
    send(&mut a, &held[1 << 20..]).await;
    let resp = tokio::time::timeout(SLOW, a.response())
        .await
        .expect("in time");
    assert!(matches!(resp, Ok(Resp::Rows(_))), "{resp:?}");
    let resp = answer(&mut b, &length_of(2 << 20)).await;
    assert!(matches!(resp, Resp::Rows(_)), "{resp:?}");

    // Parked, a command over the budget gets 1153 without a wake.
    env.sleep_ok().await;
    send(&mut a, &length_of(20 << 20)).await;
    assert_eq!(error_then_close(&mut a).await, 1153);
    let c = env.cluster_status().await;
    assert_eq!(c["state"], "standby", "{c}");
    answers(&mut b).await;
    env.shutdown_after(b).await;
}
