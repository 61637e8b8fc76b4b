//! Who a session is, as operators see it: names clipped to what a log line should carry, and
//! the label blockers and logs name a session by.

use std::net::SocketAddr;

pub(crate) use crate::names::clip;

/// Who a session is, as operators name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// `None` for a MySQL client that connected without a default schema.
    pub database: Option<String>,
    pub client_addr: Option<SocketAddr>,
}

impl Identity {
    pub fn new(user: &str, database: Option<&str>, client_addr: Option<SocketAddr>) -> Identity {
        Identity {
            user: clip(user).to_string(),
            database: database.map(|d| clip(d).to_string()),
            client_addr,
        }
    }
}

/// `session 5 (app@127.0.0.1:40312, application_name "psql")`: enough for an operator to find
/// the client. The application name is quoted and escaped, as the client chose it.
pub(crate) fn label(id: u64, who: Option<&Identity>, application_name: &str) -> String {
    let Some(who) = who else {
        return format!("session {id}");
    };
    let addr = match who.client_addr {
        Some(a) => a.to_string(),
        None => "unknown address".to_string(),
    };
    if application_name.is_empty() {
        format!("session {id} ({}@{addr})", who.user)
    } else {
        format!(
            "session {id} ({}@{addr}, application_name {application_name:?})",
            who.user
        )
    }
}
