//! Which cluster a PostgreSQL client wants at its address: the one whose `server_names` hold
//! the TLS server name (SNI) it sent, or the one `options=-c torpor.cluster=<name>` names.
//! The option is taken out of the startup parameters, so neither the server nor a snapshot
//! ever sees it.

use crate::cluster_front::Params;
use crate::door::Door;
use crate::limits::{self, Slot};
use crate::names::clip;
use crate::session::Error;

/// The setting a client names its cluster with.
pub(super) const OPTION: &str = "torpor.cluster";

/// What PostgreSQL answers when it will not serve the connection as asked.
const REJECTED: &str = "08004";

/// The index of the chosen cluster in `door.served`, with its place under the cluster's
/// connection cap when the door shares it (a door of one cluster took it at accept).
pub(super) fn front(
    door: &Door,
    server_name: Option<&str>,
    params: &mut Params,
) -> Result<(usize, Option<Slot>), Error> {
    let named = protocols::pg::options::take_setting(params, OPTION).map_err(|e| {
        Error::pg(
            REJECTED,
            format!(
                "{OPTION} is given twice in options, as \"{}\" and as \"{}\"",
                clip(&e.first),
                clip(&e.second)
            ),
        )
    })?;
    let by_name = match &named {
        Some(name) => Some(door.by_name(name).ok_or_else(|| {
            Error::pg(
                REJECTED,
                format!("no cluster \"{}\" at this address ({OPTION})", clip(name)),
            )
        })?),
        None => None,
    };
    let by_server_name = server_name.and_then(|n| door.by_server_name(n));
    let i = match (by_server_name, by_name) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::pg(
                REJECTED,
                format!(
                    "the TLS server name \"{}\" is cluster \"{}\"'s, but {OPTION} names cluster \"{}\"",
                    clip(server_name.unwrap_or_default()),
                    door.served[a].front.name,
                    door.served[b].front.name,
                ),
            ));
        }
        (Some(i), _) | (None, Some(i)) => i,
        (None, None) if !door.shared() => 0,
        (None, None) => {
            return Err(Error::pg(
                REJECTED,
                format!(
                    "several clusters share this address: choose one with TLS, sending one of \
                     its server_names as the server name (SNI), or with \
                     options=-c {OPTION}=<name>"
                ),
            ));
        }
    };
    if !door.shared() {
        return Ok((i, None));
    }
    match &door.served[i].cap {
        Some(cap) => match limits::admit(std::slice::from_ref(cap)) {
            Some(slot) => Ok((i, Some(slot))),
            None => Err(Error::pg("53300", "sorry, too many clients already")),
        },
        None => Ok((i, None)),
    }
}
