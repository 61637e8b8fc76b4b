//! One torpor per test: a tempdir, free ports, a config with one postgres cluster, the proxy
//! running in-process, and helpers to talk to it as a client and as an operator.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};

use crate::http;
use crate::ports::free_port;
use crate::s3;

/// The superuser every test cluster has (created by the process driver at initdb).
pub const USER: &str = "app";
pub const PASSWORD: &str = "app-secret-pw";
/// A second, non-superuser login role.
pub const OTHER_USER: &str = "viewer";
pub const OTHER_PASSWORD: &str = "viewer-secret-pw";

/// The prefix of an S3 store in the bucket.
const S3_PREFIX: &str = "e2e";

/// Bound for anything that involves starting or stopping postgres; tests never rely on it
/// being tight.
pub const SLOW: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    File,
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Mysql,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub idle_timeout: String,
    pub store: StoreKind,
    pub protocol: Protocol,
    /// TOML lines of a `[proxy]` table.
    pub proxy: String,
    /// More TOML lines of the `[[cluster]]` table.
    pub cluster_settings: String,
    /// The admin API's token, written to a `token_file`.
    pub admin_token: Option<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            // Only forced sleeps, unless a test is about the idle timer.
            idle_timeout: "1h".into(),
            store: StoreKind::File,
            protocol: Protocol::Postgres,
            proxy: String::new(),
            cluster_settings: String::new(),
            admin_token: None,
        }
    }
}

impl Opts {
    pub fn mysql() -> Opts {
        Opts {
            protocol: Protocol::Mysql,
            ..Opts::default()
        }
    }

    /// The idle timer stops the database after `timeout` (a humantime duration) without a
    /// busy session.
    pub fn idle_after(self, timeout: &str) -> Opts {
        Opts {
            idle_timeout: timeout.into(),
            ..self
        }
    }

    /// Adds `line` (`key = value`) to the `[proxy]` table.
    pub fn proxy(mut self, line: &str) -> Opts {
        self.proxy.push_str(line);
        self.proxy.push('\n');
        self
    }

    /// Adds `line` (`key = value`) to the `[[cluster]]` table.
    pub fn cluster_setting(mut self, line: &str) -> Opts {
        self.cluster_settings.push_str(line);
        self.cluster_settings.push('\n');
        self
    }

    /// The admin API asks for `token`.
    pub fn admin_token(self, token: &str) -> Opts {
        Opts {
            admin_token: Some(token.into()),
            ..self
        }
    }
}

/// Logs of the in-process proxy go to the test's captured output, shown when it fails.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("TORPOR_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}

/// A config written to a tempdir; used in-process by [`TestEnv`] and by the binary tests.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub protocol: Protocol,
    pub cluster: String,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub backend_port: u16,
    pub toml: String,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    /// Where a `file://` store keeps snapshots (unused for S3).
    pub state_dir: PathBuf,
    pub s3: Option<s3::S3Server>,
}

