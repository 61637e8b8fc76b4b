//! Replaying a snapshot into a fresh backend connection before the client's query runs.

use bytes::BytesMut;
use protocols::pg::message::tag;
use protocols::pg::parse;
use protocols::pg::replay;
use protocols::pg::snapshot::PgSnapshot;

use super::backend::Backend;
use super::conn::body;
use super::error::SessionError;

/// Sends the whole replay in one write and reads until every ReadyForQuery came back.
/// Fails naming the first item the backend refused. Notifications go to `to_client`.
pub async fn restore(
    backend: &mut Backend,
    snap: &PgSnapshot,
    to_client: &mut BytesMut,
) -> Result<(), SessionError> {
    let plan = replay::build(snap);
    if plan.ready_count == 0 {
        return Ok(());
    }
    let started = std::time::Instant::now();
    backend.conn.send(&plan.messages).await?;

    let mut statements = 0usize;
    let mut parses = 0usize;
    let mut ready = 0usize;
    // Until the first ReadyForQuery we are in the simple query; after it, in the Parse batch.
    let mut in_parses = plan.statements.is_empty();
    let mut failure: Option<String> = None;
    while ready < plan.ready_count {
        let (t, msg) = backend.conn.recv().await?;
        let b = body(&msg);
        match t {
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE => statements += 1,
            tag::PARSE_COMPLETE => parses += 1,
            tag::READY_FOR_QUERY => {
                ready += 1;
                in_parses = true;
            }
            tag::ERROR_RESPONSE => {
                let f = parse::error_fields(b)?;
                let what = if in_parses {
                    plan.parses.get(parses)
                } else {
                    plan.statements.get(statements)
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
    tracing::debug!(
        replay_us = started.elapsed().as_micros(),
        ready = plan.ready_count,
        "session state replayed"
    );
    match failure {
        Some(what) => Err(SessionError::fatal(
            "58000",
            format!("torpor could not restore this session after the database woke up: {what}"),
        )),
        None => Ok(()),
    }
}

/// Opens the transaction block the client believes it is in (carried over a stop, or begun
/// while the session was parked), before its next statement runs.
pub async fn begin(backend: &mut Backend, sql: &str) -> Result<(), SessionError> {
    let mut out = BytesMut::new();
    protocols::pg::message::query(&mut out, sql);
    backend.conn.send(&out).await?;
    loop {
        let (t, msg) = backend.conn.recv().await?;
        match t {
            tag::ERROR_RESPONSE => {
                let f = parse::error_fields(body(&msg))?;
                return Err(SessionError::fatal(
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
