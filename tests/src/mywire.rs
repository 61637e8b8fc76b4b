//! A raw MySQL wire client for what real drivers never send: malformed packets, long data
//! followed by a sleep, executes that rely on parameter types bound earlier, and byte-exact
//! error comparisons with the real server. Native-password scrambling is done here with sha1,
//! independently of torpor's own code.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use protocols::mysql::command::com;
use protocols::mysql::response::column_type;

/// The protocol's capability flags, and the set the raw client asks for.
pub mod caps {
    pub use protocols::mysql::handshake::caps::*;
    /// What [`super::MyRaw::login`] asks for.
    pub const DEFAULT: u32 = LONG_PASSWORD
        | LONG_FLAG
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH;
}

/// How a raw client introduces itself: capability flags, MariaDB's extended capabilities (read
/// by the server only when LONG_PASSWORD, alias CLIENT_MYSQL, is clear) and the collation id.
#[derive(Debug, Clone, Copy)]
pub struct Hello {
    pub caps: u32,
    pub mariadb_caps: u32,
    pub charset: u8,
}

impl Default for Hello {
    fn default() -> Self {
        Hello {
            caps: caps::DEFAULT,
            mariadb_caps: 0,
            // utf8mb4_general_ci
            charset: 45,
        }
    }
}

/// What the server said first.
#[derive(Debug, Clone)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    pub auth_plugin: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyErr {
    pub code: u16,
    pub state: String,
    pub message: String,
}

/// One command's response, parsed only as far as the tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Ok,
    Err(MyErr),
    /// Rows of a result set; each row's raw payload (text or binary).
    Rows(Vec<Vec<u8>>),
}

impl Resp {
    pub fn err(&self) -> Option<&MyErr> {
        match self {
            Resp::Err(e) => Some(e),
            _ => None,
        }
    }
}

pub struct MyRaw {
    pub io: TcpStream,
    buf: Vec<u8>,
    pub greeting: Greeting,
    /// What this client said it is at login.
    pub hello: Hello,
}

/// How long any single read may take; generous, a wake is inside some of them.
const READ: Duration = Duration::from_secs(90);

