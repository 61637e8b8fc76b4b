//! Whether a server that torpor doesn't run as its child is ready, asked without a credential
//! (torpor may hold only password hashes): PostgreSQL answers a startup packet with an
//! authentication request, as pg_isready checks, or an error other than "starting up";
//! MariaDB and MySQL send their greeting. The only wire bytes the controller knows.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::factory::Engine;

/// How often a starting server is looked at: this is on the wake path, where every poll's
/// wait shows in the first query's latency, and a look is one loopback connection.
pub(crate) const READY_POLL: Duration = Duration::from_millis(5);

/// SQLSTATE of "the database system is starting up" (and shutting down, recovering).
const CANNOT_CONNECT_NOW: &[u8] = b"C57P03";

/// One look: true when the server at `addr` answers as a ready server does.
pub(crate) async fn ready(engine: Engine, addr: SocketAddr) -> bool {
    let look = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        match engine {
            Engine::Postgres => postgres(&mut tcp).await,
            Engine::Mysql => mysql(&mut tcp).await,
        }
    };
    tokio::time::timeout(Duration::from_secs(5), look)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn postgres(tcp: &mut TcpStream) -> Option<bool> {
    let mut params = Vec::new();
    for s in ["user", "torpor-readiness", "database", "postgres", ""] {
        params.extend_from_slice(s.as_bytes());
        params.push(0);
    }
    let len = u32::try_from(8 + params.len()).ok()?;
    let mut packet = len.to_be_bytes().to_vec();
    packet.extend_from_slice(&196_608u32.to_be_bytes());
    packet.extend_from_slice(&params);
    tcp.write_all(&packet).await.ok()?;
    let mut head = [0u8; 5];
    tcp.read_exact(&mut head).await.ok()?;
    match head[0] {
        b'R' => Some(true),
        b'E' => {
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4).min(4096)];
            tcp.read_exact(&mut body).await.ok()?;
            Some(
                !body
                    .windows(CANNOT_CONNECT_NOW.len())
                    .any(|w| w == CANNOT_CONNECT_NOW),
            )
        }
        _ => Some(false),
    }
}

async fn mysql(tcp: &mut TcpStream) -> Option<bool> {
    let mut head = [0u8; 5];
    tcp.read_exact(&mut head).await.ok()?;
    // Protocol version 10 opens every greeting; an ERR (0xff) is a server answering too,
    // refusing for now (too many connections, a blocked host).
    Some(head[4] == 10 || head[4] == 0xff)
}
