//! KILL with the connection id a client was given. Each backend connection has its own thread
//! id, which changes with every wake; the id torpor gave the client in its handshake does not.
//! A KILL reaches only the session that owns the id (torpor's id, or the thread id of any
//! backend connection it has had), is pointed at that session's current backend connection,
//! and is refused as the server refuses it: an id nobody owns (or that two sessions had, on
//! two servers, neither of them the killer), or a session of another user.

use std::sync::Arc;

use protocols::mysql::command::com;

use crate::cluster_front::{ClusterFront, User};
use crate::registry::SessionEntry;

pub(super) enum Route {
    /// Not a KILL: send it on as it is.
    Forward,
    /// Send this command payload instead.
    Rewrite(Vec<u8>),
    /// Handled here; answer OK.
    Done,
    /// Answer this error (code, message): SQLSTATE HY000, as the server has them.
    Refuse(u16, String),
}

/// `payload` is a COM_QUERY or COM_PROCESS_KILL sent by `killer`, the session `killer_id`.
pub(super) fn route(
    front: &Arc<ClusterFront>,
    killer: &User,
    killer_id: u64,
    payload: &[u8],
) -> Route {
    let Some((&cmd, rest)) = payload.split_first() else {
        return Route::Forward;
    };
    let (id, prefix) = if cmd == com::PROCESS_KILL {
        match rest.get(..4) {
            Some(b) => (
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                "KILL CONNECTION".to_string(),
            ),
            None => return Route::Forward,
        }
    } else {
        match parse(rest) {
            Some(k) => k,
            None => return Route::Forward,
        }
    };
    let target = front.registry.lookup_mysql(&front.name, id).or_else(|| {
        front
            .registry
            .mysql_backend_owner(&front.name, id, killer_id)
    });
    let Some(target) = target else {
        return Route::Refuse(1094, format!("Unknown thread id: {id}"));
    };
    if !owns(killer, &target) {
        return Route::Refuse(1095, format!("You are not owner of thread {id}"));
    }
    match target.backend() {
        Some(key) => {
            let mut p = vec![com::QUERY];
            p.extend_from_slice(format!("{prefix} {}", key.pid as u32).as_bytes());
            Route::Rewrite(p)
        }
        // Parked: nothing runs, so KILL QUERY has nothing to do; KILL CONNECTION ends it.
        None => {
            if prefix.ends_with("CONNECTION") {
                target.kill.cancel();
            }
            Route::Done
        }
    }
}

/// The server's rule: a user may kill its own threads; CONNECTION ADMIN (SUPER) any.
fn owns(killer: &User, target: &SessionEntry) -> bool {
    killer.superuser || target.user().is_some_and(|u| u == killer.name)
}

/// `KILL [HARD | SOFT] [CONNECTION | QUERY] <id>`: the id and the statement up to it.
fn parse(sql: &[u8]) -> Option<(u64, String)> {
    let text = std::str::from_utf8(sql).ok()?;
    let text = text.trim().trim_end_matches(';').trim_end();
    let mut words = text.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("kill") {
        return None;
    }
    let mut prefix = String::from("KILL");
    let mut word = words.next()?;
    for options in [&["HARD", "SOFT"][..], &["CONNECTION", "QUERY"][..]] {
        if let Some(o) = options.iter().find(|o| word.eq_ignore_ascii_case(o)) {
            prefix.push(' ');
            prefix.push_str(o);
            word = words.next()?;
        }
    }
    if !prefix.ends_with("QUERY") && !prefix.ends_with("CONNECTION") {
        prefix.push_str(" CONNECTION");
    }
    let id = word.parse().ok()?;
    words.next().is_none().then_some((id, prefix))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn kill_forms() {
        assert_eq!(parse(b" kill query 42 ;"), Some((42, "KILL QUERY".into())));
        assert_eq!(parse(b"KILL 7"), Some((7, "KILL CONNECTION".into())));
        assert_eq!(
            parse(b"KILL HARD CONNECTION 9"),
            Some((9, "KILL HARD CONNECTION".into()))
        );
        assert_eq!(parse(b"KILL QUERY ID 5"), None);
        assert_eq!(parse(b"KILL USER bob"), None);
        assert_eq!(parse(b"SELECT 1"), None);
        assert_eq!(parse(b"KILL 7; DROP TABLE t"), None);
    }
}
