//! The client side of connection setup: torpor greets the client as the server would, and
//! checks the password itself, so a wrong password never wakes the database.

use std::sync::Arc;

use protocols::auth::mysql::{self as auth, MyKeys};
use protocols::mysql::handshake::{
    self, AuthSwitch, CACHING_SHA2_PASSWORD, Handshake, HandshakeResponse, NATIVE_PASSWORD, caps,
    sha2_auth,
};
use protocols::mysql::packet::write_packet;
use tokio::net::TcpStream;

use super::conn::Packets;
use super::conn::{Conn, payload, seq};
use super::error::{ACCESS_DENIED, TOO_MANY_CONNECTIONS};
use crate::cluster_front::{ClusterFront, Greeting, User};
use crate::names::clip;
use crate::registry::{Identity, Registration};
use crate::session::Error;
use crate::throttle::Via;

/// Capabilities torpor offers clients (further limited by what the backend offers). No TLS and
/// no compression yet; no LOCAL INFILE, whose file requests would come from the backend.
pub(super) const OFFERED: u32 = caps::LONG_PASSWORD
    | caps::FOUND_ROWS
    | caps::LONG_FLAG
    | caps::CONNECT_WITH_DB
    | caps::IGNORE_SPACE
    | caps::PROTOCOL_41
    | caps::INTERACTIVE
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::MULTI_STATEMENTS
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::PLUGIN_AUTH
    | caps::CONNECT_ATTRS
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::SESSION_TRACK
    | caps::DEPRECATE_EOF;

/// Server status AUTOCOMMIT, as a fresh session has it.
const AUTOCOMMIT: u16 = 0x0002;

/// What the client asked for at connect time; a new backend connection is opened with it.
#[derive(Debug, Clone)]
pub(super) struct Hello {
    /// Capabilities agreed with the client.
    pub capabilities: u32,
    pub charset: u8,
    pub max_packet: u32,
    pub database: Option<String>,
    pub attrs: Vec<(String, String)>,
    pub host: String,
    /// What the client's login revealed of its password, when the user has only a
    /// `password_hash`: a new backend connection logs in with it. Gone with the session.
    pub keys: Option<Arc<MyKeys>>,
    /// The connection id of torpor's greeting: what CONNECTION_ID() answers the client.
    pub connection_id: u32,
}

pub(super) enum Start {
    Session {
        conn: Conn,
        user: Arc<User>,
        hello: Hello,
        reg: Registration,
        /// Sequence id for the packet that ends the connection phase.
        seq: u8,
    },
    Failed {
        conn: Conn,
        seq: u8,
        error: Error,
    },
}

/// The largest packet a client may send before it has logged in. Real handshake responses
/// are a few hundred bytes (connection attributes included); without a bound, each of
/// `max_client_connections` clients could make torpor hold 16 MiB before any password is
/// checked. PostgreSQL's login messages have the same bound.
const MAX_LOGIN_PACKET: usize = 16 << 10;

/// ER_SECURE_TRANSPORT_REQUIRED (MySQL 5.7).
const SECURE_TRANSPORT_REQUIRED: u16 = 3159;

/// The whole handshake, greeting included, within `handshake_timeout`.
pub(super) async fn accept(io: TcpStream, front: &Arc<ClusterFront>) -> Start {
    let mut conn = super::conn::conn(io);
    let session_max = conn.max;
    conn.max = MAX_LOGIN_PACKET;
    let timeout = front.handshake_timeout;
    let logged_in = tokio::time::timeout(timeout, log_in(&mut conn, front)).await;
    conn.max = session_max;
    match logged_in {
        Ok(Ok((user, hello, reg, seq))) => Start::Session {
            conn,
            user,
            hello,
            reg,
            seq,
        },
        Ok(Err((seq, error))) => Start::Failed { conn, seq, error },
        Err(_) => Start::Failed {
            conn,
            seq: 0,
            error: Error::my(
                1158,
                "08S01",
                format!(
                    "the client did not log in within handshake_timeout ({})",
                    humantime::format_duration(timeout)
                ),
            ),
        },
    }
}

