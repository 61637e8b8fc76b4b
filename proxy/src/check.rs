//! `torpor check` beyond the file itself: what `torpor up` would refuse on this machine now
//! (missing server binaries, a data dir another torpor holds, ports in use), found without
//! starting, creating or changing anything.

use std::net::TcpListener;

use crate::config::{Config, ConfigError, invalid};

/// Ok with warnings about what `up` copes with; Err naming the key of what it would refuse.
pub fn environment(cfg: &Config) -> Result<Vec<String>, ConfigError> {
    // The admin token file must be there and hold a token, as `up` reads it.
    cfg.admin.token()?;
    let mut warnings = Vec::new();
    for (i, c) in cfg.clusters.iter().enumerate() {
        let key = |k: &str| format!("cluster[{i}].{k}");
        let backend_key = |field: &str| key(&format!("backend.{field}"));
        let found = c
            .backend
            .check(c.protocol.engine())
            .map_err(|e| invalid(backend_key(e.field), e.problem))?;
        warnings.extend(
            found
                .into_iter()
                .map(|w| format!("{}: {}", backend_key(w.field), w.problem)),
        );
        for (j, u) in c.users.iter().enumerate() {
            if u.password.is_some() {
                warnings.push(format!(
                    "{}: the password is in the config in clear; use password_hash (torpor \
                     hash-password), password_file or password_env",
                    key(&format!("users[{j}].password"))
                ));
            }
        }
    }
    for (addr, clusters) in cfg.doors() {
        let key = format!("cluster[{}].listen", clusters[0]);
        bindable(&addr).map_err(|e| invalid(key, e))?;
    }
    bindable(&cfg.admin.listen).map_err(|e| invalid("admin.listen", e))?;
    if let Some(path) = cfg.default_key_file() {
        warnings.push(format!(
            "state_store: no key_file or key_env; `torpor up` seals snapshots with {} (made at \
             the first start): keep that file, or set key_file",
            path.display()
        ));
    }
    Ok(warnings)
}

/// Binds `addr` as `up` would and lets go at once.
fn bindable(addr: &str) -> Result<(), String> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("{addr}: {e}"))
}
