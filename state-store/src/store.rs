use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::{Path, PathPart};
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::strip_userinfo;
use crate::deadline::Within;
use crate::seal::Seal;
use crate::{SnapshotKey, StoreConfig, StoreError, envelope};

/// A snapshot store. Cheap to clone; clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn ObjectStore>,
    prefix: Path,
    description: String,
    /// How long one operation may take: `[state_store] timeout`.
    timeout: std::time::Duration,
    seal: Arc<Seal>,
    /// The directory of a `file://` store, whose files and directories only we may read.
    local_root: Option<PathBuf>,
}

/// The probe's object name; cluster names can't start with '.', so it never meets a snapshot.
const PROBE: &str = ".torpor-probe";
/// Snapshots up to this size are opened on the async runtime (well under a millisecond); larger
/// ones, whose rows can reach hundreds of megabytes, on the blocking pool.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

// Only the description: the backend's own Debug may include credential providers.
impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Store")
            .field(&self.inner.description)
            .finish()
    }
}

impl Store {
    /// Builds the backend named by `cfg.url`. Does no I/O beyond creating a `file://` directory.
    pub fn open(cfg: &StoreConfig) -> Result<Store, StoreError> {
        let url = cfg.url.trim();
        let mut local_root = None;
        let memory = url == "memory://" || url == "memory:";
        let (backend, prefix): (Arc<dyn ObjectStore>, Path) =
            if let Some(rest) = url.strip_prefix("s3://") {
                open_s3(cfg, rest)?
            } else if let Some(dir) = url.strip_prefix("file://") {
                local_root = Some(PathBuf::from(dir));
                (open_file(dir)?, Path::ROOT)
            } else if memory {
                (Arc::new(InMemory::new()), Path::ROOT)
            } else {
                return Err(StoreError::Config(format!(
                    "url {url:?}: unsupported scheme, expected s3://bucket[/prefix], \
                     file:///absolute/dir or memory://"
                )));
            };

        let seal = match Seal::from_config(cfg)? {
            Some(seal) => seal,
            // Gone with the process, like the snapshots.
            None if memory => Seal::ephemeral(cfg.require_sealed)?,
            None => {
                return Err(StoreError::Config(
                    "no key to seal snapshots with: set key_file or key_env".into(),
                ));
            }
        };
        let mut description = strip_userinfo(url);
        if let Some(endpoint) = &cfg.endpoint {
            description.push_str(&format!(" (endpoint {})", strip_userinfo(endpoint)));
        }
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                prefix,
                description,
                timeout: cfg.timeout,
                seal: Arc::new(seal),
                local_root,
            }),
        })
    }

    /// The same store, under `<prefix>/<instance>`: each torpor keeps its snapshots apart from
    /// every other's, so it can clear its own at start.
    pub fn instance(&self, instance: &str) -> Result<Store, StoreError> {
        let part = segment("instance name", instance)?;
        let inner = &self.inner;
        Ok(Store {
            inner: Arc::new(Inner {
                backend: inner.backend.clone(),
                prefix: inner.prefix.clone().join(part),
                description: format!("{} (instance {instance})", inner.description),
                timeout: inner.timeout,
                seal: inner.seal.clone(),
                local_root: inner.local_root.clone(),
            }),
        })
    }

    /// Deletes every snapshot under this store's prefix and returns how many there were. Only
    /// for startup, when no session can be live yet: what is there was left by an earlier run
    /// that did not stop cleanly.
    pub async fn clear(&self) -> Result<usize, StoreError> {
        let fail = |op: &str, e: object_store::Error| {
            StoreError::Backend(format!("{op} {}: {e}", self.inner.description))
        };
        let listed: Vec<_> = {
            use futures_util::StreamExt;
            self.inner
                .backend
                .list(Some(&self.inner.prefix))
                .collect()
                .await
        };
        let mut removed = 0;
        for meta in listed {
            let meta = meta.map_err(|e| fail("list", e))?;
            if meta.location.filename() == Some(PROBE) {
                continue;
            }
            match self.inner.backend.delete(&meta.location).await {
                Ok(()) => removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(fail("delete", e)),
            }
        }
        Ok(removed)
    }

    /// Writes the snapshot; returns once the backend reports it durably stored, with the number
    /// of bytes stored. Encoding and sealing, proportional to the snapshot's size (temp tables'
    /// rows), run on the blocking pool rather than the async runtime.
    pub async fn put<T: Serialize + Send + Sync + 'static>(
        &self,
        key: &SnapshotKey,
        value: Arc<T>,
    ) -> Result<usize, StoreError> {
        let location = self.location(key)?;
        let started = std::time::Instant::now();
        let (seal, owned_key) = (self.inner.seal.clone(), key.clone());
        let bytes =
            tokio::task::spawn_blocking(move || envelope::encode(&seal, &owned_key, &*value))
                .await
                .map_err(|e| StoreError::Encode(format!("{key}: {e}")))??;
        let len = bytes.len();
        self.inner
            .backend
            .put(&location, PutPayload::from(bytes))
            .within(self.inner.timeout, format!("put {key}"))
            .await?
            .map_err(|e| backend_error("put", key, e))?;
        self.restrict(&location)?;
        tracing::debug!(%key, bytes = len, put_us = started.elapsed().as_micros(), "snapshot stored");
        Ok(len)
    }

    /// Reads and verifies the snapshot stored for `key`. A large one is opened and decoded on
    /// the blocking pool.
    pub async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &SnapshotKey,
    ) -> Result<T, StoreError> {
        let location = self.location(key)?;
        let started = std::time::Instant::now();
        let bytes = async { self.inner.backend.get(&location).await?.bytes().await }
            .within(self.inner.timeout, format!("get {key}"))
            .await?
            .map_err(|e| backend_error("get", key, e))?;
        tracing::debug!(%key, bytes = bytes.len(), get_us = started.elapsed().as_micros(), "snapshot loaded");
        if bytes.len() <= INLINE_DECODE_BYTES {
            return envelope::decode(&self.inner.seal, key, &bytes);
        }
        let (seal, owned_key) = (self.inner.seal.clone(), key.clone());
        tokio::task::spawn_blocking(move || envelope::decode(&seal, &owned_key, &bytes))
            .await
            .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?
    }

    /// Removes the snapshot; a key with no snapshot is not an error.
    pub async fn delete(&self, key: &SnapshotKey) -> Result<(), StoreError> {
        let location = self.location(key)?;
        let deleted = self.inner.backend.delete(&location);
        match deleted
            .within(self.inner.timeout, format!("delete {key}"))
            .await?
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend_error("delete", key, e)),
        }
    }

    /// Writes and removes a small object, so that a missing bucket, wrong credentials or an
    /// unwritable directory show at startup rather than at the first drain.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let location = self.inner.prefix.clone().join(PROBE);
        let fail = |op: &str, e: object_store::Error| {
            StoreError::Backend(format!("{op} {}: {e}", self.inner.description))
        };
        self.inner
            .backend
            .put(&location, PutPayload::from_static(b"torpor"))
            .within(self.inner.timeout, "probe put")
            .await?
            .map_err(|e| fail("probe put", e))?;
        let deleted = self.inner.backend.delete(&location);
        match deleted.within(self.inner.timeout, "probe delete").await? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(fail("probe delete", e)),
        }
    }

    /// Where snapshots go, for logs; never contains credentials.
    pub fn describe(&self) -> String {
        self.inner.description.clone()
    }

    /// A snapshot file and the directories above it, up to the store's root, are only ours:
    /// object_store creates them with the process umask.
    fn restrict(&self, location: &Path) -> Result<(), StoreError> {
        let Some(root) = &self.inner.local_root else {
            return Ok(());
        };
        let chmod = |path: &std::path::Path, mode: u32| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                StoreError::Backend(format!("chmod {:o} {}: {e}", mode, path.display()))
            })
        };
        let mut path = root.clone();
        let parts: Vec<_> = location.parts().collect();
        for (i, part) in parts.iter().enumerate() {
            path.push(part.as_ref());
            chmod(&path, if i + 1 == parts.len() { 0o600 } else { 0o700 })?;
        }
        Ok(())
    }

    fn location(&self, key: &SnapshotKey) -> Result<Path, StoreError> {
        let cluster = segment("snapshot key: cluster name", &key.cluster)?;
        Ok(self
            .inner
            .prefix
            .clone()
            .join(cluster)
            .join(key.session.to_string().as_str()))
    }
}

