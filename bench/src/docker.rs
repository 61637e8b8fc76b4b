//! `driver = "docker"` (issue 13): the cold wake and the pause tier of a container torpor
//! runs, each interleaved in the same run with what docker alone does for the same server.
//!
//! Cold wake: a session with #4's state (`pg::wake_state`); each run forces a sleep (the
//! container stopped), then times, on that same stopped container, `docker start` (API) → the
//! first `SELECT 1` on a fresh direct connection to the published port (polled every ~1 ms),
//! stops it again, then times the session's `SELECT 2` through torpor (which starts it).
//! Pause tier: torpor with `freeze_after`; each sample waits until torpor says frozen and
//! docker says paused, times `docker unpause` → `SELECT 1` on an already-open direct
//! connection to a second container of the same image that the bench paused itself, then
//! times the session's `SELECT 2` through torpor (which unpauses its container).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::query_parameters::StopContainerOptions;

use crate::dockerd::Dockerd;
use crate::pg;
use crate::stats::{against, cold_wake, ms};
use crate::torpor::{Cluster, PASSWORD, Proto, Torpor, USER, free_port, write_key};

pub(crate) async fn wake(bin: &Path, work: &Path, runs: usize, samples: usize) -> Result<()> {
    let d = Dockerd::start(work).await?;
    let r = measure(&d, bin, work, runs, samples).await;
    d.stop().await;
    r
}

async fn measure(d: &Dockerd, bin: &Path, work: &Path, runs: usize, samples: usize) -> Result<()> {
    let image = d.image(work, "postgres", 5432, "SIGINT").await?;
    let t = start(d, bin, &work.join("cold"), &image, "pg-cold", "").await?;
    let (torpor, bare) = t.measure(async |t| cold(d, t, runs).await).await?;
    cold_wake("pg_docker_cold_wake", "docker", torpor, bare);
    // Not a load beside the pause tier's.
    let stop = StopContainerOptions {
        t: Some(60),
        signal: None,
    };
    let _ = d.api.stop_container("pg-cold", Some(stop)).await;

    let freeze = "freeze_after = \"300ms\"\n";
    let t = start(d, bin, &work.join("freeze"), &image, "pg-freeze", freeze).await?;
    let (torpor, bare) = t
        .measure(async |t| thaw(d, t, &image, samples).await)
        .await?;
    against(
        "pg_docker_thaw",
        "docker unpause→query",
        "unpause",
        torpor,
        bare,
    );
    Ok(())
}

/// The environment the official postgres image makes the bench's user and database from.
fn env() -> String {
    format!(
        "{{ POSTGRES_USER = \"{USER}\", POSTGRES_PASSWORD = \"{PASSWORD}\", POSTGRES_DB = \"{USER}\" }}"
    )
}

