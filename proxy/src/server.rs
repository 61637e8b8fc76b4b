//! Starting and stopping everything a config describes: stores, clusters, listeners, admin API.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use controller::{BootstrapUser, Cluster, Driver};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin;
use crate::busy::BusyCheck;
use crate::cluster_front::ClusterFront;
use crate::config::{BusyQuery, ClusterConfig, Config, Protocol, Secret};
use crate::door;
use crate::limits::{self, Cap};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::snapshots;
use crate::throttle::Logins;
use crate::{mysql, pg};

/// How often recorded values are folded into the histograms when nobody scrapes: until then
/// each is kept on its own.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

pub struct Running {
    pub admin_addr: SocketAddr,
    pub fronts: Vec<Arc<ClusterFront>>,
    /// The address each cluster listens on, in config order.
    pub listen_addrs: Vec<SocketAddr>,
    /// Each cluster's certificate, to read again on SIGHUP.
    certificates: Vec<(String, Arc<crate::tls::Tls>)>,
    shutdown: CancellationToken,
    sessions: TaskTracker,
    background: TaskTracker,
}

/// Runs `work` as a background task until it ends or torpor shuts down.
fn until_shutdown(
    background: &TaskTracker,
    shutdown: &CancellationToken,
    work: impl Future<Output = ()> + Send + 'static,
) {
    let token = shutdown.clone();
    background.spawn(async move {
        tokio::select! {
            _ = work => {}
            _ = token.cancelled() => {}
        }
    });
}

pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    // Every data dir is ours before anything else happens: a second torpor on the same config
    // must fail here, not after it has stopped the first one's servers as leftovers.
    let mut drivers = Vec::new();
    for c in &cfg.clusters {
        let driver = driver(c)?;
        driver
            .claim()
            .with_context(|| format!("cluster {}", c.name))?;
        drivers.push(driver);
    }
    let admin_token = cfg.admin.token()?;
    limits::raise_descriptor_limit(cfg.proxy.max_client_connections);
    // object_store's reqwest is built without a default TLS provider; ring is ours.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = snapshots::open(&cfg).await?;
    let registry = Arc::new(Registry::default());
    let metrics = Arc::new(Metrics::new().context("metrics")?);
    let shutdown = CancellationToken::new();
    let sessions = TaskTracker::new();
    let background = TaskTracker::new();
    let logins = Arc::new(Logins::new(metrics.logins()));
    let all_clients = Cap::new(cfg.proxy.max_client_connections);
    let budget = crate::net::budget::Budget::new(cfg.proxy.max_buffered_bytes);

    if cfg.self_signed
        && let Some(t) = &cfg.tls
        && crate::tls::make_if_missing(t)?
    {
        tracing::info!(cert = %t.cert.display(), "made a self-signed certificate for localhost: clients can use TLS, but can't verify it");
    }
    let mut certificates = Vec::new();
    let mut fronts = Vec::new();
    let mut caps = Vec::new();
    for (i, (c, driver)) in cfg.clusters.iter().zip(drivers).enumerate() {
        let tls = match cfg.cluster_tls(i) {
            Some(t) => {
                let tls = crate::tls::Tls::load(t, c.protocol == Protocol::Postgres)
                    .with_context(|| format!("cluster {}: TLS", c.name))?;
                let tls = Arc::new(tls);
                certificates.push((c.name.clone(), tls.clone()));
                Some(tls)
            }
            None => None,
        };
        let backend_tls = crate::tls::Client::new(&c.backend.tls())
            .with_context(|| format!("cluster {}: backend TLS", c.name))?
            .map(Arc::new);
        let cluster = Arc::new(
            Cluster::new(&c.name, c.idle_timeout, driver)
                .with_freeze_after(c.freeze_after)
                .with_wake_histograms(|cause| metrics.wake(&c.name, cause)),
        );
        cluster
            .prepare()
            .await
            .with_context(|| format!("cluster {}: preparing the backend", c.name))?;
        let front = Arc::new(
            ClusterFront::new(c, cluster.clone(), store.clone(), registry.clone())
                .with_metrics(metrics.cluster(&c.name, c.protocol))
                .with_logins(cfg.proxy.handshake_timeout, logins.clone())
                .with_wake_timeout(cfg.proxy.wake_timeout)
                .with_budget(budget.clone())
                .with_tls(tls)
                .with_backend_tls(backend_tls),
        );
        fronts.push(front.clone());
        if front.busy_query != BusyQuery::Off {
            cluster.set_drain_check(Box::new(BusyCheck::new(Arc::downgrade(&front))));
        }

        for rule in crate::rules::tasks(c, &cluster, &cfg.clock)? {
            until_shutdown(&background, &shutdown, rule);
        }
        let watched = cluster.clone();
        until_shutdown(&background, &shutdown, async move {
            watched.watch_backend().await;
        });
        until_shutdown(&background, &shutdown, async move {
            cluster.idle_loop().await;
        });
        until_shutdown(
            &background,
            &shutdown,
            crate::room::usher(front.room.clone()),
        );
        match c.protocol {
            Protocol::Postgres => {
                until_shutdown(&background, &shutdown, pg::keep_learning(front.clone()));
            }
            Protocol::Mysql => {
                until_shutdown(&background, &shutdown, mysql::keep_learning(front.clone()));
            }
        }
        caps.push(c.max_client_connections.map(Cap::new));
    }
    let listen_addrs = door::open(
        &cfg,
        &fronts,
        &caps,
        &all_clients,
        (&shutdown, &sessions, &background),
    )
    .await?;

    let admin_listener = TcpListener::bind(&cfg.admin.listen)
        .await
        .with_context(|| format!("admin: listening on {}", cfg.admin.listen))?;
    let admin_addr = admin_listener.local_addr()?;
    let token = shutdown.clone();
    let upkept = metrics.clone();
    background.spawn(async move {
        let mut every = tokio::time::interval(METRICS_UPKEEP);
        loop {
            tokio::select! {
                _ = every.tick() => upkept.run_upkeep(),
                _ = token.cancelled() => return,
            }
        }
    });
    let router = admin::router(fronts.clone(), registry.clone(), metrics, admin_token);
    let token = shutdown.clone();
    background.spawn(async move {
        let serve = axum::serve(admin_listener, router)
            .with_graceful_shutdown(async move { token.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "admin API stopped");
        }
    });

    Ok(Running {
        admin_addr,
        fronts,
        listen_addrs,
        certificates,
        shutdown,
        sessions,
        background,
    })
}

