//! One live session as the registry sees it: its backend key for cancels, what blocks it,
//! who it is, since when it is attached or parked, and what its snapshot holds.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use serde::{Serialize, Serializer};
use tokio_util::sync::CancellationToken;

use super::holds::Holds;
use super::identity::{Identity, clip, label};

/// The real backend connection a session is attached to, for forwarding cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKey {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
}

/// How many earlier backend connections a session remembers for KILL.
const EARLIER_BACKENDS: usize = 64;

#[derive(Debug)]
struct Live {
    backend: Option<BackendKey>,
    /// Thread ids of the backend connections the session had before its current one, newest
    /// last: a KILL naming one of them names a connection that is gone.
    earlier_backends: Vec<i32>,
    /// From the message stream: a query, transaction or COPY in progress.
    blocker: Option<&'static str>,
    /// Found by the last checkpoint (e.g. a WITH HOLD cursor); stands until the client
    /// sends something, which may have removed it.
    found: Option<String>,
    /// Unknown while a MySQL client is still logging in.
    who: Option<Identity>,
    application_name: String,
    /// When the session was last attached or parked.
    since: Instant,
    last_activity: Instant,
    holds: Holds,
    /// Parked to make room for another session, not because the database sleeps.
    parked_for_room: bool,
}

impl Live {
    fn new(now: Instant) -> Live {
        Live {
            backend: None,
            earlier_backends: Vec::new(),
            blocker: None,
            found: None,
            who: None,
            application_name: String::new(),
            since: now,
            last_activity: now,
            holds: Holds::default(),
            parked_for_room: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Attachment {
    Attached,
    Parked,
}

/// One session as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub id: u64,
    pub user: String,
    pub database: Option<String>,
    pub client_addr: Option<String>,
    pub application_name: String,
    pub state: Attachment,
    #[serde(serialize_with = "rfc3339")]
    pub since: SystemTime,
    #[serde(serialize_with = "rfc3339")]
    pub last_activity: SystemTime,
    pub holds: Holds,
    pub blocker: Option<String>,
    /// Why a parked session is parked: `room` (its backend connection went to another
    /// session; it comes back at its next request) or `sleep` (the database stopped, or it
    /// never needed the backend).
    pub parked_for: Option<&'static str>,
}

fn rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
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
    pub(super) fn new(id: u64, cluster: &str) -> SessionEntry {
        SessionEntry {
            id,
            cluster: cluster.to_string(),
            live: Mutex::new(Live::new(Instant::now())),
            kill: CancellationToken::new(),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Says who the session is, once it has logged in.
    pub fn introduce(&self, who: Identity, application_name: &str) {
        let mut live = self.live();
        live.who = Some(who);
        live.application_name = clip(application_name).to_string();
    }

    /// Says who a PostgreSQL session is, from its StartupMessage: the database defaults to
    /// the user's name, as postgres has it.
    pub fn introduce_pg(
        &self,
        user: &str,
        startup: &[(String, String)],
        client_addr: Option<SocketAddr>,
    ) {
        let param = |name: &str| {
            startup
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let database = param("database").filter(|d| !d.is_empty()).unwrap_or(user);
        self.introduce(
            Identity::new(user, Some(database), client_addr),
            param("application_name").unwrap_or_default(),
        );
    }

    /// The application name the client now goes by (PostgreSQL's `application_name`).
    pub fn set_application_name(&self, name: &str) {
        let name = clip(name);
        let mut live = self.live();
        if live.application_name != name {
            live.application_name = name.to_string();
        }
    }

    /// The session logged in again as someone else (MySQL `COM_CHANGE_USER`).
    pub fn set_user(&self, user: &str, database: Option<&str>) {
        let mut live = self.live();
        let client_addr = live.who.as_ref().and_then(|w| w.client_addr);
        live.who = Some(Identity::new(user, database, client_addr));
    }

    /// What the session's latest durable snapshot holds.
    pub fn set_holds(&self, holds: Holds) {
        self.live().holds = holds;
    }

    pub fn set_backend(&self, key: Option<BackendKey>) {
        let mut live = self.live();
        if live.backend.is_some() != key.is_some() {
            live.since = Instant::now();
        }
        if let Some(old) = live.backend
            && key != Some(old)
        {
            if live.earlier_backends.len() == EARLIER_BACKENDS {
                live.earlier_backends.remove(0);
            }
            live.earlier_backends.push(old.pid);
        }
        live.backend = key;
    }

    pub fn set_parked_for_room(&self, room: bool) {
        self.live().parked_for_room = room;
    }

    pub fn backend(&self) -> Option<BackendKey> {
        self.live().backend
    }

    /// Whether `pid` is the thread id of a backend connection this session had before its
    /// current one.
    pub fn had_backend(&self, pid: i32) -> bool {
        self.live().earlier_backends.contains(&pid)
    }

    /// The user the session is logged in as; `None` while it logs in.
    pub fn user(&self) -> Option<String> {
        self.live().who.as_ref().map(|w| w.user.clone())
    }

    /// The client sent a command: a blocker the last checkpoint found may be gone.
    pub fn client_activity(&self) {
        let now = Instant::now();
        let mut live = self.live();
        live.found = None;
        live.last_activity = now;
    }

    pub fn set_blocker(&self, blocker: Option<&'static str>) {
        self.live().blocker = blocker;
    }

    pub fn set_found_blocker(&self, why: Option<String>) {
        self.live().found = why;
    }

    /// How operators see this session named: its id, user, client address and application.
    pub fn label(&self) -> String {
        let live = self.live();
        label(self.id, live.who.as_ref(), &live.application_name)
    }

    /// What keeps this session from being parked now, if anything.
    pub fn blocker(&self) -> Option<String> {
        blocker_of(self.id, &self.live())
    }

    /// `None` until the session has logged in.
    pub(super) fn info(&self, now: (Instant, SystemTime)) -> Option<SessionInfo> {
        let live = self.live();
        let who = live.who.as_ref()?;
        let wall = |t: Instant| {
            now.1
                .checked_sub(now.0.saturating_duration_since(t))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        };
        Some(SessionInfo {
            id: self.id,
            user: who.user.clone(),
            database: who.database.clone(),
            client_addr: who.client_addr.map(|a| a.to_string()),
            application_name: live.application_name.clone(),
            state: if live.backend.is_some() {
                Attachment::Attached
            } else {
                Attachment::Parked
            },
            since: wall(live.since),
            last_activity: wall(live.last_activity),
            holds: live.holds,
            blocker: blocker_of(self.id, &live),
            parked_for: match (live.backend, live.parked_for_room) {
                (Some(_), _) => None,
                (None, true) => Some("room"),
                (None, false) => Some("sleep"),
            },
        })
    }
}

/// What the last checkpoint found says more than what the message stream shows, while it
/// stands (until the client sends something).
fn blocker_of(id: u64, live: &Live) -> Option<String> {
    match (live.blocker, &live.found) {
        (_, Some(found)) => Some(found.clone()),
        (Some(b), None) => Some(format!(
            "{}: {b}",
            label(id, live.who.as_ref(), &live.application_name)
        )),
        (None, None) => None,
    }
}
