//! `[cluster.backend]`: which driver runs a cluster's backend, with that driver's settings, and
//! the one place a driver is built from them. Another driver (docker, kubernetes, command) is
//! another variant of [`BackendConfig`] and a module of its own beside `process`.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::Driver;
use super::command::{self, CommandConfig};
use super::docker::{self, DockerConfig};
use super::kubernetes::{self, KubernetesConfig};
use super::process::{self, ProcessConfig};
use super::tls::{BackendTls, TlsMode};

/// Which database server a backend runs. The cluster's wire protocol decides it; each driver
/// knows what runs it (the process driver: `postgres`, or `mariadbd` for the MySQL family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Mysql,
}

/// `[cluster.backend]`, tagged by its `driver` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "driver", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// torpor runs the server itself, as a child process on this machine.
    Process(ProcessConfig),
    /// Shell commands start and stop the server, wherever it runs.
    Command(CommandConfig),
    /// A Kubernetes workload scaled between zero and one (or a CloudNativePG cluster
    /// hibernated and woken).
    Kubernetes(KubernetesConfig),
    /// A container of a Docker Engine, created when missing, started and stopped through its API.
    Docker(DockerConfig),
}

impl BackendConfig {
    /// The driver this config names, for one cluster. Builds nothing on disk: the driver
    /// claims, creates and starts when asked to.
    pub fn build(
        &self,
        engine: Engine,
        cluster: &str,
        users: Vec<BootstrapUser>,
    ) -> Box<dyn Driver> {
        match self {
            BackendConfig::Process(p) => process::build(engine, cluster, p.clone(), users),
            // The server's users are the operator's to make (with the same verifiers).
            BackendConfig::Command(c) => command::build(engine, cluster, c.clone()),
            BackendConfig::Kubernetes(k) => kubernetes::build(engine, cluster, k.clone()),
            // The image's entrypoint makes the users, from the container's env.
            BackendConfig::Docker(d) => docker::build(engine, cluster, d.clone()),
        }
    }

    /// What the driver would refuse on this machine now (missing binaries, a data directory
    /// another torpor holds, a port in use), found without starting, creating or changing
    /// anything. Ok carries warnings about what it copes with.
    pub fn check(&self, engine: Engine) -> Result<Vec<ConfigProblem>, ConfigProblem> {
        match self {
            BackendConfig::Process(p) => process::check(engine, p),
            BackendConfig::Command(c) => c.check(),
            BackendConfig::Kubernetes(k) => k.check(engine),
            BackendConfig::Docker(d) => d.check(),
        }
    }

    /// Takes relative paths in the config from `base`, the config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        match self {
            BackendConfig::Process(p) => p.resolve_paths(base),
            BackendConfig::Command(c) => c.resolve_paths(base),
            BackendConfig::Kubernetes(k) => k.resolve_paths(base),
            BackendConfig::Docker(d) => d.resolve_paths(base),
        }
    }

    /// Whether and how torpor speaks TLS to the server.
    pub fn tls(&self) -> BackendTls {
        match self {
            BackendConfig::Process(p) => BackendTls::new(p.tls, TlsMode::Disable, p.ca.clone()),
            BackendConfig::Command(c) => c.tls(),
            BackendConfig::Kubernetes(k) => k.tls(),
            BackendConfig::Docker(d) => d.tls(),
        }
    }

    /// The TCP port on this machine the backend listens on, which nothing else of torpor's
    /// may use.
    pub fn local_port(&self) -> Option<u16> {
        match self {
            BackendConfig::Process(p) => Some(p.port),
            BackendConfig::Command(_) | BackendConfig::Kubernetes(_) => None,
            BackendConfig::Docker(d) => d.publish,
        }
    }
}

/// A `timeout`-like key: a duration as humantime writes it (`90s`, `2m`).
pub(super) fn duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("timeout: {e}")))
}

/// A field of a backend's config that its driver would refuse, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct ConfigProblem {
    /// The field's name under `[cluster.backend]` (`bin_dir`, `run_as`, `port`, …).
    pub field: &'static str,
    pub problem: String,
}

