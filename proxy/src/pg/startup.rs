//! The client side of connection startup: encryption requests, cancel requests, the
//! StartupMessage and SCRAM-SHA-256 authentication against the configured users.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use protocols::auth::scram::{Binding, ScramError, ScramKeys, ScramSecret, ScramServer};
use protocols::pg::frame::{self, StartupPacket};
use protocols::pg::message::{self, tag};
use protocols::pg::parse;
use tokio::net::TcpStream;

use super::conn::Messages;
use super::conn::{Conn, MAX_CLIENT_MESSAGE, body};
use crate::cluster_front::{ClusterFront, User};
use crate::door::Door;
use crate::limits::Slot;
use crate::names::clip;
use crate::session::Error;
use crate::throttle::Via;

pub(super) enum Start {
    /// An authenticated client, ready for its session.
    Session {
        front: Arc<ClusterFront>,
        /// Its place under the cluster's connection cap, when taken at login.
        slot: Option<Slot>,
        conn: Conn,
        user: Arc<User>,
        /// What the client's proof revealed, for a user with only a `password_hash`.
        keys: Option<Arc<ScramKeys>>,
        params: Vec<(String, String)>,
    },
    /// The connection carried a CancelRequest and is done.
    Cancel { pid: i32, secret: i32 },
    /// Startup failed; the connection is kept so the caller can tell the client why. The
    /// cluster, if the client had chosen one.
    Failed {
        conn: Conn,
        error: Error,
        front: Option<Arc<ClusterFront>>,
    },
}

const SCRAM: &str = "SCRAM-SHA-256";
const SCRAM_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// SASL messages are small; anything bigger during authentication is an attack or a bug.
const MAX_AUTH_MESSAGE: usize = 16 << 10;

/// How long a client refused for too many connections has to send its startup packet.
const REFUSE_WAIT: Duration = Duration::from_secs(5);

enum Packet {
    Startup(Vec<(String, String)>),
    Cancel(i32, i32),
}

/// The whole handshake, encryption requests included, within `handshake_timeout`: the
/// encryption and the startup packet at the door, then the cluster the client chose, then
/// authentication against it.
pub(super) async fn accept(io: TcpStream, door: &Door) -> Start {
    let mut conn = Conn::new(io, MAX_AUTH_MESSAGE);
    let timeout = door.first().handshake_timeout;
    let mut chosen = None;
    let handshake = tokio::time::timeout(timeout, handshake(&mut conn, door, &mut chosen)).await;
    match handshake {
        Ok(Ok(Handshake::Session(user, keys, params, slot))) => {
            // From here on messages can be as large as any query.
            conn.max = MAX_CLIENT_MESSAGE;
            match chosen {
                Some(front) => Start::Session {
                    front,
                    slot,
                    conn,
                    user,
                    keys,
                    params,
                },
                None => Start::Failed {
                    conn,
                    error: Error::Protocol("no cluster chosen".into()),
                    front: None,
                },
            }
        }
        Ok(Ok(Handshake::Cancel(pid, secret))) => Start::Cancel { pid, secret },
        Ok(Err(error)) => Start::Failed {
            conn,
            error,
            front: chosen,
        },
        Err(_) => Start::Failed {
            conn,
            front: chosen,
            error: Error::pg(
                "08006",
                format!(
                    "the client did not log in within handshake_timeout ({})",
                    humantime::format_duration(timeout)
                ),
            ),
        },
    }
}

enum Handshake {
    Session(
        Arc<User>,
        Option<Arc<ScramKeys>>,
        Vec<(String, String)>,
        Option<Slot>,
    ),
    Cancel(i32, i32),
}

/// What a TLS handshake left: the channel binding data of the certificate shown, and the
/// server name the client asked for.
#[derive(Default)]
struct Encrypted {
    binding: Option<Arc<[u8]>>,
    server_name: Option<String>,
}

async fn handshake(
    conn: &mut Conn,
    door: &Door,
    chosen: &mut Option<Arc<ClusterFront>>,
) -> Result<Handshake, Error> {
    let mut tls = Encrypted::default();
    if door.offers_tls() && direct_tls(conn).await? {
        tls = start_tls(conn, door).await?;
        // As PostgreSQL 17: a direct TLS connection must say it speaks postgresql.
        if conn.alpn() != Some(crate::tls::ALPN_POSTGRES) {
            return Err(Error::pg(
                "08P01",
                "received direct SSL connection request without ALPN protocol negotiation extension",
            ));
        }
    }
    match startup_packet(conn, Some(door), &mut tls).await? {
        Packet::Startup(mut params) => {
            let (i, slot) = super::pick::front(door, tls.server_name.as_deref(), &mut params)?;
            let front = &door.served[i].front;
            *chosen = Some(front.clone());
            if front.require_tls && !conn.io.is_tls() {
                return Err(no_encryption(&params, conn, front));
            }
            let (user, keys) = authenticate(conn, &params, front, tls.binding.as_deref()).await?;
            Ok(Handshake::Session(user, keys, params, slot))
        }
        Packet::Cancel(pid, secret) => Ok(Handshake::Cancel(pid, secret)),
    }
}

