//! Learns the server's settings catalog and version each time the server runs, on a
//! connection of torpor's own, so `SET`s and probes can be answered while it sleeps.

use std::sync::Arc;

use bytes::BytesMut;
use protocols::pg::local::{CATALOG_QUERY, Catalog};

use super::backend;
use super::checkpoint::simple_query;
use crate::cluster_front::ClusterFront;
use crate::session::Error;

/// Runs as long as torpor serves the cluster: after every start of the server, reads its
/// catalog.
pub(crate) async fn keep_learning(front: Arc<ClusterFront>) {
    crate::learn::after_every_start(
        front,
        "settings catalog",
        |_| {},
        |s| async move { learn(&s).await },
    )
    .await;
}

/// The connections sessions may hold: the server's limit less the slots it keeps for
/// superusers (and, from PostgreSQL 16, for roles with pg_use_reserved_connections) and one
/// for torpor's own connection, like this one.
const SLOTS_QUERY: &str = "SELECT current_setting('max_connections')::int \
    - current_setting('superuser_reserved_connections')::int \
    - coalesce(current_setting('reserved_connections', true)::int, 0) - 1";

async fn learn(front: &ClusterFront) -> Result<(), Error> {
    let (Some(at), Some(_)) = (front.cluster.running_backend(), &front.first_user) else {
        return Ok(());
    };
    // torpor's own connection: no client waits on it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut b = backend::connect_own(front, &at, &[], deadline).await?;
    // Not the database's own work, for the busy check.
    let _own = front.own_backends.hold(b.pid);
    let mut ignored = BytesMut::new();
    let results = simple_query(&mut b, CATALOG_QUERY, &mut ignored).await?;
    let (Some(settings), Some(version)) = (results.first(), results.get(1)) else {
        return Err(Error::Protocol("catalog query gave no results".into()));
    };
    let version = version
        .rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    let catalog = Catalog::from_rows(&settings.rows, &version);
    tracing::debug!(cluster = %front.name, settings = catalog.settings.len(), "settings catalog learned");
    front.remember_pg_catalog(catalog);
    let slots = simple_query(&mut b, SLOTS_QUERY, &mut ignored).await?;
    let slots = slots
        .first()
        .and_then(|r| r.rows.first())
        .and_then(|r| r.first().cloned().flatten())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(slots) = slots {
        front.room.learned(slots);
    }
    let mut out = BytesMut::new();
    protocols::pg::message::terminate(&mut out);
    let _ = b.conn.send(&out).await;
    Ok(())
}
