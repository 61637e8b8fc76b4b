//! The front door under abuse: handshakes that never finish, repeated encryption requests,
//! more clients than allowed, huge names, an unauthenticated admin API, failed-login storms,
//! and what operators see when the backend dies or a snapshot put fails.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use tokio::io::AsyncReadExt;
use torpor_tests::harness::{
    OTHER_USER, Opts, PASSWORD, SLOW, TestConfig, TestEnv, USER, describe, init_tracing, sqlstate,
};
use torpor_tests::mysql::try_connect_my;
use torpor_tests::mywire::{MyRaw, parse_err};
use torpor_tests::wire::{Raw, error_fields, message_with_len, tags};
use torpor_tests::{binary, http};

/// SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Everything the proxy sends until it closes, within a bound that fails the test instead of
/// hanging it.
async fn until_closed(raw: &mut Raw, within: Duration) -> Vec<(u8, bytes::BytesMut)> {
    tokio::time::timeout(within, raw.until_closed())
        .await
        .unwrap_or_else(|_| panic!("the proxy kept the connection open for {within:?}"))
        .expect("read until closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_sends_a_startup_packet_is_closed() {
    let env = TestEnv::start(Opts::default().proxy("handshake_timeout = \"1s\"")).await;
    let started = Instant::now();
    let mut silent = Raw::connect(env.listen).await.unwrap();
    let said = until_closed(&mut silent, Duration::from_secs(20)).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(said.iter().all(|(t, _)| *t == b'E'), "{}", tags(&said));
    // A client that asked for TLS and then stalled is closed too.
    let mut stalled = Raw::connect(env.listen).await.unwrap();
    stalled.send(&SSL_REQUEST).await.unwrap();
    let mut n = [0u8; 1];
    stalled.io.read_exact(&mut n).await.unwrap();
    assert_eq!(&n, b"N");
    until_closed(&mut stalled, Duration::from_secs(20)).await;
    // Clients that do log in are not affected.
    let c = env.connect().await;
    assert_eq!(c.value("SELECT 1").await.as_deref(), Some("1"));
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ssl_request_closes_the_connection_with_an_error() {
    let env = TestEnv::default().await;
    let mut raw = Raw::connect(env.listen).await.unwrap();
    raw.send(&SSL_REQUEST).await.unwrap();
    let mut n = [0u8; 1];
    raw.io.read_exact(&mut n).await.unwrap();
    assert_eq!(&n, b"N");
    raw.send(&SSL_REQUEST).await.unwrap();
    let said = until_closed(&mut raw, Duration::from_secs(20)).await;
    assert_eq!(tags(&said), "E", "{said:?}");
    let f = error_fields(&said[0].1);
    assert_eq!(f[&'C'], "08P01", "{f:?}");
    assert!(f[&'M'].contains("SSLRequest"), "{f:?}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_clients_past_the_cap_get_53300_and_the_others_keep_working() {
    let env = TestEnv::start(Opts::default().cluster_setting("max_client_connections = 2")).await;
    let a = env.connect().await;
    let b = env.connect().await;
    let Err(e) = env.try_connect(USER, PASSWORD).await else {
        panic!("a third client got in");
    };
    assert_eq!(sqlstate(&e), Some("53300"), "{}", describe(&e));
    assert!(
        describe(&e).contains("sorry, too many clients already"),
        "{}",
        describe(&e)
    );
    assert_eq!(a.value("SELECT 1").await.as_deref(), Some("1"));
    assert_eq!(b.value("SELECT 2").await.as_deref(), Some("2"));
    // A client that leaves makes room.
    drop(b);
    let deadline = Instant::now() + SLOW;
    let c = loop {
        match env.try_connect(USER, PASSWORD).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(sqlstate(&e), Some("53300"), "{}", describe(&e));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no room after a client left: {}", describe(&e)),
        }
    };
    env.shutdown_after((a, c)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_clients_past_the_cap_get_1040_and_the_others_keep_working() {
    let env = TestEnv::start(Opts::mysql().proxy("max_client_connections = 2")).await;
    let mut a = env.my().await;
    let mut b = env.my().await;
    let Err(e) = try_connect_my(env.listen, USER, PASSWORD, Some(&env.cluster)).await else {
        panic!("a third client got in");
    };
    match &e {
        mysql_async::Error::Server(s) => {
            assert_eq!(s.code, 1040, "{e}");
            assert_eq!(s.message, "Too many connections");
        }
        other => panic!("not a server error: {other:?}"),
    }
    let one: Option<i64> = a.query_first("SELECT 1").await.unwrap();
    let two: Option<i64> = b.query_first("SELECT 2").await.unwrap();
    assert_eq!((one, two), (Some(1), Some(2)));
    drop(a.disconnect().await);
    drop(b.disconnect().await);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_message_type_gets_exactly_one_error() {
    let env = TestEnv::default().await;
    let (mut raw, _) = Raw::login(env.listen, USER, PASSWORD).await.unwrap();
    raw.send(&message_with_len(b'y', 4, b"")).await.unwrap();
    let said = until_closed(&mut raw, SLOW).await;
    assert_eq!(tags(&said), "E", "{said:?}");
    let f = error_fields(&said[0].1);
    assert_eq!(f[&'S'], "FATAL", "{f:?}");
    assert_eq!(f[&'C'], "08P01", "{f:?}");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_asks_for_its_token() {
    let env = TestEnv::start(Opts::default().admin_token("s3cret-admin")).await;
    for token in [
        None,
        Some("wrong"),
        Some("s3cret-admi"),
        Some("s3cret-admin2"),
    ] {
        for (method, path) in [
            ("GET", "/api/clusters"),
            ("GET", "/metrics"),
            ("POST", "/api/clusters/pg/wake"),
        ] {
            let r = http::request_as(env.admin, method, path, token)
                .await
                .unwrap();
            assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.body);
        }
    }
    // The harness sends the right one.
    assert_eq!(env.cluster_status().await["state"], "standby");
    assert!(env.metrics().await.contains("torpor_cluster_up"));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_slowed_and_counted() {
    let env = TestEnv::default().await;
    let fail = || async {
        let started = Instant::now();
        let Err(e) = env.try_connect(OTHER_USER, "not-the-password").await else {
            panic!("a wrong password got in");
        };
        assert_eq!(sqlstate(&e), Some("28P01"), "{}", describe(&e));
        started.elapsed()
    };
    // From the sixth attempt on each waits before it is answered: 250 ms, then twice as long
    // each time, a right password as well.
    let failures = torpor::throttle::FREE + 3;
    for _ in 0..failures {
        fail().await;
    }
    let started = Instant::now();
    let c = env.connect().await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    let text = env.metrics().await;
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{series} not in\n{text}"))
    };
    assert_eq!(
        value("torpor_login_failures_total{protocol=\"postgres\"}"),
        f64::from(failures)
    );
    assert_eq!(
        value("torpor_login_failures_total{protocol=\"mysql\"}"),
        0.0
    );
    assert_eq!(value("torpor_login_throttled_total"), 4.0);
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_shows_as_standby_with_the_reason() {
    let env = TestEnv::default().await;
    let c = env.connect().await;
    let pid = env.backend_pid().await.expect("a running backend");
    // SAFETY: kill(2) on the postmaster this test's torpor started.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    let status = env
        .wait_for(Duration::from_secs(30), "standby after the kill", |c| {
            c["state"] == "standby"
        })
        .await;
    let why = status["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("postgres") && why.contains(&pid.to_string()) && why.contains("9"),
        "{status}"
    );
    assert!(status["backend_pid"].is_null(), "{status}");
    // The next client starts it again, and that clears the error.
    drop(c);
    let c = env.connect().await;
    assert_eq!(c.value("SELECT 40 + 2").await.as_deref(), Some("42"));
    let status = env.cluster_status().await;
    assert!(status["last_error"].is_null(), "{status}");
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_blocks_until_the_next_sleep_succeeds() {
    let env = TestEnv::default().await;
    let c = env.connect().await;
    c.exec("CREATE TEMP TABLE t AS SELECT 1 AS x").await;
    // A file where the store's directory was: every put fails, even as root.
    let aside = env.dir.path().join("state-aside");
    std::fs::rename(&env.state_dir, &aside).unwrap();
    std::fs::write(&env.state_dir, b"not a directory").unwrap();
    let (status, body) = env.sleep().await;
    assert_eq!(status, 409, "{body}");
    assert!(
        env.cluster_status().await["blockers"][0]
            .as_str()
            .is_some_and(|b| b.contains("snapshot put failed")),
        "{body}"
    );
    std::fs::remove_file(&env.state_dir).unwrap();
    std::fs::rename(&aside, &env.state_dir).unwrap();
    env.sleep_ok().await;
    let status = env.cluster_status().await;
    assert_eq!(status["blockers"], serde_json::json!([]), "{status}");
    let sessions = env
        .admin("GET", &format!("/api/clusters/{}/sessions", env.cluster))
        .await
        .json();
    assert!(sessions[0]["blocker"].is_null(), "{sessions}");
    assert_eq!(c.value("SELECT x FROM t").await.as_deref(), Some("1"));
    env.shutdown_after(c).await;
}

/// The log and the client's answer carry the first 64 bytes of an 8 KiB user name, not all of
/// it; a 3 MiB one is refused as a malformed packet before torpor holds it. Runs the binary,
/// whose log the test reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_mysql_user_name_is_clipped_in_the_answer_and_the_log() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::mysql()).await;
    let mut proc = binary::up(&cfg.config_path).await;

    let mut raw = MyRaw::connect(cfg.listen).await.unwrap();
    let resp = raw.handshake_response(&"u".repeat(3 << 20), "whatever", None);
    // The client may still be writing when torpor answers and closes.
    let _ = raw.send_packet(1, &resp).await;
    let (_, p) = raw.recv().await.unwrap().expect("an answer");
    let err = parse_err(&p).unwrap();
    assert_eq!(err.code, 1835, "{err:?}");
    assert!(err.message.contains("16384"), "{err:?}");

    let name = "u".repeat(8 << 10);
    let mut raw = MyRaw::connect(cfg.listen).await.unwrap();
    let resp = raw.handshake_response(&name, "whatever", None);
    raw.send_packet(1, &resp).await.unwrap();
    let (_, p) = raw.recv().await.unwrap().expect("an answer");
    let err = parse_err(&p).unwrap();
    assert_eq!(err.code, 1045, "{err:?}");
    assert!(err.message.len() < 256, "{} bytes", err.message.len());
    assert!(err.message.contains(&"u".repeat(64)), "{}", err.message);
    let deadline = Instant::now() + SLOW;
    let log = loop {
        let log = proc.log.lock().unwrap().clone();
        if log.iter().any(|l| l.contains("client login failed")) {
            break log;
        }
        assert!(Instant::now() < deadline, "no login failure logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in &log {
        assert!(line.len() < 1024, "a log line of {} bytes", line.len());
    }
    proc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_up_refuse_an_open_admin_api_without_a_token() {
    let cfg = TestConfig::new(&Opts::default()).await;
    let open = cfg.toml.replace(
        &format!("listen = \"{}\"", cfg.admin),
        &format!("listen = \"0.0.0.0:{}\"", cfg.admin.port()),
    );
    assert_ne!(open, cfg.toml);
    std::fs::write(&cfg.config_path, &open).unwrap();
    for args in [&["check"][..], &["up"][..]] {
        let (ok, text) = binary::run(args, &cfg.config_path).await;
        assert!(!ok, "{args:?} accepted an open admin API: {text}");
        assert!(text.contains("admin.token_file"), "{args:?}: {text}");
    }
    // Nothing was started or made.
    assert!(!cfg.data_dir.exists());
    let token = cfg.dir.path().join("admin-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let with_token = open.replace(
        "[admin]\n",
        &format!("[admin]\ntoken_file = \"{}\"\n", token.display()),
    );
    std::fs::write(&cfg.config_path, &with_token).unwrap();
    let (ok, text) = binary::run(&["check"], &cfg.config_path).await;
    assert!(ok, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sends_the_configured_token() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::default().admin_token("status-token")).await;
    let mut proc = binary::up(&cfg.config_path).await;
    let (ok, text) = binary::run(&["status"], &cfg.config_path).await;
    assert!(ok, "{text}");
    assert!(text.lines().any(|l| l.starts_with("pg ")), "{text}");
    // Without the config it has no token, and says what the API answered.
    let out = tokio::process::Command::new(binary::torpor_bin())
        .args(["status", "--admin", &cfg.admin.to_string()])
        .env_remove("TORPOR_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");
    proc.stop().await;
}