impl ConfigProblem {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        ConfigProblem {
            field,
            problem: problem.into(),
        }
    }
}

impl From<ConfigProblem> for super::DriverError {
    fn from(p: ConfigProblem) -> Self {
        super::DriverError::Failed(p.problem)
    }
}

/// A database user created when the backend's data is first initialised, with a database of
/// the same name that it owns.
#[derive(Clone)]
pub struct BootstrapUser {
    pub name: String,
    /// The password, or with `hashed` PostgreSQL's SCRAM-SHA-256 verifier of it or MariaDB's
    /// mysql_native_password hash (`*` and 40 hex digits).
    pub password: String,
    /// `password` is a verifier: the server must hold exactly it (torpor logs in with keys
    /// that only it opens), so a driver sets it again at every start.
    pub hashed: bool,
    pub superuser: bool,
}

impl fmt::Debug for BootstrapUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("superuser", &self.superuser)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BackendConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn the_driver_key_picks_the_variant() {
        let mut cfg = parse("driver = \"process\"\ndata_dir = \"data\"\nport = 7002\n").unwrap();
        assert_eq!(cfg.local_port(), Some(7002));
        cfg.resolve_paths(Path::new("/base"));
        match &cfg {
            BackendConfig::Process(p) => assert_eq!(p.data_dir, Path::new("/base/data")),
            other => panic!("{other:?}"),
        }
        let cfg =
            parse("driver = \"command\"\nstart = \"up\"\nstop = \"down\"\ntimeout = \"5s\"\n")
                .unwrap();
        assert_eq!(cfg.local_port(), None);
        assert_eq!(
            cfg.tls().mode,
            TlsMode::Require,
            "a server elsewhere: TLS by default"
        );
        assert!(matches!(cfg.check(Engine::Postgres), Ok(w) if w.is_empty()));

        let cfg = parse("driver = \"docker\"\nimage = \"postgres:15\"\npublish = 16432\n").unwrap();
        assert_eq!(cfg.local_port(), Some(16432), "the published port is taken");
        assert_eq!(cfg.tls().mode, TlsMode::Require);
        assert!(matches!(cfg.check(Engine::Postgres), Ok(w) if w.is_empty()));
        let bad = parse("driver = \"docker\"\nimage = \"x\"\ncontainer = \"-x\"\n").unwrap();
        assert_eq!(bad.check(Engine::Mysql).unwrap_err().field, "container");
        let bad = parse("driver = \"docker\"\nimage = \"x\"\nhost = \"ssh://h\"\n").unwrap();
        assert_eq!(bad.check(Engine::Mysql).unwrap_err().field, "host");

        let e = parse("driver = \"teleport\"\nport = 1\n").unwrap_err();
        assert!(e.to_string().contains("teleport"), "{e}");
        let e = parse("data_dir = \"/d\"\nport = 1\n").unwrap_err();
        assert!(e.to_string().contains("driver"), "{e}");
        let e =
            parse("driver = \"process\"\ndata_dir = \"/d\"\nport = 1\nsurprise = 1\n").unwrap_err();
        assert!(e.to_string().contains("surprise"), "{e}");
    }

    #[tokio::test]
    async fn build_gives_a_driver_that_has_not_started() {
        let cfg = parse("driver = \"process\"\ndata_dir = \"/nonexistent/torpor/x\"\nport = 1\n")
            .unwrap();
        for engine in [Engine::Postgres, Engine::Mysql] {
            let driver = cfg.build(engine, "c", vec![]);
            assert_eq!(
                driver.status().await.state,
                super::super::BackendState::Stopped
            );
        }
        assert!(!Path::new("/nonexistent/torpor").exists());
    }

    #[test]
    fn users_hide_their_password() {
        let u = BootstrapUser {
            name: "app".into(),
            password: "secret".into(),
            hashed: false,
            superuser: false,
        };
        assert!(!format!("{u:?}").contains("secret"));
    }
}
