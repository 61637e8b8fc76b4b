//! `driver = "kubernetes"` against the STAND-IN for the Kubernetes API (tests/src/kube_standin.rs):
//! no API server can run on these machines, so this is the only test of the driver, and it
//! has not been run against a real cluster. Behind the stand-in's "pod" is a real postgres
//! (made with initdb, started on 127.0.0.1 when the workload is scaled to one, stopped by its
//! pid when scaled to zero); torpor reaches it through the "service" address, carries
//! sessions across the stop it makes through the API, and reports the API's failures to the
//! waking client while the session stays parked.

use std::path::Path;
use std::process::Stdio;

use torpor_tests::harness::{Opts, PASSWORD, SLOW, TestConfig, TestEnv, USER, assert_pid_gone};
use torpor_tests::kube_standin::{Container, Kind, KubeStandin};
use torpor_tests::operator_db::{BIN, make_mariadb, make_server, mysql_user};

const NS: &str = "db";

/// The pod's container: postgres on `port`, as the postgres user when the tests run as root.
fn postgres(data: &Path, port: u16) -> Container {
    let data = data.to_path_buf();
    Box::new(move || {
        let mut cmd = tokio::process::Command::new(format!("{BIN}/postgres"));
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(&data)
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.join("server.log")).unwrap());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // SAFETY: a NUL-terminated name; the result is read before any other passwd call.
            let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
            assert!(!pw.is_null(), "no postgres user");
            // SAFETY: pw is non-null and points at libc's static passwd entry.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            cmd.uid(uid).gid(gid);
        }
        cmd
    })
}

/// The test config with `[cluster.backend]` replaced by the kubernetes driver's, reaching the
/// stand-in through a kubeconfig file.
fn kube_backend(cfg: &TestConfig, standin: &KubeStandin, kind: &str, name: &str) -> String {
    let kubeconfig = cfg.dir.path().join("kubeconfig.yaml");
    std::fs::write(&kubeconfig, standin.kubeconfig(NS)).unwrap();
    let start = cfg.toml.find("[cluster.backend]").unwrap();
    let end = cfg.toml[start..].find("\n\n").unwrap() + start;
    format!(
        "{}[cluster.backend]\ndriver = \"kubernetes\"\nkind = \"{kind}\"\nname = \"{name}\"\nservice = \"127.0.0.1:{}\"\nkubeconfig = \"{}\"\ntimeout = \"60s\"\ntls = \"disable\"\n{}",
        &cfg.toml[..start],
        cfg.backend_port,
        kubeconfig.display(),
        &cfg.toml[end..]
    )
}

/// A stand-in with one workload of `kind` named `name` whose pod runs the test's postgres.
async fn standin_for(cfg: &TestConfig, kind: Kind, name: &str) -> KubeStandin {
    make_server(&cfg.data_dir);
    let standin = KubeStandin::start().await;
    standin.add(
        kind,
        NS,
        name,
        cfg.backend_port,
        postgres(&cfg.data_dir, cfg.backend_port),
    );
    standin
}

/// A session with a setting, a temp table with rows and a protocol-level prepared statement
/// is parked, the workload stopped through the API (its postgres proven gone), and the next
/// query finds it all on a new postgres. Then torpor shuts down.
async fn session_survives_a_stop(env: TestEnv, standin: &KubeStandin, name: &str) {
    let c = env.connect().await;
    c.exec("SET application_name = 'through-kube'; CREATE TEMP TABLE t AS SELECT g AS x FROM generate_series(1, 100) g")
        .await;
    let stmt = c.prepare("SELECT sum(x) + $1::int FROM t").await.unwrap();
    let pid = standin.pod_pid(name).expect("the pod runs");
    assert_eq!(standin.replicas(name), Some(1));

    let (status, body) = env.sleep().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(standin.pod_pid(name), None, "no pod listed after the stop");
    assert_pid_gone(pid);

    let row = c.query_one(&stmt, &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 5051);
    assert_eq!(
        c.value("SHOW application_name").await.as_deref(),
        Some("through-kube")
    );
    let new_pid = standin.pod_pid(name).expect("woken through the API");
    assert_ne!(new_pid, pid);
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_scaled_to_zero_and_back_keeps_sessions() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    let standin = standin_for(&cfg, Kind::StatefulSet, "pg").await;
    cfg.toml = kube_backend(&cfg, &standin, "statefulset", "pg");
    let env = TestEnv::start_config(cfg).await;
    session_survives_a_stop(env, &standin, "pg").await;
    assert_eq!(
        standin.replicas("pg"),
        Some(0),
        "scaled to zero at shutdown"
    );
    // Exactly the calls rbac.yaml grants.
    for call in standin.calls() {
        assert!(
            call == "PATCH /apis/apps/v1/namespaces/db/statefulsets/pg/scale"
                || call == "GET /api/v1/namespaces/db/pods",
            "{call}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cnpg_cluster_hibernated_and_woken_keeps_sessions() {
    let mut cfg = TestConfig::new(&Opts::default()).await;
    let standin = standin_for(&cfg, Kind::Cnpg, "pg").await;
    cfg.toml = kube_backend(&cfg, &standin, "cnpg", "pg");
    let env = TestEnv::start_config(cfg).await;
    let c = env.connect().await;
    assert_eq!(
        standin.annotation("pg", "cnpg.io/hibernation").as_deref(),
        Some("off")
    );
    drop(c);
    session_survives_a_stop(env, &standin, "pg").await;
    assert_eq!(
        standin.annotation("pg", "cnpg.io/hibernation").as_deref(),
        Some("on"),
        "hibernated at shutdown"
    );
    for call in standin.calls() {
        assert!(
            call == "PATCH /apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg"
                || call == "GET /api/v1/namespaces/db/pods",
            "{call}"
        );
    }
}

/// MariaDB's greeting tells torpor it is ready; a user variable survives the scale to zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_in_a_statefulset_keeps_sessions() {
    let mut cfg = TestConfig::new(&Opts::mysql()).await;
    make_mariadb(&cfg.data_dir, &cfg.cluster);
    let standin = KubeStandin::start().await;
    let (data, port) = (cfg.data_dir.clone(), cfg.backend_port);
    let container: Container = Box::new(move || {
        let mut cmd = tokio::process::Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}/s.sock", data.display()))
            .args(["--skip-log-bin", "--innodb-flush-log-at-trx-commit=0"])
            .args(Some(mysql_user()).filter(|u| !u.is_empty()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.join("server.log")).unwrap());
        cmd
    });
    standin.add(Kind::StatefulSet, NS, "my", port, container);
    cfg.toml = kube_backend(&cfg, &standin, "statefulset", "my");
    let env = TestEnv::start_config(cfg).await;
    let mut raw = env.my_raw().await;
    assert!(
        raw.query("SET @kept = 'through kube'")
            .await
            .unwrap()
            .err()
            .is_none()
    );
    let pid = standin.pod_pid("my").expect("the pod runs");
    let (status, body) = env.sleep().await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(standin.pod_pid("my"), None);
    assert_pid_gone(pid);
    assert_eq!(
        raw.value("SELECT @kept").await.as_deref(),
        Some("through kube")
    );
    assert_ne!(standin.pod_pid("my"), Some(pid));
    env.shutdown().await;
}

fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_down_reaches_the_client_and_the_session_waits_for_it() {
    let mut cfg = TestConfig::new(&Opts {
        proxy: "wake_timeout = \"2s\"\n".into(),
        ..Opts::default()
    })
    .await;
    let standin = standin_for(&cfg, Kind::StatefulSet, "pg").await;
    cfg.toml = kube_backend(&cfg, &standin, "statefulset", "pg");
    let env = TestEnv::start_config(cfg).await;
    let c = env.connect().await;
    c.exec("CREATE TEMP TABLE t AS SELECT 7 AS x").await;
    let (status, body) = env.sleep().await;
    assert_eq!(status, 200, "{body}");

    standin.stop_serving().await;
    let e = c.simple_query("SELECT x FROM t").await.unwrap_err();
    let msg = message(&e);
    eprintln!("with the API server down the session was told: {msg}");
    assert!(msg.contains("could not be reached"), "{msg}");
    assert_eq!(standin.pod_pid("pg"), None);

    standin.serve_again().await;
    let x = tokio::time::timeout(SLOW, c.value("SELECT x + 35 FROM t"))
        .await
        .expect("in time");
    assert_eq!(
        x.as_deref(),
        Some("42"),
        "the same session, its temp table kept"
    );
    env.shutdown_after(c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_or_missing_workload_reaches_the_client() {
    let mut cfg = TestConfig::new(&Opts {
        proxy: "wake_timeout = \"2s\"\n".into(),
        ..Opts::default()
    })
    .await;
    let standin = standin_for(&cfg, Kind::Deployment, "pg").await;
    let good = kube_backend(&cfg, &standin, "deployment", "pg");
    cfg.toml = good.replace("name = \"pg\"\nservice", "name = \"pg-typo\"\nservice");
    assert_ne!(cfg.toml, good);
    let env = TestEnv::start_config(cfg).await;
    let e = env
        .try_connect(USER, PASSWORD)
        .await
        .err()
        .expect("no such workload");
    let msg = message(&e);
    eprintln!("a missing workload: {msg}");
    assert!(
        msg.contains("deployment db/pg-typo") && msg.contains("not found"),
        "{msg}"
    );
    env.shutdown().await;

    let mut cfg = TestConfig::new(&Opts {
        proxy: "wake_timeout = \"2s\"\n".into(),
        ..Opts::default()
    })
    .await;
    let standin = standin_for(&cfg, Kind::Deployment, "pg").await;
    cfg.toml = kube_backend(&cfg, &standin, "deployment", "pg");
    let env = TestEnv::start_config(cfg).await;
    let c = env.connect().await;
    c.exec("CREATE TEMP TABLE t AS SELECT 7 AS x").await;
    let (status, body) = env.sleep().await;
    assert_eq!(status, 200, "{body}");
    standin.forbid(true);
    let e = c.simple_query("SELECT x FROM t").await.unwrap_err();
    let msg = message(&e);
    eprintln!("the parked session was told: {msg}");
    assert!(
        msg.contains("forbidden") && msg.contains("cannot patch resource \"deployments/scale\""),
        "{msg}"
    );
    // torpor knows the users from the first wake, so a new client logs in and is told at
    // its first query.
    let other = env.connect().await;
    // Not `SELECT 1`: torpor answers that probe itself while the database sleeps.
    let e = other
        .simple_query("SELECT count(*) FROM pg_class")
        .await
        .unwrap_err();
    assert!(message(&e).contains("forbidden"), "{e:?}");
    drop(other);
    assert_eq!(standin.pod_pid("pg"), None);
    standin.forbid(false);
    let x = tokio::time::timeout(SLOW, c.value("SELECT x + 35 FROM t"))
        .await
        .expect("in time");
    assert_eq!(
        x.as_deref(),
        Some("42"),
        "the same session, its temp table kept"
    );
    assert!(standin.pod_pid("pg").is_some());
    env.shutdown_after(c).await;
}
