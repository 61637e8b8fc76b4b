//! How a session ends badly, and what the client is told.

use protocols::pg::frame::FrameError;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// An error to report to the client with this SQLSTATE before closing.
    #[error("{message}")]
    Fatal { code: &'static str, message: String },
}

impl From<FrameError> for SessionError {
    fn from(e: FrameError) -> Self {
        SessionError::Protocol(e.to_string())
    }
}

impl SessionError {
    pub fn fatal(code: &'static str, message: impl Into<String>) -> Self {
        SessionError::Fatal {
            code,
            message: message.into(),
        }
    }

    /// What the client is told before the connection closes, if anything.
    pub fn client_report(&self) -> Option<(&'static str, String)> {
        match self {
            SessionError::Closed | SessionError::Io(_) => None,
            SessionError::Protocol(m) => Some(("08P01", format!("invalid message: {m}"))),
            SessionError::Fatal { code, message } => Some((code, message.clone())),
        }
    }
}

/// Sends a FATAL ErrorResponse; the caller closes the connection after.
pub async fn report(conn: &mut super::conn::Conn, code: &str, message: &str) {
    let mut out = bytes::BytesMut::new();
    protocols::pg::message::error_response(&mut out, "FATAL", code, message);
    let _ = conn.send(&out).await;
}
