//! A Prometheus exporter served by the test: `GET /metrics` answers the text the test last
//! set, in the text exposition format, over real HTTP on 127.0.0.1. It can go down and come
//! back on the same port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

use crate::ports::free_port;

pub struct Exporter {
    pub addr: SocketAddr,
    page: Arc<Mutex<String>>,
    server: crate::serve::Switch,
}

impl Exporter {
    /// Serves `page` until told otherwise.
    pub async fn start(page: &str) -> Exporter {
        let e = Exporter {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            page: Arc::new(Mutex::new(page.to_string())),
            server: Default::default(),
        };
        e.serve().await;
        e
    }

    /// What torpor's `url` says.
    pub fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// From the next request on, the exporter answers `page`.
    pub fn set(&self, page: &str) {
        *self.page.lock().unwrap() = page.to_string();
    }

    /// Stops listening and ends every open connection: the endpoint is down.
    pub async fn stop(&self) {
        self.server.stop().await;
    }

    /// Listens (again) on the same port.
    pub async fn serve(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let page = self.page.clone();
        let task = crate::serve::http1(listener, move || {
            let page = page.clone();
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let page = page.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&page, req.uri().path())) }
            })
        });
        self.server.serve(task);
    }
}

fn answer(page: &Mutex<String>, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = if path == "/metrics" {
        (StatusCode::OK, page.lock().unwrap().clone())
    } else {
        (StatusCode::NOT_FOUND, String::new())
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}
