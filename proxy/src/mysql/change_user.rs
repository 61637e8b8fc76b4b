//! COM_CHANGE_USER: the client switches to another user on the same connection.

use std::sync::Arc;

use protocols::auth::mysql as auth;
use protocols::mysql::handshake::{AuthSwitch, NATIVE_PASSWORD, caps};
use protocols::mysql::packet::{PacketError, Reader, write_packet};

use super::conn::Packets;
use super::conn::{Conn, payload, seq};
use super::error::ACCESS_DENIED;
use crate::service::{Service, User};
use crate::session::Error;

pub struct Request {
    pub user: String,
    pub database: Option<String>,
    pub charset: Option<u8>,
}

pub fn parse(p: &[u8], capabilities: u32) -> Result<Request, PacketError> {
    let mut r = Reader::new(p);
    r.u8()?;
    let user = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
    // The auth data was computed for the old scramble; torpor asks again with a new one.
    if capabilities & caps::SECURE_CONNECTION != 0 {
        let n = r.u8()? as usize;
        r.skip(n)?;
    } else {
        r.nul_bytes()?;
    }
    let database = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
    let charset = if r.remaining() >= 2 {
        Some(r.u16()? as u8)
    } else {
        None
    };
    Ok(Request {
        user,
        database: (!database.is_empty()).then_some(database),
        charset,
    })
}

/// Asks the client for a mysql_native_password answer to a fresh scramble and checks it.
/// Returns the user and the sequence id for the final OK.
pub async fn authenticate(
    client: &mut Conn,
    service: &Service,
    req: &Request,
    seq_id: u8,
    host: &str,
) -> Result<(Arc<User>, u8), Error> {
    let mut scramble = [0u8; 20];
    for b in &mut scramble {
        *b = rand::random_range(33..127);
    }
    let mut body = Vec::new();
    AuthSwitch {
        plugin: NATIVE_PASSWORD.into(),
        data: scramble.to_vec(),
    }
    .write(&mut body);
    let mut out = Vec::new();
    write_packet(&mut out, seq_id, &body);
    client.send(&out).await?;
    let answer = client.recv().await?;
    let next = seq(&answer).wrapping_add(1);
    let response = payload(&answer);
    let user = service
        .user(&req.user)
        .filter(|u| auth::native_verify(u.password.as_bytes(), &scramble, response));
    match user {
        Some(u) => Ok((u, next)),
        None => {
            let mut out = Vec::new();
            let msg = format!(
                "Access denied for user '{}'@'{}' (using password: {})",
                req.user,
                host,
                if response.is_empty() { "NO" } else { "YES" }
            );
            write_packet(
                &mut out,
                next,
                &protocols::mysql::response::err_packet(ACCESS_DENIED, "28000", &msg),
            );
            let _ = client.send(&out).await;
            Err(Error::Closed)
        }
    }
}
