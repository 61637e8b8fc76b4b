use std::fmt;

/// Identifies one session's snapshot: stored at `<prefix>/<cluster>/<session-uuid>`. The user
/// and database are not part of the object's name, but a sealed snapshot is bound to them: it
/// opens only for the same user on the same database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotKey {
    pub cluster: String,
    pub session: uuid::Uuid,
    /// The session's login user.
    pub user: String,
    /// The database it logged in to; empty when it named none (MySQL).
    pub database: String,
}

/// The last check before a snapshot's state reaches a backend: the user the snapshot itself
/// names (`found`) is the live session's (`user`). The envelope is bound to the user already;
/// this also catches a snapshot whose own content disagrees with it.
pub fn check_owner(found: Option<&str>, user: &str) -> Result<(), crate::StoreError> {
    if found == Some(user) {
        return Ok(());
    }
    let clip = |s: &str| s.chars().take(64).collect::<String>();
    Err(crate::StoreError::WrongUser(format!(
        "the snapshot holds the session of {:?}, this session is {:?}'s",
        found.map(clip).unwrap_or_default(),
        clip(user)
    )))
}

impl fmt::Display for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.session)
    }
}
