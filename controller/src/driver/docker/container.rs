//! The container torpor creates for a cluster, and what it reads back from an inspect.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptions;

use super::super::factory::Engine;
use super::config::{DockerConfig, data_path};

/// The label torpor puts on the containers it creates, naming the cluster.
pub(super) const CLUSTER_LABEL: &str = "io.torpor.cluster";

/// What torpor asks the daemon to create.
pub(super) struct Spec {
    pub(super) name: String,
    pub(super) volume: String,
    body: ContainerCreateBody,
}

impl Spec {
    pub(super) fn new(engine: Engine, cluster: &str, cfg: &DockerConfig) -> Spec {
        let name = cfg.container_name(cluster);
        let volume = cfg.volume_name(cluster);
        let port = format!("{}/tcp", cfg.server_port(engine));
        let port_bindings = cfg.publish.map(|p| {
            HashMap::from([(
                port.clone(),
                Some(vec![PortBinding {
                    // Published on loopback only: the server is torpor's, not the network's.
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(p.to_string()),
                }]),
            )])
        });
        let body = ContainerCreateBody {
            image: Some(cfg.image.clone()),
            env: Some(cfg.env.0.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            exposed_ports: Some(vec![port]),
            labels: Some(HashMap::from([(CLUSTER_LABEL.into(), cluster.into())])),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{volume}:{}", data_path(engine))]),
                port_bindings,
                network_mode: cfg.network.clone(),
                // torpor decides when the server runs, not the daemon.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        Spec { name, volume, body }
    }

    pub(super) fn create(&self) -> (CreateContainerOptions, ContainerCreateBody) {
        let options = CreateContainerOptions {
            name: Some(self.name.clone()),
            ..Default::default()
        };
        (options, self.body.clone())
    }
}

/// A container as an inspect showed it.
#[derive(Debug, Default)]
pub(super) struct Observed {
    pub(super) id: Option<String>,
    pub(super) running: bool,
    pub(super) paused: bool,
    exit_code: Option<i64>,
    error: Option<String>,
    oom_killed: bool,
    /// Its address in each network it is in.
    networks: Vec<(String, IpAddr)>,
}

impl Observed {
    /// A container just created: not running yet.
    pub(super) fn created() -> Observed {
        Observed::default()
    }

    /// How a container that is not running ended, in words.
    pub(super) fn ended(&self) -> String {
        let mut s = match self.exit_code {
            Some(code) => format!("exited with code {code}"),
            None => "not running".to_string(),
        };
        if self.oom_killed {
            s.push_str(", out of memory");
        }
        if let Some(e) = self.error.as_deref().filter(|e| !e.is_empty()) {
            s.push_str(": ");
            s.push_str(e);
        }
        s
    }

    /// Where the server is reached in `network` (or in the container's only network).
    pub(super) fn address(&self, network: Option<&str>, port: u16) -> Option<SocketAddr> {
        let ip = match network {
            Some(n) => self.networks.iter().find(|(name, _)| name == n)?.1,
            None => match self.networks.as_slice() {
                [(_, ip)] => *ip,
                _ => return None,
            },
        };
        Some(SocketAddr::new(ip, port))
    }
}

impl From<ContainerInspectResponse> for Observed {
    fn from(c: ContainerInspectResponse) -> Observed {
        let state = c.state.unwrap_or_default();
        let networks = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, e)| Some((name, e.ip_address?.parse().ok()?)))
            .collect();
        Observed {
            id: c.id,
            running: state.running.unwrap_or(false),
            paused: state.paused.unwrap_or(false),
            exit_code: state.exit_code,
            error: state.error,
            oom_killed: state.oom_killed.unwrap_or(false),
            networks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> DockerConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_container_keeps_its_data_on_a_volume_and_publishes_on_loopback_only() {
        let c =
            cfg("image = \"postgres:15\"\npublish = 16432\nenv = { POSTGRES_PASSWORD = \"pw\" }\n");
        let spec = Spec::new(Engine::Postgres, "app", &c);
        assert_eq!(spec.name, "torpor-app");
        assert_eq!(spec.volume, "torpor-app-data");
        let (options, body) = spec.create();
        assert_eq!(options.name.as_deref(), Some("torpor-app"));
        assert_eq!(body.env, Some(vec!["POSTGRES_PASSWORD=pw".to_string()]));
        let host = body.host_config.unwrap();
        assert_eq!(
            host.binds,
            Some(vec!["torpor-app-data:/var/lib/postgresql/data".to_string()])
        );
        let bound = &host.port_bindings.unwrap()["5432/tcp"];
        let bound = &bound.as_ref().unwrap()[0];
        assert_eq!(bound.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(bound.host_port.as_deref(), Some("16432"));

        let c =
            cfg("image = \"mariadb\"\ncontainer = \"shop\"\nvolume = \"shop-db\"\nport = 3307\n");
        let (_, body) = Spec::new(Engine::Mysql, "x", &c).create();
        let host = body.host_config.unwrap();
        assert_eq!(host.binds, Some(vec!["shop-db:/var/lib/mysql".to_string()]));
        assert!(host.port_bindings.is_none(), "nothing published");
        assert_eq!(body.exposed_ports, Some(vec!["3307/tcp".to_string()]));
    }

    #[test]
    fn the_address_is_the_one_in_the_named_network() {
        let o = Observed {
            networks: vec![
                ("a".into(), "10.0.0.2".parse().unwrap()),
                ("b".into(), "10.1.0.2".parse().unwrap()),
            ],
            ..Observed::default()
        };
        assert_eq!(
            o.address(Some("b"), 5432),
            Some("10.1.0.2:5432".parse().unwrap())
        );
        assert_eq!(o.address(None, 5432), None, "which one is ambiguous");
        assert_eq!(o.address(Some("c"), 5432), None);
        let one = Observed {
            networks: vec![("bridge".into(), "172.17.0.2".parse().unwrap())],
            ..Observed::default()
        };
        assert_eq!(
            one.address(None, 3306),
            Some("172.17.0.2:3306".parse().unwrap())
        );
    }

    #[test]
    fn an_ended_container_says_how() {
        let o = Observed {
            exit_code: Some(1),
            oom_killed: true,
            error: Some("boom".into()),
            ..Observed::default()
        };
        assert_eq!(o.ended(), "exited with code 1, out of memory: boom");
    }
}
