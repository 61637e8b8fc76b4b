//! Telling probe traffic from activity while the server runs.

use std::collections::HashMap;

use super::answer::{MAX_REQUEST, body};
use super::sql::{self, ProbeSet, Statement};
use crate::pg::frame;
use crate::pg::message::tag;
use crate::pg::parse;

/// Whether every whole message in `buf` belongs to health-check probes: a simple Query of a
/// probe or nothing, or Parse/Bind/Describe/Execute/Sync of one. Such traffic still reaches a
/// running server but does not count as activity. Cheap for ordinary queries: it stops at the
/// first message that is not a probe.
pub fn is_probe_traffic(
    buf: &[u8],
    canned: &HashMap<String, Statement>,
    probes: &ProbeSet,
) -> bool {
    let canned_text = |q: &str| sql::may_be_probe(q) && probes.allows(&sql::single(q));
    let mut off = 0;
    let mut unnamed_probe = false;
    let mut any = false;
    while let Ok(Some((t, len))) = frame::message_len(&buf[off..], MAX_REQUEST) {
        let b = body(buf, off, len);
        off += len;
        any = true;
        let probe = match t {
            tag::QUERY => parse::query_message(b).is_ok_and(|q| {
                q.len() <= 64
                    && sql::may_be_probe(q)
                    && sql::statements(q).is_some_and(|v| match v.as_slice() {
                        [] => probes.allows(&Statement::Empty),
                        v => v.iter().all(|s| probes.allows(s)),
                    })
            }),
            tag::PARSE => parse::parse_message(b).is_ok_and(|p| {
                let ok = p.query.len() <= 64 && p.param_types.is_empty() && canned_text(p.query);
                if p.name.is_empty() {
                    unnamed_probe = ok;
                }
                ok
            }),
            // Most Binds name a statement that is no probe: don't decode them for nothing.
            tag::BIND if !unnamed_probe && canned.is_empty() => false,
            tag::BIND => parse::bind_message(b).is_ok_and(|m| {
                if m.statement.is_empty() {
                    unnamed_probe
                } else {
                    canned.get(m.statement).is_some_and(|s| probes.allows(s))
                }
            }),
            tag::DESCRIBE | tag::EXECUTE | tag::SYNC | tag::FLUSH => true,
            // Drivers close the statements of earlier probes ahead of the next request.
            tag::CLOSE => parse::close_message(b)
                .is_ok_and(|(kind, name)| kind == b'P' || canned.contains_key(name)),
            _ => false,
        };
        if !probe {
            return false;
        }
    }
    any
}
