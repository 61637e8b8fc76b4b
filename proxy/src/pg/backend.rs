//! Opening an authenticated connection to the real PostgreSQL server.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use controller::BackendInfo;
use protocols::auth::md5::md5_password;
use protocols::auth::scram::{ScramClient, ScramKeys};
use protocols::pg::frame::MAX_MESSAGE_LEN;
use protocols::pg::message::{self, tag};
use protocols::pg::parse::{self, Authentication};

use super::conn::Messages;
use super::conn::{Conn, body};
use crate::cluster_front::{ClusterFront, User};
use crate::names::clip;
use crate::net;
use crate::session::error::Code;
use crate::session::{Backoff, Error, ready_by};

pub(super) struct Backend {
    pub conn: Conn,
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
    /// ParameterStatus values from the backend's startup.
    pub status: Vec<(String, String)>,
}

/// SQLSTATE 57P03: the server is still starting up (or shutting down) — worth a retry.
const CANNOT_CONNECT_NOW: &str = "57P03";
/// SQLSTATE 53300: every connection slot is taken; one may free up.
const TOO_MANY_CONNECTIONS: &str = "53300";

/// Connects and authenticates as `user`, retrying until `deadline` while the server is still
/// starting up or has no connection slot free. Past it the session is kept
/// ([`Error::Unavailable`]).
pub(super) async fn connect(
    at: &BackendInfo,
    tls: Option<&crate::tls::Client>,
    startup: &[(String, String)],
    login: Login<'_>,
    deadline: tokio::time::Instant,
) -> Result<Backend, Error> {
    let mut full = Backoff::until(deadline);
    let ready_by = ready_by(deadline);
    loop {
        let tried = try_connect(at, tls, startup, login)
            .await
            .map_err(|r| match r {
                // The server went away meanwhile: the wake looks again.
                Retry::Never(e) if e.is_disconnect() => Retry::Later(e.to_string()),
                r => r,
            });
        let why = match tried {
            Err(Retry::Later(why)) if tokio::time::Instant::now() < ready_by => {
                tracing::debug!(addr = %at.addr, %why, "backend not ready, retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(Retry::Full(why)) => {
                tracing::debug!(addr = %at.addr, %why, "backend full, waiting for a connection");
                if full.wait().await {
                    continue;
                }
                why
            }
            Err(Retry::Later(why)) => why,
            Err(Retry::Never(e)) => return Err(e),
            Ok(b) => return Ok(b),
        };
        return Err(super::error::unavailable(format!(
            "could not connect to it: {why}"
        )));
    }
}

enum Retry {
    Later(String),
    /// Too many connections: worth waiting longer between tries.
    Full(String),
    Never(Error),
}

impl From<Error> for Retry {
    fn from(e: Error) -> Self {
        Retry::Never(e)
    }
}

async fn try_connect(
    at: &BackendInfo,
    tls: Option<&crate::tls::Client>,
    startup: &[(String, String)],
    login: Login<'_>,
) -> Result<Backend, Retry> {
    let Login { user: login, keys } = login;
    let password = login.password.as_deref();
    let no_password = || {
        Retry::Never(backend_auth_error(format!(
            "the database asks for a password, and user \"{}\" has only a password_hash: give the database the same SCRAM verifier (password_encryption = scram-sha-256)",
            clip(&login.name)
        )))
    };
    let io = net::connect(at, tls.is_some())
        .await
        .map_err(|e| Retry::Later(e.to_string()))?;
    let mut conn = Conn::new(io, MAX_MESSAGE_LEN);
    if let Some(tls) = tls {
        start_tls(&mut conn, tls, at.addr).await?;
    }
    let mut out = BytesMut::new();
    message::startup_message(&mut out, startup);
    conn.send(&out).await.map_err(Error::from)?;

    let user = startup
        .iter()
        .find(|(k, _)| k == "user")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    let mut scram: Option<ScramClient> = None;
    let mut status = Vec::new();
    let mut key = None;
    loop {
        let (t, msg) = conn.recv().await.map_err(|e| match e {
            Error::Closed => Retry::Later("connection closed during startup".into()),
            other => Retry::Never(other),
        })?;
        let b = body(&msg);
        out.clear();
        match t {
            tag::AUTHENTICATION => match parse::authentication(b).map_err(Error::from)? {
                Authentication::Ok => {}
                Authentication::CleartextPassword => {
                    let password = password.ok_or_else(no_password)?;
                    message::password_message(&mut out, password.as_bytes());
                }
                Authentication::Md5Password { salt } => {
                    let password = password.ok_or_else(no_password)?;
                    let hashed = md5_password(user, password, salt);
                    message::password_message(&mut out, hashed.as_bytes());
                }
                Authentication::Sasl { mechanisms } => {
                    if !mechanisms.iter().any(|m| m == "SCRAM-SHA-256") {
                        return Err(Retry::Never(backend_auth_error(format!(
                            "backend offers no supported SASL mechanism ({})",
                            mechanisms.join(", ")
                        ))));
                    }
                    let (client, first) = match (password, keys) {
                        (Some(password), _) => ScramClient::new(password),
                        (None, Some(keys)) => ScramClient::with_keys(keys.clone()),
                        (None, None) => {
                            return Err(Retry::Never(backend_auth_error(format!(
                                "user \"{}\" has only a password_hash, and torpor holds no key for it: a client must log in again",
                                clip(&login.name)
                            ))));
                        }
                    };
                    scram = Some(client);
                    message::sasl_initial_response(&mut out, "SCRAM-SHA-256", &first);
                }
                Authentication::SaslContinue(data) => {
                    let client = scram
                        .as_mut()
                        .ok_or_else(|| backend_auth_error("unexpected SASL continue"))?;
                    let fin = client
                        .handle_server_first_with(&data, |_, salt, iterations| {
                            login.salted_password(salt, iterations)
                        })
                        .map_err(|e| backend_auth_error(e.to_string()))?;
                    message::sasl_response(&mut out, &fin);
                }
                Authentication::SaslFinal(data) => {
                    let client = scram
                        .as_ref()
                        .ok_or_else(|| backend_auth_error("unexpected SASL final"))?;
                    client
                        .verify_server_final(&data)
                        .map_err(|e| backend_auth_error(e.to_string()))?;
                }
                Authentication::Other(code) => {
                    return Err(Retry::Never(backend_auth_error(format!(
                        "unsupported authentication request {code}"
                    ))));
                }
            },
            tag::PARAMETER_STATUS => {
                status.push(parse::parameter_status(b).map_err(Error::from)?);
            }
            tag::BACKEND_KEY_DATA => {
                key = Some(parse::backend_key_data(b).map_err(Error::from)?);
            }
            tag::NOTICE_RESPONSE | tag::NEGOTIATE_PROTOCOL_VERSION => {}
            tag::ERROR_RESPONSE => {
                let f = parse::error_fields(b).map_err(Error::from)?;
                if f.code == CANNOT_CONNECT_NOW {
                    return Err(Retry::Later(f.message));
                }
                if f.code == TOO_MANY_CONNECTIONS {
                    return Err(Retry::Full(f.message));
                }
                return Err(Retry::Never(Error::Fatal {
                    code: Code::Sqlstate(static_code(&f.code)),
                    message: f.message,
                }));
            }
            tag::READY_FOR_QUERY => {
                let (pid, secret) = key.unwrap_or_default();
                return Ok(Backend {
                    conn,
                    addr: at.addr,
                    pid,
                    secret,
                    status,
                });
            }
            other => {
                return Err(Retry::Never(Error::Protocol(format!(
                    "unexpected backend message {:?} during startup",
                    other as char
                ))));
            }
        }
        if !out.is_empty() {
            conn.send(&out).await.map_err(Error::from)?;
        }
    }
}

/// A connection of torpor's own (the catalog learner, the busy check), which no client waits
/// on: as the first configured user, with a live session's key when that user has only a
/// `password_hash`, with `settings` as startup parameters.
pub(super) async fn connect_own(
    front: &ClusterFront,
    at: &BackendInfo,
    settings: &[(&str, &str)],
    deadline: tokio::time::Instant,
) -> Result<Backend, Error> {
    let Some(user) = &front.first_user else {
        return Err(Error::Protocol("no user to log in as".into()));
    };
    let mut startup = vec![
        ("user".to_string(), user.name.clone()),
        ("database".to_string(), user.name.clone()),
        ("application_name".to_string(), "torpor".to_string()),
    ];
    startup.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let keys = front.pg_keys.borrow();
    let login = Login {
        user,
        keys: keys.as_deref(),
    };
    connect(at, front.backend_tls.as_deref(), &startup, login, deadline).await
}

/// Who torpor logs in to the server as, and the key from the client's own SCRAM proof when
/// the user has only a `password_hash`.
#[derive(Clone, Copy)]
pub(super) struct Login<'a> {
    pub user: &'a User,
    pub keys: Option<&'a ScramKeys>,
}

