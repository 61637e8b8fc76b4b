//! `torpor check` beyond the file itself: what `torpor up` would refuse on this machine now
//! (missing server binaries, a data dir another torpor holds, ports in use), found without
//! starting, creating or changing anything.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use controller::process::lock::DataDirLock;
use controller::process::{MariadbProcess, PostgresProcess, ProcessConfig};

use crate::config::{BackendConfig, Config, ConfigError, Protocol, invalid};

/// Ok with warnings about what `up` copes with; Err naming the key of what it would refuse.
pub fn environment(cfg: &Config) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    for (i, c) in cfg.clusters.iter().enumerate() {
        let key = |k: &str| format!("cluster[{i}].{k}");
        let BackendConfig::Process(p) = &c.backend;
        let checked = match c.protocol {
            Protocol::Postgres => PostgresProcess::check(p),
            Protocol::Mysql => MariadbProcess::check(p),
        };
        checked.map_err(|e| invalid(key(&format!("backend.{}", e.field)), e.problem))?;
        match DataDirLock::holder(&p.data_dir) {
            Ok(None) => {}
            Ok(Some(holder)) => {
                return Err(invalid(
                    key("backend.data_dir"),
                    format!(
                        "{} is in use by a running torpor{} (lock file {})",
                        p.data_dir.display(),
                        holder
                            .pid
                            .map(|p| format!(" (pid {p})"))
                            .unwrap_or_default(),
                        holder.lock.display()
                    ),
                ));
            }
            Err(e) => return Err(invalid(key("backend.data_dir"), e.to_string())),
        }
        bindable(&c.listen).map_err(|e| invalid(key("listen"), e))?;
        let backend = SocketAddr::from((Ipv4Addr::LOCALHOST, p.port));
        if let Err(e) = bindable(&backend.to_string()) {
            match running_on(c.protocol, p) {
                // Most likely the server on that pid: `up` stops it before it starts its own.
                Some(pid) => warnings.push(format!(
                    "{}: {e}; {} names pid {pid}, a server an earlier torpor left running: \
                     `up` will stop it",
                    key("backend.port"),
                    p.data_dir.display()
                )),
                None => return Err(invalid(key("backend.port"), e)),
            }
        }
    }
    bindable(&cfg.admin.listen).map_err(|e| invalid("admin.listen", e))?;
    Ok(warnings)
}

fn running_on(protocol: Protocol, p: &ProcessConfig) -> Option<u32> {
    match protocol {
        Protocol::Postgres => PostgresProcess::running_on(p),
        Protocol::Mysql => MariadbProcess::running_on(p),
    }
}

/// Binds `addr` as `up` would and lets go at once.
fn bindable(addr: &str) -> Result<(), String> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| format!("{addr}: {e}"))
}
