//! Learns the server's settings catalog and version each time the server runs, on a
//! connection of torpor's own, so `SET`s and probes can be answered while it sleeps.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use controller::ClusterState;
use protocols::pg::local::{CATALOG_QUERY, Catalog};

use super::backend;
use super::checkpoint::simple_query;
use super::error::SessionError;
use crate::service::Service;

/// After a start, leave the first queries the CPU before asking.
const SETTLE: Duration = Duration::from_millis(200);

/// Runs for the service's life: after every start of the server, reads its catalog once.
pub async fn keep_learning(service: Arc<Service>) {
    let mut state = service.cluster.subscribe_state();
    loop {
        if state
            .wait_for(|s| *s == ClusterState::Running)
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(SETTLE).await;
        if let Err(e) = learn(&service).await {
            tracing::debug!(cluster = %service.name, error = %e, "could not read the settings catalog");
        }
        // Until the server stops, the catalog stands.
        if state
            .wait_for(|s| *s != ClusterState::Running && *s != ClusterState::Draining)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn learn(service: &Service) -> Result<(), SessionError> {
    let (Some(at), Some(user)) = (service.cluster.running_backend(), &service.first_user) else {
        return Ok(());
    };
    let startup = vec![
        ("user".to_string(), user.name.clone()),
        ("database".to_string(), user.name.clone()),
        ("application_name".to_string(), "torpor".to_string()),
    ];
    let mut b = backend::connect(&at, &startup, user).await?;
    let mut ignored = BytesMut::new();
    let results = simple_query(&mut b, CATALOG_QUERY, &mut ignored).await?;
    let (Some(settings), Some(version)) = (results.first(), results.get(1)) else {
        return Err(SessionError::Protocol(
            "catalog query gave no results".into(),
        ));
    };
    let version = version
        .rows
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .unwrap_or_default();
    let catalog = Catalog::from_rows(&settings.rows, &version);
    tracing::debug!(cluster = %service.name, settings = catalog.settings.len(), "settings catalog learned");
    service.remember_pg_catalog(catalog);
    let mut out = BytesMut::new();
    protocols::pg::message::terminate(&mut out);
    let _ = b.conn.send(&out).await;
    Ok(())
}