/// `name` as one segment of an object key.
fn segment<'a>(what: &str, name: &'a str) -> Result<PathPart<'a>, StoreError> {
    if name.is_empty() {
        return Err(StoreError::Config(format!("{what} is empty")));
    }
    PathPart::parse(name).map_err(|e| {
        StoreError::Config(format!(
            "{what} {name:?} cannot be an object key segment: {e}"
        ))
    })
}

fn backend_error(op: &str, key: &SnapshotKey, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound(key.to_string()),
        e => StoreError::Backend(format!("{op} {key}: {e}")),
    }
}

fn open_file(dir: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if !dir.starts_with('/') {
        return Err(StoreError::Config(format!(
            "url file://{dir}: the path must be absolute (file:///abs/dir); relative paths \
             are not allowed"
        )));
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| {
            StoreError::Config(format!("url file://{dir}: cannot create directory: {e}"))
        })?;
    let fs = LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| StoreError::Config(format!("url file://{dir}: {e}")))?
        // put must not return before the file and its directory entry are on disk.
        .with_fsync(true);
    Ok(Arc::new(fs))
}

fn open_s3(cfg: &StoreConfig, rest: &str) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(StoreError::Config(format!(
            "url s3://{rest}: bucket name is missing (s3://bucket/optional/prefix)"
        )));
    }
    let prefix = Path::parse(prefix)
        .map_err(|e| StoreError::Config(format!("url s3://{rest}: bad prefix: {e}")))?;

    // A client waits on these requests (a wake) or a drain does: fail within seconds rather
    // than object_store's default of up to three minutes of retries.
    let retry = object_store::RetryConfig {
        max_retries: 3,
        retry_timeout: std::time::Duration::from_secs(20),
        ..Default::default()
    };
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry);
    if let Some(endpoint) = &cfg.endpoint {
        // AWS_ENDPOINT_URL_S3 would otherwise win over an endpoint given in the config.
        b = b
            .with_endpoint(endpoint)
            .with_config(AmazonS3ConfigKey::S3Endpoint, endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if let Some(region) = &cfg.region {
        b = b.with_region(region);
    }
    if cfg.allow_http {
        b = b.with_allow_http(true);
    }
    if let Some(v) = &cfg.access_key_id {
        b = b.with_access_key_id(v);
    }
    if let Some(v) = &cfg.secret_access_key {
        b = b.with_secret_access_key(v);
    }
    if let Some(v) = &cfg.session_token {
        b = b.with_token(v);
    }

    let endpoint = b.get_config_value(&AmazonS3ConfigKey::Endpoint);
    let allow_http = b.get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp));
    if let Some(endpoint) = endpoint.filter(|e| e.starts_with("http://"))
        && allow_http.as_deref() != Some("true")
    {
        return Err(StoreError::Config(format!(
            "endpoint {}: plain http needs allow_http = true (or AWS_ALLOW_HTTP=true)",
            strip_userinfo(&endpoint)
        )));
    }

    install_tls_provider();
    let s3 = b
        .build()
        .map_err(|e| StoreError::Config(format!("url s3://{rest}: {e}")))?;
    Ok((Arc::new(s3), prefix))
}

