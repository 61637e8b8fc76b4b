//! TLS from torpor to the database server (`[cluster.backend] tls`): the server is given a
//! certificate from the test's CA; `verify-full` checks it against that CA and the server's
//! address, `require` encrypts without checking. The server itself reports the connection as
//! TLS, before and after a forced stop.

use torpor_tests::harness::{Opts, Protocol, TestConfig, TestEnv};
use torpor_tests::mywire::MyRaw;
use torpor_tests::tls::TestCa;

/// The server runs as its own OS user when the tests run as root: it must own its key, and
/// postgres wants nobody else to read it.
fn give_to(user: &str, paths: &[&std::path::Path]) {
    use std::os::unix::fs::PermissionsExt;
    for p in paths {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let status = std::process::Command::new("chown")
        .arg(format!("{user}:"))
        .args(paths)
        .status()
        .expect("run chown");
    assert!(status.success());
}

/// A cluster whose server shows a certificate from CA `server`; torpor verifies it against
/// CA `trusted` (`verify-full`), or checks nothing (`require`).
async fn env(opts: Opts, mode: &str, trust_other_ca: bool) -> (TestConfig, TestCa) {
    let mut cfg = TestConfig::new(&opts).await;
    let server = TestCa::new(cfg.dir.path(), "server");
    let other = TestCa::new(cfg.dir.path(), "other");
    let (user, old, new) = match opts.protocol {
        Protocol::Postgres => (
            "postgres",
            r#"settings = { fsync = "off" }"#,
            format!(
                r#"settings = {{ fsync = "off", ssl = "on", ssl_cert_file = "{}", ssl_key_file = "{}" }}"#,
                server.cert.display(),
                server.key.display()
            ),
        ),
        Protocol::Mysql => (
            "mysql",
            r#"settings = { innodb_flush_log_at_trx_commit = "0" }"#,
            format!(
                r#"settings = {{ innodb_flush_log_at_trx_commit = "0", ssl_cert = "{}", ssl_key = "{}" }}"#,
                server.cert.display(),
                server.key.display()
            ),
        ),
    };
    give_to(user, &[&server.cert, &server.key]);
    let ca = if trust_other_ca {
        &other.ca
    } else {
        &server.ca
    };
    assert!(cfg.toml.contains(old));
    cfg.toml = cfg.toml.replace(
        old,
        &format!("{new}\ntls = \"{mode}\"\nca = \"{}\"", ca.display()),
    );
    std::fs::write(&cfg.config_path, &cfg.toml).unwrap();
    (cfg, server)
}

const PG_SSL: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_full_carries_sessions_over_tls() {
    let (cfg, _ca) = env(Opts::default(), "verify-full", false).await;
    let env = TestEnv::start_config(cfg).await;
    let c = env.connect().await;
    assert_eq!(c.value(PG_SSL).await.as_deref(), Some("t"));
    c.exec("CREATE TEMP TABLE t AS SELECT 7 AS x").await;
    env.sleep_ok().await;
    assert_eq!(c.value("SELECT x FROM t").await.as_deref(), Some("7"));
    assert_eq!(c.value(PG_SSL).await.as_deref(), Some("t"));
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_require_checks_no_certificate_and_verify_full_refuses_a_stranger() {
    let (cfg, _ca) = env(Opts::default(), "require", true).await;
    let env = TestEnv::start_config(cfg).await;
    let c = env.connect().await;
    assert_eq!(c.value(PG_SSL).await.as_deref(), Some("t"));
    env.shutdown_after(c).await;

    let (cfg, _ca) = env_refusing().await;
    let env = TestEnv::start_config(cfg).await;
    let e = env
        .try_connect(torpor_tests::harness::USER, torpor_tests::harness::PASSWORD)
        .await
        .err()
        .expect("a certificate from another CA is refused");
    let message = e.as_db_error().map(|d| d.message().to_string());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("TLS")),
        "{e:?}"
    );
    env.shutdown().await;
}

async fn env_refusing() -> (TestConfig, TestCa) {
    env(Opts::default(), "verify-full", true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_verify_full_carries_sessions_over_tls() {
    let (cfg, _ca) = env(Opts::mysql(), "verify-full", false).await;
    let env = TestEnv::start_config(cfg).await;
    let mut raw: MyRaw = env.my_raw().await;
    let cipher = raw.value("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version'").await;
    assert!(
        cipher.as_deref().is_some_and(|v| v.starts_with("TLS")),
        "{cipher:?}"
    );
    assert!(
        raw.query("SET @kept = 'over tls'")
            .await
            .unwrap()
            .err()
            .is_none()
    );
    env.sleep_ok().await;
    assert_eq!(raw.value("SELECT @kept").await.as_deref(), Some("over tls"));
    let cipher = raw.value("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_version'").await;
    assert!(
        cipher.as_deref().is_some_and(|v| v.starts_with("TLS")),
        "{cipher:?}"
    );
    env.shutdown().await;
}
