//! The front door's settings: `[proxy]` (handshake timeout, connection cap) and the admin API's
//! token.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{AdminConfig, Config, ConfigError, invalid};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// How long a client may take from connecting to being logged in, TLS included.
    #[serde(
        deserialize_with = "handshake_timeout",
        default = "default_handshake_timeout"
    )]
    pub handshake_timeout: Duration,
    /// Client connections over all clusters, logged in or not; beyond it a client gets the
    /// server's own "too many connections" error.
    #[serde(default = "default_max_client_connections")]
    pub max_client_connections: usize,
    /// How long a client's request waits for a wake (the database to start, the store to
    /// give the session's snapshot, a free connection) before it fails and the session stays
    /// parked for the next one.
    #[serde(deserialize_with = "wake_timeout", default = "default_wake_timeout")]
    pub wake_timeout: Duration,
    /// This torpor's name in the snapshot store (`<prefix>/<instance>/...`); by default made
    /// of the host and the config file's path ([`Config::instance`]).
    #[serde(default)]
    pub instance: Option<String>,
    /// Client messages held whole in memory at once, over every session: one that doesn't fit
    /// gets the server's out-of-memory error.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// How many clusters this instance may serve (`[[cluster]]` tables); none: no cap.
    #[serde(default)]
    pub max_clusters: Option<usize>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            handshake_timeout: default_handshake_timeout(),
            max_client_connections: default_max_client_connections(),
            wake_timeout: default_wake_timeout(),
            instance: None,
            max_buffered_bytes: default_max_buffered_bytes(),
            max_clusters: None,
        }
    }
}

fn default_max_buffered_bytes() -> usize {
    crate::net::budget::DEFAULT_MAX_BUFFERED
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_client_connections() -> usize {
    10_000
}

fn handshake_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    super::duration("handshake_timeout", d)
}

fn default_wake_timeout() -> Duration {
    Duration::from_secs(30)
}

fn wake_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    super::duration("wake_timeout", d)
}

impl AdminConfig {
    /// The bearer token clients of the admin API must send, if one is configured: the first
    /// line of `token_file`.
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                "admin.token_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(invalid(
                "admin.token_file",
                format!("{} holds no token on its first line", path.display()),
            ));
        }
        Ok(Some(token.to_string()))
    }

    pub(super) fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.token_file
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }
}

pub(super) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    let admin: SocketAddr = cfg
        .admin
        .listen
        .parse()
        .map_err(|e| invalid("admin.listen", format!("{e} (want host:port)")))?;
    // Anyone who reaches the admin API can stop databases and read who is connected.
    if !admin.ip().is_loopback() && cfg.admin.token_file.is_none() {
        return Err(invalid(
            "admin.token_file",
            format!(
                "required when admin.listen ({admin}) is not a loopback address: the admin API \
                 would be open to anyone who can reach it"
            ),
        ));
    }
    if cfg.proxy.handshake_timeout.is_zero() {
        return Err(invalid(
            "proxy.handshake_timeout",
            "must be greater than zero",
        ));
    }
    if cfg.proxy.wake_timeout.is_zero() {
        return Err(invalid("proxy.wake_timeout", "must be greater than zero"));
    }
    if cfg.proxy.max_client_connections == 0 {
        return Err(invalid(
            "proxy.max_client_connections",
            "must be greater than zero",
        ));
    }
    if cfg.proxy.max_buffered_bytes == 0 {
        return Err(invalid(
            "proxy.max_buffered_bytes",
            "must be greater than zero",
        ));
    }
    for (i, c) in cfg.clusters.iter().enumerate() {
        if c.max_client_connections == Some(0) {
            return Err(invalid(
                format!("cluster[{i}].max_client_connections"),
                "must be greater than zero",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::TEST_CONFIG;
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/base"))
    }

    #[test]
    fn proxy_settings_have_defaults_and_are_checked() {
        let cfg = parse(TEST_CONFIG).unwrap();
        assert_eq!(cfg.proxy.handshake_timeout, Duration::from_secs(30));
        assert_eq!(cfg.proxy.max_client_connections, 10_000);
        assert_eq!(cfg.clusters[0].max_client_connections, None);
        let set = format!(
            "{TEST_CONFIG}\n[proxy]\nhandshake_timeout = \"1s\"\nmax_client_connections = 5\n"
        )
        .replace("idle_timeout", "max_client_connections = 2\nidle_timeout");
        let cfg = parse(&set).unwrap();
        assert_eq!(cfg.proxy.handshake_timeout, Duration::from_secs(1));
        assert_eq!(cfg.proxy.max_client_connections, 5);
        assert_eq!(cfg.clusters[0].max_client_connections, Some(2));
        let e = parse(&set.replace("\"1s\"", "\"1M\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("handshake_timeout"), "{e}");
        let e = parse(&set.replace("= 5", "= 0")).unwrap_err().to_string();
        assert!(e.starts_with("proxy.max_client_connections:"), "{e}");
    }

    #[test]
    fn a_non_loopback_admin_listen_needs_a_token() {
        let open = TEST_CONFIG.replace("127.0.0.1:7000", "0.0.0.0:7000");
        let e = parse(&open).unwrap_err().to_string();
        assert!(e.starts_with("admin.token_file:"), "{e}");
        let with_token = open.replace(
            "listen = \"0.0.0.0:7000\"",
            "listen = \"0.0.0.0:7000\"\ntoken_file = \"admin-token\"",
        );
        let cfg = parse(&with_token).unwrap();
        assert_eq!(
            cfg.admin.token_file,
            Some(PathBuf::from("/base/admin-token"))
        );
        // Loopback needs none.
        assert!(parse(TEST_CONFIG).unwrap().admin.token().unwrap().is_none());
    }

    #[test]
    fn the_token_is_the_first_line_of_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let admin = AdminConfig {
            listen: "0.0.0.0:1".into(),
            token_file: Some(path.clone()),
        };
        assert!(admin.token().is_err(), "a missing file");
        std::fs::write(&path, "\n").unwrap();
        assert!(admin.token().is_err(), "an empty first line");
        std::fs::write(&path, "s3cret \nignored\n").unwrap();
        assert_eq!(admin.token().unwrap().as_deref(), Some("s3cret"));
    }
}
