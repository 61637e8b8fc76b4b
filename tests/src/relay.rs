//! A TCP relay on 127.0.0.1 between torpor and a server it depends on (the S3 API server), to
//! make that server fail the ways networks do: it passes connections on, refuses them (closes
//! them at once), or hangs them (accepts and never answers). A change of mode applies to the
//! connections already open too, so a client's pooled connection fails like a new one.

use std::net::SocketAddr;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ports::free_port;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Connections are closed at once: a server that is down.
    Refuse,
    /// Connections are held open and nothing is ever answered: a server that hangs.
    Hang,
}

/// A running relay; dropping it closes the listener and every connection.
pub struct Relay {
    /// Where clients connect instead of the server.
    pub addr: SocketAddr,
    /// Connections accepted so far, whatever the mode did with them.
    accepted: Arc<AtomicUsize>,
    mode: watch::Sender<Mode>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Relays connections on a free port to `target`, passing them on.
    pub async fn start(target: SocketAddr) -> Relay {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let listener = TcpListener::bind(addr).await.expect("bind the relay");
        let (mode, rx) = watch::channel(Mode::Pass);
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { continue };
                        counted.fetch_add(1, Ordering::Relaxed);
                        conns.spawn(relay(client, target, rx.clone()));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Relay {
            addr,
            accepted,
            mode,
            task,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(mut client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let now = *mode.borrow_and_update();
    match now {
        Mode::Refuse => return,
        Mode::Hang => {
            // Held, unread, until the mode changes; then closed.
            let _ = mode.changed().await;
            return;
        }
        Mode::Pass => {}
    }
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    let changed = tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => return,
        m = mode.wait_for(|m| *m != Mode::Pass) => m.map(|m| *m),
    };
    if matches!(changed, Ok(Mode::Hang)) {
        // Both ends stay open and nothing moves until the mode changes again.
        let _ = mode.changed().await;
    }
}
