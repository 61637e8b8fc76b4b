//! How a session ends badly, and what its client is told: one type for both protocols, with
//! each protocol's own code for the client.

use std::borrow::Cow;

use protocols::mysql::packet::PacketError;
use protocols::pg::frame::FrameError;

/// The code a client is told, in its protocol's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Code {
    /// A PostgreSQL SQLSTATE.
    Sqlstate(&'static str),
    /// A MySQL error number and SQLSTATE.
    Mysql {
        errno: u16,
        state: Cow<'static, str>,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The client (or the server) broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Reported to the client with `code` before the connection closes.
    #[error("{message}")]
    Fatal { code: Code, message: String },
    /// A wake could not reach the database or the store in time. The client's request is
    /// answered with `code` and the session stays parked, its snapshot kept, to try again at
    /// the next one. At startup, before there is a session to keep, it ends like `Fatal`.
    #[error("{message}")]
    Unavailable { code: Code, message: String },
}

impl From<FrameError> for Error {
    fn from(e: FrameError) -> Self {
        Error::Protocol(e.to_string())
    }
}

impl From<PacketError> for Error {
    fn from(e: PacketError) -> Self {
        Error::Protocol(e.to_string())
    }
}

impl Error {
    /// A PostgreSQL error with this SQLSTATE.
    pub(crate) fn pg(code: &'static str, message: impl Into<String>) -> Self {
        Error::Fatal {
            code: Code::Sqlstate(code),
            message: message.into(),
        }
    }

    /// A MySQL error with this number and SQLSTATE.
    pub(crate) fn my(errno: u16, state: &'static str, message: impl Into<String>) -> Self {
        Error::Fatal {
            code: Code::Mysql {
                errno,
                state: Cow::Borrowed(state),
            },
            message: message.into(),
        }
    }

    /// A MySQL server's own ERR, passed on as it came.
    pub(crate) fn my_server(errno: u16, state: String, message: String) -> Self {
        Error::Fatal {
            code: Code::Mysql {
                errno,
                state: Cow::Owned(state),
            },
            message,
        }
    }

    /// The session is kept: only the client's request fails.
    pub(crate) fn keeps_session(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
    }

    /// The connection is gone: there is no one left to tell.
    pub(crate) fn is_disconnect(&self) -> bool {
        matches!(self, Error::Closed | Error::Io(_))
    }
}
