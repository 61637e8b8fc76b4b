//! MySQL/MariaDB client sessions: the glue between the wire codec, the lifecycle and the store.

mod backend;
pub(crate) mod busy;
mod catalog;
mod change_user;
mod checkpoint;
mod commands;
mod conn;
mod connection_id;
mod error;
mod kill;
mod large;
mod responses;
mod restore;
mod session;
mod startup;

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
        Start::Session {
            conn,
            user,
            hello,
            reg,
            seq,
        } => {
            session::session(front, conn, user, hello, reg, seq)
                .run(shutdown)
                .await;
        }
        Start::Failed {
            mut conn,
            seq,
            error,
        } => {
            if let Some((code, state, msg)) = error::client_report(&error) {
                tracing::info!(cluster = %front.name, code, error = %msg, "client login failed");
                error::report(&mut conn, seq, code, state, &msg).await;
            }
        }
    }
}

/// Answers a client past the connection cap with MariaDB's own ER_CON_COUNT_ERROR.
pub(crate) async fn refuse(io: TcpStream, _front: Arc<ClusterFront>) {
    startup::refuse(io).await;
}
