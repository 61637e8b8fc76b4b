//! Replaying a snapshot into a fresh backend connection before the client's query runs.

use bytes::BytesMut;
use metrics::Histogram;
use protocols::pg::message::tag;
use protocols::pg::parse;
use protocols::pg::replay;
use protocols::pg::snapshot::PgSnapshot;

use super::backend::Backend;
use super::conn::Messages;
use super::conn::body;
use crate::session::Error;

/// Sends the whole replay in one write and reads until every ReadyForQuery came back.
/// Fails naming the first item the backend refused. Notifications go to `to_client`. The
/// time a replay takes goes to `replay_seconds`. The replay is built on the blocking pool: it
/// is as large as the snapshot, temp tables' rows and all. Gives the snapshot back.
pub(super) async fn restore(
    backend: &mut Backend,
    snap: PgSnapshot,
    login_user: &str,
    to_client: &mut BytesMut,
    replay_seconds: &Histogram,
) -> Result<PgSnapshot, Error> {
    let user = login_user.to_string();
    let (snap, plan) = tokio::task::spawn_blocking(move || {
        let plan = replay::build(&snap, &user);
        (snap, plan)
    })
    .await
    .map_err(|e| failed(format!("building the replay failed: {e}")))?;
    let plan = plan.map_err(failed)?;
    if plan.ready_count == 0 {
        return Ok(snap);
    }
    let started = std::time::Instant::now();
    backend.conn.send(&plan.messages).await?;

    // The simple queries come back first, one ReadyForQuery each, then the Parse batch. A
    // failed statement ends its query without a CommandComplete for the rest, so each query's
    // statements are counted from where its own labels start.
    let mut query = 0usize;
    let mut query_start = 0usize;
    let mut completed = 0usize;
    let mut parses = 0usize;
    let mut ready = 0usize;
    let mut failure: Option<String> = None;
    while ready < plan.ready_count {
        let (t, msg) = backend.conn.recv().await?;
        let b = body(&msg);
        match t {
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE => completed += 1,
            tag::PARSE_COMPLETE => parses += 1,
            tag::READY_FOR_QUERY => {
                ready += 1;
                if let Some(n) = plan.queries.get(query) {
                    query += 1;
                    query_start += n;
                    completed = 0;
                }
            }
            tag::ERROR_RESPONSE => {
                let f = parse::error_fields(b)?;
                let what = if query < plan.queries.len() {
                    plan.statements.get(query_start + completed)
                } else {
                    plan.parses.get(parses)
                };
                if failure.is_none() {
                    failure = Some(format!(
                        "{}: {}",
                        what.map(String::as_str).unwrap_or("session state"),
                        f.message
                    ));
                }
            }
            tag::NOTIFICATION_RESPONSE => to_client.extend_from_slice(&msg),
            // ParameterStatus changes repeat what the client was already told; the rest is chatter.
            _ => {}
        }
    }
    replay_seconds.record(started.elapsed());
    tracing::debug!(
        replay_us = started.elapsed().as_micros(),
        ready = plan.ready_count,
        "session state replayed"
    );
    match failure {
        Some(what) => Err(failed(what)),
        None => Ok(snap),
    }
}

fn failed(what: String) -> Error {
    Error::pg(
        "58000",
        format!("torpor could not restore this session after the database woke up: {what}"),
    )
}

/// Puts a connection back to how its login left it, for another session of the same user,
/// database and startup parameters: DISCARD ALL drops everything a session can hold (settings,
/// prepared statements, temporary tables, advisory locks, LISTEN, role).
pub(super) async fn reset(backend: &mut Backend) -> Result<(), Error> {
    let mut out = BytesMut::new();
    protocols::pg::message::query(&mut out, "DISCARD ALL");
    backend.conn.send(&out).await?;
    let mut failed = None;
    loop {
        let (t, msg) = backend.conn.recv().await?;
        match t {
            tag::ERROR_RESPONSE => failed = Some(parse::error_fields(body(&msg))?.message),
            tag::READY_FOR_QUERY => break,
            _ => {}
        }
    }
    match failed {
        Some(why) => Err(Error::Protocol(format!("DISCARD ALL failed: {why}"))),
        None => Ok(()),
    }
}

/// Opens the transaction block the client believes it is in (carried over a stop, or begun
/// while the session was parked), before its next statement runs.
pub(super) async fn begin(backend: &mut Backend, sql: &str) -> Result<(), Error> {
    let mut out = BytesMut::new();
    protocols::pg::message::query(&mut out, sql);
    backend.conn.send(&out).await?;
    loop {
        let (t, msg) = backend.conn.recv().await?;
        match t {
            tag::ERROR_RESPONSE => {
                let f = parse::error_fields(body(&msg))?;
                return Err(Error::pg(
                    "58000",
                    format!(
                        "torpor could not reopen this session's transaction: {}",
                        f.message
                    ),
                ));
            }
            tag::READY_FOR_QUERY => return Ok(()),
            _ => {}
        }
    }
}
