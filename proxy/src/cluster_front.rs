//! What the sessions of one cluster share: the lifecycle, the store, the users and what the
//! backend last told clients at startup.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use controller::Cluster;
use protocols::auth::mysql::{MyKeys, MyStored};
use protocols::auth::scram::{ScramKeys, ScramSecret};
use state_store::Store;

use crate::config::{ClusterConfig, Protocol, Secret, UserConfig};
use crate::metrics::ClusterMetrics;
use crate::registry::Registry;
use crate::throttle::Logins;

/// Name/value pairs: startup parameters or ParameterStatus values.
pub type Params = Vec<(String, String)>;

pub struct User {
    pub name: String,
    /// `None` when the config gives only a `password_hash`: torpor then logs in to the server
    /// with the key each client's own proof reveals.
    pub password: Option<String>,
    pub scram: ScramSecret,
    /// What MySQL logins are checked against (from the password, or `password_hash`).
    pub my: MyStored,
    /// Configured as a superuser: may KILL any session, as CONNECTION ADMIN allows.
    pub superuser: bool,
    /// The backend's SCRAM salt and iteration count for this user with the SaltedPassword
    /// derived from them: a mass wake would otherwise run PBKDF2 once per session.
    salted: Mutex<Option<Salted>>,
}

/// (salt, iterations, SaltedPassword)
type Salted = (Vec<u8>, u32, [u8; 32]);

impl User {
    pub fn new(name: &str, password: &str) -> User {
        User::with_secret(name, &Secret::Password(password.to_string()))
    }

    pub fn with_secret(name: &str, secret: &Secret) -> User {
        let (password, scram, my) = match secret {
            Secret::Password(p) => (
                Some(p.clone()),
                ScramSecret::random_for(p),
                MyStored::from_password(p.as_bytes()),
            ),
            // A hash serves one protocol; the other's secret can never match.
            Secret::Hash(verifier) => (
                None,
                verifier.clone(),
                MyStored::from_password(&rand::random::<[u8; 32]>()),
            ),
            Secret::MyHash(stored) => (None, ScramSecret::unknown_user_named(name), stored.clone()),
        };
        User {
            name: name.to_string(),
            password,
            scram,
            my,
            superuser: false,
            salted: Mutex::new(None),
        }
    }

    /// The password torpor knows, or "" for a user with only a `password_hash` (whose logins
    /// to the server use keys, never this).
    pub fn password_or_empty(&self) -> &str {
        self.password.as_deref().unwrap_or_default()
    }

    /// SaltedPassword for this user's password with the backend's salt and iterations.
    pub fn salted_password(&self, salt: &[u8], iterations: u32) -> [u8; 32] {
        let mut cached = self.salted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, i, key)) = cached.as_ref()
            && s == salt
            && *i == iterations
        {
            return *key;
        }
        let key = protocols::auth::scram::salted_password(
            self.password_or_empty().as_bytes(),
            salt,
            iterations,
        );
        *cached = Some((salt.to_vec(), iterations, key));
        key
    }
}

/// Keys a session lends torpor's own connections: they live only as long as the session does.
pub(crate) struct Lent<T>(Mutex<Option<Weak<T>>>);

impl<T> Default for Lent<T> {
    fn default() -> Self {
        Lent(Mutex::new(None))
    }
}

impl<T> Lent<T> {
    pub(crate) fn lend(&self, keys: &Arc<T>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(keys));
    }

    pub(crate) fn borrow(&self) -> Option<Arc<T>> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref().and_then(Weak::upgrade)
    }
}

