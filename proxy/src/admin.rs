//! The admin HTTP API: cluster status, forced sleep and wake, Prometheus metrics.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use controller::{ClusterState, SleepError};
use serde::Serialize;

use crate::registry::Registry;
use crate::service::Service;

#[derive(Clone)]
struct Admin {
    services: Arc<Vec<Arc<Service>>>,
    registry: Arc<Registry>,
}

pub fn router(services: Vec<Arc<Service>>, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/api/clusters", get(list))
        .route("/api/clusters/{name}/sleep", post(sleep))
        .route("/api/clusters/{name}/wake", post(wake))
        .route("/metrics", get(metrics))
        .with_state(Admin {
            services: Arc::new(services),
            registry,
        })
}

#[derive(Debug, Serialize)]
pub struct Sessions {
    pub attached: usize,
    pub parked: usize,
}

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub state: ClusterState,
    pub backend_pid: Option<u32>,
    pub sessions: Sessions,
    pub blockers: Vec<String>,
}

impl Admin {
    fn find(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| s.name == name)
    }

    fn status(&self, s: &Service) -> ClusterStatus {
        let counts = self.registry.counts(&s.name);
        let blockers = self.registry.blockers(&s.name);
        ClusterStatus {
            name: s.name.clone(),
            state: s.cluster.state(),
            backend_pid: s.cluster.backend_pid(),
            sessions: Sessions {
                attached: counts.attached,
                parked: counts.parked,
            },
            blockers,
        }
    }
}

async fn list(State(admin): State<Admin>) -> Json<Vec<ClusterStatus>> {
    Json(admin.services.iter().map(|s| admin.status(s)).collect())
}

fn not_found(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": format!("no cluster named {name:?}") })),
    )
        .into_response()
}

async fn sleep(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    let Some(s) = admin.find(&name) else {
        return not_found(&name);
    };
    // In its own task: a client that hangs up must not cancel a drain halfway.
    let cluster = s.cluster.clone();
    let result = tokio::spawn(async move { cluster.sleep().await }).await;
    let result = match result {
        Ok(r) => r,
        Err(e) => return internal(e.to_string()),
    };
    match result {
        Ok(()) => (StatusCode::OK, Json(admin.status(s))).into_response(),
        Err(SleepError::Blocked(blockers)) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "error": "drain refused", "blockers": blockers })),
        )
            .into_response(),
        Err(e) => internal(e.to_string()),
    }
}

fn internal(error: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "error": error })),
    )
        .into_response()
}

async fn wake(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    let Some(s) = admin.find(&name) else {
        return not_found(&name);
    };
    let cluster = s.cluster.clone();
    match tokio::spawn(async move { cluster.wake(None).await }).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(admin.status(s))).into_response(),
        Ok(Err(e)) => internal(e.to_string()),
        Err(e) => internal(e.to_string()),
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let mut out = String::new();
    let families: [(&str, &str, &str); 11] = [
        (
            "torpor_cluster_up",
            "gauge",
            "1 when the backend is running",
        ),
        (
            "torpor_cluster_state",
            "gauge",
            "1 for the cluster's current lifecycle state",
        ),
        ("torpor_sessions", "gauge", "client sessions by attachment"),
        (
            "torpor_busy_sessions",
            "gauge",
            "sessions with a query, transaction or COPY in progress",
        ),
        (
            "torpor_drain_blockers",
            "gauge",
            "reasons a drain would be refused now",
        ),
        ("torpor_wakes_total", "counter", "backend starts"),
        (
            "torpor_wake_failures_total",
            "counter",
            "backend starts that failed",
        ),
        (
            "torpor_drains_total",
            "counter",
            "completed scale-to-zero drains",
        ),
        (
            "torpor_drains_refused_total",
            "counter",
            "drains refused because of blockers",
        ),
        (
            "torpor_drains_aborted_total",
            "counter",
            "drains called off by client activity",
        ),
        (
            "torpor_idle_timeout_seconds",
            "gauge",
            "configured idle timeout",
        ),
    ];
    for (name, kind, help) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in admin.services.iter() {
            let c = &s.name;
            let st = admin.status(s);
            let stats = &s.cluster.stats;
            match name {
                "torpor_cluster_up" => {
                    let up = u8::from(st.state == ClusterState::Running);
                    let _ = writeln!(out, "{name}{{cluster=\"{c}\"}} {up}");
                }
                "torpor_cluster_state" => {
                    for state in ["standby", "waking", "running", "draining", "stopping"] {
                        let v = u8::from(st.state.as_str() == state);
                        let _ = writeln!(out, "{name}{{cluster=\"{c}\",state=\"{state}\"}} {v}");
                    }
                }
                "torpor_sessions" => {
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\",attachment=\"attached\"}} {}",
                        st.sessions.attached
                    );
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\",attachment=\"parked\"}} {}",
                        st.sessions.parked
                    );
                }
                "torpor_busy_sessions" => {
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\"}} {}",
                        s.cluster.busy_sessions()
                    );
                }
                "torpor_drain_blockers" => {
                    let _ = writeln!(out, "{name}{{cluster=\"{c}\"}} {}", st.blockers.len());
                }
                "torpor_wakes_total" => {
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\"}} {}",
                        stats.wakes.load(Ordering::Relaxed)
                    );
                }
                "torpor_wake_failures_total" => {
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\"}} {}",
                        stats.wake_failures.load(Ordering::Relaxed)
                    );
                }
                "torpor_drains_total" => {
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\"}} {}",
                        stats.drains.load(Ordering::Relaxed)
                    );
                }
                "torpor_drains_refused_total" => {
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\"}} {}",
                        stats.drains_refused.load(Ordering::Relaxed)
                    );
                }
                "torpor_drains_aborted_total" => {
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\"}} {}",
                        stats.drains_aborted.load(Ordering::Relaxed)
                    );
                }
                _ => {
                    let _ = writeln!(
                        out,
                        "{name}{{cluster=\"{c}\"}} {}",
                        s.cluster.idle_timeout().as_secs_f64()
                    );
                }
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
