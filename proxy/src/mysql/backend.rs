//! Opening an authenticated connection to the real MySQL/MariaDB server.

use std::net::SocketAddr;
use std::time::Duration;

use controller::BackendInfo;
use protocols::auth::mysql::{self as auth, MyKeys};
use protocols::mysql::handshake::{
    AuthSwitch, CACHING_SHA2_PASSWORD, Handshake, HandshakeResponse, NATIVE_PASSWORD, caps,
    sha2_auth,
};
use protocols::mysql::packet::write_packet;
use protocols::mysql::response::{ErrPacket, OkPacket};

use super::conn::Packets;
use super::conn::{Conn, payload, seq};
use super::error::UNKNOWN;
use super::startup::Hello;
use crate::cluster_front::{ClusterFront, Greeting};
use crate::names::clip;
use crate::net;
use crate::session::error::Code;
use crate::session::{Backoff, Error, ready_by};

pub(super) struct Backend {
    pub conn: Conn,
    pub addr: SocketAddr,
    /// The backend's thread id for this connection (what CONNECTION_ID() returns).
    pub id: u32,
    /// Capabilities agreed with the backend.
    pub capabilities: u32,
    pub greeting: Greeting,
    /// Server status after login (AUTOCOMMIT and the sql_mode flags of a fresh session).
    pub status: u16,
}

/// Capabilities that change what goes over the wire after the handshake: the backend must
/// agree to exactly the client's choice, since torpor passes those bytes through.
const WIRE_SHAPING: u32 = caps::DEPRECATE_EOF
    | caps::MULTI_RESULTS
    | caps::PS_MULTI_RESULTS
    | caps::MULTI_STATEMENTS
    | caps::PROTOCOL_41
    | caps::LONG_FLAG;

/// What torpor always asks of the backend, whatever the client chose.
const ALWAYS: u32 = caps::LONG_PASSWORD
    | caps::PROTOCOL_41
    | caps::SECURE_CONNECTION
    | caps::PLUGIN_AUTH
    | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
    | caps::SESSION_TRACK
    | caps::TRANSACTIONS;

const NEVER: u32 = caps::SSL | caps::COMPRESS | caps::LOCAL_FILES | caps::CONNECT_WITH_DB;

fn unreachable_db(why: impl std::fmt::Display) -> Error {
    Error::my(
        2013,
        "08S01",
        format!("could not connect to the database: {why}"),
    )
}

/// Reads the backend's greeting and hangs up: what clients are shown while it sleeps.
pub(super) async fn probe(at: &BackendInfo) -> Result<Greeting, Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let io = net::connect(at, false).await?;
            let mut conn = super::conn::conn(io);
            let packet = conn.recv().await?;
            let hs = Handshake::parse(payload(&packet))?;
            Ok::<_, Error>(greeting_of(&hs))
        };
        match attempt.await {
            Ok(g) => return Ok(g),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(addr = %at.addr, error = %e, "backend not ready, retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(unreachable_db(e)),
        }
    }
}

fn greeting_of(hs: &Handshake) -> Greeting {
    Greeting {
        version: hs.server_version.clone(),
        charset: hs.charset,
        capabilities: hs.capabilities,
    }
}

/// utf8mb4_general_ci: what torpor's own connections read is ASCII anyway.
const OWN_CHARSET: u8 = 45;

/// A connection of torpor's own (the catalog learner, the busy check), which no client waits
/// on: as the first configured user, with a live session's keys when that user has only a
/// `password_hash`. Its statements go to the server as they are: CONNECTION_ID() is the
/// server's.
pub(super) async fn connect_own(
    front: &ClusterFront,
    at: &BackendInfo,
    deadline: tokio::time::Instant,
) -> Result<Backend, Error> {
    let Some(user) = &front.first_user else {
        return Err(Error::Protocol("no user to log in as".into()));
    };
    let hello = Hello {
        capabilities: caps::LONG_PASSWORD
            | caps::LONG_FLAG
            | caps::PROTOCOL_41
            | caps::TRANSACTIONS
            | caps::SECURE_CONNECTION
            | caps::MULTI_RESULTS
            | caps::PLUGIN_AUTH,
        charset: OWN_CHARSET,
        max_packet: 1 << 24,
        database: None,
        attrs: vec![("program_name".into(), "torpor".into())],
        host: String::new(),
        keys: front.my_keys.borrow(),
        // No client to answer CONNECTION_ID() for.
        connection_id: 0,
    };
    connect(
        at,
        front.backend_tls.as_deref(),
        &hello,
        &user.name,
        user.password.as_deref(),
        None,
        deadline,
    )
    .await
}