impl TestConfig {
    pub async fn new(opts: &Opts) -> TestConfig {
        let dir = tempfile::tempdir().expect("tempdir");
        // postgres runs as the `postgres` user and must reach its data dir inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let (cluster, data_name, protocol, settings) = match opts.protocol {
            Protocol::Postgres => ("pg", "pgdata", "postgres", r#"{ fsync = "off" }"#),
            Protocol::Mysql => (
                "my",
                "mydata",
                "mysql",
                r#"{ innodb_flush_log_at_trx_commit = "0" }"#,
            ),
        };
        let cluster = cluster.to_string();
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let backend_port = free_port();
        let data_dir = dir.path().join(data_name);
        let state_dir = dir.path().join("state");
        let (store, s3) = match opts.store {
            StoreKind::File => (
                format!("[state_store]\nurl = \"file://{}\"\n", state_dir.display()),
                None,
            ),
            StoreKind::S3 => {
                let s3dir = dir.path().join("s3");
                std::fs::create_dir_all(&s3dir).expect("s3 dir");
                let server = s3::start(&s3dir).await.expect("s3 server");
                let c = server.store_config(S3_PREFIX);
                let toml = format!(
                    "[state_store]\nurl = \"{}\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
                     allow_http = true\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
                    c.url,
                    c.endpoint.unwrap_or_default(),
                    c.region.unwrap_or_default(),
                    c.access_key_id.unwrap_or_default(),
                    c.secret_access_key.unwrap_or_default(),
                );
                (toml, Some(server))
            }
        };
        // Snapshots are sealed with the test's own key, not one torpor would make in the
        // working directory.
        let key_file = dir.path().join("torpor.key");
        state_store::seal::write_key_file(&key_file).expect("write the sealing key");
        let store = format!("{store}key_file = \"{}\"\n", key_file.display());
        let toml = format!(
            r#"[admin]
listen = "{admin}"

{store}
[[cluster]]
name = "{cluster}"
protocol = "{protocol}"
listen = "{listen}"
idle_timeout = "{idle}"

[cluster.backend]
driver = "process"
data_dir = "{data}"
port = {backend_port}
settings = {settings}
{users}"#,
            idle = opts.idle_timeout,
            data = data_dir.display(),
            users = users_toml_for(opts.protocol),
        );
        let toml = front_door(toml, opts, dir.path());
        let config_path = dir.path().join("torpor.toml");
        std::fs::write(&config_path, &toml).expect("write config");
        TestConfig {
            dir,
            protocol: opts.protocol,
            cluster,
            listen,
            admin,
            backend_port,
            toml,
            config_path,
            data_dir,
            state_dir,
            s3,
        }
    }

    /// Where the store keeps this cluster's snapshots as files: `<instance>/<cluster>` in
    /// `state_dir`, or under the S3 server's bucket and prefix, the instance named as torpor
    /// names it.
    pub fn snapshot_dir(&self) -> PathBuf {
        let cfg = torpor::config::Config::load(&self.config_path).expect("the test config");
        let root = match &self.s3 {
            Some(s3) => s3.root.join(&s3.bucket).join(S3_PREFIX),
            None => self.state_dir.clone(),
        };
        root.join(cfg.instance()).join(&self.cluster)
    }

    /// The key this test's torpor seals snapshots with.
    pub fn seal(&self) -> state_store::Seal {
        let cfg = state_store::StoreConfig {
            key_file: Some(self.dir.path().join("torpor.key")),
            ..state_store::StoreConfig::from_url("memory://")
        };
        state_store::Seal::from_config(&cfg)
            .expect("the test's key")
            .expect("a key file")
    }

    /// The server pid in the data dir's pid file, if there is one.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let file = match self.protocol {
            Protocol::Postgres => "postmaster.pid",
            Protocol::Mysql => crate::mysql::PID_FILE,
        };
        let text = std::fs::read_to_string(self.data_dir.join(file)).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

/// The `[[cluster.users]]` of every test cluster: [`USER`] (a superuser) and [`OTHER_USER`].
/// With `TORPOR_TEST_PASSWORD_HASH` set, each has only a `password_hash` (scripts/test.sh runs
/// the state tests so too).
pub fn users_toml() -> String {
    users_toml_for(Protocol::Postgres)
}

fn users_toml_for(protocol: Protocol) -> String {
    let secret = |pw: &str| {
        if std::env::var_os("TORPOR_TEST_PASSWORD_HASH").is_none() {
            return format!("password = \"{pw}\"");
        }
        let protocol = match protocol {
            Protocol::Postgres => torpor::config::Protocol::Postgres,
            Protocol::Mysql => torpor::config::Protocol::Mysql,
        };
        let hash = torpor::hash_password::hash(protocol, pw).expect("hash a test password");
        format!("password_hash = \"{hash}\"")
    };
    format!(
        r#"
[[cluster.users]]
name = "{USER}"
{}
superuser = true

[[cluster.users]]
name = "{OTHER_USER}"
{}
"#,
        secret(PASSWORD),
        secret(OTHER_PASSWORD)
    )
}

