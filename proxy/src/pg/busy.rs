//! The busy query on PostgreSQL: torpor's default, and asking it on a connection of torpor's
//! own (see `crate::busy`).

use bytes::BytesMut;
use controller::BackendInfo;
use protocols::pg::message::{self, tag};
use protocols::pg::parse;

use super::backend::{self, Backend};
use super::conn::{Messages, body};
use crate::busy::{Answer, TIMEOUT};
use crate::cluster_front::ClusterFront;
use crate::session::Error;

/// Client backends that did not come through torpor and are not idle ("idle in transaction"
/// is at work: it may hold locks, and a stop would roll it back), and every walsender (a
/// replica or `pg_recvlogical` reading a slot). Their state is unknown (NULL) when the user
/// torpor logs in as may not see other roles' sessions: that counts as at work too.
/// Rows: (pid, who, state, query), as `crate::busy::verdict` reads them.
pub(crate) fn default_query(torpor: &[i32]) -> String {
    let pids: Vec<String> = torpor.iter().map(i32::to_string).collect();
    format!(
        "SELECT pid, \
           CASE WHEN backend_type = 'walsender' \
             THEN trim('walsender ' || coalesce(application_name, '')) \
             ELSE application_name END, \
           state, left(query, 60) \
         FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND pid <> ALL ('{{{}}}'::int[]) \
           AND (backend_type = 'walsender' \
             OR (backend_type = 'client backend' AND state IS DISTINCT FROM 'idle')) \
         ORDER BY pid",
        pids.join(",")
    )
}

/// Runs `sql` on a connection of torpor's own.
pub(crate) async fn ask(
    front: &ClusterFront,
    at: &BackendInfo,
    sql: &str,
) -> Result<Answer, Error> {
    // The server gives up on the query when torpor does.
    let timeout = TIMEOUT.as_millis().to_string();
    let settings = [("statement_timeout", timeout.as_str())];
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut b = backend::connect_own(front, at, &settings, deadline).await?;
    let answer = first_rows(&mut b, sql).await;
    let mut out = BytesMut::new();
    message::terminate(&mut out);
    let _ = b.conn.send(&out).await;
    answer
}

/// Sends `sql` as a simple Query and keeps the first rows of its answer.
async fn first_rows(b: &mut Backend, sql: &str) -> Result<Answer, Error> {
    let mut out = BytesMut::new();
    message::query(&mut out, sql);
    b.conn.send(&out).await?;
    let mut answer = Answer::default();
    let mut error = None;
    loop {
        let (t, msg) = b.conn.recv().await?;
        let m = body(&msg);
        match t {
            tag::DATA_ROW => answer.push(parse::data_row(m)?),
            tag::ERROR_RESPONSE => error = Some(parse::error_fields(m)?.message),
            tag::COPY_IN_RESPONSE => {
                out.clear();
                message::copy_fail(&mut out, "torpor's busy_query sends no COPY data");
                b.conn.send(&out).await?;
            }
            tag::READY_FOR_QUERY => break,
            // Descriptions, COPY out data, notices and status changes say nothing here.
            _ => {}
        }
    }
    match error {
        Some(e) => Err(Error::pg("XX000", e)),
        None => Ok(answer),
    }
}
