//! The accept loop of the HTTP servers the tests run (the S3 API, the Kubernetes stand-in, the
//! exporter).

use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves HTTP/1 on `listener`, each connection with a service from `make`, until the returned
/// task is aborted; it owns the connections, so aborting it ends every open one too.
pub fn http1<F, S, B>(listener: TcpListener, make: F) -> JoinHandle<()>
where
    F: Fn() -> S + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((socket, _)) = accepted else { continue };
                    let service = make();
                    conns.spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), service)
                            .await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    })
}

/// A server that can go down (its port refuses connections, open ones are cut) and come back.
#[derive(Default)]
pub struct Switch(std::sync::Mutex<Option<JoinHandle<()>>>);

impl Switch {
    /// `task` serves from now on, in place of any before it.
    pub fn serve(&self, task: JoinHandle<()>) {
        if let Some(old) = self.lock().replace(task) {
            old.abort();
        }
    }

    /// Returns once the serving task is gone: until then a kept-alive connection could still
    /// be answered.
    pub async fn stop(&self) {
        let task = self.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Some(task) = self.lock().take() {
            task.abort();
        }
    }
}
