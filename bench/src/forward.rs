//! The floor for any proxy: a forwarder that only copies bytes both ways, with no framing,
//! no state and no bookkeeping. Measured next to torpor and PgBouncer in the same run, it
//! shows how much of a throughput ratio is the extra loopback hop itself.
//!
//! torpor-bench forward LISTEN_ADDR TARGET      (TARGET: host:port, or a Unix socket path)

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream, UnixStream};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let [listen, target] = args else {
        anyhow::bail!("usage: torpor-bench forward LISTEN_ADDR TARGET");
    };
    let listen: SocketAddr = listen.parse().context("LISTEN_ADDR")?;
    let target = target.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let l = TcpListener::bind(listen).await?;
        loop {
            let (mut client, _) = l.accept().await?;
            let target = target.clone();
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                if target.starts_with('/') {
                    if let Ok(mut up) = UnixStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                    }
                } else if let Ok(mut up) = TcpStream::connect(&target).await {
                    let _ = up.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }
            });
        }
    })
}
