//! Every live client session, for cancel requests, the admin API and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use protocols::mysql::snapshot::MySnapshot;
use protocols::pg::snapshot::PgSnapshot;
use serde::{Serialize, Serializer};
use tokio_util::sync::CancellationToken;

/// The real backend connection a session is attached to, for forwarding cancels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKey {
    pub addr: SocketAddr,
    pub pid: i32,
    pub secret: i32,
}

/// Longest user, database or application name kept for operators, in bytes: clients choose
/// these, and they end up in logs and the admin API.
pub const NAME_MAX: usize = 64;

/// Who a session is, as operators name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// `None` for a MySQL client that connected without a default schema.
    pub database: Option<String>,
    pub client_addr: Option<SocketAddr>,
}

impl Identity {
    pub fn new(user: &str, database: Option<&str>, client_addr: Option<SocketAddr>) -> Identity {
        Identity {
            user: clip(user).to_string(),
            database: database.map(|d| clip(d).to_string()),
            client_addr,
        }
    }
}

/// The longest prefix of `s` that fits [`NAME_MAX`] without splitting a character.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(NAME_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What a session's last snapshot held, counted for operators.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Holds {
    pub settings: u64,
    pub statements: u64,
    pub temp_tables: u64,
    pub temp_rows: u64,
    pub channels: u64,
    pub locks: u64,
}

fn count<T>(items: &[T]) -> u64 {
    items.len() as u64
}

impl Holds {
    /// Role and session authorization count as settings: the snapshot keeps them apart only
    /// because replay must set them in a certain order. Capture always records the session
    /// authorization; it is a setting only when it is not the login user.
    pub fn of_pg(snap: &PgSnapshot) -> Holds {
        let login = snap
            .startup_params
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.as_str());
        let authorization = snap
            .session_authorization
            .as_deref()
            .is_some_and(|a| Some(a) != login);
        Holds {
            settings: count(&snap.settings)
                + u64::from(snap.role.is_some())
                + u64::from(authorization),
            statements: count(&snap.prepared),
            temp_tables: count(&snap.temp_tables),
            temp_rows: snap.temp_tables.iter().map(|t| t.row_count()).sum(),
            channels: count(&snap.listen),
            locks: count(&snap.advisory_locks),
        }
    }

    /// A role counts as a setting, as in PostgreSQL.
    pub fn of_mysql(snap: &MySnapshot) -> Holds {
        Holds {
            settings: count(&snap.variables)
                + count(&snap.user_vars)
                + u64::from(snap.role.is_some()),
            statements: count(&snap.statements) + count(&snap.sql_prepared),
            temp_tables: count(&snap.temp_tables),
            temp_rows: snap.temp_tables.iter().map(|t| t.rows).sum(),
            channels: 0,
            locks: count(&snap.named_locks),
        }
    }
}

#[derive(Debug)]
struct Live {
    backend: Option<BackendKey>,
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
}

impl Live {
    fn new(now: Instant) -> Live {
        Live {
            backend: None,
            blocker: None,
            found: None,
            who: None,
            application_name: String::new(),
            since: now,
            last_activity: now,
            holds: Holds::default(),
        }
    }
}