fn driver(c: &ClusterConfig) -> anyhow::Result<Box<dyn Driver>> {
    let mut users = Vec::new();
    for u in &c.users {
        let (password, hashed) = match u.secret(c.protocol, &u.name)? {
            Secret::Password(p) => (p, false),
            // PostgreSQL stores a SCRAM verifier given as a password as it is; MariaDB is
            // given its mysql_native_password hash.
            Secret::Hash(verifier) => (verifier.to_pg_verifier(), true),
            Secret::MyHash(stored) => (stored.native_text(), true),
        };
        users.push(BootstrapUser {
            name: u.name.clone(),
            password,
            hashed,
            superuser: u.superuser,
        });
    }
    Ok(c.backend.build(c.protocol.engine(), &c.name, users))
}

impl Running {
    /// Reads every cluster's certificate files again (SIGHUP). Connections already open keep
    /// the certificate they began with; one that fails to load leaves the old one in use.
    /// True when all loaded.
    pub fn reload_certificates(&self) -> bool {
        let mut all = true;
        for (cluster, tls) in &self.certificates {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(%cluster, cert = %tls.cert_path().display(), "certificate read again");
                }
                Err(e) => {
                    all = false;
                    tracing::error!(%cluster, error = %e, "could not read the certificate again: the one loaded before stays in use");
                }
            }
        }
        all
    }

    /// Closes every client with 57P01, then stops every backend this process started.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.sessions.close();
        if tokio::time::timeout(Duration::from_secs(10), self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sessions did not end within 10 s");
        }
        self.background.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.background.wait()).await;
        for s in &self.fronts {
            if let Err(e) = s.cluster.shutdown().await {
                tracing::error!(cluster = %s.name, error = %e, "could not stop backend");
            }
        }
    }
}
