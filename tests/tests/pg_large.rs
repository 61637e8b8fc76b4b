//! PostgreSQL messages over `[proxy] max_buffered_bytes`, the budget every session's messages
//! share: the message gets the server's out-of-memory error (53200) on its own session, which
//! goes on if the message was a query at rest; the other sessions are unaffected.

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use torpor_tests::harness::{Opts, PASSWORD, SLOW, TestConfig, TestEnv, USER};
use torpor_tests::wire::{Raw, error_fields, first_value, tags};

/// A simple Query of `SELECT length('xx…')` with `n` x's.
fn length_of(n: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    frontend::query(&format!("SELECT length('{}')", "x".repeat(n)), &mut out).expect("query");
    out.to_vec()
}

async fn login(env: &TestEnv) -> Raw {
    let (raw, _) = Raw::login(env.listen, USER, PASSWORD).await.expect("login");
    raw
}

async fn exchange(raw: &mut Raw, request: &[u8]) -> Vec<(u8, BytesMut)> {
    tokio::time::timeout(SLOW, raw.exchange(request))
        .await
        .expect("no answer in time")
        .expect("answer")
}

fn sqlstate(msgs: &[(u8, BytesMut)]) -> Option<String> {
    let (_, body) = msgs.iter().find(|(t, _)| *t == b'E')?;
    error_fields(body).remove(&'C')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_budget_gets_out_of_memory_on_its_session_only() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    cfg.toml
        .push_str("\n[proxy]\nmax_buffered_bytes = 4194304\n");
    let env = TestEnv::start_config(cfg).await;
    let mut a = login(&env).await;
    let mut b = login(&env).await;
    let c = env.connect().await;

    // Over the whole budget: 53200, and the session goes on.
    let msgs = exchange(&mut a, &length_of(6 << 20)).await;
    assert_eq!(sqlstate(&msgs).as_deref(), Some("53200"), "{}", tags(&msgs));
    assert_eq!(first_value(&exchange(&mut a, &length_of(3)).await), "3");

    // The budget is the proxy's: what one session holds counts for the others.
    let held = length_of(3 << 20);
    a.send(&held[..1 << 20]).await.expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let msgs = exchange(&mut b, &length_of(2 << 20)).await;
    assert_eq!(sqlstate(&msgs).as_deref(), Some("53200"), "{}", tags(&msgs));
    assert_eq!(c.value("SELECT 7").await.as_deref(), Some("7"));
    let msgs = exchange(&mut a, &held[1 << 20..]).await;
    assert_eq!(first_value(&msgs), (3 << 20).to_string());
    let msgs = exchange(&mut b, &length_of(2 << 20)).await;
    assert_eq!(first_value(&msgs), (2 << 20).to_string());

    // Inside a transaction torpor can't answer for the backend: the session ends with it.
    let mut begin = BytesMut::new();
    frontend::query("BEGIN", &mut begin).expect("query");
    exchange(&mut b, &begin).await;
    b.send(&length_of(6 << 20)).await.expect("send");
    let msgs = b.until_closed().await.expect("until closed");
    assert_eq!(sqlstate(&msgs).as_deref(), Some("53200"), "{}", tags(&msgs));
    assert_eq!(c.value("SELECT 7").await.as_deref(), Some("7"));
    env.shutdown_after((a, c)).await;
}
