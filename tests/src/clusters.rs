//! More PostgreSQL clusters in one test's config, beside the one [`TestConfig`] makes: each
//! with its own data dir and backend port, the same users, and `listen` as the test says
//! (the first cluster's address, to share it).

use std::path::PathBuf;

use serde_json::Value;

use crate::harness::{TestConfig, TestEnv, users_toml};
use crate::ports::free_port;

/// A cluster added to a test's config.
pub struct Added {
    pub name: String,
    pub backend_port: u16,
    pub data_dir: PathBuf,
}

/// Appends PostgreSQL cluster `name` to `cfg`: `listen` is its TOML value (a string or a
/// list), `settings` more lines of its `[[cluster]]` table.
pub fn add(cfg: &mut TestConfig, name: &str, listen: &str, settings: &str) -> Added {
    let backend_port = free_port();
    let data_dir = cfg.dir.path().join(format!("{name}-pgdata"));
    cfg.toml.push_str(&format!(
        r#"
[[cluster]]
name = "{name}"
protocol = "postgres"
listen = {listen}
idle_timeout = "1h"
{settings}
[cluster.backend]
driver = "process"
data_dir = "{data}"
port = {backend_port}
settings = {{ fsync = "off" }}
{users}"#,
        data = data_dir.display(),
        users = users_toml(),
    ));
    Added {
        name: name.to_string(),
        backend_port,
        data_dir,
    }
}

impl Added {
    /// Forces this cluster to sleep, which must succeed, and returns its status after.
    pub async fn sleep_ok(&self, env: &TestEnv) -> Value {
        let r = env
            .admin("POST", &format!("/api/clusters/{}/sleep", self.name))
            .await;
        assert_eq!(r.status, 200, "sleep of {} refused: {}", self.name, r.body);
        let status = self.status(env).await;
        assert_eq!(status["state"], "standby", "{status}");
        status
    }

    /// This cluster's object in GET /api/clusters.
    pub async fn status(&self, env: &TestEnv) -> Value {
        let all = env.clusters().await;
        all.as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == self.name.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("cluster {} missing from {all}", self.name))
    }
}

impl Drop for Added {
    fn drop(&mut self) {
        // A failed test never stopped this cluster's postgres: it must not outlive the test.
        let pid = std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            // SAFETY: plain kill(2) on a pid read from this test's own postmaster.pid.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
        }
    }
}
