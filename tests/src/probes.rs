//! Pooled connections that health-check every 100 ms while a test watches the database sleep:
//! idle means idle, so their probes must neither keep it up nor call a drain off.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::{TestEnv, assert_pid_gone};

#[derive(Default)]
pub struct Probers {
    stop: CancellationToken,
    running: Vec<JoinHandle<u32>>,
}

impl Probers {
    /// Starts probing on `client` until [`Probers::stop`]: `probe` sends one probe, checks the
    /// answer and hands the client back for the next.
    pub fn spawn<C, F, Fut>(&mut self, mut client: C, mut probe: F)
    where
        C: Send + 'static,
        F: FnMut(C) -> Fut + Send + 'static,
        Fut: Future<Output = C> + Send,
    {
        let stop = self.stop.clone();
        self.running.push(tokio::spawn(async move {
            let mut answered = 0u32;
            while !stop.is_cancelled() {
                client = probe(client).await;
                answered += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answered
        }));
    }

    /// With the probers running: the database, running as `pid`, goes to standby; then three
    /// times, `wake` (a real query) wakes it and it goes to standby again. No drain is called
    /// off meanwhile, and every prober was answered.
    pub async fn check_idle(self, env: &TestEnv, pid: u32, mut wake: impl AsyncFnMut()) {
        env.wait_for_standby("standby while probes run").await;
        assert_pid_gone(pid);
        for _ in 0..3 {
            wake().await;
            env.wait_for_standby("standby again").await;
        }
        self.stop.cancel();
        for p in self.running {
            assert!(p.await.unwrap() > 0);
        }
        assert_eq!(env.metric("torpor_drains_aborted_total").await, 0.0);
    }
}
