//! `driver = "docker"` against a real dockerd of the tests' own (tests/src/docker.rs), with
//! images built here from the host's postgres and mariadbd, whose entrypoints behave like the
//! official images': the config is the one a user writes for `postgres:15` or `mariadb`.
//! Each state kind of the state tests crosses one stop, and once a freeze (`docker pause`),
//! each proven by the API (the container not running, or paused) before the query that wakes
//! it; the failure cases reach the waking client and the
//! session stays for its next query.

use std::time::Instant;

use mysql_async::prelude::Queryable;
use torpor_tests::docker::{self, Backend, Daemon};
use torpor_tests::harness::{OTHER_USER, Opts, SLOW, TestConfig, TestEnv};
use torpor_tests::mysql::{exec_each, text};

/// torpor on a docker backend of the test image.
async fn start(daemon: &Daemon, opts: Opts) -> (TestEnv, Backend) {
    let mut cfg = TestConfig::new(&opts).await;
    let backend = Backend::new(daemon, &cfg).await;
    backend.configure(daemon, &mut cfg);
    (TestEnv::start_config(cfg).await, backend)
}

/// What a state test carries its session across.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Across {
    /// A forced drain and `docker stop`.
    Stop,
    /// The frozen tier: `docker pause` after freeze_after, the session attached.
    Freeze,
}

impl Across {
    fn opts(self, opts: Opts) -> Opts {
        match self {
            Across::Stop => opts,
            Across::Freeze => opts.cluster_setting("freeze_after = \"300ms\""),
        }
    }