impl MyRaw {
    /// Connects and reads the greeting.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<MyRaw> {
        let io = TcpStream::connect(addr).await?;
        io.set_nodelay(true)?;
        let mut raw = MyRaw {
            io,
            buf: Vec::new(),
            greeting: Greeting {
                server_version: String::new(),
                connection_id: 0,
                scramble: Vec::new(),
                capabilities: 0,
                auth_plugin: String::new(),
            },
            hello: Hello::default(),
        };
        let (_, p) = raw.recv().await?.context("closed before the greeting")?;
        raw.greeting = parse_greeting(&p)?;
        Ok(raw)
    }

    /// Greeting, HandshakeResponse41 with mysql_native_password, and the OK.
    pub async fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: Option<&str>,
    ) -> anyhow::Result<MyRaw> {
        MyRaw::login_as(addr, user, password, db, Hello::default()).await
    }

    /// [`MyRaw::login`] with the capabilities and collation of `hello`.
    pub async fn login_as(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: Option<&str>,
        hello: Hello,
    ) -> anyhow::Result<MyRaw> {
        let mut raw = MyRaw::connect(addr).await?;
        raw.hello = hello;
        let resp = raw.handshake_response(user, password, db);
        raw.send_packet(1, &resp).await?;
        loop {
            let (seq, p) = raw.recv().await?.context("closed during login")?;
            match p.first() {
                Some(0x00) => return Ok(raw),
                Some(0xff) => bail!("login refused: {:?}", parse_err(&p)),
                // Auth switch: answer with a native scramble of the new nonce.
                Some(0xfe) => {
                    let rest = &p[1..];
                    let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                    let plugin = String::from_utf8_lossy(&rest[..end]).into_owned();
                    if plugin != "mysql_native_password" {
                        bail!("server asked for auth plugin {plugin}");
                    }
                    let nonce: Vec<u8> = rest
                        .get(end + 1..)
                        .unwrap_or_default()
                        .iter()
                        .copied()
                        .take(20)
                        .collect();
                    let answer = native_scramble(password.as_bytes(), &nonce);
                    raw.send_packet(seq.wrapping_add(1), &answer).await?;
                }
                other => bail!("unexpected packet during login: {other:?}"),
            }
        }
    }

    /// A well-formed HandshakeResponse41 payload for this connection's scramble.
    pub fn handshake_response(&self, user: &str, password: &str, db: Option<&str>) -> Vec<u8> {
        let mut c = self.hello.caps;
        if db.is_some() {
            c |= caps::CONNECT_WITH_DB;
        }
        let mut p = Vec::new();
        p.extend_from_slice(&c.to_le_bytes());
        p.extend_from_slice(&(16u32 << 20).to_le_bytes());
        p.push(self.hello.charset);
        p.extend_from_slice(&[0u8; 19]);
        p.extend_from_slice(&self.hello.mariadb_caps.to_le_bytes());
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        let auth = if password.is_empty() {
            Vec::new()
        } else {
            native_scramble(password.as_bytes(), &self.greeting.scramble).to_vec()
        };
        p.push(auth.len() as u8);
        p.extend_from_slice(&auth);
        if let Some(db) = db {
            p.extend_from_slice(db.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(b"mysql_native_password\0");
        p
    }

    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.io.write_all(bytes).await?;
        Ok(())
    }

    pub async fn send_packet(&mut self, seq: u8, payload: &[u8]) -> anyhow::Result<()> {
        let out = packet(seq, payload);
        self.send(&out).await
    }

    /// Sends one command (sequence id 0).
    pub async fn command(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        self.send_packet(0, payload).await
    }

    /// The next packet (sequence id, payload), or None when the peer closed.
    pub async fn recv(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        tokio::time::timeout(READ, self.recv_inner())
            .await
            .context("no packet within 90 s")?
    }

    async fn recv_inner(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], 0]) as usize;
                if self.buf.len() >= 4 + len {
                    let seq = self.buf[3];
                    let payload = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Ok(Some((seq, payload)));
                }
            }
            self.buf.reserve(65536);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    bail!("closed inside a packet: {} bytes buffered", self.buf.len());
                }
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionReset && self.buf.is_empty() =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads until the peer closes; returns every packet it sent meanwhile.
    pub async fn until_closed(&mut self) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut all = Vec::new();
        while let Some((_, p)) = self.recv().await? {
            all.push(p);
        }
        Ok(all)
    }

    /// One response: OK, ERR, or a result set (column defs skipped, EOF-terminated; this
    /// client never asks for DEPRECATE_EOF).
    pub async fn response(&mut self) -> anyhow::Result<Resp> {
        let (_, first) = self.recv().await?.context("closed instead of answering")?;
        match first.first() {
            Some(0x00) => return Ok(Resp::Ok),
            Some(0xff) => return Ok(Resp::Err(parse_err(&first)?)),
            None => bail!("empty response packet"),
            _ => {}
        }
        // Column count, column definitions, EOF, rows, EOF.
        let mut defs_done = false;
        let mut rows = Vec::new();
        loop {
            let (_, p) = self.recv().await?.context("closed inside a result set")?;
            let eof = p.first() == Some(&0xfe) && p.len() < 9;
            if p.first() == Some(&0xff) {
                return Ok(Resp::Err(parse_err(&p)?));
            }
            if !defs_done {
                defs_done = eof;
                continue;
            }
            if eof {
                return Ok(Resp::Rows(rows));
            }
            rows.push(p);
        }
    }

    /// Sends one command and returns its whole response as it came: every packet with its
    /// header, through the last result of a multi-statement text.
    pub async fn exchange(&mut self, payload: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        self.command(payload).await?;
        let deprecate_eof = self.hello.caps & caps::DEPRECATE_EOF != 0;
        let mut out = Vec::new();
        loop {
            // One result: OK, ERR, or column count, definitions, rows and a terminator.
            let (seq, first) = self.recv().await?.context("closed instead of answering")?;
            out.push(packet(seq, &first));
            let status = match first.first() {
                Some(0xff) => return Ok(out),
                Some(0x00) => ok_status(&first)?,
                _ => {
                    let (columns, _) = lenenc(&first).context("column count")?;
                    for _ in 0..columns + u64::from(!deprecate_eof) {
                        let (seq, p) = self.recv().await?.context("closed in the columns")?;
                        out.push(packet(seq, &p));
                    }
                    loop {
                        let (seq, p) = self.recv().await?.context("closed in the rows")?;
                        out.push(packet(seq, &p));
                        match p.first() {
                            Some(0xff) => return Ok(out),
                            Some(0xfe) if p.len() < 9 => {
                                break if deprecate_eof {
                                    ok_status(&p)?
                                } else {
                                    u16::from_le_bytes([p[3], p[4]])
                                };
                            }
                            _ => {}
                        }
                    }
                }
            };
            // SERVER_MORE_RESULTS_EXISTS
            if status & 8 == 0 {
                return Ok(out);
            }
        }
    }

    /// COM_QUERY and its response.
    pub async fn query(&mut self, sql: &str) -> anyhow::Result<Resp> {
        let mut p = vec![com::QUERY];
        p.extend_from_slice(sql.as_bytes());
        self.command(&p).await?;
        self.response().await
    }

    /// The first column of the first text row of a query.
    pub async fn query_value(&mut self, sql: &str) -> anyhow::Result<Option<String>> {
        match self.query(sql).await? {
            Resp::Rows(rows) => {
                let row = rows.first().context("no row")?;
                Ok(text_cell(row).map(|b| String::from_utf8_lossy(b).into_owned()))
            }
            other => bail!("{sql}: {other:?}"),
        }
    }

    /// [`MyRaw::query_value`] of a query that must answer with a row.
    pub async fn value(&mut self, sql: &str) -> Option<String> {
        self.query_value(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:#}"))
    }

    /// [`MyRaw::prepare`] of a statement that must prepare.
    pub async fn prepared(&mut self, sql: &str) -> (u32, u16) {
        match self.prepare(sql).await {
            Ok(Ok(stmt)) => stmt,
            Ok(Err(e)) => panic!("PREPARE {sql}: {e:?}"),
            Err(e) => panic!("PREPARE {sql}: {e:#}"),
        }
    }

    /// COM_STMT_PREPARE: (statement id, number of parameters), or the server's error.
    pub async fn prepare(&mut self, sql: &str) -> anyhow::Result<Result<(u32, u16), MyErr>> {
        let mut p = vec![com::STMT_PREPARE];
        p.extend_from_slice(sql.as_bytes());
        self.command(&p).await?;
        let (_, ok) = self.recv().await?.context("closed after prepare")?;
        if ok.first() == Some(&0xff) {
            return Ok(Err(parse_err(&ok)?));
        }
        if ok.first() != Some(&0x00) || ok.len() < 12 {
            bail!("not a PREPARE_OK: {ok:?}");
        }
        let id = u32::from_le_bytes([ok[1], ok[2], ok[3], ok[4]]);
        let cols = u16::from_le_bytes([ok[5], ok[6]]);
        let params = u16::from_le_bytes([ok[7], ok[8]]);
        // Parameter definitions + EOF, then column definitions + EOF.
        for n in [params, cols] {
            if n > 0 {
                for _ in 0..=n {
                    self.recv().await?.context("closed inside PREPARE_OK")?;
                }
            }
        }
        Ok(Ok((id, params)))
    }

    /// COM_STMT_EXECUTE with string parameters. `types`: Some → new_params_bound = 1 with
    /// VAR_STRING for every parameter; None → new_params_bound = 0. A parameter given as None
    /// is not sent (its value came as long data).
    pub async fn execute(
        &mut self,
        id: u32,
        params: &[Option<&[u8]>],
        types: bool,
    ) -> anyhow::Result<Resp> {
        self.command(&execute_payload(id, params, types)).await?;
        self.response().await
    }

    /// COM_STMT_SEND_LONG_DATA (no response).
    pub async fn long_data(&mut self, id: u32, param: u16, data: &[u8]) -> anyhow::Result<()> {
        let mut p = vec![com::STMT_SEND_LONG_DATA];
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(&param.to_le_bytes());
        p.extend_from_slice(data);
        self.command(&p).await
    }

    /// COM_STMT_CLOSE (no response).
    pub async fn close_stmt(&mut self, id: u32) -> anyhow::Result<()> {
        let mut p = vec![com::STMT_CLOSE];
        p.extend_from_slice(&id.to_le_bytes());
        self.command(&p).await
    }
}