/// SSLRequest, then the handshake: the server must answer 'S'.
async fn start_tls(
    conn: &mut Conn,
    tls: &crate::tls::Client,
    addr: std::net::SocketAddr,
) -> Result<(), Retry> {
    let mut out = BytesMut::new();
    message::ssl_request(&mut out);
    conn.send(&out)
        .await
        .map_err(|e| Retry::Later(e.to_string()))?;
    while conn.rbuf.is_empty() {
        if conn.fill().await.map_err(|e| Retry::Later(e.to_string()))? == 0 {
            return Err(Retry::Later("connection closed before TLS".into()));
        }
    }
    let answer = conn.rbuf.split_to(1);
    if answer[..] != *b"S" {
        return Err(Retry::Never(backend_auth_error(
            "the database does not accept TLS ([cluster.backend] tls): it answered the SSLRequest with no",
        )));
    }
    conn.start_tls_client(tls, addr).await.map_err(|e| {
        Retry::Never(backend_auth_error(format!(
            "TLS with the database failed: {e}"
        )))
    })
}

fn backend_auth_error(why: impl Into<String>) -> Error {
    Error::pg(
        "28000",
        format!(
            "torpor could not authenticate to the database: {}",
            why.into()
        ),
    )
}

/// Keeps the backend's SQLSTATE for the common startup failures; others become a generic one.
fn static_code(code: &str) -> &'static str {
    match code {
        "28P01" => "28P01",
        "28000" => "28000",
        "3D000" => "3D000",
        "53300" => "53300",
        "57P01" => "57P01",
        _ => "08006",
    }
}