    /// Stops or freezes the backend, and sees through the API that it is.
    async fn pause(self, env: &TestEnv, daemon: &Daemon, backend: &Backend) {
        match self {
            Across::Stop => stop_and_see_stopped(env, daemon, backend).await,
            Across::Freeze => {
                env.wait_for(SLOW, "frozen", |c| c["state"] == "frozen")
                    .await;
                // torpor shows `frozen` from the moment the freeze is decided, a little before
                // `docker pause` has returned.
                let deadline = Instant::now() + SLOW;
                while daemon.status(&backend.container).await.as_deref() != Some("paused") {
                    assert!(
                        Instant::now() < deadline,
                        "torpor says frozen, docker does not"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                assert_eq!(env.metric("torpor_thaws_total").await, 0.0);
            }
        }
    }

    /// After the first query: a freeze was undone by a thaw of the same container.
    async fn check(self, env: &TestEnv) {
        if self == Across::Freeze {
            assert!(env.metric("torpor_thaws_total").await >= 1.0);
            assert_eq!(
                env.metric("torpor_wakes_total").await,
                1.0,
                "thawed, not started"
            );
        }
    }
}

/// Forces a stop, and sees through the API that the container is stopped, not removed.
async fn stop_and_see_stopped(env: &TestEnv, daemon: &Daemon, backend: &Backend) {
    let started = Instant::now();
    let (status, body) = env.sleep().await;
    assert_eq!(status, 200, "{body}");
    eprintln!("drain and docker stop: {:?}", started.elapsed());
    assert_eq!(
        daemon.running(&backend.container).await,
        Some(false),
        "the container is kept, stopped"
    );
    assert_eq!(env.cluster_status().await["state"], "standby");
}

async fn container_id(daemon: &Daemon, name: &str) -> String {
    let c = daemon.api().await.inspect_container(name, None).await;
    c.unwrap().id.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_in_a_container_keeps_every_state_kind_across_a_stop() {
    postgres_state(Across::Stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_in_a_container_keeps_every_state_kind_across_a_freeze() {
    postgres_state(Across::Freeze).await;
}

async fn postgres_state(across: Across) {
    let daemon = docker::daemon().await;
    let (env, backend) = start(&daemon, across.opts(Opts::default())).await;
    let t = Instant::now();
    let mut s = env.connect().await;
    eprintln!(
        "first connect (container created, initdb): {:?}",
        t.elapsed()
    );
    let id = container_id(&daemon, &backend.container).await;
    s.exec(&format!(
        "CREATE ROLE {OTHER_USER};
         SET application_name = 'in-a-container'; SET TIME ZONE 'Asia/Kolkata';
         PREPARE by_sql(int) AS SELECT $1 * 2;
         CREATE TEMP TABLE kept AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g;
         GRANT SELECT ON kept TO {OTHER_USER};
         LISTEN jobs;
         SELECT pg_advisory_lock(42);"
    ))
    .await;
    let by_protocol = s.prepare("SELECT $1::int + 1").await.unwrap();
    let rows = "SELECT count(*) || ':' || md5(string_agg(v, '' ORDER BY id)) FROM kept";
    let before = s.text(rows).await;
    s.exec(&format!("SET ROLE {OTHER_USER}")).await;

    across.pause(&env, &daemon, &backend).await;

    let t = Instant::now();
    assert_eq!(
        s.text("SHOW application_name").await,
        "in-a-container",
        "settings"
    );
    eprintln!("{across:?}: wake to first answer: {:?}", t.elapsed());
    across.check(&env).await;
    assert_eq!(s.text("SHOW TimeZone").await, "Asia/Kolkata");
    assert_eq!(s.text("EXECUTE by_sql(21)").await, "42", "SQL PREPARE");
    let row = s.query_one(&by_protocol, &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42, "a protocol-level statement");
    assert_eq!(s.text("SELECT current_user").await, OTHER_USER, "role");
    // The role may not read the table its session made (grants on temp tables are not
    // carried over); the session's own user can.
    s.exec("RESET ROLE").await;
    assert_eq!(s.text(rows).await, before, "temp table rows");
    let other = env.connect().await;
    assert_eq!(
        other.text("SELECT pg_try_advisory_lock(42)::text").await,
        "false",
        "the advisory lock is still the session's"
    );
    other.exec("NOTIFY jobs, 'after the stop'").await;
    let n = tokio::time::timeout(SLOW, s.notifications.recv())
        .await
        .expect("a notification")
        .expect("connection open");
    assert_eq!((n.channel(), n.payload()), ("jobs", "after the stop"));
    assert_eq!(
        container_id(&daemon, &backend.container).await,
        id,
        "a wake starts the same container"
    );
    assert_eq!(daemon.running(&backend.container).await, Some(true));
    env.shutdown_after((s, other)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_in_a_container_keeps_every_state_kind_across_a_stop() {
    mariadb_state(Across::Stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_in_a_container_keeps_every_state_kind_across_a_freeze() {
    mariadb_state(Across::Freeze).await;
}

async fn mariadb_state(across: Across) {
    let daemon = docker::daemon().await;
    let (env, backend) = start(&daemon, across.opts(Opts::mysql())).await;
    let t = Instant::now();
    let mut c = env.my().await;
    eprintln!(
        "first connect (container created, install-db): {:?}",
        t.elapsed()
    );
    exec_each(
        &mut c,
        &[
            "CREATE TABLE counter (id INT AUTO_INCREMENT PRIMARY KEY, v INT)",
            "INSERT INTO counter (v) VALUES (1), (2), (3)",
            "SET @kept = 'user variable', @n = 42",
            "SET time_zone = '+05:30', sql_mode = 'PIPES_AS_CONCAT'",
            "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
            "CREATE TEMPORARY TABLE tmp (id INT PRIMARY KEY, v VARCHAR(40))",
            "INSERT INTO tmp VALUES (1, 'one'), (2, 'two')",
            "PREPARE by_sql FROM 'SELECT ? * 2'",
            "SELECT GET_LOCK('named', 0)",
            "USE information_schema",
        ],
    )
    .await;
    let by_protocol = c.prep("SELECT ? + 1").await.unwrap();
    let last_id = text(&mut c, "SELECT LAST_INSERT_ID()").await;

    across.pause(&env, &daemon, &backend).await;

    let t = Instant::now();
    assert_eq!(
        text(&mut c, "SELECT CONCAT(@kept, ' ', @n)").await,
        "user variable 42"
    );
    eprintln!("{across:?}: wake to first answer: {:?}", t.elapsed());
    across.check(&env).await;
    assert_eq!(
        text(
            &mut c,
            "SELECT CONCAT(@@time_zone, ' ', @@sql_mode, ' ', @@collation_connection)"
        )
        .await,
        "+05:30 PIPES_AS_CONCAT utf8mb4_bin"
    );
    assert_eq!(
        text(&mut c, "SELECT DATABASE()").await,
        "information_schema"
    );
    assert_eq!(
        text(
            &mut c,
            &format!(
                "SELECT GROUP_CONCAT(v ORDER BY id) FROM {}.tmp",
                env.cluster
            )
        )
        .await,
        "one,two"
    );
    exec_each(&mut c, &["SET @x = 21"]).await;
    assert_eq!(text(&mut c, "EXECUTE by_sql USING @x").await, "42");
    let n: Option<i64> = c.exec_first(&by_protocol, (41,)).await.unwrap();
    assert_eq!(n, Some(42), "a binary statement");
    assert_eq!(text(&mut c, "SELECT LAST_INSERT_ID()").await, last_id);
    assert_eq!(
        text(&mut c, "SELECT IS_USED_LOCK('named') = @@pseudo_thread_id").await,
        "1"
    );
    let mut other = env.my().await;
    assert_eq!(text(&mut other, "SELECT GET_LOCK('named', 0)").await, "0");
    assert_eq!(daemon.running(&backend.container).await, Some(true));
    env.shutdown_after((c, other)).await;
}

/// The query's error message, from the server or torpor.
async fn query_error(s: &torpor_tests::harness::Pg, sql: &str) -> String {
    let e = tokio::time::timeout(SLOW, s.simple_query(sql))
        .await
        .expect("an answer in time")
        .expect_err("the wake fails");
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_removed_behind_torpors_back_is_created_again_on_its_volume() {
    let daemon = docker::daemon().await;
    let (env, backend) = start(&daemon, Opts::default()).await;
    let s = env.connect().await;
    s.exec("CREATE TABLE on_the_volume AS SELECT 7 AS x; SET application_name = 'survivor'")
        .await;
    let first = container_id(&daemon, &backend.container).await;
    stop_and_see_stopped(&env, &daemon, &backend).await;
    daemon.cli(&["rm", &backend.container]).await;
    assert_eq!(daemon.running(&backend.container).await, None, "removed");

    assert_eq!(s.text("SHOW application_name").await, "survivor");
    assert_eq!(s.text("SELECT x FROM on_the_volume").await, "7");
    assert_ne!(container_id(&daemon, &backend.container).await, first);
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_reaches_the_client_and_the_session_waits_for_it() {
    let daemon = docker::daemon().await;
    // Long: the error must come at once, not when the wake gives up.
    let mut cfg = TestConfig::new(&Opts::default().proxy("wake_timeout = \"90s\"")).await;
    let mut backend = Backend::new(&daemon, &cfg).await;
    let built = backend.image.clone();
    // A tag of this test's own, removed and put back while other tests use the image.
    backend.image = format!("torpor-test/postgres:missing-{}", cfg.backend_port);
    daemon.cli(&["tag", &built, &backend.image]).await;
    backend.configure(&daemon, &mut cfg);
    let env = TestEnv::start_config(cfg).await;
    let s = env.connect().await;
    s.exec("SET application_name = 'waits for its image'").await;
    stop_and_see_stopped(&env, &daemon, &backend).await;
    daemon.cli(&["rm", &backend.container]).await;
    daemon.cli(&["rmi", &backend.image]).await;

    let asked = Instant::now();
    let msg = query_error(&s, "SHOW application_name").await;
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(45),
        "a missing image is not worth waiting for: {:?}",
        asked.elapsed()
    );
    assert!(
        msg.contains(&format!(
            "image {} is not on the Docker daemon",
            backend.image
        )),
        "{msg}"
    );
    assert!(msg.contains("the session is kept"), "{msg}");
    daemon.cli(&["tag", &built, &backend.image]).await;
    assert_eq!(
        s.text("SHOW application_name").await,
        "waits for its image",
        "the same session, woken once the image is there"
    );
    env.shutdown_after(s).await;
    // The tag only; the image is the one every test uses.
    daemon.cli(&["rmi", &backend.image]).await;
}

/// The frozen tier's driver side: `freeze` pauses the container, a query sent to the server
/// meanwhile waits on its open connection, and `thaw` lets it answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_pauses_the_container_and_a_waiting_query_answers_after_thaw() {
    use controller::driver::{BackendConfig, BackendState, Engine};
    let daemon = docker::daemon().await;
    let cfg = TestConfig::new(&Opts::default()).await;
    let backend = Backend::new(&daemon, &cfg).await;
    let toml = format!(
        "driver = \"docker\"\nhost = \"{}\"\nimage = \"{}\"\ncontainer = \"{}\"\npublish = {}\ntls = \"disable\"\nenv = {}\n",
        daemon.host,
        backend.image,
        backend.container,
        backend.publish,
        docker::image_env(cfg.protocol, &cfg.cluster)
    );
    let config: BackendConfig = toml::from_str(&toml).unwrap();
    let driver = config.build(Engine::Postgres, "frozen", vec![]);
    driver.can_freeze().unwrap();
    let info = driver.start().await.unwrap();
    let direct = torpor_tests::harness::connect_to(
        info.addr,
        torpor_tests::harness::USER,
        torpor_tests::harness::PASSWORD,
    )
    .await
    .unwrap();
    assert_eq!(direct.text("SELECT 1").await, "1");

    driver.freeze().await.unwrap();
    assert_eq!(
        daemon.status(&backend.container).await.as_deref(),
        Some("paused")
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiting = tokio::spawn(async move {
        let answer = direct.text("SELECT 'after the thaw'").await;
        let _ = tx.send(Instant::now());
        (answer, direct)
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "a paused server answered");
    let thawed = Instant::now();
    driver.thaw().await.unwrap();
    let (answer, direct) = waiting.await.unwrap();
    eprintln!(
        "thaw to the waiting query's answer: {:?}",
        rx.await.unwrap().duration_since(thawed)
    );
    assert_eq!(answer, "after the thaw");
    assert_eq!(
        daemon.status(&backend.container).await.as_deref(),
        Some("running")
    );
    driver
        .thaw()
        .await
        .expect("thawing a running backend is Ok");
    drop(direct);

    driver.freeze().await.unwrap();
    driver.stop().await.expect("a frozen backend stops");
    assert_eq!(daemon.running(&backend.container).await, Some(false));
    assert_eq!(driver.status().await.state, BackendState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_killed_behind_torpors_back_is_noticed_and_started_again() {
    let daemon = docker::daemon().await;
    let (env, backend) = start(&daemon, Opts::default()).await;
    let s = env.connect().await;
    assert_eq!(s.text("SELECT 1").await, "1");
    drop(s);
    daemon.cli(&["kill", &backend.container]).await;
    let c = env
        .wait_for(SLOW, "standby after the kill", |c| c["state"] == "standby")
        .await;
    let why = c["last_error"].as_str().unwrap_or_default().to_string();
    assert!(
        why.contains(&format!(
            "container {} exited with code 137",
            backend.container
        )),
        "{c}"
    );
    let s = env.connect().await;
    assert_eq!(s.text("SELECT 2").await, "2");
    assert_eq!(daemon.running(&backend.container).await, Some(true));
    env.shutdown_after(s).await;
}

/// A container whose entrypoint gives up (here: no POSTGRES_PASSWORD, as the official image
/// refuses too) is a clear error on the client, not a wait for a server that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_ends_at_start_reaches_the_client_at_once() {
    let daemon = docker::daemon().await;
    let mut cfg = TestConfig::new(&Opts::default().proxy("wake_timeout = \"90s\"")).await;
    let backend = Backend::new(&daemon, &cfg).await;
    backend.configure(&daemon, &mut cfg);
    cfg.toml = cfg.toml.replace(
        &format!(
            ", POSTGRES_PASSWORD = \"{}\"",
            torpor_tests::harness::PASSWORD
        ),
        "",
    );
    assert!(!cfg.toml.contains("POSTGRES_PASSWORD"), "{}", cfg.toml);
    let env = TestEnv::start_config(cfg).await;
    let asked = Instant::now();
    let e = env
        .try_connect(torpor_tests::harness::USER, torpor_tests::harness::PASSWORD)
        .await
        .err()
        .expect("no server");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| format!("{e:?}"));
    assert!(
        msg.contains(&format!(
            "container {} ended while its server started: exited with code 1",
            backend.container
        )),
        "{msg}"
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(45),
        "not retried until wake_timeout: {:?}",
        asked.elapsed()
    );
    env.shutdown().await;
}