/// Connects and authenticates, retrying until `deadline` while the server is still starting
/// up or has too many connections. Past it the session is kept ([`Error::Unavailable`]).
pub(super) async fn connect(
    at: &BackendInfo,
    tls: Option<&crate::tls::Client>,
    hello: &Hello,
    user: &str,
    password: Option<&str>,
    database: Option<&str>,
    deadline: tokio::time::Instant,
) -> Result<Backend, Error> {
    let mut full = Backoff::until(deadline);
    let ready_by = ready_by(deadline);
    loop {
        let why = match net::connect(at, tls.is_some()).await {
            Ok(io) => {
                let conn = super::conn::conn(io);
                let login = Login {
                    hello,
                    user,
                    password,
                    database,
                };
                match login.run(conn, at.addr, tls).await {
                    Err(e) if too_many_connections(&e) => {
                        tracing::debug!(addr = %at.addr, "backend full, waiting for a connection");
                        if full.wait().await {
                            continue;
                        }
                        e.to_string()
                    }
                    Err(e) if e.is_disconnect() => e.to_string(),
                    logged_in => return logged_in,
                }
            }
            Err(e) if tokio::time::Instant::now() < ready_by => {
                tracing::debug!(addr = %at.addr, error = %e, "backend not ready, retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(e) => e.to_string(),
        };
        return Err(super::error::unavailable(format!(
            "could not connect to it: {why}"
        )));
    }
}

/// ER_CON_COUNT_ERROR, which a full server sends instead of its greeting, or after the login
/// of a user without CONNECTION ADMIN.
fn too_many_connections(e: &Error) -> bool {
    matches!(
        e,
        Error::Fatal {
            code: Code::Mysql { errno: 1040, .. },
            ..
        }
    )
}

/// Who logs in, and to which schema.
struct Login<'a> {
    hello: &'a Hello,
    user: &'a str,
    /// `None` for a user with only a `password_hash`: `hello.keys` prove it.
    password: Option<&'a str>,
    database: Option<&'a str>,
}

impl Login<'_> {
    /// The greeting, TLS if asked for, the handshake response and the auth exchange.
    async fn run(
        &self,
        mut conn: Conn,
        addr: SocketAddr,
        tls: Option<&crate::tls::Client>,
    ) -> Result<Backend, Error> {
        let Login {
            hello,
            user,
            password,
            database,
        } = *self;
        let packet = conn.recv().await?;
        if payload(&packet).first() == Some(&0xFF) {
            return Err(backend_err(payload(&packet)));
        }
        let hs = Handshake::parse(payload(&packet))?;
        let missing = hello.capabilities & WIRE_SHAPING & !hs.capabilities;
        if missing != 0 {
            return Err(unreachable_db(format!(
                "the database lacks capabilities the client agreed to (flags {missing:#x})"
            )));
        }
        let mut wanted = (hello.capabilities | ALWAYS) & !NEVER;
        if database.is_some() {
            wanted |= caps::CONNECT_WITH_DB;
        }
        let mut capabilities = wanted & (hs.capabilities | caps::LONG_PASSWORD);
        let mut seq_next = seq(&packet).wrapping_add(1);
        if let Some(tls) = tls {
            if hs.capabilities & caps::SSL == 0 {
                return Err(unreachable_db(
                    "the database does not offer TLS ([cluster.backend] tls)",
                ));
            }
            capabilities |= caps::SSL;
            let mut head = Vec::new();
            HandshakeResponse {
                capabilities,
                max_packet: hello.max_packet.max(1 << 24),
                charset: hello.charset,
                ..HandshakeResponse::default()
            }
            .write_ssl_request(&mut head);
            let mut out = Vec::new();
            seq_next = write_packet(&mut out, seq_next, &head);
            conn.send(&out).await?;
            conn.start_tls_client(tls, addr)
                .await
                .map_err(|e| unreachable_db(format!("TLS with the database failed: {e}")))?;
        }
        let secret = Secret {
            password,
            keys: hello.keys.as_deref(),
        };
        let plugin = if hs.auth_plugin == CACHING_SHA2_PASSWORD && secret.has_sha2() {
            CACHING_SHA2_PASSWORD
        } else {
            NATIVE_PASSWORD
        };
        let response = secret.answer(user, plugin, &hs.scramble)?;
        let resp = HandshakeResponse {
            capabilities,
            max_packet: hello.max_packet.max(1 << 24),
            charset: hello.charset,
            username: user.into(),
            auth_response: response,
            database: database.map(str::to_string),
            auth_plugin: Some(plugin.into()),
            attrs: hello.attrs.clone(),
            mariadb_caps: 0,
        };
        let mut body = Vec::new();
        resp.write(&mut body);
        let mut out = Vec::new();
        write_packet(&mut out, seq_next, &body);
        conn.send(&out).await?;

        let status = loop {
            let packet = conn.recv().await?;
            let next = seq(&packet).wrapping_add(1);
            let body = payload(&packet);
            match body.first() {
                Some(0x00) => break OkPacket::parse(body, capabilities)?.status,
                Some(0xFF) => return Err(backend_err(body)),
                Some(0xFE) => {
                    let switch = AuthSwitch::parse(body)?;
                    let answer = secret.answer(user, &switch.plugin, &switch.data)?;
                    let mut out = Vec::new();
                    write_packet(&mut out, next, &answer);
                    conn.send(&out).await?;
                }
                Some(0x01) if body.get(1) == Some(&sha2_auth::FAST_AUTH_OK) => {}
                Some(0x01)
                    if body.get(1) == Some(&sha2_auth::PERFORM_FULL_AUTH) && conn.io.is_tls() =>
                {
                    // Over TLS the password itself may go, as the server asks.
                    let Some(pw) = password else {
                        return Err(unreachable_db(format!(
                            "the database wants user {}'s password in full (caching_sha2_password full authentication), and torpor has only its password_hash",
                            clip(user)
                        )));
                    };
                    let mut cleartext = pw.as_bytes().to_vec();
                    cleartext.push(0);
                    let mut out = Vec::new();
                    write_packet(&mut out, next, &cleartext);
                    conn.send(&out).await?;
                }
                Some(0x01) if body.get(1) == Some(&sha2_auth::PERFORM_FULL_AUTH) => {
                    return Err(unreachable_db(
                        "the database wants caching_sha2_password full authentication, which needs TLS or its RSA key: set [cluster.backend] tls, give the user mysql_native_password, or log in once directly so the server caches it",
                    ));
                }
                _ => return Err(unreachable_db("unexpected packet during authentication")),
            }
        };
        Ok(Backend {
            conn,
            addr,
            id: hs.connection_id,
            capabilities,
            greeting: greeting_of(&hs),
            status,
        })
    }
}