/// `toml` with what `opts` says of the front door: the `[proxy]` table, the cluster's own
/// settings, and the admin token (written to a file in `dir`).
fn front_door(toml: String, opts: &Opts, dir: &Path) -> String {
    let mut toml = toml.replacen(
        "idle_timeout = ",
        &format!("{}idle_timeout = ", opts.cluster_settings),
        1,
    );
    if let Some(token) = &opts.admin_token {
        let path = dir.join("admin-token");
        std::fs::write(&path, format!("{token}\n")).expect("write the admin token");
        let line = format!("[admin]\ntoken_file = \"{}\"\n", path.display());
        toml = toml.replacen("[admin]\n", &line, 1);
    }
    if !opts.proxy.is_empty() {
        toml.push_str(&format!("\n[proxy]\n{}", opts.proxy));
    }
    toml
}

impl TestConfig {
    /// What the admin API asks for, if anything.
    pub fn admin_token(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("admin-token")).ok()?;
        Some(text.trim().to_string())
    }
}

/// A running in-process torpor with one cluster.
pub struct TestEnv {
    pub cfg: TestConfig,
    running: Option<torpor::server::Running>,
}

impl std::ops::Deref for TestEnv {
    type Target = TestConfig;
    fn deref(&self) -> &TestConfig {
        &self.cfg
    }
}

impl TestEnv {
    pub async fn start(opts: Opts) -> TestEnv {
        TestEnv::start_config(TestConfig::new(&opts).await).await
    }

    /// Starts torpor with a config the test has changed ([`TestConfig::toml`]).
    pub async fn start_config(cfg: TestConfig) -> TestEnv {
        TestEnv::start_config_with(cfg, |_| {}).await
    }

    /// Starts torpor with `cfg`, after `edit` changed what no file can say (the clock).
    pub async fn start_config_with(
        cfg: TestConfig,
        edit: impl FnOnce(&mut torpor::config::Config),
    ) -> TestEnv {
        init_tracing();
        let mut parsed = torpor::config::Config::parse(&cfg.toml, cfg.dir.path())
            .unwrap_or_else(|e| panic!("test config rejected: {e}\n{}", cfg.toml));
        edit(&mut parsed);
        let running = tokio::time::timeout(SLOW, torpor::server::start(parsed))
            .await
            .expect("torpor start timed out")
            .unwrap_or_else(|e| panic!("torpor start failed: {e:#}"));
        // Clusters a test adds (crate::clusters) come after this one.
        assert_eq!(running.listen_addrs.first(), Some(&cfg.listen));
        assert_eq!(running.admin_addr, cfg.admin);
        TestEnv {
            cfg,
            running: Some(running),
        }
    }

    pub async fn default() -> TestEnv {
        TestEnv::start(Opts::default()).await
    }

    /// Connects through the proxy as `user` to the database of the same name.
    pub async fn try_connect(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Pg, tokio_postgres::Error> {
        connect_to(self.listen, user, password).await
    }

    pub async fn connect(&self) -> Pg {
        self.try_connect(USER, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("connect as {USER}: {e}"))
    }

    pub async fn admin(&self, method: &str, path: &str) -> http::Response {
        http::request_as(self.admin, method, path, self.admin_token().as_deref())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"))
    }

    /// POST /api/clusters/{name}/sleep: (status, JSON body).
    pub async fn sleep(&self) -> (u16, Value) {
        let r = self
            .admin("POST", &format!("/api/clusters/{}/sleep", self.cluster))
            .await;
        (r.status, r.json())
    }

    /// Forces a sleep that must succeed, and checks the backend process is really gone.
    pub async fn sleep_ok(&self) {
        let pid = self.backend_pid().await;
        let (status, body) = self.sleep().await;
        assert_eq!(status, 200, "sleep refused: {body}");
        let c = self.cluster_status().await;
        assert_eq!(c["state"], "standby", "{c}");
        assert!(c["backend_pid"].is_null(), "{c}");
        if let Some(pid) = pid {
            assert_pid_gone(pid);
        }
    }

    pub async fn wake(&self) -> (u16, Value) {
        let r = self
            .admin("POST", &format!("/api/clusters/{}/wake", self.cluster))
            .await;
        (r.status, r.json())
    }

    /// GET /api/clusters
    pub async fn clusters(&self) -> Value {
        let r = self.admin("GET", "/api/clusters").await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// This test's cluster object from GET /api/clusters.
    pub async fn cluster_status(&self) -> Value {
        let all = self.clusters().await;
        all.as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == self.cluster.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("cluster {} missing from {all}", self.cluster))
    }

    pub async fn backend_pid(&self) -> Option<u32> {
        self.cluster_status().await["backend_pid"]
            .as_u64()
            .map(|p| p as u32)
    }

    pub async fn metrics(&self) -> String {
        let r = self.admin("GET", "/metrics").await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// The value of `name{cluster="<this cluster>"}` in /metrics.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        metric_value(&text, name, &self.cluster)
            .unwrap_or_else(|| panic!("metric {name} for {} not in:\n{text}", self.cluster))
    }

    /// Polls the cluster status until `pred` holds, or panics after `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let c = self.cluster_status().await;
            if pred(&c) {
                return c;
            }
            if Instant::now() > deadline {
                panic!("waited {within:?} for {what}; last status {c}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The backend server's own address: a direct connection, bypassing torpor.
    pub fn backend_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.backend_port))
    }

