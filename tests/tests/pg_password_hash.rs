//! A PostgreSQL cluster whose config holds only `password_hash` values: clients log in against
//! the stored verifiers, torpor logs in to the server with the key each client's proof
//! reveals, sessions keep their state across a stop, and the password shows nowhere: not in
//! the config, the store, the log or the admin API. The process driver sets the verifier
//! again at every start, so a new hash of the same password works on an existing data dir.

use torpor::config::Protocol;
use torpor::hash_password::hash;
use torpor_tests::binary::{self, Proc};
use torpor_tests::harness::{
    OTHER_PASSWORD, OTHER_USER, Opts, PASSWORD, TestConfig, USER, assert_pid_gone, connect_to,
    init_tracing,
};
use torpor_tests::http;
use torpor_tests::secrets::assert_nowhere;

/// The config with each user's password replaced by a fresh hash of it.
fn hashed(cfg: &TestConfig) -> String {
    let mut toml = cfg.toml.clone();
    for pw in [PASSWORD, OTHER_PASSWORD] {
        let line = format!("password = \"{pw}\"");
        assert!(toml.contains(&line), "{toml}");
        let h = hash(Protocol::Postgres, pw).unwrap();
        toml = toml.replace(&line, &format!("password_hash = \"{h}\""));
    }
    toml
}

async fn up(cfg: &TestConfig) -> Proc {
    std::fs::write(&cfg.config_path, hashed(cfg)).unwrap();
    binary::up_logging(&cfg.config_path, "debug").await
}

async fn get(cfg: &TestConfig, path: &str) -> String {
    let r = http::request(cfg.admin, "GET", path).await.unwrap();
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.body
}

/// Forces a sleep and proves the server gone.
async fn sleep(cfg: &TestConfig) {
    let pid = serde_json::from_str::<serde_json::Value>(&get(cfg, "/api/clusters").await).unwrap()
        [0]["backend_pid"]
        .as_u64()
        .expect("running") as u32;
    let path = format!("/api/clusters/{}/sleep", cfg.cluster);
    let r = http::request(cfg.admin, "POST", &path).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_pid_gone(pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_state_with_only_password_hashes_and_no_password_shows() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::default()).await;
    let mut proc = up(&cfg).await;
    let c = connect_to(cfg.listen, USER, PASSWORD)
        .await
        .expect("log in");
    c.exec("CREATE TEMP TABLE t AS SELECT g AS x FROM generate_series(1, 100) g; SET application_name = 'hashed'")
        .await;
    let stmt = c.prepare("SELECT sum(x) + $1 FROM t").await.unwrap();
    let other = connect_to(cfg.listen, OTHER_USER, OTHER_PASSWORD)
        .await
        .expect("the other user logs in");
    other.exec("SET search_path = pg_catalog").await;
    assert!(
        connect_to(cfg.listen, USER, "wrong").await.is_err(),
        "a wrong password"
    );
    sleep(&cfg).await;
    let row = c
        .query_one(&stmt, &[&1i64])
        .await
        .expect("the statement after a wake");
    assert_eq!(row.get::<_, i64>(0), 5051);
    assert_eq!(
        c.value("SHOW application_name").await.as_deref(),
        Some("hashed")
    );
    assert_eq!(
        other.value("SHOW search_path").await.as_deref(),
        Some("pg_catalog")
    );
    // Sleep once more with snapshots of both in the store, then look for the passwords.
    sleep(&cfg).await;
    let log = proc.log.lock().unwrap().clone();
    assert_nowhere(&cfg, &log, &[PASSWORD, OTHER_PASSWORD]).await;
    assert_eq!(
        c.value("SELECT count(*) FROM t").await.as_deref(),
        Some("100")
    );
    drop((c, other));
    proc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_hash_of_the_password_works_on_an_existing_data_dir() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::default()).await;
    let mut first = up(&cfg).await;
    let c = connect_to(cfg.listen, USER, PASSWORD)
        .await
        .expect("first start");
    assert_eq!(c.value("SELECT 1").await.as_deref(), Some("1"));
    drop(c);
    first.stop().await;
    // Another salt: without setting the verifier again the server would hold the old one,
    // and the key from the client's proof would not open it.
    let mut second = up(&cfg).await;
    let c = connect_to(cfg.listen, USER, PASSWORD)
        .await
        .expect("second start, new hash");
    assert_eq!(c.value("SELECT 2").await.as_deref(), Some("2"));
    drop(c);
    second.stop().await;
}
