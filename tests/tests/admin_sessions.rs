//! `GET /api/clusters/{name}/sessions` and `torpor status --sessions`: who each session is,
//! whether it is attached or parked, what it holds and what keeps the database awake.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use mysql_async::ChangeUserOpts;
use serde_json::Value;
use torpor_tests::binary::{self, torpor_bin};
use torpor_tests::harness::{
    OTHER_PASSWORD, OTHER_USER, Opts, PASSWORD, TestConfig, TestEnv, USER, client_config,
    connect_from, init_tracing,
};
use torpor_tests::mysql::{exec, opts};

async fn sessions(env: &TestEnv) -> Vec<Value> {
    let r = env
        .admin("GET", &format!("/api/clusters/{}/sessions", env.cluster))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    match r.json() {
        Value::Array(a) => a,
        other => panic!("not an array: {other}"),
    }
}

fn by_addr(list: &[Value], addr: SocketAddr) -> &Value {
    list.iter()
        .find(|s| s["client_addr"] == addr.to_string().as_str())
        .unwrap_or_else(|| panic!("no session from {addr} in {list:?}"))
}

/// An RFC 3339 UTC timestamp with milliseconds, as the API writes them.
fn time(v: &Value) -> SystemTime {
    let text = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    assert!(
        text.len() == 24 && text.ends_with('Z') && &text[10..11] == "T",
        "{text}"
    );
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `t` is no earlier than `reference`, allowing for the API's millisecond truncation.
fn not_before(t: SystemTime, reference: SystemTime) -> bool {
    t + Duration::from_millis(1) >= reference
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_show_who_blocks_and_who_is_parked() {
    let env = TestEnv::default().await;
    let mut config = client_config(env.listen, USER, PASSWORD);
    config.application_name("e2e-first");
    let (a, a_addr) = connect_from(env.listen, &config).await.unwrap();
    // Another user, in a database not named after it.
    let mut config = client_config(env.listen, OTHER_USER, OTHER_PASSWORD);
    config.dbname(USER);
    let (b, b_addr) = connect_from(env.listen, &config).await.unwrap();
    assert_eq!(b.text("SELECT current_database()").await, USER);

    let list = sessions(&env).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let sa = by_addr(&list, a_addr);
    assert_eq!(sa["user"], USER, "{sa}");
    assert_eq!(sa["database"], USER, "{sa}");
    assert_eq!(sa["application_name"], "e2e-first", "{sa}");
    assert_eq!(sa["state"], "attached", "{sa}");
    assert!(sa["blocker"].is_null(), "{sa}");
    let zero = serde_json::json!({"settings": 0, "statements": 0, "temp_tables": 0,
        "temp_rows": 0, "channels": 0, "locks": 0});
    assert_eq!(sa["holds"], zero, "no snapshot yet: {sa}");
    let sb = by_addr(&list, b_addr);
    assert_eq!(sb["user"], OTHER_USER, "{sb}");
    assert_eq!(sb["database"], USER, "{sb}");
    assert_eq!(sb["application_name"], "", "{sb}");
    assert_eq!(sb["state"], "attached", "{sb}");
    assert_ne!(sa["id"], sb["id"]);
    let a_id = sa["id"].as_u64().expect("numeric id");

    // What the client is told later counts too, and sending it is activity.
    let before_set = SystemTime::now();
    a.exec("SET application_name = 'e2e-txn'").await;
    a.exec(
        "CREATE TEMP TABLE t AS SELECT generate_series(1, 40) AS x; \
         PREPARE p AS SELECT 1; LISTEN ch; SELECT pg_advisory_lock(7)",
    )
    .await;
    a.exec("BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    let list = sessions(&env).await;
    let sa = by_addr(&list, a_addr);
    assert_eq!(sa["application_name"], "e2e-txn", "{sa}");
    assert!(
        not_before(time(&sa["last_activity"]), before_set),
        "last_activity {} is before {:?}",
        sa["last_activity"],
        humantime::format_rfc3339_millis(before_set)
    );
    assert!(time(&sa["since"]) <= time(&sa["last_activity"]), "{sa}");
    let sb = by_addr(&list, b_addr);
    assert!(
        time(&sb["last_activity"]) < before_set,
        "b sent nothing: {sb}"
    );

    let expected = format!(
        r#"session {a_id} ({USER}@{a_addr}, application_name "e2e-txn"): open transaction"#
    );
    // The catalog is read after the server starts; a SET while asleep needs it (below).
    env.wait_for_catalog().await;
    let (status, body) = env.sleep().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["blockers"], serde_json::json!([expected]), "{body}");
    assert_eq!(
        env.cluster_status().await["blockers"],
        serde_json::json!([expected])
    );
    let list = sessions(&env).await;
    assert_eq!(by_addr(&list, a_addr)["blocker"], expected.as_str());
    assert!(by_addr(&list, b_addr)["blocker"].is_null());
    let metrics = env.metrics().await;
    let series = format!(
        "torpor_drain_blocker_info{{cluster=\"{}\",blocker=\"{}\"}} 1",
        env.cluster,
        expected.replace('"', "\\\"")
    );
    assert!(metrics.contains(&series), "{series} not in\n{metrics}");

    a.exec("COMMIT").await;
    let before_sleep = SystemTime::now();
    env.sleep_ok().await;
    let list = sessions(&env).await;
    assert_eq!(list.len(), 2, "{list:?}");
    for s in &list {
        assert_eq!(s["state"], "parked", "{s}");
        assert!(s["blocker"].is_null(), "{s}");
        assert!(not_before(time(&s["since"]), before_sleep), "{s}");
    }
    let holds = &by_addr(&list, a_addr)["holds"];
    assert_eq!(holds["temp_tables"], 1, "{holds}");
    assert_eq!(holds["temp_rows"], 40, "{holds}");
    assert_eq!(holds["statements"], 1, "{holds}");
    assert_eq!(holds["channels"], 1, "{holds}");
    assert_eq!(holds["locks"], 1, "{holds}");
    // application_name, set with SET, is a session setting.
    assert!(holds["settings"].as_u64() >= Some(1), "{holds}");
    assert_eq!(by_addr(&list, b_addr)["holds"], zero);

    // Once torpor knows the server's settings it answers a SET itself while the database
    // sleeps; the new name shows all the same.
    b.exec("SET application_name = 'set-while-parked'").await;
    let sb = by_addr(&sessions(&env).await, b_addr).clone();
    assert_eq!(sb["application_name"], "set-while-parked", "{sb}");
    assert_eq!(sb["state"], "parked", "{sb}");

    // Waking restores what the counts said.
    assert_eq!(a.text("SELECT count(*) FROM t").await, "40");
    assert_eq!(by_addr(&sessions(&env).await, a_addr)["state"], "attached");

    let r = env.admin("GET", "/api/clusters/nope/sessions").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("nope"))
    );

    drop(b);
    let start = std::time::Instant::now();
    while sessions(&env).await.len() != 1 {
        assert!(start.elapsed() < Duration::from_secs(10), "b never left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.shutdown_after(a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sessions_take_the_application_from_program_name() {
    let env = TestEnv::start(Opts::mysql()).await;
    let named = opts(env.listen, USER, PASSWORD, Some(&env.cluster))
        .connect_attribute("program_name", "my-e2e");
    let mut c = tokio::time::timeout(Duration::from_secs(90), mysql_async::Conn::new(named))
        .await
        .expect("connect timed out")
        .unwrap();
    let plain = opts(env.listen, USER, PASSWORD, None);
    let other = tokio::time::timeout(Duration::from_secs(90), mysql_async::Conn::new(plain))
        .await
        .expect("connect timed out")
        .unwrap();

    let list = sessions(&env).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let sc = list
        .iter()
        .find(|s| s["application_name"] == "my-e2e")
        .unwrap_or_else(|| panic!("no session named my-e2e in {list:?}"));
    let so = list
        .iter()
        .find(|s| s["id"] != sc["id"])
        .expect("the other session");
    assert_eq!(sc["user"], USER, "{sc}");
    assert_eq!(sc["database"], env.cluster.as_str(), "{sc}");
    assert_eq!(sc["state"], "attached", "{sc}");
    assert_eq!(so["application_name"], "", "{so}");
    assert!(so["database"].is_null(), "{so}");
    let addr = |s: &Value| -> SocketAddr {
        s["client_addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("client_addr: {s}"))
    };
    let (ca, oa) = (addr(sc), addr(so));
    assert!(ca.ip().is_loopback() && oa.ip().is_loopback(), "{ca} {oa}");
    assert_ne!(ca.port(), oa.port());
    assert_ne!(ca.port(), env.listen.port());

    exec(
        &mut c,
        "CREATE TEMPORARY TABLE tt (x INT); INSERT INTO tt VALUES (1), (2), (3); \
         SET @v = 1; SELECT GET_LOCK('e2e', 10)",
    )
    .await;
    exec(&mut c, "CREATE TABLE IF NOT EXISTS w (x INT) ENGINE=InnoDB").await;
    exec(&mut c, "BEGIN").await;
    exec(&mut c, "INSERT INTO w VALUES (1)").await;
    let id = sc["id"].as_u64().expect("numeric id");
    let expected =
        format!(r#"session {id} ({USER}@{ca}, application_name "my-e2e"): open transaction"#);
    let (status, body) = env.sleep().await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["blockers"], serde_json::json!([expected]), "{body}");

    exec(&mut c, "COMMIT").await;
    env.sleep_ok().await;
    let list = sessions(&env).await;
    for s in &list {
        assert_eq!(s["state"], "parked", "{s}");
    }
    let sc = list
        .iter()
        .find(|s| s["id"] == id)
        .expect("the named session");
    let holds = &sc["holds"];
    assert_eq!(holds["temp_tables"], 1, "{holds}");
    assert_eq!(holds["temp_rows"], 3, "{holds}");
    assert_eq!(holds["locks"], 1, "{holds}");
    assert_eq!(holds["channels"], 0, "{holds}");
    assert!(holds["settings"].as_u64() >= Some(1), "@v: {holds}");

    // COM_CHANGE_USER starts a new session as someone else: nothing of the old one is held.
    c.change_user(
        ChangeUserOpts::default()
            .with_user(Some(OTHER_USER.into()))
            .with_pass(Some(OTHER_PASSWORD.into()))
            .with_db_name(Some(env.cluster.clone())),
    )
    .await
    .unwrap();
    let list = sessions(&env).await;
    let sc = list
        .iter()
        .find(|s| s["id"] == id)
        .expect("the named session");
    assert_eq!(sc["user"], OTHER_USER, "{sc}");
    assert_eq!(sc["database"], env.cluster.as_str(), "{sc}");
    assert_eq!(sc["state"], "attached", "{sc}");
    assert_eq!(sc["client_addr"], ca.to_string().as_str(), "{sc}");
    assert_eq!(sc["holds"]["temp_tables"], 0, "{sc}");

    env.shutdown_after((c, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_sessions() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::default()).await;
    let mut proc = binary::up(&cfg.config_path).await;
    let mut config = client_config(cfg.listen, USER, PASSWORD);
    config.application_name("status-e2e");
    let (s, local) = connect_from(cfg.listen, &config).await.unwrap();
    s.exec("BEGIN ISOLATION LEVEL REPEATABLE READ").await;

    let status = |args: Vec<String>| async move {
        let out = tokio::process::Command::new(torpor_bin())
            .arg("status")
            .args(args)
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let admin = cfg.admin.to_string();
    for args in [
        vec!["--admin".to_string(), admin.clone(), "--sessions".into()],
        vec![
            "--admin".into(),
            admin.clone(),
            "--sessions".into(),
            "--cluster".into(),
            cfg.cluster.clone(),
        ],
    ] {
        let (ok, text, err) = status(args.clone()).await;
        assert!(ok, "{args:?}: {text} {err}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: {text}");
        assert!(lines[0].starts_with("CLUSTER"), "{text}");
        let words: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(words[0], cfg.cluster, "{text}");
        let local = local.to_string();
        assert_eq!(
            &words[2..7],
            &[USER, USER, local.as_str(), "status-e2e", "attached"],
            "{text}"
        );
        assert!(lines[1].ends_with("open transaction"), "{text}");
    }

    let (ok, _, err) = status(vec![
        "--admin".into(),
        admin.clone(),
        "--sessions".into(),
        "--cluster".into(),
        "nope".into(),
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("404") && err.contains("nope"), "{err}");
    // --cluster only means something with --sessions.
    let (ok, _, err) = status(vec![
        "--admin".into(),
        admin,
        "--cluster".into(),
        cfg.cluster.clone(),
    ])
    .await;
    assert!(!ok, "{err}");

    s.exec("COMMIT").await;
    drop(s);
    proc.signal(libc::SIGTERM);
    assert!(proc.wait().await.success());
}
