//! MySQL clients through the proxy (mysql_async), for the MySQL end-to-end tests.

use std::net::SocketAddr;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::harness::{SLOW, TestEnv};
use crate::mywire::MyRaw;

/// Where the process driver keeps mariadbd's pid file, inside the data dir.
pub const PID_FILE: &str = "mariadbd.pid";

pub fn opts(addr: SocketAddr, user: &str, password: &str, db: Option<&str>) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(addr.ip().to_string())
        .tcp_port(addr.port())
        .user(Some(user))
        .pass(Some(password))
        .db_name(db)
        // Otherwise mysql_async asks for @@socket and switches to the server's unix socket,
        // bypassing the proxy.
        .prefer_socket(false)
}

pub async fn try_connect_my(
    addr: SocketAddr,
    user: &str,
    password: &str,
    db: Option<&str>,
) -> Result<Conn, mysql_async::Error> {
    tokio::time::timeout(SLOW, Conn::new(opts(addr, user, password, db)))
        .await
        .expect("mysql connect timed out")
}

impl TestEnv {
    /// Connects through the proxy as the test user to the cluster's database.
    pub async fn my(&self) -> Conn {
        try_connect_my(
            self.listen,
            crate::harness::USER,
            crate::harness::PASSWORD,
            Some(&self.cluster),
        )
        .await
        .unwrap_or_else(|e| panic!("mysql connect: {e}"))
    }
}

/// Runs statements (text protocol); panics with the server's message on error.
pub async fn exec(c: &mut Conn, sql: &str) {
    tokio::time::timeout(SLOW, c.query_drop(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql}: timed out"))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// [`exec`] of each statement in turn, each a query of its own.
pub async fn exec_each(c: &mut Conn, statements: &[&str]) {
    for sql in statements {
        exec(c, sql).await;
    }
}

/// The first column of the first row, as text (NULL → None).
pub async fn value(c: &mut Conn, sql: &str) -> Option<String> {
    let row: Option<mysql_async::Row> = tokio::time::timeout(SLOW, c.query_first(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql}: timed out"))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let row = row?;
    match row.as_ref(0)? {
        mysql_async::Value::NULL => None,
        mysql_async::Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        v => Some(v.as_sql(true).trim_matches('\'').to_string()),
    }
}

/// Like [`value`] but the value must be non-NULL.
pub async fn text(c: &mut Conn, sql: &str) -> String {
    value(c, sql)
        .await
        .unwrap_or_else(|| panic!("{sql}: no row or NULL"))
}

/// The server error code of a failed call.
pub fn code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// Every row of a query, each cell in full (text quoted, other bytes in hex), for comparisons.
pub async fn rows(c: &mut Conn, sql: &str) -> Vec<String> {
    let rows: Vec<mysql_async::Row> = tokio::time::timeout(SLOW, c.query(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql}: timed out"))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter()
        .map(|r| {
            let cells: Vec<String> = r
                .unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::Bytes(b) => match String::from_utf8(b) {
                        Ok(s) => format!("{s:?}"),
                        Err(e) => format!("x{}", hex(e.as_bytes())),
                    },
                    other => other.as_sql(true),
                })
                .collect();
            cells.join(" | ")
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Runs a statement that may fail; the error is returned for the test to check.
pub async fn try_exec(c: &mut Conn, sql: &str) -> Result<(), mysql_async::Error> {
    tokio::time::timeout(SLOW, c.query_drop(sql))
        .await
        .unwrap_or_else(|_| panic!("{sql}: timed out"))
}

/// The server error (code, message) of a statement that must fail.
pub async fn exec_err(c: &mut Conn, sql: &str) -> (u16, String) {
    match try_exec(c, sql).await {
        Ok(()) => panic!("{sql}: succeeded, expected an error"),
        Err(mysql_async::Error::Server(s)) => (s.code, s.message),
        Err(e) => panic!("{sql}: not a server error: {e:?}"),
    }
}

/// Connects without the queries mysql_async runs after login (@@max_allowed_packet and
/// @@wait_timeout): such a connection sends nothing until the test does, so it doesn't wake a
/// sleeping cluster.
pub async fn connect_quiet(addr: SocketAddr, db: Option<&str>) -> Conn {
    let o = opts(addr, crate::harness::USER, crate::harness::PASSWORD, db)
        .max_allowed_packet(Some(16 << 20))
        .wait_timeout(Some(28800));
    tokio::time::timeout(SLOW, Conn::new(o))
        .await
        .expect("mysql connect timed out")
        .unwrap_or_else(|e| panic!("mysql connect: {e}"))
}

impl TestEnv {
    /// Connects straight to the backend (not through torpor), to compare answers.
    pub async fn my_direct(&self) -> Conn {
        try_connect_my(
            self.backend_addr(),
            crate::harness::USER,
            crate::harness::PASSWORD,
            Some(&self.cluster),
        )
        .await
        .unwrap_or_else(|e| panic!("direct mysql connect: {e}"))
    }

    /// A raw client logged in to `addr` (torpor's listener or the server's own port) as the
    /// test user, in the cluster's database.
    pub async fn my_raw_to(&self, addr: SocketAddr) -> MyRaw {
        MyRaw::login(
            addr,
            crate::harness::USER,
            crate::harness::PASSWORD,
            Some(&self.cluster),
        )
        .await
        .unwrap_or_else(|e| panic!("raw login to {addr}: {e:#}"))
    }

    /// A raw client through torpor: see [`TestEnv::my_raw_to`].
    pub async fn my_raw(&self) -> MyRaw {
        self.my_raw_to(self.listen).await
    }
}
