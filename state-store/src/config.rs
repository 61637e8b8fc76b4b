use std::fmt;

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
}

impl StoreConfig {
    /// A config with only `url` set.
    pub fn from_url(url: impl Into<String>) -> Self {
        StoreConfig {
            url: url.into(),
            endpoint: None,
            region: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        }
    }
}

// Config structs end up in logs; credentials must not.
impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint.as_deref().map(strip_userinfo))
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &redacted(&self.access_key_id))
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .finish()
    }
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
