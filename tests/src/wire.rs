//! A raw PostgreSQL wire client for what real drivers never send: malformed packets, and
//! byte-exact checks of what the proxy tells a client. SCRAM comes from postgres-protocol, an
//! implementation independent of torpor's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Raw {
    pub io: TcpStream,
    buf: BytesMut,
}

/// What the proxy said between AuthenticationOk and the first ReadyForQuery.
#[derive(Debug, Clone)]
pub struct Hello {
    pub params: Vec<(String, String)>,
    pub key: (i32, i32),
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Raw> {
        let io = TcpStream::connect(addr).await?;
        io.set_nodelay(true)?;
        Ok(Raw {
            io,
            buf: BytesMut::new(),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.io.write_all(bytes).await?;
        Ok(())
    }

    /// The next backend message (tag, body), or None when the proxy closed the connection.
    pub async fn recv(&mut self) -> anyhow::Result<Option<(u8, BytesMut)>> {
        tokio::time::timeout(Duration::from_secs(90), self.recv_inner())
            .await
            .context("no message from the proxy within 90 s")?
    }

    async fn recv_inner(&mut self) -> anyhow::Result<Option<(u8, BytesMut)>> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if len < 4 {
                    bail!("proxy sent a message with length {len}");
                }
                if self.buf.len() > len {
                    let mut msg = self.buf.split_to(len + 1);
                    let tag = msg[0];
                    msg.advance(5);
                    return Ok(Some((tag, msg)));
                }
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    bail!("connection closed inside a message: {:?}", &self.buf[..]);
                }
                Ok(_) => {}
                // A reset after the proxy's last message counts as closed.
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionReset && self.buf.is_empty() =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads until the proxy closes; returns everything it sent meanwhile.
    pub async fn until_closed(&mut self) -> anyhow::Result<Vec<(u8, BytesMut)>> {
        let mut all = Vec::new();
        while let Some(m) = self.recv().await? {
            all.push(m);
        }
        Ok(all)
    }

    /// Reads messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> anyhow::Result<Vec<(u8, BytesMut)>> {
        let mut all = Vec::new();
        loop {
            match self.recv().await? {
                Some(m) => {
                    let ready = m.0 == b'Z';
                    all.push(m);
                    if ready {
                        return Ok(all);
                    }
                }
                None => bail!("closed before ReadyForQuery; got {:?}", tags(&all)),
            }
        }
    }

    pub async fn startup(&mut self, user: &str) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        frontend::startup_message(
            [
                ("user", user),
                ("database", user),
                ("client_encoding", "UTF8"),
            ],
            &mut out,
        )?;
        self.send(&out).await
    }

    /// StartupMessage + SCRAM-SHA-256 + everything up to the first ReadyForQuery.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
    ) -> anyhow::Result<(Raw, Hello)> {
        let mut raw = Raw::connect(addr).await?;
        raw.startup(user).await?;
        let (t, body) = raw.recv().await?.context("closed after startup")?;
        expect_auth(t, &body, 10)?;
        let mut scram = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut out = BytesMut::new();
        frontend::sasl_initial_response("SCRAM-SHA-256", scram.message(), &mut out)?;
        raw.send(&out).await?;
        let (t, body) = raw
            .recv()
            .await?
            .context("closed after SASLInitialResponse")?;
        expect_auth(t, &body, 11)?;
        scram.update(&body[4..])?;
        out.clear();
        frontend::sasl_response(scram.message(), &mut out)?;
        raw.send(&out).await?;
        let (t, body) = raw.recv().await?.context("closed after SASLResponse")?;
        expect_auth(t, &body, 12)?;
        scram.finish(&body[4..])?;
        let (t, body) = raw
            .recv()
            .await?
            .context("closed before AuthenticationOk")?;
        expect_auth(t, &body, 0)?;
        let mut hello = Hello {
            params: Vec::new(),
            key: (0, 0),
        };
        for (t, body) in raw.until_ready().await? {
            match t {
                b'S' => {
                    let mut parts = body[..].split(|b| *b == 0);
                    let k = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                    let v = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                    hello.params.push((k, v));
                }
                b'K' => {
                    let mut b = &body[..];
                    hello.key = (b.get_i32(), b.get_i32());
                }
                b'Z' => {}
                b'E' => bail!("startup error: {:?}", error_fields(&body)),
                other => bail!("unexpected message {:?} during startup", other as char),
            }
        }
        Ok((raw, hello))
    }

    /// Sends a simple Query and reads up to ReadyForQuery.
    pub async fn query(&mut self, sql: &str) -> anyhow::Result<Vec<(u8, BytesMut)>> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.exchange(&out).await
    }

    /// Sends a request as it is (one or more messages ending in Sync or a Query) and reads
    /// through its ReadyForQuery.
    pub async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Vec<(u8, BytesMut)>> {
        self.send(request).await?;
        self.until_ready().await
    }
}

fn expect_auth(tag: u8, body: &[u8], want: i32) -> anyhow::Result<()> {
    if tag == b'E' {
        bail!("auth error: {:?}", error_fields(body));
    }
    if tag != b'R' || body.len() < 4 {
        bail!("expected Authentication {want}, got {:?}", tag as char);
    }
    let got = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    if got != want {
        bail!("expected Authentication {want}, got {got}");
    }
    Ok(())
}

/// The fields of an ErrorResponse/NoticeResponse body, keyed by field code ('C', 'M', 'S' …).
pub fn error_fields(body: &[u8]) -> HashMap<char, String> {
    let mut out = HashMap::new();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        out.insert(
            code as char,
            String::from_utf8_lossy(&tail[..end]).into_owned(),
        );
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    out
}

pub fn tags(msgs: &[(u8, BytesMut)]) -> String {
    msgs.iter().map(|(t, _)| *t as char).collect()
}

/// The first column of the first DataRow, as text.
pub fn first_value(msgs: &[(u8, BytesMut)]) -> String {
    let (_, row) = msgs
        .iter()
        .find(|(t, _)| *t == b'D')
        .unwrap_or_else(|| panic!("no DataRow in {}", tags(msgs)));
    // DataRow: i16 column count, i32 length, value.
    let len = i32::from_be_bytes([row[2], row[3], row[4], row[5]]) as usize;
    String::from_utf8_lossy(&row[6..6 + len]).into_owned()
}

/// The transaction status of the last ReadyForQuery: I idle, T in a transaction, E failed.
pub fn status(msgs: &[(u8, BytesMut)]) -> u8 {
    msgs.iter()
        .rev()
        .find(|(t, _)| *t == b'Z')
        .map(|(_, b)| b[0])
        .unwrap_or_else(|| panic!("no ReadyForQuery in {}", tags(msgs)))
}

/// A message with an arbitrary tag and a length field that may lie.
pub fn message_with_len(tag: u8, len: u32, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u8(tag);
    out.put_u32(len);
    out.put_slice(body);
    out.to_vec()
}
