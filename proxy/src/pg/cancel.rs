//! CancelRequest: the client holds a virtual key; the query runs on whichever backend the
//! session is attached to now.

use bytes::BytesMut;
use protocols::pg::message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::registry::Registry;

pub(super) async fn forward(registry: &Registry, pid: i32, secret: i32) {
    let Some(entry) = registry.lookup(pid, secret) else {
        // Unknown keys are ignored silently, as PostgreSQL does.
        return;
    };
    let Some(key) = entry.backend() else {
        // A parked session runs nothing: there is nothing to cancel.
        return;
    };
    let mut out = BytesMut::new();
    message::cancel_request(&mut out, key.pid, key.secret);
    match TcpStream::connect(key.addr).await {
        Ok(mut s) => {
            if let Err(e) = s.write_all(&out).await {
                tracing::warn!(error = %e, "could not forward cancel request");
            }
            let _ = s.shutdown().await;
        }
        Err(e) => tracing::warn!(error = %e, "could not reach backend for cancel request"),
    }
}
