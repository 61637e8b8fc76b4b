//! Phase 1 of a drain for one session: ask the backend what the session holds, on the session's
//! own connection, without the client seeing any of it.

use bytes::BytesMut;
use protocols::pg::capture::{self, CatalogOutcome, QueryResult};
use protocols::pg::message::{self, tag};
use protocols::pg::parse;
use protocols::pg::snapshot::PgSnapshot;
use protocols::pg::tracker::Tracker;
use protocols::pg::txn;

use super::backend::Backend;
use super::conn::Messages;
use super::conn::body;
use crate::session::Error;

pub(super) enum Capture {
    /// The state, and the statement that reopens the session's transaction block if it is in
    /// one that can be carried over.
    Snapshot(Box<PgSnapshot>, Option<String>),
    /// Non-transferable state, named for operators.
    Blocked(Vec<String>),
}

/// Runs the capture plan. Notifications that arrive meanwhile are appended to `to_client`.
/// In a transaction block, the backend first judges whether the block can be carried, and
/// everything runs inside a savepoint that is rolled back to at the end, whatever happened.
pub(super) async fn capture(
    backend: &mut Backend,
    tracker: &Tracker,
    to_client: &mut BytesMut,
) -> Result<Capture, Error> {
    if tracker.txn_status() != b'T' {
        return capture_state(backend, tracker, to_client).await;
    }
    let judged = simple_query(backend, txn::FACTS_QUERY, to_client)
        .await
        .map(|r| {
            txn::judge(
                r.get(1)
                    .and_then(|r| r.rows.first())
                    .map_or(&[], Vec::as_slice),
            )
        });
    let result = match judged {
        Ok(Ok(reopen)) => match capture_state(backend, tracker, to_client).await {
            Ok(Capture::Snapshot(snap, _)) => Ok(Capture::Snapshot(snap, Some(reopen))),
            other => other,
        },
        Ok(Err(why)) => Ok(Capture::Blocked(vec![why])),
        Err(e) => Err(e),
    };
    // Must succeed, or the client's transaction is not as it left it.
    simple_query(backend, txn::UNDO_QUERY, to_client).await?;
    result
}

async fn capture_state(
    backend: &mut Backend,
    tracker: &Tracker,
    to_client: &mut BytesMut,
) -> Result<Capture, Error> {
    let started = std::time::Instant::now();
    let mut catalog = simple_query(backend, &capture::catalog_query(), to_client).await?;
    let temp = capture::temp_catalog_query(&catalog)
        .map_err(|e| Error::pg("XX000", format!("capture failed: {e}")))?;
    if let Some(sql) = &temp {
        catalog.extend(simple_query(backend, sql, to_client).await?);
    }
    let catalog_us = started.elapsed().as_micros();
    let mut plan = match capture::plan(&catalog, tracker.on_commit_delete_rows())
        .map_err(|e| Error::pg("XX000", format!("capture failed: {e}")))?
    {
        CatalogOutcome::Blocked(why) => return Ok(Capture::Blocked(why)),
        CatalogOutcome::Continue(plan) => plan,
    };
    plan.ask_custom_settings(tracker.custom_settings());
    let data = match plan.data_query() {
        Some(sql) => simple_query(backend, &sql, to_client).await?,
        None => Vec::new(),
    };
    let snap = plan
        .finish(&data)
        .map_err(|e| Error::pg("XX000", format!("capture failed: {e}")))?;
    tracing::debug!(
        catalog_us,
        temp_schema = temp.is_some(),
        total_us = started.elapsed().as_micros(),
        "session state captured"
    );
    Ok(Capture::Snapshot(Box::new(snap), None))
}

/// Sends one simple Query and collects one result per statement until ReadyForQuery.
pub(super) async fn simple_query(
    backend: &mut Backend,
    sql: &str,
    to_client: &mut BytesMut,
) -> Result<Vec<QueryResult>, Error> {
    let mut out = BytesMut::new();
    message::query(&mut out, sql);
    backend.conn.send(&out).await?;

    let mut results = Vec::new();
    let mut current = QueryResult::default();
    let mut error = None;
    loop {
        let (t, msg) = backend.conn.recv().await?;
        let b = body(&msg);
        match t {
            tag::DATA_ROW => {
                let row = parse::data_row(b)?
                    .into_iter()
                    .map(|v| v.map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
                    .collect();
                current.rows.push(row);
            }
            tag::BACKEND_COPY_DATA => current.copy_out.extend_from_slice(b),
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE => {
                results.push(std::mem::take(&mut current));
            }
            tag::ERROR_RESPONSE => {
                let f = parse::error_fields(b)?;
                error = Some(f.message);
            }
            tag::NOTIFICATION_RESPONSE => to_client.extend_from_slice(&msg),
            tag::READY_FOR_QUERY => break,
            // Row descriptions, copy headers, notices and status changes aren't needed.
            _ => {}
        }
    }
    match error {
        Some(e) => Err(Error::pg("XX000", format!("capture query failed: {e}"))),
        None => Ok(results),
    }
}
