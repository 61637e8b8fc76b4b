//! Checks that a secret shows nowhere an operator or an attacker could look: the config file,
//! every file of the snapshot store, torpor's log and the admin API.

use std::path::{Path, PathBuf};

use crate::harness::TestConfig;
use crate::http;

async fn get(cfg: &TestConfig, path: &str) -> Vec<u8> {
    let r = http::request(cfg.admin, "GET", path)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.body.into_bytes()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Panics naming the place where one of `secrets` shows. `log` is what torpor logged.
pub async fn assert_nowhere(cfg: &TestConfig, log: &[String], secrets: &[&str]) {
    let sessions = format!("/api/clusters/{}/sessions", cfg.cluster);
    let mut places: Vec<(String, Vec<u8>)> = vec![
        (
            "the config".into(),
            std::fs::read(&cfg.config_path).unwrap_or_default(),
        ),
        ("/api/clusters".into(), get(cfg, "/api/clusters").await),
        (sessions.clone(), get(cfg, &sessions).await),
        ("/metrics".into(), get(cfg, "/metrics").await),
        ("the log".into(), log.join("\n").into_bytes()),
    ];
    let stored = files(&cfg.state_dir);
    assert!(
        !stored.is_empty(),
        "no snapshot in {}",
        cfg.state_dir.display()
    );
    for p in stored {
        let bytes = std::fs::read(&p).unwrap_or_default();
        places.push((p.display().to_string(), bytes));
    }
    for (place, bytes) in &places {
        for s in secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "a secret shows in {place}"
            );
        }
    }
}
