//! An address torpor listens on and the clusters served there. A MySQL cluster has its
//! addresses to itself; PostgreSQL clusters may share one, each client choosing its cluster
//! by TLS server name (SNI) or the `torpor.cluster` startup option (`pg::startup`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster_front::ClusterFront;
use crate::config::{Config, Protocol, same_addr};
use crate::limits::{self, Cap};
use crate::{mysql, pg};

/// One cluster behind a door.
pub(crate) struct Served {
    pub front: Arc<ClusterFront>,
    /// The cluster's own `max_client_connections`, shared by all its addresses.
    pub cap: Option<Cap>,
    /// Its `server_names`, lowercase.
    pub server_names: Vec<String>,
}

pub(crate) struct Door {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// In config order; never empty.
    pub served: Vec<Served>,
}

impl Door {
    /// More than one cluster: a client must say which.
    pub(crate) fn shared(&self) -> bool {
        self.served.len() > 1
    }

    /// The first cluster: the one a client gets unless it names another, and whose settings
    /// that every cluster shares (handshake timeout, registry, failed logins) the door uses.
    pub(crate) fn first(&self) -> &Arc<ClusterFront> {
        &self.served[0].front
    }

    /// The cluster whose `server_names` hold `name` (SNI is case-insensitive).
    pub(crate) fn by_server_name(&self, name: &str) -> Option<usize> {
        self.served
            .iter()
            .position(|s| s.server_names.iter().any(|n| n.eq_ignore_ascii_case(name)))
    }

    /// The cluster called `name` here.
    pub(crate) fn by_name(&self, name: &str) -> Option<usize> {
        self.served.iter().position(|s| s.front.name == name)
    }

    /// Some cluster here shows a certificate, so a client may start TLS.
    pub(crate) fn offers_tls(&self) -> bool {
        self.served.iter().any(|s| s.front.tls.is_some())
    }

    /// For logs: the cluster, or the address while no cluster is chosen yet.
    pub(crate) fn label(&self) -> String {
        match &self.served[..] {
            [one] => one.front.name.clone(),
            _ => self.addr.to_string(),
        }
    }
}

/// Serves each connection in a task of its own while `all` (and, on an address of one
/// cluster, that cluster's cap) leave room for it; past them the client gets the server's own
/// "too many connections" error. On a shared address the cluster's cap is taken once the
/// client has named its cluster.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    door: Arc<Door>,
    all: Cap,
    shutdown: CancellationToken,
    sessions: TaskTracker,
) {
    let mut caps = vec![all];
    if !door.shared() {
        caps.extend(door.served[0].cap.clone());
    }
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((io, _peer)) => {
                let (front, shutdown) = (door.first().clone(), shutdown.clone());
                let Some(slot) = limits::admit(&caps) else {
                    tracing::warn!(cluster = %door.label(), "too many client connections: refusing one");
                    match door.protocol {
                        Protocol::Postgres => sessions.spawn(pg::refuse(io, front)),
                        Protocol::Mysql => sessions.spawn(mysql::refuse(io, front)),
                    };
                    continue;
                };
                match door.protocol {
                    Protocol::Postgres => {
                        let door = door.clone();
                        sessions.spawn(async move {
                            pg::serve(io, door, shutdown).await;
                            drop(slot);
                        })
                    }
                    Protocol::Mysql => sessions.spawn(async move {
                        mysql::serve(io, front, shutdown).await;
                        drop(slot);
                    }),
                };
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(cluster = %door.label(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Binds every address the config names and serves each: the address of each cluster's
/// first `listen`, in config order.
pub(crate) async fn open(
    cfg: &Config,
    fronts: &[Arc<ClusterFront>],
    caps: &[Option<Cap>],
    all: &Cap,
    (shutdown, sessions, background): (&CancellationToken, &TaskTracker, &TaskTracker),
) -> anyhow::Result<Vec<SocketAddr>> {
    let mut bound: Vec<(String, SocketAddr)> = Vec::new();
    for (addr, clusters) in cfg.doors() {
        let names: Vec<&str> = clusters.iter().map(|&i| fronts[i].name.as_str()).collect();
        let listener = TcpListener::bind(addr.as_str())
            .await
            .with_context(|| format!("cluster {}: listening on {addr}", names.join(", ")))?;
        let local = listener.local_addr()?;
        let served = clusters
            .iter()
            .map(|&i| Served {
                front: fronts[i].clone(),
                cap: caps[i].clone(),
                server_names: cfg.clusters[i]
                    .server_names
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect(),
            })
            .collect();
        let door = Arc::new(Door {
            addr: local,
            protocol: fronts[clusters[0]].protocol,
            served,
        });
        background.spawn(accept_loop(
            listener,
            door,
            all.clone(),
            shutdown.clone(),
            sessions.clone(),
        ));
        bound.push((addr, local));
    }
    // Each cluster's first address, as it was bound (port 0 picks one).
    Ok(cfg
        .clusters
        .iter()
        .filter_map(|c| {
            let first = c.listen.first()?;
            bound.iter().find(|(a, _)| same_addr(a, first)).map(|b| b.1)
        })
        .collect())
}