/// torpor's side of one cluster, which its listener and every session on it share: the lifecycle,
/// the store, the registry, the users, what the backend last said (startup status, greeting,
/// catalogs) and the probes torpor answers.
pub struct ClusterFront {
    pub name: String,
    pub protocol: Protocol,
    pub cluster: Arc<Cluster>,
    pub store: Store,
    /// How long a wake may take before the client's request fails and the session stays
    /// parked (`[proxy] wake_timeout`).
    pub wake_timeout: std::time::Duration,
    pub registry: Arc<Registry>,
    users: HashMap<String, Arc<User>>,
    /// ParameterStatus sets the backend sent at startup, keyed by the startup parameters that
    /// produced them, so a client can connect during standby without waking the backend.
    startup_status: Mutex<HashMap<Params, Arc<Params>>>,
    /// What the MySQL backend said in its last handshake, so clients can be greeted while it
    /// sleeps.
    greeting: Mutex<Option<Greeting>>,
    /// The PostgreSQL server's settings catalog and version, from the last time it ran.
    pg_catalog: Mutex<Option<Arc<protocols::pg::local::Catalog>>>,
    /// Client messages held whole in memory, over every cluster (`[proxy] max_buffered_bytes`).
    pub(crate) budget: Arc<crate::net::budget::Budget>,
    /// The MySQL server's variables, character sets and collations, from the last time it ran.
    my_catalog: Mutex<Option<Arc<protocols::mysql::local::Catalog>>>,
    /// The first configured user: torpor's own connections (learning the catalog) log in as it.
    pub first_user: Option<Arc<User>>,
    /// The keys of a live session of `first_user` when it has only a `password_hash`: torpor's
    /// own connections borrow them. Never outlive that session.
    pub(crate) pg_keys: Lent<ScramKeys>,
    pub(crate) my_keys: Lent<MyKeys>,
    /// Requests torpor answered itself, without the server.
    pub local_answers: AtomicU64,
    pub metrics: ClusterMetrics,
    /// The health checks torpor answers for a PostgreSQL cluster.
    pub pg_probes: protocols::pg::local::ProbeSet,
    /// The same for a MySQL cluster.
    pub my_probes: protocols::mysql::local::ProbeSet,
    /// How long a client may take to log in (`[proxy] handshake_timeout`).
    pub handshake_timeout: Duration,
    /// Failed logins per client address, shared by every cluster.
    pub logins: Arc<Logins>,
    /// The certificate this cluster shows clients; `None`: plaintext only.
    pub(crate) tls: Option<Arc<crate::tls::Tls>>,
    /// Clients that don't start TLS are refused.
    pub require_tls: bool,
    /// TLS towards the server (`[cluster.backend] tls`); `None`: plaintext.
    pub(crate) backend_tls: Option<Arc<crate::tls::Client>>,
    /// The backend connections the sessions share.
    pub room: Arc<crate::room::Room>,
    /// What is asked of the server before a drain or a freeze (`crate::busy`).
    pub busy_query: crate::config::BusyQuery,
    /// torpor's own backend connections besides the busy check's (the catalog learners').
    pub(crate) own_backends: crate::busy::OwnBackends,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub version: String,
    pub charset: u8,
    pub capabilities: u32,
}

