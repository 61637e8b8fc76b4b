//! Replaying a snapshot into a fresh backend connection before the client's command runs.

use metrics::Histogram;
use protocols::mysql::command::{self, PrepareOk};
use protocols::mysql::handshake::caps;
use protocols::mysql::packet::write_packet;
use protocols::mysql::replay::{self, Command};
use protocols::mysql::response::ErrPacket;
use protocols::mysql::response_tracker::{Kind, Reply, ResponseTracker};
use protocols::mysql::snapshot::MySnapshot;

use super::backend::Backend;
use super::conn::Packets;
use super::conn::payload;
use super::connection_id::Ids;
use super::error::UNKNOWN;
use crate::session::Error;
use protocols::mysql::statements::Statements;

fn failed(what: &str) -> Error {
    Error::my(
        UNKNOWN,
        "HY000",
        format!("torpor could not restore this session after the database woke up: {what}"),
    )
}

/// Sends the whole replay in one write and reads one response per command. Prepared statements
/// get new backend ids under the ids the client knows; their long data is sent again. Returns
/// the server status after the replay; `client` is the id the client was given, which their
/// CONNECTION_ID() calls are given too. The time a replay takes goes to `replay_seconds`. The
/// replay is built on the blocking pool: it is as large as the snapshot, temp tables' rows and
/// all, and checking each statement costs a scan of it.
pub(super) async fn restore(
    backend: &mut Backend,
    snap: MySnapshot,
    stmts: &mut Statements,
    client: u32,
    replay_seconds: &Histogram,
) -> Result<u16, Error> {
    let ids = Ids::for_replay(client, backend.id, backend.status, &snap);
    let commands = tokio::task::spawn_blocking(move || replay::build(&snap))
        .await
        .map_err(|e| failed(&format!("building the replay failed: {e}")))?
        .map_err(|e| failed(&e))?;
    if commands.is_empty() {
        return Ok(backend.status);
    }
    let started = std::time::Instant::now();
    let mut responses = ResponseTracker::new(backend.capabilities & caps::DEPRECATE_EOF != 0);
    let mut out = Vec::new();
    for c in &commands {
        let (body, reply) = match c {
            Command::Query { sql, .. } => (command::query(sql), Reply::Query),
            Command::InitDb { schema, .. } => (command::init_db(schema), Reply::Single),
            Command::Prepare { sql, .. } => {
                let body = command::stmt_prepare(sql);
                (ids.command(&body).unwrap_or(body), Reply::Prepare)
            }
        };
        write_packet(&mut out, 0, &body);
        responses.expect(reply);
    }
    backend.conn.send(&out).await?;

    let mut done = 0;
    let mut failure: Option<String> = None;
    while done < commands.len() {
        let packet = backend.conn.recv().await?;
        let body = payload(&packet);
        let seen = responses
            .backend_packet(body)
            .map_err(|e| Error::Protocol(format!("from the database: {e}")))?;
        let label = || match &commands[done] {
            Command::Query { label, .. }
            | Command::InitDb { label, .. }
            | Command::Prepare { label, .. } => label.clone(),
        };
        match seen.kind {
            Kind::Err if failure.is_none() => {
                let msg = ErrPacket::parse(body)
                    .map(|e| e.message)
                    .unwrap_or_else(|e| e.to_string());
                failure = Some(format!("{}: {msg}", label()));
            }
            Kind::PrepareOk => {
                if let Command::Prepare { id, .. } = &commands[done] {
                    let ok = PrepareOk::parse(body)?;
                    if let Some(st) = stmts.get_mut(*id) {
                        st.backend_id = ok.stmt_id;
                        st.types_unsent = true;
                    }
                }
            }
            _ => {}
        }
        if seen.done {
            done += 1;
        }
    }
    // Long data has no response: once the commands are answered, the backend is restored.
    replay_seconds.record(started.elapsed());
    tracing::debug!(
        replay_us = started.elapsed().as_micros(),
        commands = commands.len(),
        "session state replayed"
    );
    if let Some(what) = failure {
        return Err(failed(&what));
    }
    let mut out = Vec::new();
    for (_, st) in stmts.iter_mut() {
        for (param, data) in &st.long_data {
            write_packet(
                &mut out,
                0,
                &command::long_data(st.backend_id, *param, data),
            );
        }
    }
    if !out.is_empty() {
        backend.conn.send(&out).await?;
    }
    Ok(responses.status())
}

/// Puts a connection back to how a login of the same user, schema and character set leaves it,
/// for another session: COM_RESET_CONNECTION drops what a session can hold (variables, user
/// variables, temporary tables, prepared statements, named locks) and COM_INIT_DB returns to
/// the login's schema. On MySQL the character set goes back to the server's default; `names`,
/// the login's (character set, collation) when it is another, is set again with SET NAMES, all
/// in one round trip. Returns the server status.
pub(super) async fn reset(
    backend: &mut Backend,
    schema: Option<&str>,
    names: Option<(&str, &str)>,
) -> Result<u16, Error> {
    let mut responses = ResponseTracker::new(backend.capabilities & caps::DEPRECATE_EOF != 0);
    let mut out = Vec::new();
    write_packet(&mut out, 0, &command::reset_connection());
    responses.expect(Reply::Single);
    let mut expected = 1;
    if let Some(schema) = schema {
        write_packet(&mut out, 0, &command::init_db(schema));
        responses.expect(Reply::Single);
        expected += 1;
    }
    if let Some((charset, collation)) = names {
        let set = format!("SET NAMES '{charset}' COLLATE '{collation}'");
        write_packet(&mut out, 0, &command::query(&set));
        responses.expect(Reply::Query);
        expected += 1;
    }
    backend.conn.send(&out).await?;
    let mut done = 0;
    let mut failure = None;
    while done < expected {
        let packet = backend.conn.recv().await?;
        let body = payload(&packet);
        let seen = responses
            .backend_packet(body)
            .map_err(|e| Error::Protocol(format!("from the database: {e}")))?;
        if seen.kind == Kind::Err && failure.is_none() {
            failure = Some(
                ErrPacket::parse(body)
                    .map(|e| e.message)
                    .unwrap_or_else(|e| e.to_string()),
            );
        }
        if seen.done {
            done += 1;
        }
    }
    match failure {
        Some(why) => Err(Error::Protocol(format!("reset failed: {why}"))),
        None => Ok(responses.status()),
    }
}
