//! How a MySQL session ends badly, and what the client is told.

use protocols::mysql::packet::PacketError;
use protocols::mysql::response::err_packet;

use super::conn::Conn;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// An error to report to the client (as an ERR packet) before closing.
    #[error("{message}")]
    Fatal {
        code: u16,
        state: &'static str,
        message: String,
    },
    /// An ERR packet from the backend, passed on to the client as it is.
    #[error("{message}")]
    Backend {
        code: u16,
        state: String,
        message: String,
    },
}

impl From<PacketError> for SessionError {
    fn from(e: PacketError) -> Self {
        SessionError::Protocol(e.to_string())
    }
}

/// ER_CONNECTION_KILLED: what MariaDB says when it shuts down under a client.
pub const SHUTDOWN: u16 = 1927;
/// ER_UNKNOWN_ERROR.
pub const UNKNOWN: u16 = 1105;
/// ER_NET_PACKETS_OUT_OF_ORDER / malformed packets.
pub const BAD_PACKET: u16 = 1835;
/// ER_ACCESS_DENIED_ERROR.
pub const ACCESS_DENIED: u16 = 1045;

impl SessionError {
    pub fn fatal(code: u16, state: &'static str, message: impl Into<String>) -> Self {
        SessionError::Fatal {
            code,
            state,
            message: message.into(),
        }
    }

    /// What the client is told before the connection closes, if anything.
    pub fn client_report(&self) -> Option<(u16, &str, String)> {
        match self {
            SessionError::Closed | SessionError::Io(_) => None,
            SessionError::Protocol(m) => {
                Some((BAD_PACKET, "08S01", format!("malformed packet: {m}")))
            }
            SessionError::Fatal {
                code,
                state,
                message,
            } => Some((*code, state, message.clone())),
            SessionError::Backend {
                code,
                state,
                message,
            } => Some((*code, state.as_str(), message.clone())),
        }
    }
}

/// Sends an ERR packet with sequence id `seq`; the caller closes the connection after.
pub async fn report(conn: &mut Conn, seq: u8, code: u16, state: &str, message: &str) {
    let mut out = Vec::new();
    protocols::mysql::packet::write_packet(&mut out, seq, &err_packet(code, state, message));
    let _ = conn.send(&out).await;
}
