//! docker-compose.yml and the Dockerfile, run for real with Debian's docker-compose 1.29 against
//! the tests' own dockerd. No registry is reachable, so the images come from here: the
//! Dockerfile's runtime stage is built (`--target prebuilt`) on a base made of this machine's
//! postgres 15 and mariadbd, tagged as the Dockerfile's base (`debian:bookworm-slim`), with
//! the torpor binary these tests were built with; tests/docker/compose.test.yml puts the tests'
//! S3 server (s3s-fs) in MinIO's place, in its own container, and adds a third cluster with
//! `driver = "docker"`: torpor in its container runs that server as a sibling container through
//! the daemon's mounted socket and reaches it at its address in the project's network. A client
//! of each cluster keeps its session across a stop made through the admin API, the snapshots
//! in that S3 server; then `docker-compose down -v`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use torpor_tests::binary::torpor_bin;
use torpor_tests::docker::{self, Daemon};
use torpor_tests::harness::{SLOW, connect_to};
use torpor_tests::mysql::{exec_each, text, try_connect_my};
use torpor_tests::ports::free_port;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `docker-compose up` of one project; `docker-compose down -v` when dropped, even after a
/// failed step.
struct Project<'a> {
    daemon: &'a Daemon,
    name: String,
    env: Vec<(String, String)>,
    /// The container torpor made, not compose: removed first, as it holds on to the network.
    side_container: String,
}

impl Project<'_> {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new("docker-compose");
        cmd.current_dir(repo())
            .env("DOCKER_HOST", &self.daemon.host)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-p", &self.name])
            .args([
                "-f",
                "docker-compose.yml",
                "-f",
                "tests/docker/compose.test.yml",
            ])
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker-compose {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.command(&["logs", "--no-color"]).status();
        }
        let _ = std::process::Command::new("docker")
            .args([
                "-H",
                &self.daemon.host,
                "rm",
                "-f",
                "-v",
                &self.side_container,
            ])
            .output();
        let _ = self.command(&["down", "-v", "--timeout", "30"]).status();
    }
}

