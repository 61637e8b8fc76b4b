//! One torpor process per measure: a config in a fresh directory, free ports, the admin API.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub(crate) const USER: &str = "bench";
pub(crate) const PASSWORD: &str = "bench-secret-pw";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Postgres,
    Mysql,
}

pub(crate) struct Torpor {
    child: Child,
    pub pid: u32,
    pub admin: SocketAddr,
    /// The clusters in config order; the first one is the one `Deref` and the single-cluster
    /// helpers (`sleep`, `wake`, `backend_pid`, …) act on.
    pub clusters: Vec<Cluster>,
}

/// One `[[cluster]]` of a started torpor.
#[derive(Clone)]
pub(crate) struct Cluster {
    pub proto: Proto,
    /// The cluster's name, which is also the MySQL database clients use.
    pub name: String,
    pub listen: SocketAddr,
    pub backend: SocketAddr,
    pub data_dir: PathBuf,
}

/// What to put in one `[[cluster]]`.
pub(crate) struct Spec<'a> {
    pub proto: Proto,
    pub idle_timeout: &'a str,
    /// Idle this long, the backend is frozen in place (less than `idle_timeout`).
    pub freeze_after: Option<&'a str>,
    /// A TOML inline table of extra backend settings.
    pub settings: &'a str,
}

impl std::ops::Deref for Torpor {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.clusters[0]
    }
}

impl Cluster {
    /// The backend server's pid, from its pid file (None while it is stopped).
    pub(crate) fn backend_pid(&self) -> Option<u32> {
        let file = match self.proto {
            Proto::Postgres => "postmaster.pid",
            Proto::Mysql => "mariadbd.pid",
        };
        let text = std::fs::read_to_string(self.data_dir.join(file)).ok()?;
        let pid: u32 = text.lines().next()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }
}

/// A port in 15000..32000 that nothing listens on right now (below the ephemeral range).
pub(crate) fn free_port() -> Result<u16> {
    let seed = std::process::id() as u64 ^ Instant::now().elapsed().as_nanos() as u64;
    let mut x = seed
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 15000 + (x % 17000) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port in 15000..32000")
}

impl Torpor {
    /// Writes a config under `dir` and starts `torpor up`; returns once the admin API answers.
    /// `settings` is a TOML inline table of extra backend settings.
    pub(crate) async fn start(
        bin: &Path,
        dir: &Path,
        proto: Proto,
        idle_timeout: &str,
        settings: &str,
    ) -> Result<Torpor> {
        let spec = Spec {
            proto,
            idle_timeout,
            freeze_after: None,
            settings,
        };
        Self::start_clusters(bin, dir, &[spec]).await
    }

