//! Learns what the MySQL server accepts each time it runs (variables, character sets,
//! collations, and the order it reports tracked variables in), on a connection of torpor's own,
//! so `SET`s can be answered while it sleeps.

use std::sync::Arc;

use protocols::mysql::command;
use protocols::mysql::local::{CATALOG_QUERIES, Catalog};
use protocols::mysql::packet::write_packet;
use protocols::mysql::response::{OkPacket, SessionChange, session_changes};

use super::backend::{self, Backend};
use super::checkpoint;
use super::conn::Packets;
use super::conn::payload;
use super::error::UNKNOWN;
use crate::cluster_front::ClusterFront;
use crate::session::Error;

/// Runs as long as torpor serves the cluster: after every start of the server, reads its
/// catalog.
pub(crate) async fn keep_learning(front: Arc<ClusterFront>) {
    crate::learn::after_every_start(
        front,
        "variables catalog",
        // The report order belongs to the server process that just stopped; until this one's
        // is known, answers that depend on it go to the server.
        |front| {
            if let Some(old) = front.my_catalog() {
                front.remember_my_catalog(Catalog {
                    tracked_order: None,
                    ..(*old).clone()
                });
            }
        },
        |s| async move { learn(&s).await },
    )
    .await;
}

async fn learn(front: &ClusterFront) -> Result<(), Error> {
    let (Some(at), Some(_)) = (front.cluster.running_backend(), &front.first_user) else {
        return Ok(());
    };
    // torpor's own connection: no client waits on it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut b = backend::connect_own(front, &at, deadline).await?;
    // Not the database's own work, for the busy check. Thread ids are kept bit for bit.
    let _own = front.own_backends.hold(b.id as i32);
    let queries: Vec<String> = CATALOG_QUERIES.iter().map(|q| q.to_string()).collect();
    let results = checkpoint::run(&mut b, &queries).await?;
    let mut rows = Vec::new();
    for r in results {
        let r =
            r.map_err(|e| Error::my(UNKNOWN, "HY000", format!("catalog query: {}", e.message)))?;
        rows.push(r.rows);
    }
    let [vars, charsets, collations] = rows.as_slice() else {
        return Err(Error::Protocol(
            "catalog queries gave the wrong number of results".into(),
        ));
    };
    let mut catalog = Catalog::from_rows(vars, charsets, collations, None);
    catalog.tracked_order = match catalog.tracked() {
        Some(names) => report_order(&mut b, &names).await?,
        None => None,
    };
    tracing::debug!(
        cluster = %front.name,
        variables = catalog.variables.len(),
        order = catalog.tracked_order.is_some(),
        "variables catalog learned"
    );
    // The server's limit less one for torpor's own connection, like this one. (A user with
    // SUPER or CONNECTION ADMIN may still get one more.)
    let slots = catalog
        .variables
        .get("max_connections")
        .and_then(|v| v.global.as_deref())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(slots) = slots {
        front.room.learned(slots.saturating_sub(1));
    }
    front.remember_my_catalog(catalog);
    let mut out = Vec::new();
    write_packet(&mut out, 0, &command::quit());
    let _ = b.conn.send(&out).await;
    Ok(())
}

/// Assigns every tracked variable its own value and reads the order the server reports them
/// in; None when that can't be done (a tracked variable this user may not set).
async fn report_order(b: &mut Backend, names: &[String]) -> Result<Option<Vec<String>>, Error> {
    if names.is_empty() {
        return Ok(Some(Vec::new()));
    }
    if !names
        .iter()
        .all(|n| n.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
    {
        return Ok(None);
    }
    let sets: Vec<String> = names
        .iter()
        .map(|n| format!("{n} = @@session.{n}"))
        .collect();
    let mut out = Vec::new();
    write_packet(
        &mut out,
        0,
        &command::query(&format!("SET SESSION {}", sets.join(", "))),
    );
    b.conn.send(&out).await?;
    let packet = b.conn.recv().await?;
    let body = payload(&packet);
    if body.first() != Some(&0x00) {
        return Ok(None);
    }
    let ok = OkPacket::parse(body, b.capabilities)?;
    let order: Vec<String> = session_changes(&ok.session_state)?
        .into_iter()
        .filter_map(|c| match c {
            SessionChange::SystemVariable { name, .. } => Some(name.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    // Every tracked variable must have been reported, or the order is partial.
    Ok((order.len() == names.len() && names.iter().all(|n| order.contains(n))).then_some(order))
}
