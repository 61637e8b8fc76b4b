//! The torpor.toml file: parsing, path resolution and validation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use controller::{BackendConfig, Engine};
use serde::Deserialize;
use state_store::StoreConfig;

mod busy;
mod front;
mod instance;
mod listen;
mod rules;
mod tls;
mod users;
pub use busy::BusyQuery;
pub use front::ProxyConfig;
pub use instance::KEY_FILE;
pub use listen::same_addr;
pub use rules::MetricRule;
pub use tls::TlsConfig;
pub use users::{Secret, UserConfig};

/// Used by `torpor up` when no --config is given: one local PostgreSQL, state in ./.torpor.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// The certificate clients of every cluster see, unless a cluster has its own.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    pub state_store: StoreConfig,
    #[serde(rename = "cluster")]
    pub clusters: Vec<ClusterConfig>,
    /// The config file, for naming this torpor's instance ([`Config::instance`]).
    #[serde(skip)]
    pub source: PathBuf,
    /// Where torpor makes its key when `[state_store]` names none: the working directory
    /// (`./.torpor` for the embedded default).
    #[serde(skip)]
    pub key_home: PathBuf,
    /// The embedded default: `[tls]`'s files are made (self-signed) when missing.
    #[serde(skip)]
    pub self_signed: bool,
    /// What `wake_at` takes as now: the system's clock, unless a test sets its own.
    #[serde(skip)]
    pub clock: crate::rules::Clock,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    /// Holds the bearer token the admin API asks for; required unless `listen` is loopback.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn default_admin_listen() -> String {
    "127.0.0.1:6480".into()
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            token_file: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Postgres,
    Mysql,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub name: String,
    pub protocol: Protocol,
    /// Where clients connect: one address or several. PostgreSQL clusters may share one.
    #[serde(deserialize_with = "listen::one_or_many")]
    pub listen: Vec<String>,
    /// TLS server names (SNI) that choose this cluster on an address it shares.
    #[serde(default)]
    pub server_names: Vec<String>,
    #[serde(deserialize_with = "idle_timeout", default = "default_idle_timeout")]
    pub idle_timeout: Duration,
    /// Idle this long (less than idle_timeout), the backend is frozen in place; unset: never.
    #[serde(default, deserialize_with = "freeze_after")]
    pub freeze_after: Option<Duration>,
    pub backend: BackendConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    /// Health checks torpor answers itself while the database sleeps, and doesn't count as
    /// activity while it runs. Defaults per protocol: [`Protocol::default_probes`].
    #[serde(default)]
    pub health_probes: Option<Vec<String>>,
    /// This cluster's share of `[proxy] max_client_connections`.
    #[serde(default)]
    pub max_client_connections: Option<usize>,
    /// This cluster's own certificate (`[cluster.tls]`), in place of `[tls]`.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Clients that don't start TLS are refused, as the server refuses them.
    #[serde(default)]
    pub require_tls: bool,
    /// How many backend connections this cluster's sessions may hold at once; past it the
    /// quietest session that may be parked gives its connection up. Unset: the server's
    /// `max_connections` less its reserved slots and one for torpor's own connection.
    #[serde(default)]
    pub max_backend_connections: Option<usize>,
    /// How long a session that changed something since its last snapshot must be quiet before
    /// it may be parked to make room.
    #[serde(
        deserialize_with = "park_idle_after",
        default = "default_park_idle_after"
    )]
    pub park_idle_after: Duration,
    /// One statement torpor runs on its own connection before a drain or a freeze; a true or
    /// non-zero answer refuses it. Unset: torpor's own ([`BusyQuery::Default`]); "": none.
    #[serde(default)]
    pub busy_query: Option<String>,
    /// While one of these metrics is above its threshold (or can't be read) the cluster counts
    /// as busy.
    #[serde(default)]
    pub idle_metric: Vec<MetricRule>,
    /// While one of these metrics is above its threshold the cluster is woken and kept up.
    #[serde(default)]
    pub wake_metric: Vec<MetricRule>,
    /// Cron patterns (UTC) at which the cluster is woken.
    #[serde(default)]
    pub wake_at: Vec<String>,
}

impl ClusterConfig {
    /// The configured probes, or the protocol's defaults.
    pub fn probes(&self) -> Vec<String> {
        match &self.health_probes {
            Some(p) => p.clone(),
            None => self
                .protocol
                .default_probes()
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl Protocol {
    /// The database server a cluster of this protocol runs.
    pub fn engine(self) -> Engine {
        match self {
            Protocol::Postgres => Engine::Postgres,
            Protocol::Mysql => Engine::Mysql,
        }
    }

    /// The health checks torpor answers for a cluster unless `health_probes` says otherwise.
    pub fn default_probes(self) -> &'static [&'static str] {
        match self {
            Protocol::Postgres => protocols::pg::local::ProbeSet::DEFAULT,
            Protocol::Mysql => protocols::mysql::local::ProbeSet::DEFAULT,
        }
    }
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Every duration in the config is read the same way (the store's `timeout` too): see
/// [`state_store::parse_duration`].
pub use state_store::parse_duration;

/// serde gives a field's deserializer no path, and toml shows only the line: the key goes into
/// the message.
fn duration<'de, D: serde::Deserializer<'de>>(key: &str, d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("{key}: {e}")))
}

fn default_park_idle_after() -> Duration {
    Duration::from_secs(1)
}

fn park_idle_after<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration("park_idle_after", d)
}

fn idle_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration("idle_timeout", d)
}

