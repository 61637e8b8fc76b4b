//! `[cluster.backend] tls` and `ca`: whether torpor speaks TLS to the database server. Every
//! driver takes them; the process driver's server is on this machine, behind a Unix socket,
//! so it defaults to `disable`, and the drivers of servers elsewhere default to `require`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::factory::ConfigProblem;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plaintext (a Unix socket when the server has one).
    Disable,
    /// TLS over TCP, the server's certificate not checked: against a passive eavesdropper only.
    Require,
    /// TLS over TCP, the certificate checked against `ca` and the server's address or name.
    VerifyFull,
}

/// How torpor reaches one cluster's server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    pub mode: TlsMode,
    /// PEM file of the CA(s) `verify-full` trusts.
    pub ca: Option<PathBuf>,
}

impl BackendTls {
    pub(crate) fn new(mode: Option<TlsMode>, default: TlsMode, ca: Option<PathBuf>) -> Self {
        BackendTls {
            mode: mode.unwrap_or(default),
            ca,
        }
    }

    pub(crate) fn resolve_paths(ca: &mut Option<PathBuf>, base: &Path) {
        if let Some(p) = ca
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// `verify-full` needs a CA to verify against.
    pub fn problem(&self) -> Option<ConfigProblem> {
        (self.mode == TlsMode::VerifyFull && self.ca.is_none()).then(|| {
            ConfigProblem::new(
                "ca",
                "tls = \"verify-full\" needs a CA file to verify the server against",
            )
        })
    }
}
