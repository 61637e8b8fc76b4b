//! Putting the cluster to sleep and checking how it went: a sleep that must be refused and why,
//! the idle timer's stop, a session that must come back on a new server, and a stretch of time
//! through which the database must stay asleep while a client works.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{SLOW, TestEnv, assert_pid_gone};

impl TestEnv {
    /// The pid of the server, which must be running.
    pub async fn running_pid(&self) -> u32 {
        self.backend_pid().await.expect("a running backend")
    }

    /// An admin wake (POST …/wake) that must succeed.
    pub async fn wake_ok(&self) {
        let (status, body) = self.wake().await;
        assert_eq!(status, 200, "{body}");
    }

    /// A forced sleep that must be refused (409); the response body, which names the blockers.
    pub async fn sleep_refused(&self) -> Value {
        let (status, body) = self.sleep().await;
        assert_eq!(status, 409, "{body}");
        body
    }

    /// A forced sleep refused because of `reason`: the 409 names it, so do /api/clusters and the
    /// metrics, and the server `pid` still runs.
    pub async fn expect_refused(&self, reason: &str, pid: u32) {
        let refused0 = self.metric("torpor_drains_refused_total").await;
        let body = self.sleep_refused().await;
        assert!(
            body["blockers"].to_string().contains(reason),
            "expected {reason:?} in {body}"
        );
        let c = self.cluster_status().await;
        assert_eq!(c["state"], "running", "{c}");
        assert!(c["blockers"].to_string().contains(reason), "{c}");
        assert_eq!(
            self.backend_pid().await,
            Some(pid),
            "backend restarted under a blocker"
        );
        assert_eq!(
            self.metric("torpor_drains_refused_total").await - refused0,
            1.0
        );
        assert!(self.metric("torpor_drain_blockers").await >= 1.0);
    }

    /// Once the blocker is gone it is no longer listed, and a forced sleep succeeds.
    pub async fn expect_unblocked(&self) {
        let c = self.cluster_status().await;
        assert_eq!(c["blockers"], serde_json::json!([]), "stale blocker: {c}");
        self.sleep_ok().await;
    }

    /// Sleeps a running cluster ([`TestEnv::sleep_ok`] checks its server is gone); the pid the
    /// server had.
    pub async fn sleep_from_running(&self) -> u32 {
        let pid = self.running_pid().await;
        self.sleep_ok().await;
        pid
    }

    /// Sleeps a running cluster, then runs `wake`: the query that wakes it, and what it checks
    /// of the state the session got back. The session must be on a new server then.
    pub async fn across_a_sleep(&self, wake: impl AsyncFnOnce()) {
        let old = self.sleep_from_running().await;
        wake().await;
        let now = self.backend_pid().await.expect("woken");
        assert_ne!(now, old, "the session should be on a new server");
    }

    /// Waits for standby, whatever brings it.
    pub async fn wait_for_standby(&self, what: &str) {
        self.wait_for(SLOW, what, |c| c["state"] == "standby").await;
    }

    /// The idle timer stops the server `pid`: standby with no backend, and the process gone.
    pub async fn wait_for_idle_stop(&self, pid: u32) {
        self.wait_for(SLOW, "standby by the idle timer", |c| {
            c["state"] == "standby" && c["backend_pid"].is_null()
        })
        .await;
        assert_pid_gone(pid);
    }
}

/// What a stretch of time the database must sleep through starts from.
pub struct Asleep {
    /// The server process that ran before the sleep.
    pub pid: u32,
    pub wakes: f64,
    pub answers: f64,
}

impl Asleep {
    /// Puts the database to sleep once the catalog is known, so torpor can answer the client's
    /// SETs itself.
    pub async fn start(env: &TestEnv) -> Asleep {
        env.wait_for_catalog().await;
        let pid = env.sleep_from_running().await;
        Asleep {
            pid,
            wakes: env.metric("torpor_wakes_total").await,
            answers: env.metric("torpor_local_answers_total").await,
        }
    }

    /// Runs `work` while checking every 50 ms that the database stays asleep: standby, no
    /// backend pid, the old server process gone. Returns what `work` returned and the first
    /// cluster status that broke this, if any, for [`Asleep::check`].
    pub async fn watch<T>(
        &self,
        env: &TestEnv,
        work: impl Future<Output = T>,
    ) -> (T, Option<Value>) {
        tokio::pin!(work);
        let mut woke = None;
        loop {
            tokio::select! {
                out = &mut work => return (out, woke),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    let c = env.cluster_status().await;
                    let proc_exists = Path::new(&format!("/proc/{}", self.pid)).exists();
                    if woke.is_none()
                        && (c["state"] != "standby" || !c["backend_pid"].is_null() || proc_exists)
                    {
                        woke = Some(c);
                    }
                }
            }
        }
    }

    /// After [`Asleep::watch`]: no server ran meanwhile, and torpor did answer the client.
    /// `output` is what the client printed, for the failure message.
    pub async fn check(&self, env: &TestEnv, woke: Option<Value>, output: &str) {
        assert!(
            woke.is_none(),
            "the database woke while the client only connected and pinged: {}\n{output}",
            woke.unwrap_or_default()
        );
        let c = env.cluster_status().await;
        assert_eq!(c["state"], "standby", "{c}\n{output}");
        assert!(c["backend_pid"].is_null(), "{c}\n{output}");
        assert_pid_gone(self.pid);
        assert_eq!(
            env.metric("torpor_wakes_total").await,
            self.wakes,
            "{output}"
        );
        assert!(
            env.metric("torpor_local_answers_total").await > self.answers,
            "torpor answered nothing itself\n{output}"
        );
    }
}

/// Sleep/wake cycles, and what they must leave behind: each ran on a server of its own, with
/// one drain and one wake apiece.
pub struct Cycles {
    wakes: f64,
    drains: f64,
    pids: Vec<u32>,
}

impl Cycles {
    pub async fn start(env: &TestEnv) -> Cycles {
        Cycles {
            wakes: env.metric("torpor_wakes_total").await,
            drains: env.metric("torpor_drains_total").await,
            pids: Vec::new(),
        }
    }

    /// Ends a cycle: notes the server that ran it and puts it to sleep.
    pub async fn sleep(&mut self, env: &TestEnv) {
        self.pids.push(env.sleep_from_running().await);
    }

    /// `n` cycles ran, each on its own server; `wakes` the wakes since [`Cycles::start`] (the
    /// first cycle runs on the server that was already up, a query after the last wakes one).
    pub async fn check(&self, env: &TestEnv, n: usize, wakes: f64) {
        let mut distinct = self.pids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), n, "{:?}", self.pids);
        assert_eq!(
            env.metric("torpor_drains_total").await - self.drains,
            n as f64
        );
        assert_eq!(env.metric("torpor_wakes_total").await - self.wakes, wakes);
    }
}