    /// Waits until torpor has read the server's catalog of settings (it does after each start):
    /// only then does it answer SETs while the database sleeps.
    pub async fn wait_for_catalog(&self) {
        let metric = match self.protocol {
            Protocol::Postgres => "torpor_pg_catalog_settings",
            Protocol::Mysql => "torpor_mysql_catalog_variables",
        };
        let start = Instant::now();
        while self.metric(metric).await == 0.0 {
            assert!(start.elapsed() < SLOW, "the catalog was never learned");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cluster is asleep and the server process `pid` that ran before is gone.
    pub async fn assert_asleep(&self, pid: u32) {
        let c = self.cluster_status().await;
        assert_eq!(c["state"], "standby", "{c}");
        assert!(c["backend_pid"].is_null(), "{c}");
        assert_pid_gone(pid);
    }

    /// Waits until the store holds a snapshot, and checks no drain has run meanwhile: the
    /// snapshot was saved early, while the server still ran.
    pub async fn wait_for_early_snapshot(&self) {
        let start = Instant::now();
        while self.stored_snapshots().is_empty() {
            assert!(start.elapsed() < SLOW, "no early snapshot");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.metric("torpor_drains_total").await, 0.0);
    }

    /// Every object in a `file://` snapshot store, with its size and modification time: what
    /// a drain wrote, and whether it wrote it again.
    pub fn stored_snapshots(&self) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let mut out = Vec::new();
        let mut todo = vec![self.state_dir.clone()];
        while let Some(d) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let meta = e.metadata().expect("stat a snapshot file");
                if meta.is_dir() {
                    todo.push(e.path());
                } else {
                    out.push((e.path(), meta.len(), meta.modified().expect("mtime")));
                }
            }
        }
        out.sort();
        out
    }

    /// Stops torpor: clients get 57P01 and the backend stops.
    pub async fn shutdown(mut self) {
        let pid = self.backend_pid().await;
        if let Some(r) = self.running.take() {
            tokio::time::timeout(SLOW, r.shutdown())
                .await
                .expect("torpor shutdown timed out");
        }
        if let Some(pid) = pid {
            assert_pid_gone(pid);
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // A failed test never reached shutdown(): the postgres it started must not outlive it.
        if self.running.is_some()
            && let Some(pid) = self.cfg.postmaster_pid()
        {
            // SAFETY: plain kill(2) on a pid read from our own test's postmaster.pid.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGQUIT);
            }
        }
    }
}

