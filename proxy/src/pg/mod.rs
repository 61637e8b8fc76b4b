//! PostgreSQL client sessions: the glue between the wire codec, the lifecycle and the store.

mod backend;
pub(crate) mod busy;
mod cancel;
mod catalog;
mod checkpoint;
mod conn;
mod error;
mod pick;
mod restore;
mod session;
mod startup;
mod unserved;

pub(crate) use catalog::keep_learning;

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::cluster_front::ClusterFront;
use crate::door::Door;
use startup::Start;

/// Serves one client connection accepted at `door` until it closes.
pub(crate) async fn serve(io: TcpStream, door: Arc<Door>, shutdown: CancellationToken) {
    // Boxed: the login is large and over soon, and the session's task is sized for it.
    let start = tokio::select! {
        s = Box::pin(startup::accept(io, &door)) => s,
        _ = shutdown.cancelled() => return,
    };
    match start {
        Start::Cancel { pid, secret } => {
            cancel::forward(&door.first().registry, pid, secret).await;
        }
        Start::Session {
            front,
            slot,
            conn,
            user,
            keys,
            params,
        } => {
            session::session(front, conn, user, keys, params)
                .run(shutdown)
                .await;
            drop(slot);
        }
        Start::Failed {
            mut conn,
            error,
            front,
        } => {
            if let Some((code, msg)) = error::client_report(&error) {
                let cluster = front.map_or_else(|| door.label(), |f| f.name.clone());
                tracing::info!(%cluster, code, error = %msg, "client startup failed");
                error::report(&mut conn, code, &msg).await;
            }
        }
    }
}

/// Answers a client past the connection cap with postgres's own 53300, or passes on its
/// CancelRequest.
pub(crate) async fn refuse(io: TcpStream, front: Arc<ClusterFront>) {
    if let Some((pid, secret)) = startup::refuse(io, &front).await {
        cancel::forward(&front.registry, pid, secret).await;
    }
}
