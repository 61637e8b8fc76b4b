//! Port mapping (issue 12, item 5): PostgreSQL clusters sharing one address, each client
//! choosing its cluster by TLS server name (SNI) or `options=-c torpor.cluster=<name>`; a
//! cluster on several addresses; `[proxy] max_clusters`. Real postgres servers behind one
//! torpor; each session is checked to be on its own cluster's server by the port it reports.

use torpor_tests::binary;
use torpor_tests::clients::cli_stdout;
use torpor_tests::clusters::{self, Added};
use torpor_tests::harness::{
    Opts, PASSWORD, Pg, TestConfig, TestEnv, USER, client_config, connect_from, connect_to,
    describe,
};
use torpor_tests::tls::{TestCa, connect_tls_as};

const NAME_A: &str = "a.db.test";
const NAME_B: &str = "b.db.test";

/// The harness's cluster `pg` (server name a.db.test) and cluster `b` (b.db.test, with
/// `b_settings`) on the same address, behind a certificate covering both names and 127.0.0.1.
async fn shared(b_settings: &str) -> (TestEnv, Added, TestCa) {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    let ca = TestCa::for_names(cfg.dir.path(), "shared", &[NAME_A, NAME_B, "127.0.0.1"]);
    let b = pair(&mut cfg, "", b_settings, &ca.toml("tls"));
    (TestEnv::start_config(cfg).await, b, ca)
}

/// Gives the harness's cluster `pg` the server name a.db.test and `a_toml` after its tables,
/// and adds cluster `b` on the same address with b.db.test, `b_settings` and `b_toml`.
fn pair(cfg: &mut TestConfig, a_toml: &str, b_settings: &str, b_toml: &str) -> Added {
    cfg.toml = cfg.toml.replacen(
        "idle_timeout",
        &format!("server_names = [\"{NAME_A}\"]\nidle_timeout"),
        1,
    );
    cfg.toml.push_str(a_toml);
    let listen = format!("\"{}\"", cfg.listen);
    let b = clusters::add(
        cfg,
        "b",
        &listen,
        &format!("server_names = [\"{NAME_B}\"]\n{b_settings}"),
    );
    cfg.toml.push_str(b_toml);
    b
}

/// The port of the server a session is on.
async fn port(c: &Pg) -> u16 {
    c.text("SELECT current_setting('port')")
        .await
        .parse()
        .expect("a port number")
}

/// Connects over TLS sending `server_name` as SNI, with channel binding, as `options` says.
async fn tls_as(
    env: &TestEnv,
    ca: &TestCa,
    server_name: &str,
    options: Option<&str>,
) -> Result<Pg, tokio_postgres::Error> {
    let mut config = client_config(env.listen, USER, PASSWORD);
    config.channel_binding(tokio_postgres::config::ChannelBinding::Require);
    if let Some(o) = options {
        config.options(o);
    }
    connect_tls_as(env.listen, ca, server_name, config).await
}

/// A session on each cluster, chosen by SNI (trusting `cas` for a and b), each checked to
/// be on its own cluster's server.
async fn by_server_name(env: &TestEnv, cas: (&TestCa, &TestCa), b: &Added) -> (Pg, Pg) {
    let on_a = tls_as(env, cas.0, NAME_A, None)
        .await
        .expect("SNI a.db.test");
    let on_b = tls_as(env, cas.1, NAME_B, None)
        .await
        .expect("SNI b.db.test");
    assert_eq!(port(&on_a).await, env.backend_port);
    assert_eq!(port(&on_b).await, b.backend_port);
    (on_a, on_b)
}

/// Connects in plaintext with the startup parameter `options`.
async fn plain_with(env: &TestEnv, options: &str) -> Result<Pg, tokio_postgres::Error> {
    let mut config = client_config(env.listen, USER, PASSWORD);
    config.options(options);
    connect_from(env.listen, &config).await.map(|(c, _)| c)
}