/// The connection opens with a TLS ClientHello rather than a startup packet: PostgreSQL 17's
/// `sslnegotiation=direct`. Looked at without reading, so the handshake gets every byte.
async fn direct_tls(conn: &Conn) -> Result<bool, Error> {
    let crate::net::Stream::Tcp(tcp) = &conn.io else {
        return Ok(false);
    };
    let mut first = [0u8; 1];
    Ok(tcp.peek(&mut first).await? == 1 && first[0] == TLS_HANDSHAKE)
}

/// A TLS record of type handshake: no startup packet begins so (its length would be over
/// 369 MB).
const TLS_HANDSHAKE: u8 = 0x16;

/// Runs the TLS handshake with the certificate of the cluster whose `server_names` hold the
/// name the client asks for, else of the door's first cluster that has one. Bytes the client
/// sent before it are refused, not carried into the encrypted session (CVE-2021-23214).
async fn start_tls(conn: &mut Conn, door: &Door) -> Result<Encrypted, Error> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::Protocol(format!("TLS handshake failed: {}", clip(&e.to_string())))
    };
    if !conn.rbuf.is_empty() {
        return Err(failed(
            &"the client sent data after its encryption request, before the TLS handshake",
        ));
    }
    let crate::net::Stream::Tcp(tcp) = std::mem::replace(&mut conn.io, crate::net::Stream::Gone)
    else {
        return Err(failed(&"TLS asked for twice"));
    };
    let pick = |name: Option<&str>| {
        let named = name.and_then(|n| door.by_server_name(n));
        let served = named.into_iter().chain(0..door.served.len());
        served
            .filter_map(|i| door.served[i].front.tls.as_ref())
            .map(|tls| tls.current())
            .next()
    };
    let (stream, loaded, server_name) = crate::tls::accept_by_name(tcp, pick)
        .await
        .map_err(|e| failed(&e))?;
    conn.io = crate::net::Stream::Tls(Box::new(stream.into()));
    Ok(Encrypted {
        binding: loaded.end_point.clone(),
        server_name,
    })
}

/// What PostgreSQL says when pg_hba.conf has only `hostssl` lines for a client.
fn no_encryption(params: &[(String, String)], conn: &Conn, front: &ClusterFront) -> Error {
    let get = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| clip(v))
            .unwrap_or_default()
    };
    let host = conn
        .io
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    Error::pg(
        "28000",
        format!(
            "no encryption: cluster \"{}\" requires TLS (require_tls) for host \"{host}\", user \"{}\", database \"{}\"",
            front.name,
            get("user"),
            get("database"),
        ),
    )
}

