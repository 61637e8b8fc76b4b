//! `[tls]` and `[cluster.tls]`: the certificate torpor shows clients, and `require_tls`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Config, ConfigError, invalid};

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsConfig {
    fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.cert, &mut self.key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

pub(super) fn resolve_paths(cfg: &mut Config, base: &Path) {
    if let Some(t) = &mut cfg.tls {
        t.resolve_paths(base);
    }
    for c in &mut cfg.clusters {
        if let Some(t) = &mut c.tls {
            t.resolve_paths(base);
        }
    }
}

pub(super) fn validate(cfg: &Config) -> Result<(), ConfigError> {
    for (i, c) in cfg.clusters.iter().enumerate() {
        if c.require_tls && c.tls.is_none() && cfg.tls.is_none() {
            return Err(invalid(
                format!("cluster[{i}].require_tls"),
                "needs a certificate: set [tls] or [cluster.tls] cert and key",
            ));
        }
    }
    Ok(())
}

impl Config {
    /// The certificate cluster `i` shows its clients: its own, else the proxy's, else none
    /// (plaintext only).
    pub fn cluster_tls(&self, i: usize) -> Option<&TlsConfig> {
        self.clusters.get(i)?.tls.as_ref().or(self.tls.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::super::TEST_CONFIG;
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/base"))
    }

    #[test]
    fn certificates_are_the_clusters_or_the_proxys() {
        let cfg = parse(TEST_CONFIG).unwrap();
        assert_eq!(cfg.cluster_tls(0), None);
        let text = format!("[tls]\ncert = \"c.pem\"\nkey = \"/k.pem\"\n{TEST_CONFIG}");
        let cfg = parse(&text).unwrap();
        let want = TlsConfig {
            cert: "/base/c.pem".into(),
            key: "/k.pem".into(),
        };
        assert_eq!(cfg.cluster_tls(0), Some(&want));
        let own = format!("{TEST_CONFIG}\n[cluster.tls]\ncert = \"own.pem\"\nkey = \"own.key\"\n");
        let cfg = parse(&own).unwrap();
        assert_eq!(
            cfg.cluster_tls(0).unwrap().cert,
            PathBuf::from("/base/own.pem")
        );
    }

    #[test]
    fn require_tls_needs_a_certificate() {
        let text = TEST_CONFIG.replace("idle_timeout", "require_tls = true\nidle_timeout");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("cluster[0].require_tls:"), "{e}");
        let with = format!("[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{text}");
        assert!(parse(&with).unwrap().clusters[0].require_tls);
    }
}
