//! `[cluster.backend]` for `driver = "docker"`, and what it means for the container torpor
//! creates: its name, data volume, environment and ports.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::super::factory::{ConfigProblem, Engine};
use super::super::tls::{BackendTls, TlsMode};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// The image a missing container is created from (`postgres:15`, `mariadb:10.11`).
    pub image: String,
    /// The container's name; `torpor-<cluster>` unless set.
    #[serde(default)]
    pub container: Option<String>,
    /// The named volume mounted where the official images keep their data; `<container>-data`
    /// unless set. It outlives the container.
    #[serde(default)]
    pub volume: Option<String>,
    /// The container's environment (`POSTGRES_PASSWORD`, `MARIADB_ROOT_PASSWORD`, …).
    #[serde(default)]
    pub env: Env,
    /// The port the server listens on inside the container; the engine's usual one unless set.
    #[serde(default)]
    pub port: Option<u16>,
    /// A port on 127.0.0.1 of the Docker host the container's port is published on; torpor
    /// reaches the server there. Without it, torpor reaches the container at its address in
    /// `network` (torpor then runs in that network too).
    #[serde(default)]
    pub publish: Option<u16>,
    /// The Docker network the container joins; the daemon's default bridge unless set.
    #[serde(default)]
    pub network: Option<String>,
    /// The Docker Engine API: `unix:///path` or `tcp://host:port`; `DOCKER_HOST` unless set,
    /// else the standard socket.
    #[serde(default)]
    pub host: Option<String>,
    /// How long a start (the first one initialises the data) or a stop may take.
    #[serde(
        default = "default_timeout",
        deserialize_with = "super::super::factory::duration"
    )]
    pub timeout: Duration,
    /// TLS towards the server: `require` unless set.
    #[serde(default)]
    pub tls: Option<TlsMode>,
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// The container's environment; its values are passwords often, so Debug shows names only.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Env(pub BTreeMap<String, String>);

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

/// The default Docker Engine API address, as the docker CLI has it.
const STANDARD_SOCKET: &str = "unix:///var/run/docker.sock";

impl DockerConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        BackendTls::resolve_paths(&mut self.ca, base);
    }

    pub(crate) fn tls(&self) -> BackendTls {
        BackendTls::new(self.tls, TlsMode::Require, self.ca.clone())
    }

    pub(crate) fn container_name(&self, cluster: &str) -> String {
        self.container
            .clone()
            .unwrap_or_else(|| format!("torpor-{cluster}"))
    }

    pub(crate) fn volume_name(&self, cluster: &str) -> String {
        self.volume
            .clone()
            .unwrap_or_else(|| format!("{}-data", self.container_name(cluster)))
    }

    pub(crate) fn server_port(&self, engine: Engine) -> u16 {
        self.port.unwrap_or(match engine {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
        })
    }

    pub(crate) fn api_host(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| STANDARD_SOCKET.to_string())
    }

    pub(crate) fn check(&self) -> Result<Vec<ConfigProblem>, ConfigProblem> {
        if self.image.trim().is_empty() {
            return Err(ConfigProblem::new("image", "must name an image"));
        }
        for (field, name) in [("container", &self.container), ("volume", &self.volume)] {
            if let Some(n) = name
                && !docker_name(n)
            {
                return Err(ConfigProblem::new(
                    field,
                    format!("{n:?} is not a Docker name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)"),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err(ConfigProblem::new("timeout", "must be greater than zero"));
        }
        if self.port == Some(0) {
            return Err(ConfigProblem::new("port", "must not be 0"));
        }
        if self.publish == Some(0) {
            return Err(ConfigProblem::new(
                "publish",
                "must be a port; leave it out to reach the container in its network",
            ));
        }
        if let Some(h) = &self.host
            && !["unix://", "tcp://", "http://"]
                .iter()
                .any(|s| h.starts_with(s))
        {
            return Err(ConfigProblem::new(
                "host",
                "want unix:///path/to/docker.sock or tcp://host:port",
            ));
        }
        for key in self.env.0.keys() {
            if key.is_empty() || key.contains('=') {
                return Err(ConfigProblem::new(
                    "env",
                    format!("{key:?} is not an environment variable name"),
                ));
            }
        }
        Ok(Vec::new())
    }
}

/// What Docker accepts as a container or volume name.
fn docker_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Where the official images keep their data: the volume goes there.
pub(crate) fn data_path(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "/var/lib/postgresql/data",
        Engine::Mysql => "/var/lib/mysql",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_stay_out_of_debug_output() {
        let cfg: DockerConfig = toml::from_str(
            "image = \"postgres:15\"\nenv = { POSTGRES_PASSWORD = \"s3cr3t-value\" }\n",
        )
        .unwrap();
        let shown = format!("{cfg:?}");
        assert!(shown.contains("POSTGRES_PASSWORD"), "{shown}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
    }

    #[test]
    fn names_default_from_the_cluster() {
        let cfg: DockerConfig = toml::from_str("image = \"mariadb\"\n").unwrap();
        assert_eq!(cfg.container_name("shop"), "torpor-shop");
        assert_eq!(cfg.volume_name("shop"), "torpor-shop-data");
        assert_eq!(cfg.server_port(Engine::Mysql), 3306);
        assert_eq!(cfg.timeout, Duration::from_secs(60));
        let cfg: DockerConfig =
            toml::from_str("image = \"x\"\nhost = \"tcp://127.0.0.1:2375\"\n").unwrap();
        assert_eq!(cfg.api_host(), "tcp://127.0.0.1:2375");
        assert!(cfg.check().is_ok());
    }
}