/// A client past the connection cap: its startup packet is read first, as postgres does, so
/// the client is listening for the answer. A CancelRequest is still passed on.
pub(super) async fn refuse(io: TcpStream, front: &ClusterFront) -> Option<(i32, i32)> {
    let mut conn = Conn::new(io, MAX_AUTH_MESSAGE);
    let wait = front.handshake_timeout.min(REFUSE_WAIT);
    let mut plain = Encrypted::default();
    match tokio::time::timeout(wait, startup_packet(&mut conn, None, &mut plain)).await {
        Ok(Ok(Packet::Cancel(pid, secret))) => Some((pid, secret)),
        Ok(Ok(Packet::Startup(_))) => {
            super::error::report(&mut conn, "53300", "sorry, too many clients already").await;
            None
        }
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Reads the startup packet, answering encryption requests first: SSLRequest starts TLS when
/// a cluster at `door` has a certificate (and sets `tls`), else gets 'N'.
async fn startup_packet(
    conn: &mut Conn,
    door: Option<&Door>,
    tls: &mut Encrypted,
) -> Result<Packet, Error> {
    // Each answered once, as postgres does: a client that keeps asking is stalling.
    let (mut ssl_asked, mut gss_asked) = (false, false);
    loop {
        let len = loop {
            match frame::startup_len(&conn.rbuf)? {
                Some(len) => break len,
                None => {
                    if conn.fill().await? == 0 {
                        return Err(Error::Closed);
                    }
                }
            }
        };
        let packet = conn.rbuf.split_to(len);
        match frame::parse_startup(&packet[4..])? {
            // TLS and GSS encryption come later; 'N' tells the client to go on in plaintext.
            StartupPacket::Ssl => match door {
                Some(door) if door.offers_tls() && !conn.io.is_tls() && !ssl_asked => {
                    ssl_asked = true;
                    conn.send(b"S").await?;
                    *tls = start_tls(conn, door).await?;
                }
                _ => refuse_encryption(conn, &mut ssl_asked, "SSLRequest").await?,
            },
            StartupPacket::Gss => refuse_encryption(conn, &mut gss_asked, "GSSENCRequest").await?,
            StartupPacket::Cancel { pid, secret } => return Ok(Packet::Cancel(pid, secret)),
            StartupPacket::Startup { params, .. } => {
                if !conn.rbuf.is_empty() {
                    return Err(Error::Protocol(
                        "data after the startup packet before authentication".into(),
                    ));
                }
                return Ok(Packet::Startup(params));
            }
        }
    }
}

/// Tells the client to go on unencrypted, the first time it asks.
async fn refuse_encryption(conn: &mut Conn, asked: &mut bool, what: &str) -> Result<(), Error> {
    if std::mem::replace(asked, true) {
        return Err(Error::Protocol(format!(
            "a second {what} on one connection"
        )));
    }
    Ok(conn.send(b"N").await?)
}

/// SCRAM-SHA-256, and SCRAM-SHA-256-PLUS too when the client is on TLS and `binding` holds
/// the certificate's tls-server-end-point data.
async fn authenticate(
    conn: &mut Conn,
    params: &[(String, String)],
    front: &ClusterFront,
    binding: Option<&[u8]>,
) -> Result<(Arc<User>, Option<Arc<ScramKeys>>), Error> {
    if params.iter().any(|(k, _)| k == "replication") {
        return Err(Error::pg(
            "0A000",
            "replication connections are not supported by torpor",
        ));
    }
    let user_name = params
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let user = front.user(user_name);
    // An unknown user goes through the same exchange with a secret that can never match, so
    // the answer doesn't reveal whether the user exists.
    let secret = match &user {
        Some(u) => u.scram.clone(),
        None => ScramSecret::unknown_user_named(user_name),
    };
    let ip: Option<IpAddr> = conn.io.peer_addr().map(|a| a.ip());
    let failed = || {
        front.logins.failed(ip, Via::Postgres);
        Error::pg(
            "28P01",
            format!(
                "password authentication failed for user \"{}\"",
                clip(user_name)
            ),
        )
    };

    let offered = binding.filter(|_| conn.io.is_tls());
    let mut out = BytesMut::new();
    if offered.is_some() {
        message::auth_sasl(&mut out, &[SCRAM_PLUS, SCRAM]);
    } else {
        message::auth_sasl(&mut out, &[SCRAM]);
    }
    conn.send(&out).await?;

    let (t, msg) = conn.recv().await?;
    if t != tag::PASSWORD {
        return Err(Error::Protocol("expected SASLInitialResponse".into()));
    }
    let (mechanism, first) = parse::sasl_initial_response(body(&msg))?;
    let chosen = match mechanism {
        SCRAM => false,
        SCRAM_PLUS if offered.is_some() => true,
        _ => {
            return Err(Error::pg(
                "28000",
                format!("unsupported SASL mechanism {:?}", clip(mechanism)),
            ));
        }
    };
    let (server, server_first) =
        ScramServer::start_bound(secret, first, Binding { offered, chosen })
            .map_err(scram_error)?;
    out.clear();
    message::auth_sasl_continue(&mut out, &server_first);
    conn.send(&out).await?;

    let (t, msg) = conn.recv().await?;
    if t != tag::PASSWORD {
        return Err(Error::Protocol("expected SASLResponse".into()));
    }
    front.logins.wait(ip).await;
    let (server_final, keys) = match server.finish_keyed(body(&msg)) {
        Ok(v) => v,
        Err(ScramError::BadProof) => return Err(failed()),
        Err(e) => return Err(scram_error(e)),
    };
    let Some(user) = user else {
        return Err(failed());
    };
    out.clear();
    message::auth_sasl_final(&mut out, &server_final);
    message::auth_ok(&mut out);
    conn.send(&out).await?;
    // Kept only when the server can't be logged in to with a password torpor knows.
    let keys = user.password.is_none().then(|| Arc::new(keys));
    if let Some(k) = &keys
        && front.is_first_user(&user)
    {
        front.pg_keys.lend(k);
    }
    Ok((user, keys))
}

fn scram_error(e: ScramError) -> Error {
    Error::pg("08P01", format!("SCRAM authentication failed: {e}"))
}