impl ClusterFront {
    pub fn new(
        cfg: &ClusterConfig,
        cluster: Arc<Cluster>,
        store: Store,
        registry: Arc<Registry>,
    ) -> Self {
        let users: HashMap<String, Arc<User>> = cfg
            .users
            .iter()
            .filter_map(|u: &UserConfig| {
                // Checked when the config was loaded; a password file may have gone since.
                let secret = match u.secret(cfg.protocol, &u.name) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(cluster = %cfg.name, error = %e, "user left out");
                        return None;
                    }
                };
                let user = User {
                    superuser: u.superuser,
                    ..User::with_secret(&u.name, &secret)
                };
                Some((u.name.clone(), Arc::new(user)))
            })
            .collect();
        let first_user = cfg.users.first().and_then(|u| users.get(&u.name).cloned());
        ClusterFront {
            budget: crate::net::budget::Budget::new(crate::net::budget::DEFAULT_MAX_BUFFERED),
            name: cfg.name.clone(),
            protocol: cfg.protocol,
            cluster,
            store,
            registry,
            users,
            startup_status: Mutex::new(HashMap::new()),
            greeting: Mutex::new(None),
            wake_timeout: std::time::Duration::from_secs(30),
            pg_catalog: Mutex::new(None),
            my_catalog: Mutex::new(None),
            first_user,
            pg_keys: Lent::default(),
            my_keys: Lent::default(),
            local_answers: AtomicU64::new(0),
            metrics: ClusterMetrics::default(),
            // Checked when the config was validated.
            pg_probes: protocols::pg::local::ProbeSet::parse(&cfg.probes()).unwrap_or_default(),
            my_probes: protocols::mysql::local::ProbeSet::parse(&cfg.probes()).unwrap_or_default(),
            handshake_timeout: Duration::from_secs(30),
            logins: Arc::default(),
            tls: None,
            require_tls: cfg.require_tls,
            backend_tls: None,
            room: crate::room::Room::new(cfg.max_backend_connections, cfg.park_idle_after),
            busy_query: cfg.busy_query(),
            own_backends: crate::busy::OwnBackends::default(),
        }
    }

    /// How this cluster's sessions reach the server.
    pub(crate) fn with_backend_tls(mut self, tls: Option<Arc<crate::tls::Client>>) -> Self {
        self.backend_tls = tls;
        self
    }

    /// The certificate this cluster shows its clients.
    pub(crate) fn with_tls(mut self, tls: Option<Arc<crate::tls::Tls>>) -> Self {
        self.tls = tls;
        self
    }

    /// The login rules every cluster shares: the handshake timeout and the failed logins.
    pub fn with_logins(mut self, handshake_timeout: Duration, logins: Arc<Logins>) -> Self {
        self.handshake_timeout = handshake_timeout;
        self.logins = logins;
        self
    }

    /// Where this cluster's sessions record their latencies and sizes; nowhere by default.
    pub fn with_metrics(mut self, metrics: ClusterMetrics) -> Self {
        self.room = self.room.with_wait_histogram(metrics.room_wait.clone());
        self.metrics = metrics;
        self
    }

    /// Whether `user` is the one torpor's own connections log in as.
    pub(crate) fn is_first_user(&self, user: &Arc<User>) -> bool {
        self.first_user
            .as_ref()
            .is_some_and(|f| Arc::ptr_eq(f, user))
    }

    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.get(name).cloned()
    }

    /// How long a wake may take: `[proxy] wake_timeout`.
    pub fn with_wake_timeout(mut self, wake_timeout: std::time::Duration) -> Self {
        self.wake_timeout = wake_timeout;
        self
    }

    /// Shared: every session greeted from it holds it until something it was told changes.
    pub fn cached_status(&self, startup: &[(String, String)]) -> Option<Arc<Params>> {
        self.startup_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(startup)
            .cloned()
    }

    pub fn remember_status(&self, startup: &[(String, String)], status: &[(String, String)]) {
        self.startup_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(startup.to_vec(), Arc::new(status.to_vec()));
    }

    /// The budget every cluster's sessions share for client messages held whole.
    pub(crate) fn with_budget(mut self, budget: Arc<crate::net::budget::Budget>) -> Self {
        self.budget = budget;
        self
    }
}

impl ClusterFront {
    pub fn greeting(&self) -> Option<Greeting> {
        self.greeting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn remember_greeting(&self, g: Greeting) {
        *self.greeting.lock().unwrap_or_else(|p| p.into_inner()) = Some(g);
    }

    pub fn pg_catalog(&self) -> Option<Arc<protocols::pg::local::Catalog>> {
        self.pg_catalog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn remember_pg_catalog(&self, c: protocols::pg::local::Catalog) {
        *self.pg_catalog.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(c));
    }

    pub fn my_catalog(&self) -> Option<Arc<protocols::mysql::local::Catalog>> {
        self.my_catalog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn remember_my_catalog(&self, c: protocols::mysql::local::Catalog) {
        *self.my_catalog.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(c));
    }
}
