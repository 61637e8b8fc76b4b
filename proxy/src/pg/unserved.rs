//! A client request torpor answers with an ERROR itself, without a server, keeping the session:
//! a wake that did not finish in time, or a statement in a transaction block that failed so.
//! As the server does, a Query ends with ReadyForQuery, and the extended protocol's messages
//! are skipped through the next Sync, which is answered with ReadyForQuery.

use bytes::BytesMut;
use protocols::pg::frame;
use protocols::pg::message::{self, tag};

use super::conn::{Conn, MAX_CLIENT_MESSAGE};
use crate::session::Error;

/// Sends `code` and `message` as an ERROR for the request at the front of the client's
/// buffer and drops that request. Returns whether the client waits for the rest of it: its
/// Sync has not arrived yet, and ReadyForQuery must wait for it ([`skip_to_sync`]).
pub(super) async fn refuse(
    client: &mut Conn,
    code: &str,
    message: &str,
    status: u8,
) -> Result<bool, Error> {
    let query = client.rbuf.first() == Some(&tag::QUERY);
    let done = if query {
        drop_message(&mut client.rbuf)?;
        true
    } else {
        drop_to_sync(&mut client.rbuf)?
    };
    let mut out = BytesMut::new();
    message::error_response(&mut out, "ERROR", code, message);
    if done {
        message::ready_for_query(&mut out, status);
    }
    client.send(&out).await?;
    Ok(!done)
}

/// Drops the rest of a refused extended-protocol request; once its Sync came, tells the client
/// the session is ready. Returns whether it still waits for the Sync.
pub(super) async fn skip_to_sync(client: &mut Conn, status: u8) -> Result<bool, Error> {
    if !drop_to_sync(&mut client.rbuf)? {
        return Ok(true);
    }
    let mut out = BytesMut::new();
    message::ready_for_query(&mut out, status);
    client.send(&out).await?;
    Ok(false)
}

/// Drops whole messages through the first Sync; whether a Sync was among them.
fn drop_to_sync(buf: &mut BytesMut) -> Result<bool, Error> {
    while let Some(t) = drop_message(buf)? {
        if t == tag::SYNC {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Drops the first message if it is whole, and says which it was.
fn drop_message(buf: &mut BytesMut) -> Result<Option<u8>, Error> {
    let Some((t, len)) = frame::message_len(buf, MAX_CLIENT_MESSAGE)? else {
        return Ok(None);
    };
    let _ = buf.split_to(len);
    Ok(Some(t))
}
