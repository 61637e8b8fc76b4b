//! What a MySQL client is told when its session ends badly.

use protocols::mysql::response::err_packet;

use super::conn::Conn;
use crate::session::Error;
use crate::session::error::Code;

/// ER_CONNECTION_KILLED: what MariaDB says when it shuts down under a client.
pub(super) const SHUTDOWN: u16 = 1927;
/// ER_UNKNOWN_ERROR.
pub(super) const UNKNOWN: u16 = 1105;
/// ER_NET_PACKETS_OUT_OF_ORDER / malformed packets.
pub(super) const BAD_PACKET: u16 = 1835;
/// ER_ACCESS_DENIED_ERROR.
pub(super) const ACCESS_DENIED: u16 = 1045;
/// ER_CON_COUNT_ERROR.
pub(super) const TOO_MANY_CONNECTIONS: u16 = 1040;

/// The error number, SQLSTATE and message for the client, if anything is to be said.
pub(super) fn client_report(e: &Error) -> Option<(u16, &str, String)> {
    match e {
        Error::Closed | Error::Io(_) => None,
        Error::Protocol(m) => Some((BAD_PACKET, "08S01", format!("malformed packet: {m}"))),
        Error::Fatal {
            code: Code::Mysql { errno, state },
            message,
        }
        | Error::Unavailable {
            code: Code::Mysql { errno, state },
            message,
        } => Some((*errno, state.as_ref(), message.clone())),
        Error::Fatal { message, .. } | Error::Unavailable { message, .. } => {
            Some((UNKNOWN, "HY000", message.clone()))
        }
    }
}

/// Sends an ERR packet with sequence id `seq`; the caller closes the connection after.
pub(super) async fn report(conn: &mut Conn, seq: u8, code: u16, state: &str, message: &str) {
    let mut out = Vec::new();
    protocols::mysql::packet::write_packet(&mut out, seq, &err_packet(code, state, message));
    let _ = conn.send(&out).await;
}

/// What a client is told when a wake did not finish within `[proxy] wake_timeout` and its
/// session is kept: no server uses this number (ProxySQL does, for a backend it could not
/// reach in time).
pub(super) const WAKE_FAILED: u16 = 9001;

/// A wake that did not finish in time: the session is kept.
pub(super) fn unavailable(why: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        code: Code::Mysql {
            errno: WAKE_FAILED,
            state: "HY000".into(),
        },
        message: format!(
            "torpor could not wake this session's database: {why}; the session is kept, try again"
        ),
    }
}
