//! The admin HTTP API: cluster status, each cluster's sessions, forced sleep and wake,
//! Prometheus metrics.

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

use crate::config::Protocol;
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
        .route("/api/clusters/{name}/sessions", get(sessions))
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
    pub protocol: Protocol,
    pub state: ClusterState,
    pub backend_pid: Option<u32>,
    pub sessions: Sessions,
    pub blockers: Vec<String>,
}

impl Admin {
    fn find(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.iter().find(|s| s.name == name)
    }

    async fn status(&self, s: &Service) -> ClusterStatus {
        // Only a driver that runs the server here has a pid; it puts it in its details.
        let backend = s.cluster.backend_status().await;
        let backend_pid = backend.details["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok());
        let counts = self.registry.counts(&s.name);
        let blockers = self.registry.blockers(&s.name);
        ClusterStatus {
            name: s.name.clone(),
            protocol: s.protocol,
            state: s.cluster.state(),
            backend_pid,
            sessions: Sessions {
                attached: counts.attached,
                parked: counts.parked,
            },
            blockers,
        }
    }

    /// Every cluster's status, in config order.
    async fn statuses(&self) -> Vec<(&Service, ClusterStatus)> {
        let mut out = Vec::with_capacity(self.services.len());
        for s in self.services.iter() {
            out.push((s.as_ref(), self.status(s).await));
        }
        out
    }
}

async fn list(State(admin): State<Admin>) -> Json<Vec<ClusterStatus>> {
    Json(
        admin
            .statuses()
            .await
            .into_iter()
            .map(|(_, st)| st)
            .collect(),
    )
}

async fn sessions(State(admin): State<Admin>, Path(name): Path<String>) -> Response {
    match admin.find(&name) {
        Some(s) => Json(admin.registry.sessions(&s.name)).into_response(),
        None => not_found(&name),
    }
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
        Ok(()) => (StatusCode::OK, Json(admin.status(s).await)).into_response(),
        Err(SleepError::Blocked(blockers)) => {
            // The sessions' own reasons say more than the lifecycle's count of busy ones.
            let live = admin.registry.blockers(&name);
            let blockers = if live.is_empty() { blockers } else { live };
            (
                StatusCode::CONFLICT,
                Json(serde_json::json!({ "error": "drain refused", "blockers": blockers })),
            )
                .into_response()
        }
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
        Ok(Ok(_)) => (StatusCode::OK, Json(admin.status(s).await)).into_response(),
        Ok(Err(e)) => internal(e.to_string()),
        Err(e) => internal(e.to_string()),
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let statuses = admin.statuses().await;
    let mut out = String::new();
    let mut family =
        |name: &str, kind: &str, help: &str, series: &mut dyn Iterator<Item = (String, f64)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in series {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        };
    let per_cluster = |f: &dyn Fn(&Service, &ClusterStatus) -> f64| {
        statuses
            .iter()
            .map(|(s, st)| (format!("cluster=\"{}\"", s.name), f(s, st)))
            .collect::<Vec<_>>()
            .into_iter()
    };
    let counter = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;

    family(
        "torpor_cluster_up",
        "gauge",
        "1 when the backend is running",
        &mut per_cluster(&|_, st| f64::from(u8::from(st.state == ClusterState::Running))),
    );
    family(
        "torpor_cluster_state",
        "gauge",
        "1 for the cluster's current lifecycle state",
        &mut statuses.iter().flat_map(|(s, st)| {
            ["standby", "waking", "running", "draining", "stopping"].map(|state| {
                (
                    format!("cluster=\"{}\",state=\"{state}\"", s.name),
                    f64::from(u8::from(st.state.as_str() == state)),
                )
            })
        }),
    );
    family(
        "torpor_sessions",
        "gauge",
        "client sessions by attachment",
        &mut statuses.iter().flat_map(|(s, st)| {
            [
                ("attached", st.sessions.attached),
                ("parked", st.sessions.parked),
            ]
            .map(|(a, n)| {
                (
                    format!("cluster=\"{}\",attachment=\"{a}\"", s.name),
                    n as f64,
                )
            })
        }),
    );
    family(
        "torpor_busy_sessions",
        "gauge",
        "sessions with a query, transaction or COPY in progress",
        &mut per_cluster(&|s, _| s.cluster.busy_sessions() as f64),
    );
    family(
        "torpor_drain_blockers",
        "gauge",
        "reasons a drain would be refused now",
        &mut per_cluster(&|_, st| st.blockers.len() as f64),
    );
    family(
        "torpor_drain_blocker_info",
        "gauge",
        "1 for each reason a drain would be refused now, naming the session (user, client address, application_name)",
        &mut statuses.iter().flat_map(|(s, st)| {
            st.blockers.iter().map(|b| {
                (
                    format!("cluster=\"{}\",blocker=\"{}\"", s.name, label_value(b)),
                    1.0,
                )
            })
        }),
    );
    family(
        "torpor_wakes_total",
        "counter",
        "backend starts",
        &mut per_cluster(&|s, _| counter(&s.cluster.stats.wakes)),
    );
    family(
        "torpor_wake_failures_total",
        "counter",
        "backend starts that failed",
        &mut per_cluster(&|s, _| counter(&s.cluster.stats.wake_failures)),
    );
    family(
        "torpor_drains_total",
        "counter",
        "completed scale-to-zero drains",
        &mut per_cluster(&|s, _| counter(&s.cluster.stats.drains)),
    );
    family(
        "torpor_drains_refused_total",
        "counter",
        "drains refused because of blockers",
        &mut per_cluster(&|s, _| counter(&s.cluster.stats.drains_refused)),
    );
    family(
        "torpor_drains_aborted_total",
        "counter",
        "drains called off by client activity",
        &mut per_cluster(&|s, _| counter(&s.cluster.stats.drains_aborted)),
    );
    family(
        "torpor_local_answers_total",
        "counter",
        "requests torpor answered without the server (probes, SETs)",
        &mut per_cluster(&|s, _| counter(&s.local_answers)),
    );
    family(
        "torpor_pg_catalog_settings",
        "gauge",
        "settings in the catalog learned from the server (0: not learned yet)",
        &mut per_cluster(&|s, _| s.pg_catalog().map_or(0.0, |c| c.settings.len() as f64)),
    );
    family(
        "torpor_mysql_catalog_variables",
        "gauge",
        "MySQL variables in the catalog learned from the server (0: not learned yet)",
        &mut per_cluster(&|s, _| s.my_catalog().map_or(0.0, |c| c.variables.len() as f64)),
    );
    family(
        "torpor_idle_timeout_seconds",
        "gauge",
        "configured idle timeout",
        &mut per_cluster(&|s, _| s.cluster.idle_timeout().as_secs_f64()),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}
