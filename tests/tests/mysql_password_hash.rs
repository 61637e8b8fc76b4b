//! A MySQL cluster whose config holds only `password_hash` values (`*<native>:<caching_sha2>`):
//! logins are checked against the hashes; torpor logs in to MariaDB with SHA1(password), which a
//! mysql_native_password answer reveals. A caching_sha2_password client is asked for its
//! password in full over TLS, and switched to mysql_native_password without TLS. Sessions keep
//! their state across proven stops, and the passwords show nowhere.

use torpor::config::Protocol;
use torpor::hash_password::hash;
use torpor_tests::binary::{self, Proc};
use torpor_tests::clients::{client_file, my_env, run_to_end};
use torpor_tests::harness::{OTHER_PASSWORD, Opts, PASSWORD, TestConfig, init_tracing};
use torpor_tests::mywire::MyRaw;
use torpor_tests::python;
use torpor_tests::secrets::assert_nowhere;
use torpor_tests::tls::TestCa;

/// A hash-only MySQL cluster with a certificate (TLS offered, not required), run by the binary.
async fn up() -> (TestConfig, TestCa, Proc) {
    init_tracing();
    let mut cfg = TestConfig::new(&Opts::mysql()).await;
    let ca = TestCa::new(cfg.dir.path(), "a");
    for pw in [PASSWORD, OTHER_PASSWORD] {
        let line = format!("password = \"{pw}\"");
        assert!(cfg.toml.contains(&line));
        let h = hash(Protocol::Mysql, pw).unwrap();
        cfg.toml = cfg.toml.replace(&line, &format!("password_hash = \"{h}\""));
    }
    cfg.toml.push_str(&ca.toml("tls"));
    std::fs::write(&cfg.config_path, &cfg.toml).unwrap();
    let proc = binary::up_logging(&cfg.config_path, "debug").await;
    (cfg, ca, proc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_both_plugins_keep_state_with_only_password_hashes() {
    let python = python::python(python::my_clients).await;
    let (cfg, ca, mut proc) = up().await;
    // A raw native login, then the Python clients: PyMySQL (native) and Connector/Python
    // (caching_sha2) in plaintext, then both over TLS.
    let mut raw = MyRaw::login(
        cfg.listen,
        torpor_tests::harness::USER,
        PASSWORD,
        Some(&cfg.cluster),
    )
    .await
    .expect("native login");
    assert_eq!(raw.value("SELECT 1").await.as_deref(), Some("1"));
    for (script, host, done) in [
        ("my_clients.py", "127.0.0.1", "python mysql clients ok"),
        ("my_tls.py", "localhost", "python mysql tls clients ok"),
    ] {
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg(client_file(script));
        my_env(&mut cmd, cfg.listen)
            .env("TORPOR_HOST", host)
            .env("TORPOR_DB", &cfg.cluster)
            .env("TORPOR_CA", &ca.ca)
            .env("TORPOR_ADMIN", format!("http://{}", cfg.admin))
            .env("TORPOR_CLUSTER", &cfg.cluster);
        run_to_end(&mut cmd, done).await;
    }
    // A snapshot in the store to look into.
    assert!(raw.query("SET @kept = 1").await.unwrap().err().is_none());
    let path = format!("/api/clusters/{}/sleep", cfg.cluster);
    let r = torpor_tests::http::request(cfg.admin, "POST", &path)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let log = proc.log.lock().unwrap().clone();
    assert_nowhere(&cfg, &log, &[PASSWORD, OTHER_PASSWORD]).await;
    assert_eq!(raw.value("SELECT 2").await.as_deref(), Some("2"));
    drop(raw);
    proc.stop().await;
}

/// An existing data dir follows the config: a user whose password changed to a hash of another
/// one logs in with the new one after a restart (the driver sets the hash at every start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_follows_a_changed_password_hash() {
    init_tracing();
    let cfg = TestConfig::new(&Opts::mysql()).await;
    std::fs::write(&cfg.config_path, &cfg.toml).unwrap();
    let user = torpor_tests::harness::USER;
    let mut first = binary::up(&cfg.config_path).await;
    let mut raw = MyRaw::login(cfg.listen, user, PASSWORD, Some(&cfg.cluster))
        .await
        .expect("first start");
    assert_eq!(raw.value("SELECT 1").await.as_deref(), Some("1"));
    drop(raw);
    first.stop().await;
    let changed = cfg.toml.replace(
        &format!("password = \"{PASSWORD}\""),
        &format!(
            "password_hash = \"{}\"",
            hash(Protocol::Mysql, "a-new-secret").unwrap()
        ),
    );
    std::fs::write(&cfg.config_path, changed).unwrap();
    let mut second = binary::up(&cfg.config_path).await;
    let mut raw = MyRaw::login(cfg.listen, user, "a-new-secret", Some(&cfg.cluster))
        .await
        .expect("the new password");
    assert_eq!(raw.value("SELECT 2").await.as_deref(), Some("2"));
    drop(raw);
    second.stop().await;
}