/// torpor with one PostgreSQL cluster on a docker backend `container` of `image`, published
/// on a free port of 127.0.0.1; `cluster` is more lines of the `[[cluster]]` table.
async fn start(
    d: &Dockerd,
    bin: &Path,
    dir: &Path,
    image: &str,
    container: &str,
    cluster: &str,
) -> Result<Torpor> {
    std::fs::create_dir_all(dir)?;
    let key = dir.join("store.key");
    write_key(&key)?;
    let mut ports = Vec::new();
    while ports.len() < 3 {
        let p = free_port()?;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    let at = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
    let (admin, listen, backend) = (at(ports[0]), at(ports[1]), at(ports[2]));
    let toml = format!(
        r#"[admin]
listen = "{admin}"

[state_store]
url = "file://{state}"
key_file = "{key}"

[[cluster]]
name = "pg"
protocol = "postgres"
listen = "{listen}"
idle_timeout = "1h"
{cluster}
[cluster.backend]
driver = "docker"
host = "{host}"
image = "{image}"
container = "{container}"
publish = {publish}
tls = "disable"
timeout = "120s"
env = {env}

[[cluster.users]]
name = "{USER}"
password = "{PASSWORD}"
superuser = true
"#,
        state = dir.join("state").display(),
        key = key.display(),
        host = d.host,
        publish = backend.port(),
        env = env(),
    );
    let c = Cluster {
        proto: Proto::Postgres,
        name: "pg".into(),
        listen,
        backend,
        // No data dir of torpor's: the data is on the container's volume.
        data_dir: dir.join("no-data-dir"),
    };
    Torpor::launch(bin, dir, admin, vec![c], &toml).await
}

async fn inspect(d: &Dockerd, name: &str) -> Result<(bool, bool)> {
    let c = d.api.inspect_container(name, None).await?;
    let s = c.state.context("no State")?;
    Ok((s.running.unwrap_or(false), s.paused.unwrap_or(false)))
}

async fn cold(d: &Dockerd, t: &Torpor, runs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let name = "pg-cold";
    let first = Instant::now();
    // The first connect creates the container and initialises its data: not timed.
    let c = pg::connect(t.listen).await?;
    eprintln!(
        "docker-wake: first connect (container created) {:?}",
        first.elapsed()
    );
    let stmts = pg::wake_state(&c).await?;
    let mut torpor = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..runs {
        t.sleep().await?;
        if inspect(d, name).await?.0 {
            bail!("{name} still runs after a forced sleep");
        }
        bare.push(bare_start(d, name, t.backend).await?);
        if inspect(d, name).await?.0 {
            bail!("{name} still runs after docker stop");
        }
        let start = Instant::now();
        // Not SELECT 1: torpor answers that probe itself while the database sleeps.
        c.simple_query("SELECT 2").await?;
        torpor.push(ms(start.elapsed()));
    }
    pg::check_wake_state(&c, &stmts).await?;
    Ok((torpor, bare))
}

/// `docker start` of the stopped container → `SELECT 1` on a fresh connection to `addr`,
/// polled every ~1 ms; then `docker stop` (not timed).
async fn bare_start(d: &Dockerd, name: &str, addr: SocketAddr) -> Result<f64> {
    let start = Instant::now();
    d.api.start_container(name, None).await?;
    let took = loop {
        if let Ok(c) = pg::connect(addr).await
            && c.simple_query("SELECT 1").await.is_ok()
        {
            break ms(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(120) {
            bail!("{name}: no answer 120 s after docker start");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let stop = StopContainerOptions {
        t: Some(60),
        signal: None,
    };
    d.api.stop_container(name, Some(stop)).await?;
    Ok(took)
}

async fn thaw(
    d: &Dockerd,
    t: &Torpor,
    image: &str,
    samples: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let name = "pg-freeze";
    let c = pg::connect(t.listen).await?;
    let stmts = pg::wake_state(&c).await?;
    // The baseline's container: the same image, not torpor's, paused by the bench.
    let own = "pg-paused-by-bench";
    let port = loop {
        let p = free_port()?;
        if p != t.backend.port() && p != t.listen.port() && p != t.admin.port() {
            break p;
        }
    };
    let publish = format!("127.0.0.1:{port}:5432");
    let envs = [
        format!("POSTGRES_USER={USER}"),
        format!("POSTGRES_PASSWORD={PASSWORD}"),
        format!("POSTGRES_DB={USER}"),
    ];
    let mut args = vec!["run", "-d", "--name", own, "-p", &publish];
    for e in &envs {
        args.extend(["-e", e]);
    }
    args.push(image);
    d.cli(&args).await?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let direct = {
        let started = Instant::now();
        loop {
            if let Ok(c) = pg::connect(addr).await
                && c.simple_query("SELECT 1").await.is_ok()
            {
                break c;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("{own}: no answer after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let mut torpor = Vec::new();
    let mut bare = Vec::new();
    for _ in 0..samples {
        wait_frozen(d, t, name).await?;

        d.api.pause_container(own).await?;
        if !inspect(d, own).await?.1 {
            bail!("{own} not paused after docker pause");
        }
        let start = Instant::now();
        d.api.unpause_container(own).await?;
        direct.simple_query("SELECT 1").await?;
        bare.push(ms(start.elapsed()));

        let start = Instant::now();
        // Not SELECT 1: torpor answers that probe itself while the database sleeps.
        c.simple_query("SELECT 2").await?;
        torpor.push(ms(start.elapsed()));
    }
    pg::check_wake_state(&c, &stmts).await?;
    let thaws = t.metric("torpor_thaws_total", "pg").await?;
    let wakes = t.metric("torpor_wakes_total", "pg").await?;
    if thaws < samples as f64 || wakes != 1.0 {
        bail!("expected {samples} thaws and 1 wake, saw {thaws} thaws and {wakes} wakes");
    }
    Ok((torpor, bare))
}

/// Until the admin API says frozen and the daemon says paused.
async fn wait_frozen(d: &Dockerd, t: &Torpor, name: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let (_, body) = t.http("GET", "/api/clusters").await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        if v[0]["state"] == "frozen" && inspect(d, name).await?.1 {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("{name}: not frozen and paused after 60 s: {body}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