/// The SQLSTATE and message of a refused connection.
fn refused(r: Result<Pg, tokio_postgres::Error>) -> (String, String) {
    let e = r.err().expect("the connection was refused");
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {}", describe(&e)));
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_port_chosen_by_server_name() {
    let (env, b, ca) = shared("").await;
    let (on_a, on_b) = by_server_name(&env, (&ca, &ca), &b).await;
    on_a.exec("CREATE TEMP TABLE t AS SELECT 'a' AS who; SET application_name = 'on-a'")
        .await;
    on_b.exec("CREATE TEMP TABLE t AS SELECT 'b' AS who; SET application_name = 'on-b'")
        .await;

    // b sleeps alone; its session comes back whole on its own server, a never noticed.
    let a_pid = env.backend_pid().await.expect("a runs");
    b.sleep_ok(&env).await;
    assert_eq!(env.cluster_status().await["state"], "running");
    assert_eq!(on_b.text("SELECT who FROM t").await, "b");
    assert_eq!(on_b.text("SHOW application_name").await, "on-b");
    assert_eq!(port(&on_b).await, b.backend_port);
    assert_eq!(env.backend_pid().await, Some(a_pid));

    env.sleep_ok().await;
    assert_eq!(on_a.text("SELECT who FROM t").await, "a");
    assert_eq!(on_a.text("SHOW application_name").await, "on-a");
    assert_eq!(port(&on_a).await, env.backend_port);
    env.shutdown_after((on_a, on_b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_on_one_port_chosen_by_the_startup_option() {
    let (env, b, ca) = shared("").await;
    // Plaintext, and other switches in the same options reach the server.
    let on_b = plain_with(&env, "-c torpor.cluster=b -c statement_timeout=7s")
        .await
        .expect("options naming b");
    let on_a = plain_with(&env, "--torpor.cluster=pg")
        .await
        .expect("options naming pg");
    // TLS without SNI (rustls sends none for an IP address) and the option.
    let tls_b = tls_as(&env, &ca, "127.0.0.1", Some("-c torpor.cluster=b"))
        .await
        .expect("TLS without SNI, options naming b");
    assert_eq!(port(&on_b).await, b.backend_port);
    assert_eq!(port(&tls_b).await, b.backend_port);
    assert_eq!(port(&on_a).await, env.backend_port);
    // The server never saw torpor's option, but did see the rest.
    let setting = "SELECT current_setting('torpor.cluster', true)";
    assert_eq!(on_b.value(setting).await, None);
    assert_eq!(on_b.text("SHOW statement_timeout").await, "7s");
    on_b.exec("CREATE TEMP TABLE t AS SELECT 42 AS x").await;

    // Through a sleep, the replayed startup parameters hold no option either.
    b.sleep_ok(&env).await;
    assert_eq!(on_b.text("SELECT x FROM t").await, "42");
    assert_eq!(on_b.text("SHOW statement_timeout").await, "7s");
    assert_eq!(on_b.value(setting).await, None);
    assert_eq!(port(&on_b).await, b.backend_port);
    assert_eq!(port(&tls_b).await, b.backend_port);
    env.shutdown_after((on_a, on_b, tls_b)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_names_no_cluster_or_two_is_refused() {
    let (env, _b, ca) = shared("max_client_connections = 1").await;
    // Plaintext without the option: nothing says which cluster.
    let (code, message) = refused(connect_to(env.listen, USER, PASSWORD).await);
    assert_eq!(code, "08004", "{message}");
    assert!(message.contains("torpor.cluster"), "{message}");
    assert!(message.contains("server name"), "{message}");
    // TLS without SNI and without the option: the same.
    let (code, message) = refused(tls_as(&env, &ca, "127.0.0.1", None).await);
    assert_eq!(code, "08004", "{message}");
    // The server name says a, the option b.
    let (code, message) = refused(tls_as(&env, &ca, NAME_A, Some("-c torpor.cluster=b")).await);
    assert_eq!(code, "08004", "{message}");
    assert!(
        message.contains(NAME_A) && message.contains("\"b\""),
        "{message}"
    );
    // A cluster that isn't there, and two different ones in one options.
    let (code, message) = refused(plain_with(&env, "-c torpor.cluster=nope").await);
    assert_eq!(code, "08004", "{message}");
    assert!(message.contains("\"nope\""), "{message}");
    let (code, message) =
        refused(plain_with(&env, "-c torpor.cluster=b -c torpor.cluster=pg").await);
    assert_eq!(code, "08004", "{message}");
    // Agreeing is fine.
    let c = tls_as(&env, &ca, NAME_B, Some("-c torpor.cluster=b"))
        .await
        .expect("SNI and option agree");
    assert_eq!(c.text("SELECT 1").await, "1");
    // b's own cap counts once b is chosen; pg, on the same address, has room.
    let (code, message) = refused(tls_as(&env, &ca, NAME_B, None).await);
    assert_eq!(code, "53300", "{message}");
    let a = tls_as(&env, &ca, NAME_A, None).await.expect("pg has room");
    assert_eq!(a.text("SELECT 1").await, "1");
    env.shutdown_after((c, a)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_listens_on_two_addresses() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    let second = std::net::SocketAddr::from((
        std::net::Ipv4Addr::LOCALHOST,
        torpor_tests::ports::free_port(),
    ));
    cfg.toml = cfg.toml.replacen(
        &format!("listen = \"{}\"", cfg.listen),
        &format!("listen = [\"{}\", \"{second}\"]", cfg.listen),
        1,
    );
    let env = TestEnv::start_config(cfg).await;
    let first = env.connect().await;
    let other = connect_to(second, USER, PASSWORD)
        .await
        .expect("the second address");
    first.exec("CREATE TEMP TABLE t AS SELECT 1 AS x").await;
    other.exec("CREATE TEMP TABLE t AS SELECT 2 AS x").await;
    // One server behind both: they are sessions of one cluster.
    assert_eq!(port(&first).await, env.backend_port);
    assert_eq!(port(&other).await, env.backend_port);
    env.sleep_ok().await;
    assert_eq!(first.text("SELECT x FROM t").await, "1");
    assert_eq!(other.text("SELECT x FROM t").await, "2");
    env.shutdown_after((first, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clusters_is_enforced_by_check_and_up() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    let other = format!("\"127.0.0.1:{}\"", torpor_tests::ports::free_port());
    let _b = clusters::add(&mut cfg, "b", &other, "");
    let path = cfg.dir.path().join("capped.toml");
    let write = |max: usize| {
        std::fs::write(
            &path,
            format!("{}\n[proxy]\nmax_clusters = {max}\n", cfg.toml),
        )
        .expect("write the config");
    };
    write(2);
    let (ok, text) = binary::run(&["check"], &path).await;
    assert!(ok, "two clusters under max_clusters = 2 refused: {text}");
    write(1);
    for command in ["check", "up"] {
        let (ok, text) = binary::run(&[command], &path).await;
        assert!(
            !ok,
            "{command}: two clusters over max_clusters = 1 accepted: {text}"
        );
        assert!(text.contains("proxy.max_clusters"), "{command}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_clusters_keep_an_address_each() {
    let mut cfg = TestConfig::new(&Opts::mysql()).await;
    let listen = format!("\"{}\"", cfg.listen);
    let _b = clusters::add(&mut cfg, "b", &listen, "");
    std::fs::write(&cfg.config_path, &cfg.toml).expect("write the config");
    let (ok, text) = binary::run(&["check"], &cfg.config_path).await;
    assert!(!ok, "a MySQL cluster sharing its address accepted: {text}");
    assert!(
        text.contains("MySQL cluster needs an address of its own"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cluster_shows_its_own_certificate_by_server_name() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    let ca_a = TestCa::for_names(cfg.dir.path(), "a", &[NAME_A]);
    let ca_b = TestCa::for_names(cfg.dir.path(), "b", &[NAME_B]);
    let (tls_a, tls_b) = (ca_a.toml("cluster.tls"), ca_b.toml("cluster.tls"));
    let b = pair(&mut cfg, &tls_a, "", &tls_b);
    let env = TestEnv::start_config(cfg).await;
    // Each name gets its cluster's certificate, and channel binding holds with it.
    let (on_a, on_b) = by_server_name(&env, (&ca_a, &ca_b), &b).await;
    // b's name never gets a's certificate.
    let e = tls_as(&env, &ca_a, NAME_B, None)
        .await
        .err()
        .expect("b's certificate is not from a's CA");
    assert!(
        e.as_db_error().is_none(),
        "refused by the server, not the TLS check: {e}"
    );
    env.shutdown_after((on_a, on_b)).await;
}

/// libpq (psql) sends the host name as SNI, and passes `options` through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_chooses_by_server_name_and_by_option() {
    let (env, b, ca) = shared("").await;
    let psql = |conninfo: String| async move {
        cli_stdout(
            tokio::process::Command::new("psql")
                .arg(&conninfo)
                .args(["-X", "-A", "-t", "-c", "SELECT current_setting('port')"])
                .env("PGPASSWORD", PASSWORD),
        )
        .await
    };
    let base = format!(
        "hostaddr=127.0.0.1 port={} user={USER} dbname={USER}",
        env.listen.port()
    );
    let tls = format!("sslmode=verify-full sslrootcert={}", ca.ca.display());
    for (name, want) in [(NAME_A, env.backend_port), (NAME_B, b.backend_port)] {
        let out = psql(format!("{base} host={name} {tls}")).await;
        assert_eq!(out.trim(), want.to_string(), "SNI {name}");
    }
    let out = psql(format!(
        "{base} host=127.0.0.1 sslmode=disable options='-c torpor.cluster=b'"
    ))
    .await;
    assert_eq!(out.trim(), b.backend_port.to_string(), "options");
    env.shutdown().await;
}

/// `torpor up` prints, for a cluster on a shared address, a URL that reaches that cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_prints_urls_that_name_the_cluster_on_a_shared_address() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    let b = pair(&mut cfg, "", "", "");
    std::fs::write(&cfg.config_path, &cfg.toml).expect("write the config");
    let mut torpor = binary::up(&cfg.config_path).await;
    for (name, want) in [("pg", cfg.backend_port), ("b", b.backend_port)] {
        let prefix = format!("torpor: cluster {name} ready at ");
        let url = torpor
            .banner
            .iter()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no URL for {name}: {:?}", torpor.banner));
        assert!(url.contains("torpor.cluster"), "{url}");
        let mut config: tokio_postgres::Config = url.parse().expect("a URL libpq takes");
        config.password(PASSWORD);
        let (c, _) = connect_from(cfg.listen, &config)
            .await
            .unwrap_or_else(|e| panic!("{url}: {}", describe(&e)));
        assert_eq!(port(&c).await, want, "{url}");
    }
    torpor.stop().await;
}
