//! An in-process S3 API server (s3s-fs) for tests: real HTTP, real SigV4, objects stored as
//! files under a directory the test owns.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::task::JoinHandle;

/// A running server; dropping it stops the server and closes its connections.
pub struct S3Server {
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// Directory the server stores into; an object lives at `root/<bucket>/<key>`.
    pub root: PathBuf,
    task: JoinHandle<()>,
}

const BUCKET: &str = "torpor-test";
const ACCESS_KEY: &str = "torpor-test-access";
const SECRET_KEY: &str = "torpor-test-secret";
const PORTS: std::ops::Range<u16> = 15000..32000;

/// Serves the S3 API for files under `dir` on a free 127.0.0.1 port, with one bucket.
pub async fn start(dir: &Path) -> anyhow::Result<S3Server> {
    std::fs::create_dir_all(dir.join(BUCKET))
        .with_context(|| format!("creating bucket directory in {}", dir.display()))?;
    let fs = s3s_fs::FileSystem::new(dir)
        .map_err(|e| anyhow::anyhow!("s3s-fs rooted at {}: {e:?}", dir.display()))?;
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        b.build()
    };

    let listener = bind_free_port()?;
    let addr = listener.local_addr()?;
    let listener = tokio::net::TcpListener::from_std(listener)?;

    let task = crate::serve::http1(listener, move || service.clone());

    Ok(S3Server {
        endpoint: format!("http://{addr}"),
        bucket: BUCKET.to_owned(),
        access_key: ACCESS_KEY.to_owned(),
        secret_key: SECRET_KEY.to_owned(),
        root: dir.to_owned(),
        task,
    })
}

impl S3Server {
    /// A store config pointing at this server, with every option set so that no `AWS_*`
    /// environment variable changes where the test writes.
    pub fn store_config(&self, prefix: &str) -> state_store::StoreConfig {
        let prefix = prefix.trim_matches('/');
        let url = if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{prefix}", self.bucket)
        };
        state_store::StoreConfig {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".to_owned()),
            allow_http: true,
            access_key_id: Some(self.access_key.clone()),
            secret_access_key: Some(self.secret_key.clone()),
            session_token: None,
            key_file: Some(self.key_file()),
            ..state_store::StoreConfig::from_url(url)
        }
    }

    /// The key the stores of [`S3Server::store_config`] seal with: beside the bucket, made
    /// on first use.
    pub fn key_file(&self) -> PathBuf {
        let path = self.root.join("torpor.key");
        if !path.exists() {
            state_store::seal::write_key_file(&path).expect("write the sealing key");
        }
        path
    }

    /// Where the server keeps the object stored under `key`.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(&self.bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn bind_free_port() -> anyhow::Result<std::net::TcpListener> {
    let seed = RandomState::new().build_hasher().finish();
    let span = u64::from(PORTS.end - PORTS.start);
    let mut last_err = None;
    for attempt in 0..200u64 {
        let offset = (seed.wrapping_add(attempt.wrapping_mul(7919))) % span;
        let port = PORTS.start + offset as u16;
        match std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
            Ok(l) => {
                l.set_nonblocking(true)?;
                return Ok(l);
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "no free port in {PORTS:?} after 200 tries: {last_err:?}"
    ))
}
