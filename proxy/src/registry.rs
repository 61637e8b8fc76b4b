//! Every live client session, for cancel requests, the admin API and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The real backend connection a session is attached to, for forwarding cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKey {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
}

#[derive(Debug, Default)]
struct Live {
    backend: Option<BackendKey>,
    /// From the message stream: a query, transaction or COPY in progress.
    blocker: Option<&'static str>,
    /// Found by the last checkpoint (e.g. a WITH HOLD cursor); stands until the client
    /// sends something, which may have removed it.
    found: Option<String>,
}

#[derive(Debug)]
pub struct SessionEntry {
    pub id: u64,
    pub cluster: String,
    live: Mutex<Live>,
    /// Cancelled to end the session from outside (MySQL `KILL CONNECTION` of a parked session).
    pub kill: CancellationToken,
}

impl SessionEntry {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_backend(&self, key: Option<BackendKey>) {
        self.live().backend = key;
    }

    pub fn backend(&self) -> Option<BackendKey> {
        self.live().backend
    }

    pub fn set_blocker(&self, blocker: Option<&'static str>) {
        self.live().blocker = blocker;
    }

    pub fn set_found_blocker(&self, why: Option<String>) {
        self.live().found = why;
    }

    /// What keeps this session from being parked now, if anything.
    pub fn blocker(&self) -> Option<String> {
        let live = self.live();
        match (live.blocker, &live.found) {
            (Some(b), _) => Some(format!("session {}: {b}", self.id)),
            (None, Some(found)) => Some(found.clone()),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    next_id: AtomicU64,
    /// Keyed by the virtual BackendKeyData the client was given.
    by_key: Mutex<HashMap<(i32, i32), Arc<SessionEntry>>>,
}

/// Removes the session from the registry when the session ends, however it ends.
pub struct Registration {
    registry: Arc<Registry>,
    key: (i32, i32),
    pub entry: Arc<SessionEntry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.map().remove(&self.key);
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub attached: usize,
    pub parked: usize,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), Arc<SessionEntry>>> {
        self.by_key.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Allocates a unique virtual (pid, secret) pair for a new PostgreSQL session.
    pub fn register(self: &Arc<Self>, cluster: &str) -> ((i32, i32), Registration) {
        // Positive pids look like real ones to clients that print them; secret 0 is left to
        // MySQL sessions, so a CancelRequest can never name one.
        self.register_with(cluster, || {
            (
                rand::random_range(1..i32::MAX),
                rand::random_range(1..=i32::MAX),
            )
        })
    }

    /// Allocates a unique virtual connection id for a new MySQL session. Real MariaDB thread
    /// ids count up from 1 with every server start, so ours come from far above them: a KILL
    /// naming either kind can be told apart.
    pub fn register_mysql(self: &Arc<Self>, cluster: &str) -> (u32, Registration) {
        let ((id, _), reg) =
            self.register_with(cluster, || (rand::random_range(1 << 30..i32::MAX), 0));
        (id.unsigned_abs(), reg)
    }

    /// The MySQL session of `cluster` that was given connection id `id`.
    pub fn lookup_mysql(&self, cluster: &str, id: u64) -> Option<Arc<SessionEntry>> {
        let id = i32::try_from(id).ok()?;
        self.map()
            .get(&(id, 0))
            .filter(|e| e.cluster == cluster)
            .cloned()
    }

    fn register_with(
        self: &Arc<Self>,
        cluster: &str,
        mut pick: impl FnMut() -> (i32, i32),
    ) -> ((i32, i32), Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(SessionEntry {
            id,
            cluster: cluster.to_string(),
            live: Mutex::new(Live::default()),
            kill: CancellationToken::new(),
        });
        let mut map = self.map();
        let key = loop {
            let key = pick();
            if !map.contains_key(&key) {
                break key;
            }
        };
        map.insert(key, entry.clone());
        drop(map);
        (
            key,
            Registration {
                registry: self.clone(),
                key,
                entry,
            },
        )
    }

    /// The PostgreSQL session given this BackendKeyData.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<Arc<SessionEntry>> {
        if secret == 0 {
            return None;
        }
        self.map().get(&(pid, secret)).cloned()
    }

    pub fn counts(&self, cluster: &str) -> Counts {
        let mut c = Counts::default();
        for e in self.map().values().filter(|e| e.cluster == cluster) {
            if e.backend().is_some() {
                c.attached += 1;
            } else {
                c.parked += 1;
            }
        }
        c
    }

    /// Live reasons a drain of `cluster` would be refused now.
    pub fn blockers(&self, cluster: &str) -> Vec<String> {
        let mut out: Vec<(u64, String)> = self
            .map()
            .values()
            .filter(|e| e.cluster == cluster)
            .filter_map(|e| e.blocker().map(|b| (e.id, b)))
            .collect();
        out.sort();
        out.into_iter().map(|(_, b)| b).collect()
    }
}
