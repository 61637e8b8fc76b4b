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
        }
        | Error::Unavailable {
            code: Code::Sqlstate(code),
            message,
        } => Some((code, message.clone())),
        // Not a code of this protocol: internal_error.
        Error::Fatal { message, .. } | Error::Unavailable { message, .. } => {
            Some(("XX000", message.clone()))
        }
    }
}

/// SQLSTATE cannot_connect_now: what a client is told when a wake did not finish in time.
const CANNOT_CONNECT_NOW: &str = "57P03";

/// A wake that did not finish within `[proxy] wake_timeout`: the session is kept.
pub(super) fn unavailable(why: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        code: Code::Sqlstate(CANNOT_CONNECT_NOW),
        message: format!(
            "torpor could not wake this session's database: {why}; the session is kept, try again"
        ),
    }
}

/// Sends a FATAL ErrorResponse; the caller closes the connection after.
pub(super) async fn report(conn: &mut super::conn::Conn, code: &str, message: &str) {
    let mut out = bytes::BytesMut::new();
    protocols::pg::message::error_response(&mut out, "FATAL", code, message);
    let _ = conn.send(&out).await;
}
