//! Where clusters listen: `listen` (one address or a list), PostgreSQL clusters sharing an
//! address and told apart by `server_names` (TLS SNI) or the `torpor.cluster` startup option,
//! and `[proxy] max_clusters`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;

use serde::Deserialize;

use super::{ClusterConfig, Config, ConfigError, Protocol, invalid};

/// `listen = "host:port"` or `listen = ["host:port", ...]`.
pub(super) fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Listen {
        One(String),
        Many(Vec<String>),
    }
    match Listen::deserialize(d) {
        Ok(Listen::One(a)) => Ok(vec![a]),
        Ok(Listen::Many(a)) => Ok(a),
        Err(_) => Err(serde::de::Error::custom(
            "listen: want \"host:port\" or a list of them",
        )),
    }
}

impl Config {
    /// Each address torpor listens on with the clusters (indexes, in config order) served
    /// there, in the order the addresses first appear.
    pub fn doors(&self) -> Vec<(String, Vec<usize>)> {
        let mut doors: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, c) in self.clusters.iter().enumerate() {
            for addr in &c.listen {
                match doors.iter_mut().find(|(a, _)| same_addr(a, addr)) {
                    Some((_, served)) => served.push(i),
                    None => doors.push((addr.clone(), vec![i])),
                }
            }
        }
        doors
    }
}

/// Two spellings of one address (`127.0.0.1:5432`, `127.0.0.1:05432`) are one door.
pub fn same_addr(a: &str, b: &str) -> bool {
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

pub(super) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    if let Some(max) = cfg.proxy.max_clusters {
        if max == 0 {
            return Err(invalid("proxy.max_clusters", "must be greater than zero"));
        }
        if cfg.clusters.len() > max {
            return Err(invalid(
                "proxy.max_clusters",
                format!(
                    "the config has {} clusters, more than this instance may serve ({max})",
                    cfg.clusters.len()
                ),
            ));
        }
    }
    // Binding one port on two addresses of which one is 0.0.0.0 fails.
    let mut ports: HashMap<u16, SocketAddr> = HashMap::new();
    for (i, c) in cfg.clusters.iter().enumerate() {
        let key = format!("cluster[{i}].listen");
        if c.listen.is_empty() {
            return Err(invalid(key, "needs at least one address"));
        }
        let mut own = Vec::new();
        for text in &c.listen {
            let addr: SocketAddr = text
                .parse()
                .map_err(|e| invalid(&key, format!("{text:?}: {e} (want host:port)")))?;
            if own.contains(&addr) {
                return Err(invalid(&key, format!("{addr} is listed twice")));
            }
            own.push(addr);
            if let Some(other) = ports.insert(addr.port(), addr)
                && other != addr
            {
                return Err(invalid(&key, format!("port {} is used twice", addr.port())));
            }
        }
    }
    shared(cfg)?;
    server_names(cfg)
}

