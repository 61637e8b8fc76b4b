//! PostgreSQL client sessions: the glue between the wire codec, the lifecycle and the store.

mod backend;
mod cancel;
mod catalog;
mod checkpoint;
mod conn;
mod error;
mod restore;
mod session;
mod startup;
mod unserved;

pub(crate) use catalog::keep_learning;

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::cluster_front::ClusterFront;
use startup::Start;

/// Serves one accepted client connection until it closes.
pub(crate) async fn serve(io: TcpStream, front: Arc<ClusterFront>, shutdown: CancellationToken) {
    let start = tokio::select! {
        s = startup::accept(io, &front) => s,
        _ = shutdown.cancelled() => return,
    };
    match start {
        Start::Cancel { pid, secret } => cancel::forward(&front.registry, pid, secret).await,
        Start::Session { conn, user, params } => {
            session::session(front, conn, user, params)
                .run(shutdown)
                .await;
        }
        Start::Failed { mut conn, error } => {
            if let Some((code, msg)) = error::client_report(&error) {
                tracing::info!(cluster = %front.name, code, error = %msg, "client startup failed");
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