    /// One torpor with several clusters (like examples/torpor.toml): a PostgreSQL one is named
    /// `pg` and keeps its data in `pgdata`, a MySQL one `my` in `mydata` (a second of the same
    /// protocol gets a number).
    pub(crate) async fn start_clusters(
        bin: &Path,
        dir: &Path,
        specs: &[Spec<'_>],
    ) -> Result<Torpor> {
        Self::start_with(bin, dir, specs, "").await
    }

    /// Like [`Torpor::start_clusters`], with `extra` (top-level tables such as `[tls]`) at the
    /// end of the config.
    pub(crate) async fn start_with(
        bin: &Path,
        dir: &Path,
        specs: &[Spec<'_>],
        extra: &str,
    ) -> Result<Torpor> {
        std::fs::create_dir_all(dir)?;
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        // A file store seals snapshots with a key of its own (issue 11).
        let key = dir.join("store.key");
        write_key(&key)?;
        // The memory measure holds 10,001 clients: one past the default cap.
        let mut toml = format!(
            "[admin]\nlisten = \"{admin}\"\n\n[proxy]\nmax_client_connections = 50000\n\n\
             [state_store]\nurl = \"file://{}\"\nkey_file = \"{}\"\n",
            dir.join("state").display(),
            key.display()
        );
        let mut clusters: Vec<Cluster> = Vec::new();
        for spec in specs {
            let (base, protocol, data) = match spec.proto {
                Proto::Postgres => ("pg", "postgres", "pgdata"),
                Proto::Mysql => ("my", "mysql", "mydata"),
            };
            let same = clusters.iter().filter(|c| c.proto == spec.proto).count();
            let (name, data) = if same == 0 {
                (base.to_string(), data.to_string())
            } else {
                (format!("{base}{same}"), format!("{data}{same}"))
            };
            let port = || -> Result<SocketAddr> {
                loop {
                    let p = free_port()?;
                    let taken = p == admin.port()
                        || clusters
                            .iter()
                            .any(|c| c.listen.port() == p || c.backend.port() == p);
                    if !taken {
                        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
                    }
                }
            };
            let (listen, backend) = (port()?, port()?);
            let data_dir = dir.join(&data);
            toml.push_str(&format!(
                r#"
[[cluster]]
name = "{name}"
protocol = "{protocol}"
listen = "{listen}"
idle_timeout = "{idle}"
{freeze}

[cluster.backend]
driver = "process"
data_dir = "{data}"
port = {port}
settings = {settings}

[[cluster.users]]
name = "{USER}"
password = "{PASSWORD}"
superuser = true
"#,
                idle = spec.idle_timeout,
                freeze = spec
                    .freeze_after
                    .map_or(String::new(), |f| format!("freeze_after = \"{f}\"")),
                data = data_dir.display(),
                port = backend.port(),
                settings = spec.settings,
            ));
            clusters.push(Cluster {
                proto: spec.proto,
                name,
                listen,
                backend,
                data_dir,
            });
        }
        toml.push_str(extra);
        Self::launch(bin, dir, admin, clusters, &toml).await
    }

    /// Writes `toml` as `dir`'s config and starts `torpor up` on it; `admin` and `clusters`
    /// must be what it says (for configs [`Torpor::start_with`] can't write, such as another
    /// driver's).
    pub(crate) async fn launch(
        bin: &Path,
        dir: &Path,
        admin: SocketAddr,
        clusters: Vec<Cluster>,
        toml: &str,
    ) -> Result<Torpor> {
        let config = dir.join("torpor.toml");
        std::fs::write(&config, toml)?;
        let log = std::fs::File::create(dir.join("torpor.log"))?;
        let child = Command::new(bin)
            .args(["up", "--config"])
            .arg(&config)
            // BENCH_TORPOR_LOG=info shows every wake and drain in <work>/torpor.log.
            .env(
                "TORPOR_LOG",
                std::env::var("BENCH_TORPOR_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("torpor exited at once")?;
        let mut t = Torpor {
            child,
            pid,
            admin,
            clusters,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok((200, _)) = t.http("GET", "/api/clusters").await {
                return Ok(t);
            }
            if let Some(status) = t.child.try_wait()? {
                bail!(
                    "torpor exited ({status}): {}",
                    std::fs::read_to_string(dir.join("torpor.log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("torpor admin API not up after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) async fn http(&self, method: &str, path: &str) -> Result<(u16, String)> {
        let mut s = TcpStream::connect(self.admin).await?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.admin
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf);
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("bad HTTP answer")?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    }

    /// Forces a scale-to-zero of the first cluster and waits until its backend is gone.
    pub(crate) async fn sleep(&self) -> Result<()> {
        self.sleep_cluster(&self.clusters[0]).await
    }

    /// Forces a scale-to-zero and waits until the backend process is gone.
    pub(crate) async fn sleep_cluster(&self, c: &Cluster) -> Result<()> {
        let pid = c.backend_pid();
        let (code, body) = self
            .http("POST", &format!("/api/clusters/{}/sleep", c.name))
            .await?;
        if code != 200 {
            bail!("{}: sleep refused ({code}): {body}", c.name);
        }
        if let Some(pid) = pid {
            wait_gone(pid, Duration::from_secs(30)).await?;
        }
        Ok(())
    }

    pub(crate) async fn wake(&self) -> Result<()> {
        self.wake_cluster(&self.clusters[0]).await
    }

    pub(crate) async fn wake_cluster(&self, c: &Cluster) -> Result<()> {
        let (code, body) = self
            .http("POST", &format!("/api/clusters/{}/wake", c.name))
            .await?;
        if code != 200 {
            bail!("{}: wake failed ({code}): {body}", c.name);
        }
        Ok(())
    }

    /// `backend_pid` of every cluster from `GET /api/clusters`, by cluster name.
    pub(crate) async fn api_pids(&self) -> Result<Vec<(String, Option<u32>)>> {
        let (code, body) = self.http("GET", "/api/clusters").await?;
        if code != 200 {
            bail!("GET /api/clusters: {code}");
        }
        let v: serde_json::Value = serde_json::from_str(&body)?;
        Ok(v.as_array()
            .context("GET /api/clusters: not a list")?
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or_default().to_string(),
                    c["backend_pid"].as_u64().map(|p| p as u32),
                )
            })
            .collect())
    }

    /// Every `name{cluster="…"} value` series of `/metrics`, as (name, cluster, value).
    pub(crate) async fn metrics(&self) -> Result<Vec<(String, String, f64)>> {
        let (code, body) = self.http("GET", "/metrics").await?;
        if code != 200 {
            bail!("GET /metrics: {code}");
        }
        Ok(body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (name, labels) = series.split_once('{')?;
                let cluster = labels
                    .split(',')
                    .find_map(|kv| kv.trim().strip_prefix("cluster=\""))?
                    .trim_end_matches('}')
                    .trim_end_matches('"');
                Some((name.to_string(), cluster.to_string(), value.parse().ok()?))
            })
            .collect())
    }

    /// One metric of one cluster (0 when absent).
    pub(crate) async fn metric(&self, name: &str, cluster: &str) -> Result<f64> {
        Ok(self
            .metrics()
            .await?
            .into_iter()
            .find(|(n, c, _)| n == name && c == cluster)
            .map_or(0.0, |m| m.2))
    }

    /// The first cluster's session counts, from the admin API: (attached, parked).
    pub(crate) async fn sessions(&self) -> Result<(u64, u64)> {
        let (_, body) = self.http("GET", "/api/clusters").await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        let s = &v[0]["sessions"];
        Ok((
            s["attached"].as_u64().unwrap_or(0),
            s["parked"].as_u64().unwrap_or(0),
        ))
    }

    pub(crate) fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid)
    }

    /// Runs `measure` on this torpor, then stops it whatever the outcome.
    pub(crate) async fn measure<T>(
        self,
        measure: impl AsyncFnOnce(&Torpor) -> Result<T>,
    ) -> Result<T> {
        let r = measure(&self).await;
        self.stop().await;
        r
    }

    /// SIGTERM, then SIGKILL after 30 s; then any backend left behind.
    pub(crate) async fn stop(mut self) {
        let backends: Vec<u32> = self
            .clusters
            .iter()
            .filter_map(Cluster::backend_pid)
            .collect();
        signal(self.pid, libc::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        for pid in backends {
            if alive(pid) {
                signal(pid, libc::SIGTERM);
                if wait_gone(pid, Duration::from_secs(20)).await.is_err() {
                    signal(pid, libc::SIGKILL);
                }
            }
        }
    }
}

/// A key to seal snapshots with: 32 random bytes as 64 hex characters on one line, mode 0600.
pub(crate) fn write_key(path: &Path) -> Result<()> {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{hex}")?;
    Ok(())
}

pub(crate) fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; treat it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub(crate) async fn wait_gone(pid: u32, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() > deadline {
            bail!("pid {pid} still alive after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Spawns a bare server (`what`) and calls `answer` every `poll` until it answers, then stops
/// the server with `stop` and waits until it is gone. `answer` connects and runs one query:
/// None while the server refuses connections. Returns spawn → answered, in ms.
pub(crate) async fn time_bare_start(
    cmd: std::process::Command,
    what: &str,
    poll: Duration,
    stop: i32,
    mut answer: impl AsyncFnMut() -> Option<Result<()>>,
) -> Result<f64> {
    let start = Instant::now();
    let mut child = Command::from(cmd).spawn()?;
    let pid = child.id().with_context(|| format!("{what} exited"))?;
    let result = async {
        loop {
            if let Some(answered) = answer().await {
                answered?;
                return Ok(crate::stats::ms(start.elapsed()));
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("bare {what} not answering after 60 s");
            }
            if let Some(s) = child.try_wait()? {
                bail!("bare {what} exited: {s}");
            }
            tokio::time::sleep(poll).await;
        }
    }
    .await;
    signal(pid, stop);
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    wait_gone(pid, Duration::from_secs(5)).await?;
    result
}

pub(crate) fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we started; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")
}

/// uid and gid of a system user, for servers that refuse to run as root.
pub(crate) fn user_ids(name: &str) -> Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() > 3 && f[0] == name {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    bail!("no user {name}")
}
