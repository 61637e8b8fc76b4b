use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where snapshots live.
///
/// `url` is one of `file:///abs/dir`, `s3://bucket[/prefix]` or `memory://`. For `s3://`, any
/// option left out here falls back to the standard `AWS_*` environment variables
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: String,
    /// How long one operation (put, get, delete) may take before it fails: a wake then
    /// tries again, a drain is refused.
    #[serde(default = "default_timeout", deserialize_with = "timeout")]
    pub timeout: Duration,
    /// S3 API endpoint such as `http://127.0.0.1:9000`; requests then use path style.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Permit plain `http://` endpoints.
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
    /// File holding the key that seals snapshots: 64 hex characters on one line.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Environment variable holding that key instead.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Keys snapshots were sealed with before a rotation: still opened, never used to seal.
    #[serde(default)]
    pub old_key_files: Vec<PathBuf>,
    /// Refuse unsealed (version 1) snapshots.
    #[serde(default = "sealed_by_default")]
    pub require_sealed: bool,
}

fn sealed_by_default() -> bool {
    true
}

impl StoreConfig {
    /// A config with only `url` set.
    pub fn from_url(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            timeout: default_timeout(),
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            key_file: None,
            key_env: None,
            old_key_files: Vec::new(),
            require_sealed: true,
        }
    }
}

// Config structs end up in logs; credentials must not.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("endpoint", &self.endpoint.as_deref().map(strip_userinfo))
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("key_file", &self.key_file)
            .field("key_env", &self.key_env)
            .field("old_key_files", &self.old_key_files)
            .field("require_sealed", &self.require_sealed)
            .finish()
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    let t = crate::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("timeout: {e}")))?;
    if t.is_zero() {
        return Err(serde::de::Error::custom(
            "timeout: must be greater than zero",
        ));
    }
    Ok(t)
}

fn redacted(v: &Option<String>) -> Option<&'static str> {
    v.as_ref().map(|_| "<redacted>")
}

/// Drops a `user:password@` part from a URL so it can be logged.
pub(crate) fn strip_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    match scheme {
        Some(s) => format!("{s}://{rest}"),
        None => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let cfg = StoreConfig {
            endpoint: Some("http://user:hunter2@127.0.0.1:9000/x".into()),
            access_key_id: Some("AKIDSECRET".into()),
            secret_access_key: Some("s3cr3t-key".into()),
            session_token: Some("tok-en".into()),
            ..StoreConfig::from_url("s3://bucket/p")
        };
        let shown = format!("{cfg:?}");
        for secret in ["AKIDSECRET", "s3cr3t-key", "tok-en", "hunter2"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("s3://bucket/p"));
        assert!(shown.contains("http://127.0.0.1:9000/x"));
    }

    #[test]
    fn strip_userinfo_keeps_plain_urls() {
        assert_eq!(strip_userinfo("http://h:1/p@q"), "http://h:1/p@q");
        assert_eq!(strip_userinfo("https://a@b/c"), "https://b/c");
        assert_eq!(strip_userinfo("host:1"), "host:1");
    }
}
