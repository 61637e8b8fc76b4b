//! Every live client session, for cancel requests, the admin API and shutdown.

mod entry;
mod holds;
mod identity;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

pub use crate::names::NAME_MAX;
pub use entry::{Attachment, BackendKey, SessionEntry, SessionInfo};
pub use holds::Holds;
pub use identity::Identity;

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

    /// Which session a MySQL backend thread id `id` in `cluster` names: one whose current or
    /// an earlier backend connection had it. Thread ids start again at every server start, so
    /// one number can name a session's connection from before a wake and another's now: then
    /// it names the killer itself if the killer is one of them, else nobody, since torpor
    /// can't tell which one the client means and must not reach the wrong one.
    pub fn mysql_backend_owner(
        &self,
        cluster: &str,
        id: u64,
        killer: u64,
    ) -> Option<Arc<SessionEntry>> {
        // MariaDB's thread ids are unsigned; the key keeps them as i32 bit for bit.
        let id = u32::try_from(id).ok()? as i32;
        let map = self.map();
        let owners: Vec<&Arc<SessionEntry>> = map
            .values()
            .filter(|e| e.cluster == cluster)
            .filter(|e| e.backend().is_some_and(|b| b.pid == id) || e.had_backend(id))
            .collect();
        if let Some(me) = owners.iter().find(|e| e.id == killer) {
            return Some(Arc::clone(me));
        }
        match owners.as_slice() {
            [one] => Some(Arc::clone(one)),
            _ => None,
        }
    }

    fn register_with(
        self: &Arc<Self>,
        cluster: &str,
        mut pick: impl FnMut() -> (i32, i32),
    ) -> ((i32, i32), Registration) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let entry = Arc::new(SessionEntry::new(id, cluster));
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

    /// The backend connections `cluster`'s attached sessions hold: PostgreSQL pids, MySQL
    /// thread ids.
    pub fn backend_pids(&self, cluster: &str) -> Vec<i32> {
        self.map()
            .values()
            .filter(|e| e.cluster == cluster)
            .filter_map(|e| e.backend().map(|b| b.pid))
            .collect()
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

    use std::net::SocketAddr;

    use super::identity::label;
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