/// `session 5 (app@127.0.0.1:40312, application_name "psql")`: enough for an operator to find
/// the client. The application name is quoted and escaped, as the client chose it.
fn label(id: u64, who: Option<&Identity>, application_name: &str) -> String {
    let Some(who) = who else {
        return format!("session {id}");
    };
    let addr = match who.client_addr {
        Some(a) => a.to_string(),
        None => "unknown address".to_string(),
    };
    if application_name.is_empty() {
        format!("session {id} ({}@{addr})", who.user)
    } else {
        format!(
            "session {id} ({}@{addr}, application_name {application_name:?})",
            who.user
        )
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
        live.backend = key;
    }

    pub fn backend(&self) -> Option<BackendKey> {
        self.live().backend
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
    fn info(&self, now: (Instant, SystemTime)) -> Option<SessionInfo> {
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
            live: Mutex::new(Live::new(Instant::now())),
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

    /// Every logged-in session of `cluster`, by id.
    pub fn sessions(&self, cluster: &str) -> Vec<SessionInfo> {
        let entries: Vec<Arc<SessionEntry>> = self
            .map()
            .values()
            .filter(|e| e.cluster == cluster)
            .cloned()
            .collect();
        // Outside the registry lock: every session and every connect takes it.
        let now = (Instant::now(), SystemTime::now());
        let mut out: Vec<SessionInfo> = entries.iter().filter_map(|e| e.info(now)).collect();
        out.sort_by_key(|s| s.id);
        out
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

#[cfg(test)]
mod tests {
    use protocols::mysql::snapshot as my;
    use protocols::pg::snapshot as pg;

    use super::*;

    fn addr() -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], 40312)))
    }

    #[test]
    fn labels_name_the_user_address_and_application() {
        let who = Identity::new("app", Some("app"), addr());
        assert_eq!(
            label(5, Some(&who), "psql"),
            r#"session 5 (app@127.0.0.1:40312, application_name "psql")"#
        );
        assert_eq!(label(5, Some(&who), ""), "session 5 (app@127.0.0.1:40312)");
        assert_eq!(label(5, None, "psql"), "session 5");
        let nowhere = Identity::new("app", None, None);
        assert_eq!(
            label(6, Some(&nowhere), ""),
            "session 6 (app@unknown address)"
        );
        // What the client chose can't break the line or the quotes.
        assert_eq!(
            label(7, Some(&who), "a\"b\nc"),
            r#"session 7 (app@127.0.0.1:40312, application_name "a\"b\nc")"#
        );
    }

    #[test]
    fn client_chosen_names_are_clipped_to_64_bytes() {
        let long = "é".repeat(40); // 80 bytes
        let who = Identity::new(&long, Some(&"d".repeat(100)), None);
        assert_eq!(who.user, "é".repeat(32));
        assert_eq!(who.database.as_deref(), Some("d".repeat(64).as_str()));
        let reg = Arc::new(Registry::default());
        let (_, r) = reg.register("c");
        r.entry.introduce(who, &"x".repeat(65));
        r.entry
            .set_application_name(&format!("{}é", "y".repeat(63)));
        assert_eq!(reg.sessions("c")[0].application_name, "y".repeat(63));
    }

    #[test]
    fn blockers_carry_the_label() {
        let reg = Arc::new(Registry::default());
        let (_, r) = reg.register("c");
        let id = r.entry.id;
        r.entry.set_blocker(Some("open transaction"));
        assert_eq!(
            reg.blockers("c"),
            vec![format!("session {id}: open transaction")]
        );
        r.entry
            .introduce_pg("app", &[("application_name".into(), "psql".into())], addr());
        assert_eq!(
            reg.blockers("c"),
            vec![format!(
                r#"session {id} (app@127.0.0.1:40312, application_name "psql"): open transaction"#
            )]
        );
        r.entry.set_application_name("");
        assert_eq!(
            r.entry.blocker().as_deref(),
            Some(format!("session {id} (app@127.0.0.1:40312): open transaction").as_str())
        );
        assert_eq!(
            r.entry.label(),
            format!("session {id} (app@127.0.0.1:40312)")
        );
    }

    #[test]
    fn sessions_show_identity_state_and_holds() {
        let reg = Arc::new(Registry::default());
        let (_, a) = reg.register("c");
        let (_, b) = reg.register_mysql("c");
        let (_, other) = reg.register("d");
        // Still logging in: counted, but not listed.
        let (_, _anonymous) = reg.register("c");
        a.entry.introduce_pg(
            "app",
            &[
                ("user".into(), "app".into()),
                ("application_name".into(), "psql".into()),
            ],
            addr(),
        );
        b.entry
            .introduce(Identity::new("viewer", None, None), "mysql");
        other.entry.introduce_pg("app", &[], None);
        assert_eq!(reg.counts("c").parked, 3);

        // Clear of the few microseconds two readings of the clocks may disagree by.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let before = SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        a.entry.set_backend(Some(BackendKey {
            addr: SocketAddr::from(([127, 0, 0, 1], 5432)),
            pid: 1,
            secret: 2,
        }));
        a.entry.set_holds(Holds {
            settings: 2,
            ..Holds::default()
        });
        let list = reg.sessions("c");
        assert_eq!(list.len(), 2, "{list:?}");
        let (sa, sb) = (&list[0], &list[1]);
        assert_eq!((sa.id, sb.id), (a.entry.id, b.entry.id));
        // The database defaults to the user's name, as in postgres.
        assert_eq!(sa.database.as_deref(), Some("app"));
        assert_eq!(sa.client_addr.as_deref(), Some("127.0.0.1:40312"));
        assert_eq!(sa.application_name, "psql");
        assert_eq!(sa.state, Attachment::Attached);
        assert!(sa.since >= before, "attaching restarts `since`");
        assert!(sa.last_activity < before, "nothing was sent yet");
        assert_eq!(sa.holds.settings, 2);
        assert_eq!((sb.user.as_str(), sb.database.as_deref()), ("viewer", None));
        assert_eq!(sb.state, Attachment::Parked);
        assert!(sb.since < before);

        let attached_since = sa.since;
        std::thread::sleep(std::time::Duration::from_millis(5));
        a.entry.client_activity();
        // Another key while attached is not a new state.
        a.entry.set_backend(Some(BackendKey {
            addr: SocketAddr::from(([127, 0, 0, 1], 5432)),
            pid: 3,
            secret: 4,
        }));
        let sa = &reg.sessions("c")[0];
        assert!(sa.last_activity > attached_since);
        // Unchanged, but for the jitter of reading the two clocks again.
        let drift = sa
            .since
            .duration_since(attached_since)
            .unwrap_or_else(|e| e.duration());
        assert!(drift < std::time::Duration::from_millis(2), "{drift:?}");
        a.entry.set_backend(None);
        let sa = &reg.sessions("c")[0];
        assert_eq!(sa.state, Attachment::Parked);
        assert!(sa.since > attached_since);

        let json = serde_json::to_value(&reg.sessions("c")[0]).unwrap();
        assert_eq!(json["state"], "parked");
        assert_eq!(json["holds"]["settings"], 2);
        assert!(json["blocker"].is_null());
        let since = json["since"].as_str().unwrap();
        assert!(since.ends_with('Z') && since.len() == 24, "{since}");
        assert!(humantime::parse_rfc3339(since).is_ok(), "{since}");
    }

    #[test]
    fn a_found_blocker_stands_until_the_client_acts() {
        let reg = Arc::new(Registry::default());
        let (_, r) = reg.register("c");
        r.entry
            .set_found_blocker(Some("session 1 (app@x): WITH HOLD cursor".into()));
        assert_eq!(
            reg.sessions("c").len(),
            0,
            "not listed before it has logged in"
        );
        r.entry.introduce(Identity::new("app", None, None), "");
        assert!(reg.sessions("c")[0].blocker.is_some());
        r.entry.client_activity();
        assert_eq!(reg.sessions("c")[0].blocker, None);
        assert!(reg.blockers("c").is_empty());
    }

    #[test]
    fn holds_of_a_postgres_snapshot() {
        let mut rows = b"PGCOPY\n\xff\r\n\0".to_vec();
        rows.extend_from_slice(&[0; 8]);
        for v in [1i32, 2] {
            rows.extend_from_slice(&1i16.to_be_bytes());
            rows.extend_from_slice(&4i32.to_be_bytes());
            rows.extend_from_slice(&v.to_be_bytes());
        }
        rows.extend_from_slice(&(-1i16).to_be_bytes());
        let snap = pg::PgSnapshot {
            startup_params: vec![("user".into(), "app".into())],
            parameter_status: vec![("TimeZone".into(), "UTC".into())],
            settings: vec![pg::Setting::default(), pg::Setting::default()],
            role: Some("r".into()),
            prepared: vec![pg::PreparedStatement::default(); 3],
            temp_tables: vec![
                pg::TempTable {
                    rows: rows.clone(),
                    ..Default::default()
                },
                pg::TempTable {
                    rows,
                    ..Default::default()
                },
                pg::TempTable::default(),
            ],
            listen: vec!["a".into()],
            advisory_locks: vec![pg::AdvisoryLock::default(); 4],
            ..Default::default()
        };
        assert_eq!(
            Holds::of_pg(&snap),
            Holds {
                settings: 3,
                statements: 3,
                temp_tables: 3,
                temp_rows: 4,
                channels: 1,
                locks: 4,
            }
        );
        assert_eq!(Holds::of_pg(&pg::PgSnapshot::default()), Holds::default());
        let as_login = pg::PgSnapshot {
            session_authorization: Some("app".into()),
            ..snap.clone()
        };
        assert_eq!(Holds::of_pg(&as_login).settings, 3);
        let as_other = pg::PgSnapshot {
            session_authorization: Some("other".into()),
            ..snap
        };
        assert_eq!(Holds::of_pg(&as_other).settings, 4);
    }

    #[test]
    fn holds_of_a_mysql_snapshot() {
        let snap = my::MySnapshot {
            variables: vec![("sql_mode".into(), "''".into()); 2],
            user_vars: vec![my::UserVar::default(); 3],
            schema: Some("db".into()),
            last_insert_id: 7,
            sql_prepared: vec![my::SqlPrepared::default()],
            statements: vec![my::BinaryStatement::default(); 2],
            temp_tables: vec![
                my::TempTable {
                    rows: 10,
                    ..Default::default()
                },
                my::TempTable {
                    rows: 5,
                    ..Default::default()
                },
            ],
            named_locks: vec!["l".into()],
            ..Default::default()
        };
        assert_eq!(
            Holds::of_mysql(&snap),
            Holds {
                settings: 5,
                statements: 3,
                temp_tables: 2,
                temp_rows: 15,
                channels: 0,
                locks: 1,
            }
        );
    }
}
