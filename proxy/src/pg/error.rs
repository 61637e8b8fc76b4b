//! What a PostgreSQL client is told when its session ends badly.

use crate::session::Error;
use crate::session::error::Code;

/// The SQLSTATE and message for the client, if anything is to be said.
pub(super) fn client_report(e: &Error) -> Option<(&'static str, String)> {
    match e {
        Error::Closed | Error::Io(_) => None,
        Error::Protocol(m) => Some(("08P01", format!("invalid message: {m}"))),
        Error::Fatal {
            code: Code::Sqlstate(code),
            message,
        } => Some((code, message.clone())),
        // Not a code of this protocol: internal_error.
        Error::Fatal { message, .. } => Some(("XX000", message.clone())),
    }
}

/// Sends a FATAL ErrorResponse; the caller closes the connection after.
pub(super) async fn report(conn: &mut super::conn::Conn, code: &str, message: &str) {
    let mut out = bytes::BytesMut::new();
    protocols::pg::message::error_response(&mut out, "FATAL", code, message);
    let _ = conn.send(&out).await;
}