/// What torpor proves a user with: the password, or the keys a client's own login revealed
/// (a user with only a `password_hash`).
#[derive(Clone, Copy)]
struct Secret<'a> {
    password: Option<&'a str>,
    keys: Option<&'a MyKeys>,
}

impl Secret<'_> {
    fn has_sha2(&self) -> bool {
        self.password.is_some() || self.keys.is_some_and(|k| k.sha2.is_some())
    }

    /// The answer to `nonce` for `plugin`.
    fn answer(&self, user: &str, plugin: &str, nonce: &[u8]) -> Result<Vec<u8>, Error> {
        let keys = self.keys.cloned().unwrap_or_default();
        let answer = match (plugin, self.password) {
            (NATIVE_PASSWORD, Some(pw)) => Some(auth::native_scramble(pw.as_bytes(), nonce)),
            (CACHING_SHA2_PASSWORD, Some(pw)) => Some(auth::sha2_scramble(pw.as_bytes(), nonce)),
            (NATIVE_PASSWORD, None) => keys.native.map(|s| auth::native_scramble_from(&s, nonce)),
            (CACHING_SHA2_PASSWORD, None) => keys.sha2.map(|d| auth::sha2_scramble_from(&d, nonce)),
            (other, _) => {
                return Err(unreachable_db(format!(
                    "the database asks for auth plugin {other:?}; torpor speaks mysql_native_password and caching_sha2_password"
                )));
            }
        };
        answer.ok_or_else(|| {
            unreachable_db(format!(
                "user {} has only a password_hash, and torpor holds no key for {plugin} from this session's login: a client must log in again",
                clip(user)
            ))
        })
    }
}

/// An ERR packet from the backend, to be passed on to the client.
pub(super) fn backend_err(body: &[u8]) -> Error {
    match ErrPacket::parse(body) {
        Ok(e) => Error::my_server(e.code, e.sql_state, e.message),
        Err(e) => Error::my(
            UNKNOWN,
            "HY000",
            format!("malformed error from the database: {e}"),
        ),
    }
}