fn freeze_after<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration("freeze_after", d).map(Some)
}

impl Config {
    /// Reads and validates a config file; relative paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut cfg = Config::parse(&text, &absolute(&base))?;
        cfg.source = absolute(path);
        Ok(cfg)
    }

    /// The embedded default, with relative paths under the current directory.
    pub fn default_local() -> Result<Config, ConfigError> {
        let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
            path: ".".into(),
            source,
        })?;
        let mut cfg = Config::parse(DEFAULT_CONFIG, &cwd)?;
        cfg.source = cwd.join(".torpor");
        cfg.key_home = cwd.join(".torpor");
        cfg.self_signed = true;
        Ok(cfg)
    }

    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.resolve_paths(base);
        cfg.source = base.join("torpor.toml");
        cfg.key_home = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        if let Some(rest) = self.state_store.url.strip_prefix("file://")
            && !rest.starts_with('/')
        {
            self.state_store.url = format!("file://{}", base.join(rest).display());
        }
        for c in &mut self.clusters {
            c.backend.resolve_paths(base);
            for u in &mut c.users {
                u.resolve_paths(base);
            }
        }
        self.admin.resolve_paths(base);
        instance::resolve_paths(&mut self.state_store, base);
        tls::resolve_paths(self, base);
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        front::validate(self)?;
        instance::validate(self)?;
        listen::validate(self)?;
        tls::validate(self)?;
        let url = &self.state_store.url;
        if !(url.starts_with("file://") || url.starts_with("s3://") || url.starts_with("memory://"))
        {
            return Err(invalid(
                "state_store.url",
                format!("{url:?} is not file:///dir, s3://bucket/prefix or memory://"),
            ));
        }
        if self.clusters.is_empty() {
            return Err(invalid("cluster", "at least one [[cluster]] is required"));
        }
        let mut names = HashSet::new();
        // Every listen port, so a backend's port is never a client's.
        let mut ports = listen::ports(self);
        for (i, c) in self.clusters.iter().enumerate() {
            let key = |k: &str| format!("cluster[{i}].{k}");
            if c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
            {
                return Err(invalid(
                    key("name"),
                    format!("{:?} must be non-empty letters, digits, '_' or '-'", c.name),
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(invalid(key("name"), format!("{:?} is used twice", c.name)));
            }
            match c.protocol {
                Protocol::Postgres => protocols::pg::local::ProbeSet::parse(&c.probes()).map(drop),
                Protocol::Mysql => protocols::mysql::local::ProbeSet::parse(&c.probes()).map(drop),
            }
            .map_err(|e| invalid(key("health_probes"), e))?;
            rules::validate(c, i)?;
            if c.max_backend_connections == Some(0) {
                return Err(invalid(
                    key("max_backend_connections"),
                    "must be at least 1",
                ));
            }
            busy::validate(c, &key("busy_query"))?;
            if c.idle_timeout.is_zero() {
                return Err(invalid(key("idle_timeout"), "must be greater than zero"));
            }
            if let Some(f) = c.freeze_after
                && (f.is_zero() || f >= c.idle_timeout)
            {
                return Err(invalid(
                    key("freeze_after"),
                    "must be greater than zero and less than idle_timeout",
                ));
            }
            let listen = listen::first(c, &key("listen"))?;
            if let Some(port) = c.backend.local_port() {
                if port == 0 {
                    return Err(invalid(key("backend.port"), "must be a fixed port"));
                }
                if port == listen.port() {
                    return Err(invalid(
                        key("backend.port"),
                        "must differ from the cluster's listen port",
                    ));
                }
                if !ports.insert(port) {
                    return Err(invalid(
                        key("backend.port"),
                        format!("port {port} is used twice"),
                    ));
                }
            }
            if let Some(p) = c.backend.tls().problem() {
                return Err(invalid(key(&format!("backend.{}", p.field)), p.problem));
            }
            if c.users.is_empty() {
                return Err(invalid(
                    key("users"),
                    "at least one [[cluster.users]] is required",
                ));
            }
            let mut users = HashSet::new();
            for (j, u) in c.users.iter().enumerate() {
                if u.name.is_empty() || u.name.contains('\0') {
                    return Err(invalid(
                        format!("cluster[{i}].users[{j}].name"),
                        "must be non-empty",
                    ));
                }
                u.secret(c.protocol, &format!("cluster[{i}].users[{j}]"))?;
                if !users.insert(u.name.as_str()) {
                    return Err(invalid(
                        format!("cluster[{i}].users[{j}].name"),
                        format!("{:?} is listed twice", u.name),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|cwd| cwd.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// A valid config of one PostgreSQL cluster `a`, for the tests of this crate: each changes
/// the part it is about.
#[cfg(test)]
pub(crate) const TEST_CONFIG: &str = r#"
[admin]
listen = "127.0.0.1:7000"
[state_store]
url = "file://state"
[[cluster]]
name = "a"
protocol = "postgres"
listen = "127.0.0.1:7001"
idle_timeout = "500ms"
[cluster.backend]
driver = "process"
data_dir = "data/a"
port = 7002
[[cluster.users]]
name = "app"
password = "secret"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/base"))
    }

    const GOOD: &str = TEST_CONFIG;

    #[test]
    fn default_config_is_valid() {
        let cfg = Config::parse(DEFAULT_CONFIG, Path::new("/here")).unwrap();
        assert_eq!(cfg.clusters.len(), 1);
        assert_eq!(cfg.clusters[0].listen, ["127.0.0.1:6432"]);
        assert!(cfg.state_store.url.starts_with("file:///here/"));
    }

    #[test]
    fn health_probes_must_be_ones_torpor_can_answer() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.clusters[0].probes()[0], "SELECT 1");
        let ok = GOOD.replace(
            "[cluster.backend]",
            "health_probes = [\"select 1;\", \"\"]\n[cluster.backend]",
        );
        assert_eq!(parse(&ok).unwrap().clusters[0].probes().len(), 2);
        let bad = GOOD.replace(
            "[cluster.backend]",
            "health_probes = [\"SELECT now()\"]\n[cluster.backend]",
        );
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.starts_with("cluster[0].health_probes:"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let cfg = parse(GOOD).unwrap();
        assert_eq!(cfg.state_store.url, "file:///base/state");
        match &cfg.clusters[0].backend {
            BackendConfig::Process(p) => assert_eq!(p.data_dir, PathBuf::from("/base/data/a")),
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.clusters[0].idle_timeout, Duration::from_millis(500));
    }

    #[test]
    fn mysql_clusters_parse_beside_postgres_ones() {
        let cfg = Config::parse(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/torpor.toml"
            ))
            .unwrap(),
            Path::new("/base"),
        )
        .unwrap();
        let protocols: Vec<Protocol> = cfg.clusters.iter().map(|c| c.protocol).collect();
        assert_eq!(protocols, [Protocol::Postgres, Protocol::Mysql]);
    }

    #[test]
    fn errors_name_the_key() {
        let users = "[[cluster.users]]\nname = \"app\"\npassword = \"secret\"\n";
        // (what GOOD says, what a bad config says instead, the start of its error or, when
        // not at the start, something the error says)
        for (from, to, key, at_start) in [
            (
                "listen = \"127.0.0.1:7001\"",
                "listen = \"nope\"",
                "cluster[0].listen:",
                true,
            ),
            (
                "idle_timeout = \"500ms\"",
                "idle_timeout = \"soon\"",
                "idle_timeout",
                false,
            ),
            (
                "idle_timeout = \"500ms\"",
                "idle_timeout = \"500ms\"\nfreeze_after = \"500ms\"",
                "cluster[0].freeze_after: must be greater than zero and less than idle_timeout",
                true,
            ),
            (
                "idle_timeout = \"500ms\"",
                "idle_timeout = \"500ms\"\nfreeze_after = \"later\"",
                "freeze_after: \"later\"",
                false,
            ),
            (
                "port = 7002",
                "port = 7001",
                "cluster[0].backend.port:",
                true,
            ),
            (
                "driver = \"process\"",
                "driver = \"teleport\"",
                "teleport",
                false,
            ),
            (users, "", "cluster[0].users:", true),
            (
                "url = \"file://state\"",
                "url = \"ftp://x\"",
                "state_store.url:",
                true,
            ),
        ] {
            let e = parse(&GOOD.replace(from, to)).unwrap_err().to_string();
            if at_start {
                assert!(e.starts_with(key), "{e}");
            } else {
                assert!(e.contains(key), "{e}");
            }
        }

        let bad = format!("{GOOD}\nsurprise = 1\n");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("surprise"), "{e}");
    }

    #[test]
    fn durations_refuse_months_and_years() {
        for (text, want) in [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("5min", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86400)),
            ("1h 30m", Duration::from_secs(5400)),
        ] {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
            let cfg = parse(&GOOD.replace("\"500ms\"", &format!("{text:?}"))).unwrap();
            assert_eq!(cfg.clusters[0].idle_timeout, want, "{text}");
        }
        for text in [
            "5M", "1y", "2 months", "1month", "1year", "3years", "1yr", "1h 1M",
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains("months and years"), "{text}: {e}");
            let bad = GOOD.replace("\"500ms\"", &format!("{text:?}"));
            let e = parse(&bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("idle_timeout: {text:?}: months and years")),
                "{text}: {e}"
            );
            assert!(
                e.contains("\"5m\""),
                "{text}: the expected format is missing: {e}"
            );
        }
        let e = parse(&GOOD.replace("\"500ms\"", "\"soon\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle_timeout: \"soon\""), "{e}");
        assert!(e.contains("\"30s\""), "{e}");
    }
}