pub fn execute_payload(id: u32, params: &[Option<&[u8]>], types: bool) -> Vec<u8> {
    let mut p = vec![com::STMT_EXECUTE];
    p.extend_from_slice(&id.to_le_bytes());
    p.push(0); // no cursor
    p.extend_from_slice(&1u32.to_le_bytes());
    if !params.is_empty() {
        p.extend(std::iter::repeat_n(0u8, params.len().div_ceil(8)));
        p.push(u8::from(types));
        if types {
            for _ in params {
                p.extend_from_slice(&[column_type::VAR_STRING, 0]);
            }
        }
        for v in params.iter().flatten() {
            put_lenenc_bytes(&mut p, v);
        }
    }
    p
}

pub fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len.to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// A packet header claiming `len` bytes, followed by whatever `body` holds.
pub fn packet_with_len(len: u32, seq: u8, body: &[u8]) -> Vec<u8> {
    let mut out = len.to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(body);
    out
}

fn put_lenenc_bytes(out: &mut Vec<u8>, v: &[u8]) {
    let n = v.len();
    if n < 251 {
        out.push(n as u8);
    } else if n < 1 << 16 {
        out.push(0xfc);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else {
        out.push(0xfd);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    }
    out.extend_from_slice(v);
}

/// A lenenc-int at the start of `b`: (value, bytes used). NULL (0xfb) → None.
fn lenenc(b: &[u8]) -> Option<(u64, usize)> {
    match *b.first()? {
        n @ 0..=250 => Some((u64::from(n), 1)),
        0xfc => Some((u64::from(u16::from_le_bytes([*b.get(1)?, *b.get(2)?])), 3)),
        0xfd => Some((
            u64::from(u32::from_le_bytes([*b.get(1)?, *b.get(2)?, *b.get(3)?, 0])),
            4,
        )),
        0xfe => Some((u64::from_le_bytes(b.get(1..9)?.try_into().ok()?), 9)),
        _ => None,
    }
}

/// The status flags of an OK packet (or an OK-shaped terminator).
fn ok_status(p: &[u8]) -> anyhow::Result<u16> {
    let (_, a) = lenenc(p.get(1..).unwrap_or_default()).context("affected rows")?;
    let (_, b) = lenenc(p.get(1 + a..).unwrap_or_default()).context("insert id")?;
    let s = p.get(1 + a + b..3 + a + b).context("status")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

/// The first cell of a text-protocol row (None for NULL).
pub fn text_cell(row: &[u8]) -> Option<&[u8]> {
    let (n, used) = lenenc(row)?;
    row.get(used..used + n as usize)
}

/// The first cell of a binary-protocol row whose first column is a string (None for NULL).
pub fn binary_string_cell(row: &[u8], columns: usize) -> Option<&[u8]> {
    // 0x00 header, then a NULL bitmap with a 2-bit offset.
    let bitmap = (columns + 7 + 2) / 8;
    if row.get(1)? & (1 << 2) != 0 {
        return None;
    }
    text_cell(row.get(1 + bitmap..)?)
}

pub fn parse_err(p: &[u8]) -> anyhow::Result<MyErr> {
    if p.first() != Some(&0xff) || p.len() < 3 {
        bail!("not an ERR packet: {p:?}");
    }
    let code = u16::from_le_bytes([p[1], p[2]]);
    let (state, msg) = if p.get(3) == Some(&b'#') && p.len() >= 9 {
        (String::from_utf8_lossy(&p[4..9]).into_owned(), &p[9..])
    } else {
        (String::new(), &p[3..])
    };
    Ok(MyErr {
        code,
        state,
        message: String::from_utf8_lossy(msg).into_owned(),
    })
}

fn parse_greeting(p: &[u8]) -> anyhow::Result<Greeting> {
    if p.first() == Some(&0xff) {
        bail!("server refused the connection: {:?}", parse_err(p)?);
    }
    if p.first() != Some(&10) {
        bail!("not a protocol 10 greeting: {p:?}");
    }
    let rest = &p[1..];
    let end = rest.iter().position(|b| *b == 0).context("version")?;
    let server_version = String::from_utf8_lossy(&rest[..end]).into_owned();
    let mut r = &rest[end + 1..];
    let take = |r: &mut &[u8], n: usize| -> anyhow::Result<Vec<u8>> {
        let v = r.get(..n).context("short greeting")?.to_vec();
        *r = &r[n..];
        Ok(v)
    };
    let id = take(&mut r, 4)?;
    let connection_id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
    let mut scramble = take(&mut r, 8)?;
    take(&mut r, 1)?;
    let lo = take(&mut r, 2)?;
    let _charset = take(&mut r, 1)?;
    let _status = take(&mut r, 2)?;
    let hi = take(&mut r, 2)?;
    let capabilities = u32::from_le_bytes([lo[0], lo[1], hi[0], hi[1]]);
    let auth_len = take(&mut r, 1)?[0] as usize;
    take(&mut r, 10)?;
    let more = auth_len.saturating_sub(9).max(12);
    scramble.extend_from_slice(&take(&mut r, more)?);
    take(&mut r, 1)?;
    let end = r.iter().position(|b| *b == 0).unwrap_or(r.len());
    let auth_plugin = String::from_utf8_lossy(&r[..end]).into_owned();
    Ok(Greeting {
        server_version,
        connection_id,
        scramble,
        capabilities,
        auth_plugin,
    })
}

/// SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))).
pub fn native_scramble(password: &[u8], nonce: &[u8]) -> [u8; 20] {
    let h1 = Sha1::digest(password);
    let h2 = Sha1::digest(h1);
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(h2);
    let h3 = h.finalize();
    let mut out = [0u8; 20];
    for i in 0..20 {
        out[i] = h1[i] ^ h3[i];
    }
    out
}