/// reqwest is built without a bundled TLS crypto provider (to stay on ring, not aws-lc) and
/// panics when building a client if the process has none installed.
fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: any provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_err(url: &str) -> String {
        match Store::open(&StoreConfig::from_url(url)) {
            Err(StoreError::Config(m)) => m,
            other => panic!("{url}: expected Config error, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(config_err("file://relative/dir").contains("absolute"));
        assert!(config_err("ftp://x").contains("unsupported scheme"));
        assert!(config_err("s3://").contains("bucket name is missing"));
        assert!(config_err("s3:///prefix").contains("bucket name is missing"));
        assert!(config_err("s3://b/a//c").contains("bad prefix"));
    }

    #[test]
    fn http_endpoint_needs_allow_http() {
        let (_dir, key_file) = crate::seal::test_key_file();
        let cfg = StoreConfig {
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("b".into()),
            key_file: Some(key_file),
            ..StoreConfig::from_url("s3://bucket")
        };
        match Store::open(&cfg) {
            Err(StoreError::Config(m)) => assert!(m.contains("allow_http"), "{m}"),
            other => panic!("expected Config error, got {other:?}"),
        }
        let ok = Store::open(&StoreConfig {
            allow_http: true,
            ..cfg
        })
        .unwrap();
        assert_eq!(ok.describe(), "s3://bucket (endpoint http://127.0.0.1:1)");
    }

    #[test]
    fn durable_stores_need_a_key() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("file://{}", tmp.path().display());
        assert!(config_err(&url).contains("key_file or key_env"));
        let (_dir, key_file) = crate::seal::test_key_file();
        let both = StoreConfig {
            key_file: Some(key_file),
            key_env: Some("TORPOR_KEY".into()),
            ..StoreConfig::from_url(url)
        };
        assert!(matches!(Store::open(&both), Err(StoreError::Config(m)) if m.contains("not both")));
    }

    #[test]
    fn object_keys() {
        let key = SnapshotKey {
            cluster: "pg-main".into(),
            session: uuid::Uuid::from_u128(7),
            user: "app".into(),
            database: "app".into(),
        };
        let store = Store::open(&StoreConfig::from_url("memory://")).unwrap();
        assert_eq!(
            store.location(&key).unwrap().as_ref(),
            "pg-main/00000000-0000-0000-0000-000000000007"
        );

        let (_dir, key_file) = crate::seal::test_key_file();
        let cfg = StoreConfig {
            endpoint: Some("https://example.invalid".into()),
            access_key_id: Some("a".into()),
            secret_access_key: Some("b".into()),
            key_file: Some(key_file),
            ..StoreConfig::from_url("s3://bucket/tenants/eu/")
        };
        let store = Store::open(&cfg).unwrap().instance("host-1").unwrap();
        assert_eq!(
            store.location(&key).unwrap().as_ref(),
            "tenants/eu/host-1/pg-main/00000000-0000-0000-0000-000000000007"
        );
        for bad in ["", "a/b", ".."] {
            assert!(
                matches!(store.instance(bad), Err(StoreError::Config(_))),
                "{bad:?}"
            );
        }

        for bad in ["", "a/b", "..", "x\ny"] {
            let k = SnapshotKey {
                cluster: bad.into(),
                ..key.clone()
            };
            assert!(
                matches!(store.location(&k), Err(StoreError::Config(_))),
                "{bad:?}"
            );
        }
    }
}
