//! The busy query on MySQL/MariaDB: torpor's default, and asking it on a connection of
//! torpor's own (see `crate::busy`).

use controller::BackendInfo;
use protocols::mysql::command;
use protocols::mysql::handshake::caps;
use protocols::mysql::packet::write_packet;
use protocols::mysql::response::{ErrPacket, column_count, text_row};
use protocols::mysql::response_tracker::{Kind, Reply, ResponseTracker};

use super::backend::{self, Backend};
use super::conn::{Packets, payload};
use crate::busy::{Answer, TIMEOUT};
use crate::cluster_front::ClusterFront;
use crate::session::Error;

/// Threads that did not come through torpor and are not sleeping: a query, a replica's
/// `Binlog Dump` (MySQL's walsender: it keeps the cluster up whatever it does), a replica's
/// own replication threads. Background `Daemon` threads don't count, nor a login still in
/// progress (user `unauthenticated user`): it does no work yet, and once in it is asked again
/// at the next drain. PROCESSLIST shows no transactions: a connection asleep inside one is not
/// seen. Without the PROCESS privilege the user torpor logs in as sees only its own threads.
/// Rows: (thread id, user, command, query), as `crate::busy::verdict` reads them.
pub(crate) fn default_query(torpor: &[i32]) -> String {
    // 0 is never a thread id: the list is never empty, which MySQL would refuse.
    let ids: Vec<String> = std::iter::once(0)
        .chain(torpor.iter().map(|id| *id as u32))
        .map(|id| id.to_string())
        .collect();
    format!(
        "SELECT ID, USER, COMMAND, LEFT(INFO, 60) \
         FROM information_schema.PROCESSLIST \
         WHERE ID <> CONNECTION_ID() AND ID NOT IN ({}) \
           AND COMMAND NOT IN ('Sleep', 'Daemon') \
           AND USER <> 'unauthenticated user' \
         ORDER BY ID",
        ids.join(", ")
    )
}

/// Runs `sql` on a connection of torpor's own.
pub(crate) async fn ask(
    front: &ClusterFront,
    at: &BackendInfo,
    sql: &str,
) -> Result<Answer, Error> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut b = backend::connect_own(front, at, deadline).await?;
    // MariaDB gives up on the query when torpor does; MySQL has no such setting for every
    // statement, and refuses it: then only torpor gives up.
    let _ = first_rows(
        &mut b,
        &format!("SET SESSION max_statement_time = {}", TIMEOUT.as_secs()),
    )
    .await;
    let answer = first_rows(&mut b, sql).await;
    let mut out = Vec::new();
    write_packet(&mut out, 0, &command::quit());
    let _ = b.conn.send(&out).await;
    answer
}

/// Sends `sql` as COM_QUERY and keeps the first rows of its first result.
async fn first_rows(b: &mut Backend, sql: &str) -> Result<Answer, Error> {
    let deprecate_eof = b.capabilities & caps::DEPRECATE_EOF != 0;
    let mut responses = ResponseTracker::new(deprecate_eof);
    let mut out = Vec::new();
    write_packet(&mut out, 0, &command::query(sql));
    responses.expect(Reply::Query);
    b.conn.send(&out).await?;

    let mut answer = Answer::default();
    let mut error = None;
    // A result: its column count, that many definitions, an EOF (unless DEPRECATE_EOF), the
    // rows, and an EOF or OK. Only the first result counts.
    let ends = if deprecate_eof { 1 } else { 2 };
    let mut columns: Option<usize> = None;
    let mut definitions = 0;
    let mut ended = 0;
    loop {
        let packet = b.conn.recv().await?;
        let body = payload(&packet);
        let seen = responses
            .backend_packet(body)
            .map_err(|e| Error::Protocol(format!("from the database: {e}")))?;
        match (seen.kind, columns) {
            (Kind::Err, _) => error = Some(ErrPacket::parse(body)?.message),
            (_, _) if ended >= ends => {}
            (Kind::Data, None) => columns = Some(column_count(body)? as usize),
            (Kind::Data, Some(n)) if definitions < n => definitions += 1,
            (Kind::Data, Some(n)) => {
                let row = text_row(body, n)?;
                answer.push(row.iter().map(|v| v.as_deref()));
            }
            (Kind::Eof | Kind::Ok, Some(_)) => ended += 1,
            _ => {}
        }
        if seen.done {
            break;
        }
    }
    match error {
        Some(e) => Err(Error::my(super::error::UNKNOWN, "HY000", e)),
        None => Ok(answer),
    }
}
