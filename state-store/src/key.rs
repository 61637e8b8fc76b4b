use std::fmt;

/// Identifies one session's snapshot: stored at `<prefix>/<cluster>/<session-uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotKey {
    pub cluster: String,
    pub session: uuid::Uuid,
}

impl fmt::Display for SnapshotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.cluster, self.session)
    }
}