/// Every port a cluster listens on.
pub(super) fn ports(cfg: &Config) -> HashSet<u16> {
    cfg.clusters
        .iter()
        .flat_map(|c| &c.listen)
        .filter_map(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .collect()
}

/// A cluster's first address.
pub(super) fn first(c: &ClusterConfig, key: &str) -> Result<SocketAddr, ConfigError> {
    let text = c.listen.first().map(String::as_str).unwrap_or_default();
    text.parse()
        .map_err(|e| invalid(key, format!("{text:?}: {e} (want host:port)")))
}

/// Only PostgreSQL clusters share an address: a MySQL server greets the client before the
/// client says anything, TLS included, so nothing could tell MySQL clusters apart.
fn shared(cfg: &Config) -> Result<(), ConfigError> {
    for (addr, served) in cfg.doors() {
        if served.len() < 2 {
            continue;
        }
        if let Some(&i) = served
            .iter()
            .find(|&&i| cfg.clusters[i].protocol == Protocol::Mysql)
        {
            let names: Vec<&str> = served
                .iter()
                .map(|&j| cfg.clusters[j].name.as_str())
                .collect();
            return Err(invalid(
                format!("cluster[{i}].listen"),
                format!(
                    "{addr} is shared by clusters {}: a MySQL cluster needs an address of its \
                     own, since MySQL clients are greeted before they can name a cluster",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `server_names`: PostgreSQL only, each name one cluster's.
fn server_names(cfg: &Config) -> Result<(), ConfigError> {
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    for (i, c) in cfg.clusters.iter().enumerate() {
        let key = format!("cluster[{i}].server_names");
        if !c.server_names.is_empty() && c.protocol != Protocol::Postgres {
            return Err(invalid(
                key,
                "only PostgreSQL clusters are chosen by TLS server name",
            ));
        }
        for name in &c.server_names {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return Err(invalid(
                    &key,
                    format!("{name:?} is not a host name (letters, digits, '-', '.', '_')"),
                ));
            }
            if let Some(other) = owner.insert(name.to_ascii_lowercase(), &c.name) {
                return Err(invalid(&key, format!("{name:?} is also cluster {other}'s")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::TEST_CONFIG;
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/base"))
    }

    /// TEST_CONFIG with a second cluster `b` of `protocol`, listening on `listen` (TOML).
    fn two(protocol: &str, listen: &str, b_extra: &str) -> String {
        format!(
            "{TEST_CONFIG}\n[[cluster]]\nname = \"b\"\nprotocol = \"{protocol}\"\nlisten = \
             {listen}\n{b_extra}\n[cluster.backend]\ndriver = \"process\"\ndata_dir = \
             \"data/b\"\nport = 7003\n[[cluster.users]]\nname = \"app\"\npassword = \"x\"\n"
        )
    }

    #[test]
    fn listen_takes_one_address_or_a_list() {
        let cfg = parse(TEST_CONFIG).unwrap();
        assert_eq!(cfg.clusters[0].listen, ["127.0.0.1:7001"]);
        let list = TEST_CONFIG.replace(
            "listen = \"127.0.0.1:7001\"",
            "listen = [\"127.0.0.1:7001\", \"127.0.0.1:7011\"]",
        );
        let cfg = parse(&list).unwrap();
        assert_eq!(cfg.clusters[0].listen, ["127.0.0.1:7001", "127.0.0.1:7011"]);
        assert_eq!(
            cfg.doors(),
            [
                ("127.0.0.1:7001".to_string(), vec![0]),
                ("127.0.0.1:7011".to_string(), vec![0])
            ]
        );
        for (bad, says) in [
            ("listen = []", "needs at least one address"),
            (
                "listen = [\"127.0.0.1:7001\", \"127.0.0.1:7001\"]",
                "listed twice",
            ),
            ("listen = [\"127.0.0.1:7001\", \"nope\"]", "\"nope\""),
            (
                "listen = [\"127.0.0.1:7001\", \"0.0.0.0:7001\"]",
                "port 7001 is used twice",
            ),
            (
                "listen = [\"127.0.0.1:7001\", \"127.0.0.1:7002\"]",
                "backend.port",
            ),
        ] {
            let text = TEST_CONFIG.replace("listen = \"127.0.0.1:7001\"", bad);
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.starts_with("cluster[0]."), "{bad}: {e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
        let e = parse(&TEST_CONFIG.replace("listen = \"127.0.0.1:7001\"", "listen = 7"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn postgres_clusters_share_an_address_and_mysql_ones_do_not() {
        let cfg = parse(&two("postgres", "\"127.0.0.1:7001\"", "")).unwrap();
        assert_eq!(cfg.doors(), [("127.0.0.1:7001".to_string(), vec![0, 1])]);
        let e = parse(&two("mysql", "\"127.0.0.1:7001\"", ""))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cluster[1].listen:"), "{e}");
        assert!(
            e.contains("MySQL cluster needs an address of its own"),
            "{e}"
        );
        // On an address of its own a MySQL cluster is fine beside a shared PostgreSQL one.
        parse(&two("mysql", "\"127.0.0.1:7004\"", "")).unwrap();
        // Other clusters' ports stay their own.
        let e = parse(&two("postgres", "\"0.0.0.0:7001\"", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("port 7001 is used twice"), "{e}");
    }

    #[test]
    fn server_names_are_postgres_only_and_each_one_clusters() {
        let names = "server_names = [\"a.db.example.com\"]";
        let cfg = parse(&two("postgres", "\"127.0.0.1:7001\"", names)).unwrap();
        assert_eq!(cfg.clusters[1].server_names, ["a.db.example.com"]);
        let both = two("postgres", "\"127.0.0.1:7001\"", names).replacen(
            "idle_timeout",
            "server_names = [\"A.db.example.com\"]\nidle_timeout",
            1,
        );
        let e = parse(&both).unwrap_err().to_string();
        assert!(e.starts_with("cluster[1].server_names:"), "{e}");
        assert!(e.contains("also cluster a's"), "{e}");
        let e = parse(&two("mysql", "\"127.0.0.1:7004\"", names))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cluster[1].server_names:"), "{e}");
        let e = parse(&two(
            "postgres",
            "\"127.0.0.1:7004\"",
            "server_names = [\"a b\"]",
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a host name"), "{e}");
    }

    #[test]
    fn max_clusters_caps_the_clusters_of_one_instance() {
        let cfg = parse(TEST_CONFIG).unwrap();
        assert_eq!(cfg.proxy.max_clusters, None);
        let text = two("postgres", "\"127.0.0.1:7004\"", "");
        parse(&format!("{text}\n[proxy]\nmax_clusters = 2\n")).unwrap();
        let e = parse(&format!("{text}\n[proxy]\nmax_clusters = 1\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("proxy.max_clusters:"), "{e}");
        assert!(e.contains("has 2 clusters"), "{e}");
        let e = parse(&format!("{text}\n[proxy]\nmax_clusters = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("proxy.max_clusters:"), "{e}");
    }
}