async fn retry<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < SLOW, "{what}: not within {SLOW:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_runs_torpor_with_both_clusters_and_an_s3_store_across_a_stop() {
    let daemon = docker::daemon().await;
    let started = Instant::now();
    let torpor = torpor_bin();
    let base = docker::build(&daemon, "base", Some(&torpor), "", ()).await;
    daemon.cli(&["tag", &base, "debian:bookworm-slim"]).await;
    let s3_bin = torpor.with_file_name("s3-server");
    let s3 = docker::build(&daemon, "s3", Some(&s3_bin), "EXPOSE 9000\n", ()).await;

    // The Dockerfile's runtime stage with this torpor, in a context of the files it copies.
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("Dockerfile"), ctx.path().join("Dockerfile")).unwrap();
    std::fs::create_dir_all(ctx.path().join("examples")).unwrap();
    std::fs::copy(
        repo().join("examples/compose.toml"),
        ctx.path().join("examples/compose.toml"),
    )
    .unwrap();
    std::fs::copy(&torpor, ctx.path().join("torpor")).unwrap();
    let ctx_path = ctx.path().to_string_lossy().into_owned();
    daemon
        .cli(&[
            "build",
            "-q",
            "--target",
            "prebuilt",
            "--build-arg",
            "TORPOR_BIN=torpor",
            "-t",
            "torpor",
            &ctx_path,
        ])
        .await;
    eprintln!("images ready after {:?}", started.elapsed());

    let pg_port = free_port();
    let my_port = free_port();
    let admin_port = free_port();
    let side_port = free_port();
    let name = format!("torpor-compose-{pg_port}");
    // examples/compose.toml as shipped, and a cluster whose server torpor runs as a sibling
    // container through the daemon's socket, reached at its address in the project's network.
    let side_image = docker::image(&daemon, docker::Image::Postgres).await;
    let side_container = format!("{name}-side");
    let config = ctx.path().join("torpor.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[cluster]]\nname = \"side\"\nprotocol = \"postgres\"\nlisten = \"0.0.0.0:6433\"\n\n\
             [cluster.backend]\ndriver = \"docker\"\nimage = \"{side_image}\"\ncontainer = \"{side_container}\"\n\
             network = \"{name}_default\"\ntls = \"disable\"\n\
             env = {{ POSTGRES_USER = \"side\", POSTGRES_PASSWORD = \"side-pw\", POSTGRES_DB = \"side\" }}\n\n\
             [[cluster.users]]\nname = \"side\"\npassword = \"side-pw\"\n",
            std::fs::read_to_string(repo().join("examples/compose.toml")).unwrap()
        ),
    )
    .unwrap();
    let socket = daemon.host.trim_start_matches("unix://").to_string();
    let project = Project {
        daemon: &daemon,
        name,
        env: vec![
            ("TORPOR_PG_PORT".into(), pg_port.to_string()),
            ("TORPOR_MYSQL_PORT".into(), my_port.to_string()),
            ("TORPOR_ADMIN_PORT".into(), admin_port.to_string()),
            ("TORPOR_TEST_S3_IMAGE".into(), s3.clone()),
            (
                "TORPOR_TEST_CONFIG".into(),
                config.to_string_lossy().into_owned(),
            ),
            ("TORPOR_TEST_DOCKER_SOCKET".into(), socket),
            ("TORPOR_TEST_SIDE_PORT".into(), side_port.to_string()),
        ],
        side_container: side_container.clone(),
    };
    let up = Instant::now();
    project.run(&["up", "-d", "--no-build"]);
    eprintln!("docker-compose up -d: {:?}", up.elapsed());

    let pg_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, pg_port));
    let pg = retry("a PostgreSQL session through torpor", || async {
        connect_to(pg_addr, "app", "app").await.ok()
    })
    .await;
    eprintln!("compose up to a PostgreSQL session: {:?}", up.elapsed());
    pg.exec("SET application_name = 'through compose'; CREATE TEMP TABLE t AS SELECT 42 AS x")
        .await;
    let my_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, my_port));
    let mut my = retry("a MariaDB session through torpor", || async {
        try_connect_my(my_addr, "shop", "shop", Some("shop"))
            .await
            .ok()
    })
    .await;
    exec_each(
        &mut my,
        &[
            "SET @kept = 'through compose'",
            "CREATE TEMPORARY TABLE t (x INT)",
            "INSERT INTO t VALUES (7)",
        ],
    )
    .await;

    let side_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, side_port));
    let side = retry("a session of the docker-driven cluster", || async {
        connect_to(side_addr, "side", "side-pw").await.ok()
    })
    .await;
    side.exec("SET application_name = 'sibling container'")
        .await;
    assert_eq!(daemon.running(&side_container).await, Some(true));

    let token = std::fs::read_to_string(repo().join("examples/admin-token")).unwrap();
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, admin_port));
    for cluster in ["app", "shop", "side"] {
        let r = torpor_tests::http::request_as(
            admin,
            "POST",
            &format!("/api/clusters/{cluster}/sleep"),
            Some(token.trim()),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "sleep {cluster}: {}", r.body);
    }
    let r = torpor_tests::http::request_as(admin, "GET", "/api/clusters", Some(token.trim()))
        .await
        .unwrap();
    let clusters = r.json();
    for c in clusters.as_array().unwrap() {
        assert_eq!(c["state"], "standby", "{clusters}");
    }
    assert_eq!(
        daemon.running(&side_container).await,
        Some(false),
        "stopped by torpor through the mounted socket"
    );
    // The snapshots are in the S3 server's container.
    let objects = project.run(&["exec", "-T", "minio", "find", "/data/torpor", "-type", "f"]);
    assert!(
        ["/app/", "/shop/", "/side/"]
            .iter()
            .all(|c| objects.lines().any(|l| l.contains(c))),
        "the snapshots of every cluster's session in S3: {objects}"
    );

    let woke = Instant::now();
    assert_eq!(pg.text("SHOW application_name").await, "through compose");
    eprintln!(
        "PostgreSQL wake in the torpor container: {:?}",
        woke.elapsed()
    );
    assert_eq!(pg.text("SELECT x FROM t").await, "42");
    assert_eq!(
        text(&mut my, "SELECT CONCAT(@kept, ' ', (SELECT x FROM t))").await,
        "through compose 7"
    );
    let woke = Instant::now();
    assert_eq!(
        side.text("SHOW application_name").await,
        "sibling container"
    );
    eprintln!(
        "wake of the sibling container (docker start): {:?}",
        woke.elapsed()
    );
    assert_eq!(daemon.running(&side_container).await, Some(true));
    drop((pg, my, side));
    drop(project);
    eprintln!("whole test: {:?}", started.elapsed());
}