/// A client past the connection cap gets what MariaDB says then, in place of its greeting:
/// an ERR without a SQLSTATE, since no capabilities are agreed yet.
pub(super) async fn refuse(io: TcpStream) {
    let mut conn = super::conn::conn(io);
    let mut err = vec![0xff];
    err.extend_from_slice(&TOO_MANY_CONNECTIONS.to_le_bytes());
    err.extend_from_slice(b"Too many connections");
    let mut out = Vec::new();
    write_packet(&mut out, 0, &err);
    let _ = conn.send(&out).await;
}

type LoggedIn = (Arc<User>, Hello, Registration, u8);

async fn log_in(conn: &mut Conn, front: &Arc<ClusterFront>) -> Result<LoggedIn, (u8, Error)> {
    let peer = conn.io.peer_addr();
    let host = peer
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "localhost".into());
    let greeting = greeting(front).await.map_err(|e| (0, e))?;
    let (id, reg) = front.registry.register_mysql(&front.name);
    let scramble = scramble();
    let mut offered = OFFERED & (greeting.capabilities | caps::LONG_PASSWORD);
    if front.tls.is_some() {
        offered |= caps::SSL;
    }
    let hs = Handshake {
        server_version: greeting.version.clone(),
        connection_id: id,
        scramble: scramble.to_vec(),
        capabilities: offered,
        charset: greeting.charset,
        status: AUTOCOMMIT,
        auth_plugin: NATIVE_PASSWORD.into(),
        mariadb_caps: 0,
    };
    let mut payload_buf = Vec::new();
    hs.write(&mut payload_buf);
    let mut out = Vec::new();
    write_packet(&mut out, 0, &payload_buf);
    let (user, mut hello, seq) = authenticate(conn, front, &out, &scramble, offered, host).await?;
    hello.connection_id = id;
    let program = hello
        .attrs
        .iter()
        .find(|(k, _)| k == "program_name")
        .map(|(_, v)| v.as_str());
    reg.entry.introduce(
        Identity::new(&user.name, hello.database.as_deref(), peer),
        program.unwrap_or_default(),
    );
    Ok((user, hello, reg, seq))
}

/// The greeting to show: what the backend said last time, or (once per torpor process) what it
/// says now, which may mean waking it.
async fn greeting(front: &ClusterFront) -> Result<Greeting, Error> {
    if let Some(g) = front.greeting() {
        return Ok(g);
    }
    // Busy until the greeting is read: a drain between the wake and the probe would stop the
    // server under us.
    let _busy = front.cluster.busy_while();
    let info = front.cluster.wake(None).await.map_err(|e| {
        Error::my(
            super::error::UNKNOWN,
            "08S01",
            format!("could not wake the database: {e}"),
        )
    })?;
    let g = super::backend::probe(&info).await?;
    front.remember_greeting(g.clone());
    Ok(g)
}

type AuthResult = Result<(Arc<User>, Hello, u8), (u8, Error)>;

