//! COM_CHANGE_USER: the client switches to another user on the same connection.

use std::sync::Arc;

use protocols::auth::mysql::{self as auth, MyKeys};
use protocols::mysql::handshake::{AuthSwitch, NATIVE_PASSWORD, caps};
use protocols::mysql::packet::{PacketError, Reader, write_packet};

use super::conn::Packets;
use super::conn::{Conn, payload, seq};
use super::error::ACCESS_DENIED;
use crate::cluster_front::{ClusterFront, User};
use crate::names::clip;
use crate::session::Error;
use crate::throttle::Via;
use protocols::mysql::command;

use super::session::My;
use crate::session::{Session, Step};

pub(super) struct Request {
    pub user: String,
    pub database: Option<String>,
    pub charset: Option<u8>,
}

pub(super) fn parse(p: &[u8], capabilities: u32) -> Result<Request, PacketError> {
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
/// Returns the user, what the answer revealed of its password (kept only for a user with a
/// `password_hash`), and the sequence id for the final OK.
pub(super) async fn authenticate(
    client: &mut Conn,
    front: &ClusterFront,
    req: &Request,
    seq_id: u8,
    host: &str,
) -> Result<(Arc<User>, Option<Arc<MyKeys>>, u8), Error> {
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
    // A session that is in can guess other users' passwords here as well as at a login.
    let ip = client.io.peer_addr().map(|a| a.ip());
    front.logins.wait(ip).await;
    let user = front.user(&req.user).and_then(|u| {
        let stage1 = auth::native_recover(&u.my.native, &scramble, response)?;
        let keys = u.password.is_none().then(|| {
            Arc::new(MyKeys {
                native: Some(stage1),
                sha2: None,
            })
        });
        Some((u, keys))
    });
    match user {
        Some((u, keys)) => Ok((u, keys, next)),
        None => {
            front.logins.failed(ip, Via::Mysql);
            let mut out = Vec::new();
            let msg = format!(
                "Access denied for user '{}'@'{}' (using password: {})",
                clip(&req.user),
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

impl Session<My> {
    /// COM_CHANGE_USER: check the new user's password here, then start over on a fresh
    /// backend connection as that user (the server would reset the session the same way).
    pub(super) async fn change_user(&mut self, packet: &[u8]) -> Result<Step, Error> {
        let req = super::change_user::parse(payload(packet), self.p.hello.capabilities)?;
        let seq = self.p.reply_seq;
        let (user, keys, next) = super::change_user::authenticate(
            &mut self.p.client,
            &self.front,
            &req,
            seq,
            &self.p.hello.host,
        )
        .await?;
        self.p.reply_seq = next;
        if let Some(b) = self.p.backend.as_mut() {
            let mut out = Vec::new();
            write_packet(&mut out, 0, &command::quit());
            let _ = b.conn.send(&out).await;
        }
        self.park();
        // The server would reset the session: nothing of the old one is restored.
        self.member.forget_snapshot().await;
        self.p.tracker.tracked.reset();
        self.p.tracker.stmts.clear();
        self.p.overlay.clear();
        self.p.tracker.customised = false;
        self.p.user = user;
        self.p.hello.keys = keys;
        self.p.hello.database = req.database.clone();
        if let Some(cs) = req.charset {
            self.p.hello.charset = cs;
        }
        self.p.tracker.schema = req.database;
        // The next snapshot is the new user's.
        self.member.key.user = self.p.user.name.clone();
        self.member.key.database = self.p.hello.database.clone().unwrap_or_default();
        self.member
            .reg
            .entry
            .set_user(&self.p.user.name, self.p.hello.database.as_deref());
        self.attach().await?;
        let seq = self.p.reply_seq;
        self.p.send_ok(seq).await?;
        Ok(Step::Continue)
    }
}
