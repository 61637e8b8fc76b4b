//! Whether the database is at work on its own, asked of the server before every drain and
//! freeze (`busy_query`): a `pg_cron` job, an export connected straight to the backend port, a
//! logical replication slot being read. Work no session of torpor's knows about.
//!
//! torpor asks on a short-lived connection of its own (like the catalog learners: the first
//! configured user, borrowed keys for a `password_hash` one, the backend's TLS), outside the
//! session machinery, so it never counts as client activity. It takes the one backend slot the
//! sessions' cap leaves for torpor's own connections.
//!
//! - `verdict`: what an answer (or a failure) says against a drain, in the blocker's words;
//! - `own`: torpor's own connections the default query leaves out;
//! - `crate::pg::busy`, `crate::mysql::busy`: the default queries and the asking itself.

mod own;
mod verdict;

use std::future::Future;
use std::pin::Pin;
use std::sync::Weak;
use std::time::Duration;

use controller::{BackendInfo, DrainCheck};

use crate::cluster_front::ClusterFront;
use crate::config::{BusyQuery, Protocol};
use crate::session::Error;

pub(crate) use own::OwnBackends;

/// How long a check may take, the login included: past it the drain is refused.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// How many rows of an answer are kept: enough to name a few connections at work.
pub(crate) const KEEP: usize = 20;

/// The first rows of an answer (each value clipped), and how many rows there were.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub rows: Vec<Vec<Option<String>>>,
    pub total: usize,
}

impl Answer {
    /// Keeps `row` if there is room; counts it either way.
    pub(crate) fn push<'a>(&mut self, row: impl IntoIterator<Item = Option<&'a [u8]>>) {
        self.total += 1;
        if self.rows.len() < KEEP {
            self.rows.push(
                row.into_iter()
                    .map(|v| v.map(|b| crate::names::clip(&String::from_utf8_lossy(b)).to_string()))
                    .collect(),
            );
        }
    }
}

/// The drain check of one cluster: runs its `busy_query`.
pub struct BusyCheck {
    /// Weak: the cluster holds this check, and the front holds the cluster.
    front: Weak<ClusterFront>,
}

impl BusyCheck {
    pub fn new(front: Weak<ClusterFront>) -> BusyCheck {
        BusyCheck { front }
    }

    async fn run(&self) -> Option<String> {
        let front = self.front.upgrade()?;
        let query = &front.busy_query;
        if *query == BusyQuery::Off {
            return None;
        }
        // Not running: there is nothing to check.
        let at = front.cluster.running_backend()?;
        if !can_log_in(&front) {
            // Refusing would keep the server up until a client of that user came back, maybe
            // never: the drain goes on, as without a busy_query.
            tracing::info!(cluster = %front.name, "busy_query not asked: the first user has only a password_hash and no session of it lends torpor its key");
            return None;
        }
        let asked = tokio::time::timeout(TIMEOUT, ask(&front, &at, query)).await;
        let failure = match asked {
            Ok(Ok(answer)) => {
                return verdict::judge(query, front.protocol, answer, &torpor_backends(&front));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} s", TIMEOUT.as_secs()),
        };
        // A server that stopped meanwhile holds no work of its own.
        if !front.cluster.backend_status().await.is_running() {
            return None;
        }
        Some(verdict::failed(query, &failure))
    }
}

impl DrainCheck for BusyCheck {
    fn check(&self) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(self.run())
    }
}

async fn ask(front: &ClusterFront, at: &BackendInfo, query: &BusyQuery) -> Result<Answer, Error> {
    let sql = match (query, front.protocol) {
        (BusyQuery::Off, _) => return Ok(Answer::default()),
        (BusyQuery::Custom(sql), _) => sql.clone(),
        (BusyQuery::Default, Protocol::Postgres) => {
            crate::pg::busy::default_query(&torpor_backends(front))
        }
        (BusyQuery::Default, Protocol::Mysql) => {
            crate::mysql::busy::default_query(&torpor_backends(front))
        }
    };
    match front.protocol {
        Protocol::Postgres => crate::pg::busy::ask(front, at, &sql).await,
        Protocol::Mysql => crate::mysql::busy::ask(front, at, &sql).await,
    }
}

/// Whether torpor can log in as the first user now: with its password, or the key a live
/// session of it lends when it has only a `password_hash`.
fn can_log_in(front: &ClusterFront) -> bool {
    let Some(user) = &front.first_user else {
        return false;
    };
    user.password.is_some()
        || match front.protocol {
            Protocol::Postgres => front.pg_keys.borrow().is_some(),
            Protocol::Mysql => front.my_keys.borrow().is_some(),
        }
}

/// The backend connections that belong to torpor: every session's (a PostgreSQL pid, a MySQL
/// thread id) and torpor's own. The default query leaves them out.
fn torpor_backends(front: &ClusterFront) -> Vec<i32> {
    let mut ids = front.registry.backend_pids(&front.name);
    ids.extend(front.own_backends.ids());
    ids.sort_unstable();
    ids.dedup();
    ids
}