/// `name{cluster="c"} value` or `name{cluster="c",...} value` (the first such line).
pub fn metric_value(text: &str, name: &str, cluster: &str) -> Option<f64> {
    let prefix = format!("{name}{{cluster=\"{cluster}\"");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The process is gone: kill(pid, 0) fails with ESRCH and /proc has no entry (not even a zombie).
pub fn assert_pid_gone(pid: u32) {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert!(
        r == -1 && errno == Some(libc::ESRCH),
        "process {pid} still exists (kill 0 -> {r}, errno {errno:?}, cmdline {:?})",
        std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default()
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "/proc/{pid} still exists"
    );
}

/// A client session through the proxy. Dereferences to the tokio-postgres client.
pub struct Pg {
    pub client: Client,
    /// Notifications from LISTEN, in arrival order.
    pub notifications: mpsc::UnboundedReceiver<Notification>,
    /// The connection task: Err holds the error that ended the connection.
    pub done: JoinHandle<Result<(), tokio_postgres::Error>>,
    params: Arc<Mutex<HashMap<String, String>>>,
}

impl std::ops::Deref for Pg {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// ParameterStatus names a postgres 15 server reports at startup.
const REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// The connection settings [`connect_to`] uses.
pub fn client_config(addr: SocketAddr, user: &str, password: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(addr.ip().to_string())
        .port(addr.port())
        .user(user)
        .password(password)
        .dbname(user)
        .connect_timeout(SLOW);
    config
}

pub async fn connect_to(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<Pg, tokio_postgres::Error> {
    let config = client_config(addr, user, password);
    let (client, conn) = tokio::time::timeout(SLOW, config.connect(NoTls))
        .await
        .expect("connect timed out")?;
    Ok(serve_client(client, conn))
}

/// Connects with `config` over a socket this function opens to `addr`, and returns the
/// socket's local address with the client: what the server sees as the client's address.
pub async fn connect_from(
    addr: SocketAddr,
    config: &tokio_postgres::Config,
) -> Result<(Pg, SocketAddr), tokio_postgres::Error> {
    let socket = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let local = socket.local_addr().expect("local address");
    let (client, conn) = tokio::time::timeout(SLOW, config.connect_raw(socket, NoTls))
        .await
        .expect("connect timed out")?;
    Ok((serve_client(client, conn), local))
}

/// Runs the connection task: it records ParameterStatus values and passes notifications on.
pub(crate) fn serve_client<S, T>(client: Client, mut conn: tokio_postgres::Connection<S, T>) -> Pg
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, notifications) = mpsc::unbounded_channel();
    let params = Arc::new(Mutex::new(HashMap::new()));
    let seen = params.clone();
    let done = tokio::spawn(async move {
        loop {
            let msg = std::future::poll_fn(|cx| {
                let r = conn.poll_message(cx);
                let mut p = seen.lock().unwrap_or_else(|e| e.into_inner());
                for name in REPORTED {
                    if let Some(v) = conn.parameter(name) {
                        p.insert((*name).to_string(), v.to_string());
                    }
                }
                r
            })
            .await;
            match msg {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let _ = tx.send(n);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    Pg {
        client,
        notifications,
        done,
        params,
    }
}

impl Pg {
    /// The ParameterStatus values this client has been told so far.
    pub fn reported(&self) -> HashMap<String, String> {
        self.params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The single value of a one-row, one-column query, as text (simple protocol).
    pub async fn value(&self, sql: &str) -> Option<String> {
        let msgs = tokio::time::timeout(SLOW, self.client.simple_query(sql))
            .await
            .unwrap_or_else(|_| panic!("{sql}: timed out"))
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
        msgs.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })?
    }

    /// Like [`Pg::value`] but the value must be non-NULL.
    pub async fn text(&self, sql: &str) -> String {
        self.value(sql)
            .await
            .unwrap_or_else(|| panic!("{sql}: no row or NULL"))
    }

    /// Runs statements with the simple protocol; panics with the server's message on error.
    pub async fn exec(&self, sql: &str) {
        tokio::time::timeout(SLOW, self.client.batch_execute(sql))
            .await
            .unwrap_or_else(|_| panic!("{sql}: timed out"))
            .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    }

    /// Waits until the connection task has ended and returns how it ended.
    pub async fn ended(self) -> Result<(), tokio_postgres::Error> {
        tokio::time::timeout(SLOW, self.done)
            .await
            .expect("connection did not end")
            .expect("connection task panicked")
    }
}

/// An error with its SQLSTATE and server message, for assertion output.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => format!("{e:?}"),
    }
}

/// The SQLSTATE of a server error, if the error is one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}
