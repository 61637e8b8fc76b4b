//! Phase 1 of a drain for one MySQL session: ask the backend what the session holds, on the
//! session's own connection, without the client seeing any of it.

use protocols::mysql::capture::{self, ColumnInfo, QueryResult, ServerError, Step};
use protocols::mysql::command;
use protocols::mysql::handshake::caps;
use protocols::mysql::packet::write_packet;
use protocols::mysql::response::{Column, ErrPacket, column_count, text_row};
use protocols::mysql::response_tracker::{Kind, Reply, ResponseTracker};
use protocols::mysql::snapshot::MySnapshot;
use protocols::mysql::tracked::Tracked;

use super::backend::Backend;
use super::conn::Packets;
use super::conn::payload;
use super::error::UNKNOWN;
use crate::session::Error;

pub(super) enum Capture {
    Snapshot(Box<MySnapshot>),
    /// Non-transferable state, named for operators.
    Blocked(Vec<String>),
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::my(UNKNOWN, "HY000", format!("capture failed: {e}"))
}

/// Runs the capture plan round by round.
pub(super) async fn capture(backend: &mut Backend, tracked: &Tracked) -> Result<Capture, Error> {
    let mut plan = capture::Capture::new(tracked);
    let mut queries = plan.first();
    loop {
        let results = run(backend, &queries).await?;
        match plan.next(results).map_err(failed)? {
            Step::Queries(q) => queries = q,
            Step::Done(snap) => return Ok(Capture::Snapshot(snap)),
            Step::Blocked(why) => return Ok(Capture::Blocked(why)),
        }
    }
}

/// Sends the queries in one write and collects one text result (or error) per query.
pub(super) async fn run(
    backend: &mut Backend,
    queries: &[String],
) -> Result<Vec<Result<QueryResult, ServerError>>, Error> {
    let mut responses = ResponseTracker::new(backend.capabilities & caps::DEPRECATE_EOF != 0);
    let mut out = Vec::new();
    for q in queries {
        write_packet(&mut out, 0, &command::query(q));
        responses.expect(Reply::Query);
    }
    backend.conn.send(&out).await?;

    let mut results = Vec::with_capacity(queries.len());
    let mut current = QueryResult::default();
    let mut ncols: Option<usize> = None;
    let mut error = None;
    while results.len() < queries.len() {
        let packet = backend.conn.recv().await?;
        let body = payload(&packet);
        let seen = responses
            .backend_packet(body)
            .map_err(|e| Error::Protocol(format!("from the database: {e}")))?;
        match seen.kind {
            Kind::Err => error = Some(ErrPacket::parse(body)?),
            Kind::Data => match ncols {
                None => ncols = Some(column_count(body)? as usize),
                Some(n) if current.columns.len() < n => {
                    let c = Column::parse(body)?;
                    current.columns.push(ColumnInfo {
                        name: c.name,
                        column_type: c.column_type,
                        charset: c.charset,
                        flags: c.flags,
                        decimals: c.decimals,
                    });
                }
                Some(n) => current.rows.push(text_row(body, n)?),
            },
            _ => {}
        }
        if seen.done {
            results.push(match error.take() {
                Some(e) => Err(ServerError {
                    code: e.code,
                    sql_state: e.sql_state,
                    message: e.message,
                }),
                None => Ok(std::mem::take(&mut current)),
            });
            current = QueryResult::default();
            ncols = None;
        }
    }
    Ok(results)
}