async fn authenticate(
    conn: &mut Conn,
    front: &ClusterFront,
    greeting: &[u8],
    scramble: &[u8; 20],
    offered: u32,
    host: String,
) -> AuthResult {
    let io_err = |e: Error| (0u8, e);
    conn.send(greeting)
        .await
        .map_err(|e| io_err(Error::from(e)))?;
    let mut packet = conn.recv_exact().await.map_err(io_err)?;
    let mut next = seq(&packet).wrapping_add(1);
    if handshake::is_ssl_request(payload(&packet)) {
        let Some(tls) = &front.tls else {
            return Err((
                next,
                Error::my(
                    1043,
                    "08S01",
                    "torpor does not offer TLS on this port; connect without SSL",
                ),
            ));
        };
        conn.start_tls(&tls.current()).await.map_err(|e| {
            (
                next,
                Error::Protocol(format!("TLS handshake failed: {}", clip(&e.to_string()))),
            )
        })?;
        packet = conn.recv().await.map_err(|e| (next, e))?;
        next = seq(&packet).wrapping_add(1);
    }
    let body = payload(&packet);
    if front.require_tls && !conn.io.is_tls() {
        // MySQL's answer; MariaDB's require_secure_transport says 1045 Access denied, which
        // would hide why.
        return Err((
            next,
            Error::my(
                SECURE_TRANSPORT_REQUIRED,
                "HY000",
                "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
            ),
        ));
    }
    let resp = HandshakeResponse::parse(body).map_err(|e| (next, Error::from(e)))?;
    if resp.capabilities & caps::COMPRESS != 0 {
        return Err((
            next,
            Error::my(1043, "08S01", "compression was not offered"),
        ));
    }
    let ip = conn.io.peer_addr().map(|a| a.ip());
    let user = front.user(&resp.username);
    let plugin = resp.auth_plugin.as_deref().unwrap_or(NATIVE_PASSWORD);
    let mut response = resp.auth_response.clone();
    let mut used_plugin = plugin.to_string();
    // A user with only a password_hash: MariaDB's native login needs SHA1(pw), which a
    // caching_sha2_password fast-path answer doesn't reveal. Over TLS the password itself may
    // come (full authentication); else the client is switched to mysql_native_password.
    let hashed = user.as_ref().is_some_and(|u| u.password.is_none());
    let mut cleartext = false;
    if plugin == CACHING_SHA2_PASSWORD && hashed && conn.io.is_tls() {
        let mut out = Vec::new();
        write_packet(&mut out, next, &[0x01, sha2_auth::PERFORM_FULL_AUTH]);
        conn.send(&out).await.map_err(|e| (next, Error::from(e)))?;
        let answer = conn.recv().await.map_err(|e| (next, e))?;
        next = seq(&answer).wrapping_add(1);
        let body = payload(&answer);
        response = body.strip_suffix(&[0]).unwrap_or(body).to_vec();
        cleartext = true;
    } else if (plugin != NATIVE_PASSWORD && plugin != CACHING_SHA2_PASSWORD)
        || (plugin == CACHING_SHA2_PASSWORD && hashed)
    {
        // Ask the client for a mysql_native_password answer to the same scramble.
        let mut p = Vec::new();
        AuthSwitch {
            plugin: NATIVE_PASSWORD.into(),
            data: scramble.to_vec(),
        }
        .write(&mut p);
        let mut out = Vec::new();
        write_packet(&mut out, next, &p);
        conn.send(&out).await.map_err(|e| (next, Error::from(e)))?;
        let answer = conn.recv().await.map_err(|e| (next, e))?;
        next = seq(&answer).wrapping_add(1);
        response = payload(&answer).to_vec();
        used_plugin = NATIVE_PASSWORD.into();
    }
    front.logins.wait(ip).await;
    let keys = user.as_ref().and_then(|u| {
        if cleartext {
            u.my.check_cleartext(&response)
        } else if used_plugin == CACHING_SHA2_PASSWORD {
            auth::sha2_recover(&u.my.sha2, scramble, &response).map(|d1| MyKeys {
                native: None,
                sha2: Some(d1),
            })
        } else {
            auth::native_recover(&u.my.native, scramble, &response).map(|s1| MyKeys {
                native: Some(s1),
                sha2: None,
            })
        }
    });
    let (Some(user), Some(keys)) = (user, keys) else {
        front.logins.failed(ip, Via::Mysql);
        return Err((
            next,
            Error::my(
                ACCESS_DENIED,
                "28000",
                format!(
                    "Access denied for user '{}'@'{}' (using password: {})",
                    clip(&resp.username),
                    host,
                    if response.is_empty() { "NO" } else { "YES" }
                ),
            ),
        ));
    };
    if used_plugin == CACHING_SHA2_PASSWORD && !cleartext {
        // torpor knows what the password hashes to, so the fast path decides.
        let mut out = Vec::new();
        next = write_packet(&mut out, next, &[0x01, sha2_auth::FAST_AUTH_OK]);
        conn.send(&out).await.map_err(|e| (next, Error::from(e)))?;
    }
    let hello = Hello {
        // TLS is this hop's: the backend connection makes its own choice.
        capabilities: resp.capabilities & offered & !caps::SSL,
        charset: resp.charset,
        max_packet: resp.max_packet,
        database: resp.database.filter(|d| !d.is_empty()),
        attrs: resp.attrs,
        host,
        // Kept only when the server can't be logged in to with a password torpor knows.
        keys: user.password.is_none().then(|| Arc::new(keys)),
        // The greeting's, which log_in has.
        connection_id: 0,
    };
    if let Some(k) = &hello.keys
        && front.is_first_user(&user)
    {
        front.my_keys.lend(k);
    }
    Ok((user, hello, next))
}

/// 20 random printable bytes: the nonce both auth plugins hash the password with.
fn scramble() -> [u8; 20] {
    let mut s = [0u8; 20];
    for b in &mut s {
        *b = rand::random_range(33..127);
    }
    s
}
