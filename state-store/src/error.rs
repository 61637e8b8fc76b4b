impl StoreError {
    /// Whether the same call may succeed later: the store or the network failed, or was slow.
    /// Anything else is about the snapshot itself (missing, corrupt, another session's, a key
    /// or version this build can't read) and never loads, however often it is tried.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Backend(_) | StoreError::Timeout(_))
    }
}

/// Everything that can go wrong opening a store or moving a snapshot in or out of it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Bad url or option; the message names the setting and the problem.
    #[error("state store config: {0}")]
    Config(String),
    /// The store did not answer within `[state_store] timeout`.
    #[error("state store timed out: {0}")]
    Timeout(String),
    /// No snapshot is stored under the key.
    #[error("no snapshot for {0}")]
    NotFound(String),
    /// The object is not a snapshot we can read: bad magic, unknown version, checksum
    /// mismatch, truncation or an undecodable body.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
    /// The envelope belongs to another cluster or session than the key asked for; replaying it
    /// would hand one client another session's state.
    #[error("snapshot belongs to another session: {0}")]
    WrongSession(String),
    /// The object store or the network failed.
    #[error("state store backend: {0}")]
    Backend(String),
    /// The value could not be serialised into an envelope.
    #[error("snapshot encode: {0}")]
    Encode(String),
    /// The snapshot was sealed with a key that is not configured here (the message names the
    /// key's id). It can never load until that key is given back (`old_key_files`).
    #[error("snapshot sealed with another key: {0}")]
    WrongKey(String),
    /// The sealed snapshot does not authenticate: it was changed after it was written. It
    /// can never load.
    #[error("snapshot tampered with: {0}")]
    Tampered(String),
    /// The snapshot belongs to another user or database than the session reading it. It can
    /// never load.
    #[error("snapshot belongs to another user: {0}")]
    WrongUser(String),
    /// An unsealed (version 1) snapshot while `require_sealed` is on. It can never load.
    #[error("unsealed snapshot refused: {0}")]
    Unsealed(String),
}
