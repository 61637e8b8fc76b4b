//! The admin HTTP API: cluster status, each cluster's sessions, forced sleep and wake,
//! Prometheus metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use controller::{ClusterState, SleepError, WakeCause};
use serde::Serialize;

use crate::cluster_front::ClusterFront;
use crate::config::Protocol;
use crate::metrics::{Metrics, Scrape, label};
use crate::registry::Registry;

mod token;

#[derive(Clone)]
struct Admin {
    fronts: Arc<Vec<Arc<ClusterFront>>>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
}

/// The API's routes; with a `token`, every one of them asks for it.
pub fn router(
    fronts: Vec<Arc<ClusterFront>>,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    token: Option<String>,
) -> Router {
    let router = Router::new()
        .route("/api/clusters", get(list))
        .route("/api/clusters/{name}/sessions", get(sessions))
        .route("/api/clusters/{name}/sleep", post(sleep))
        .route("/api/clusters/{name}/wake", post(wake))
        .route("/metrics", get(render_metrics))
        .with_state(Admin {
            fronts: Arc::new(fronts),
            registry,
            metrics,
        });
    match token {
        Some(t) => router.layer(axum::middleware::from_fn_with_state(
            Arc::new(t),
            token::require,
        )),
        None => router,
    }
}

#[derive(Debug, Serialize)]
pub struct Sessions {
    pub attached: usize,
    pub parked: usize,
    /// Of the parked ones, those that gave their backend connection to another session.
    pub parked_for_room: usize,
    /// Waiting for a backend connection to come free.
    pub waiting: usize,
}

#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub name: String,
    pub protocol: Protocol,
    pub state: ClusterState,
    pub backend_pid: Option<u32>,
    /// What the driver shows of its backend (the process driver: pid, files, cgroup and
    /// whether it is frozen).
    pub backend: serde_json::Value,
    pub sessions: Sessions,
    /// How many backend connections the sessions may hold; `None` until learned.
    pub max_backend_connections: Option<usize>,
    /// Whether torpor wants the database up now: see `torpor_cluster_active`.
    pub active: bool,
    /// Why a drain would be refused now: the sessions' reasons, then what else keeps the
    /// cluster up (`idle_metric`, `wake_metric`, `wake_at`).
    pub blockers: Vec<String>,
    /// Why the backend last ended on its own or failed to start.
    pub last_error: Option<String>,
}

impl Admin {
    fn find(&self, name: &str) -> Option<&Arc<ClusterFront>> {
        self.fronts.iter().find(|s| s.name == name)
    }

    async fn status(&self, s: &ClusterFront) -> ClusterStatus {
        // Only a driver that runs the server here has a pid; it puts it in its details.
        let backend = s.cluster.backend_status().await;
        let backend_pid = backend.details["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok());
        let counts = self.registry.counts(&s.name);
        let blockers = all_blockers(&self.registry, s);
        ClusterStatus {
            name: s.name.clone(),
            protocol: s.protocol,
            state: s.cluster.state(),
            backend_pid,
            backend: backend.details,
            sessions: Sessions {
                attached: counts.attached,
                parked: counts.parked,
                parked_for_room: s.room.stats.parked.load(Ordering::Relaxed),
                waiting: s.room.queued(),
            },
            max_backend_connections: Some(s.room.capacity()).filter(|&n| n > 0),
            active: s.cluster.is_active(),
            blockers,
            last_error: s.cluster.last_error(),
        }
    }

    /// Every cluster's status, in config order.
    async fn statuses(&self) -> Vec<(&ClusterFront, ClusterStatus)> {
        let mut out = Vec::with_capacity(self.fronts.len());
        for s in self.fronts.iter() {
            out.push((s.as_ref(), self.status(s).await));
        }
        out
    }
}

/// Every reason a drain would be refused now: the last drain check's reason (it stands until
/// the next check), the sessions', then the cluster's holds.
fn all_blockers(registry: &Registry, s: &ClusterFront) -> Vec<String> {
    let mut out: Vec<String> = s.cluster.drain_check_blocker().into_iter().collect();
    out.extend(registry.blockers(&s.name));
    out.extend(s.cluster.holds());
    out
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
        Err(SleepError::DatabaseBusy(why)) => {
            let mut reasons = vec![why];
            reasons.extend(admin.registry.blockers(&name));
            refused(reasons)
        }
        Err(SleepError::Blocked(reasons)) => {
            // The sessions' own reasons say more than the lifecycle's count of busy ones.
            let live = all_blockers(&admin.registry, s);
            refused(if live.is_empty() { reasons } else { live })
        }
        Err(e) => internal(e.to_string()),
    }
}

fn refused(blockers: Vec<String>) -> Response {
    (
        StatusCode::CONFLICT,
        Json(serde_json::json!({ "error": "drain refused", "blockers": blockers })),
    )
        .into_response()
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
    match tokio::spawn(async move { cluster.wake_for(WakeCause::Admin, None).await }).await {
        Ok(Ok(_)) => (StatusCode::OK, Json(admin.status(s).await)).into_response(),
        Ok(Err(e)) => internal(e.to_string()),
        Err(e) => internal(e.to_string()),
    }
}

async fn render_metrics(State(admin): State<Admin>) -> Response {
    let statuses = admin.statuses().await;
    let mut m = Scrape::default();
    let counter = |c: &AtomicU64| c.load(Ordering::Relaxed);
    for (s, st) in &statuses {
        let cluster = label("cluster", &s.name);
        let of_cluster = std::slice::from_ref(&cluster);
        m.gauge(
            "torpor_cluster_up",
            "1 when the backend is running",
            of_cluster,
            f64::from(u8::from(st.state == ClusterState::Running)),
        );
        m.gauge(
            "torpor_cluster_active",
            "1 while torpor wants the database up: waking, running or frozen, and a session has a query, transaction or COPY in flight, a rule holds it up (idle_metric, wake_metric, wake_at), or the last of those ended less than idle_timeout ago",
            of_cluster,
            f64::from(u8::from(st.active)),
        );
        for state in [
            "standby", "waking", "running", "frozen", "draining", "stopping",
        ] {
            m.gauge(
                "torpor_cluster_state",
                "1 for the cluster's current lifecycle state",
                &[cluster.clone(), label("state", state)],
                f64::from(u8::from(st.state.as_str() == state)),
            );
        }
        for (attachment, n) in [
            ("attached", st.sessions.attached),
            ("parked", st.sessions.parked),
        ] {
            m.gauge(
                "torpor_sessions",
                "client sessions by attachment",
                &[cluster.clone(), label("attachment", attachment)],
                n as f64,
            );
        }
        m.gauge(
            "torpor_busy_sessions",
            "sessions with a query, transaction or COPY in progress",
            of_cluster,
            s.cluster.busy_sessions() as f64,
        );
        m.gauge(
            "torpor_drain_blockers",
            "reasons a drain would be refused now",
            of_cluster,
            st.blockers.len() as f64,
        );
        for b in &st.blockers {
            m.gauge(
                "torpor_drain_blocker_info",
                "1 for each reason a drain would be refused now, naming the session (user, client address, application_name), the busy_query or the rule",
                &[cluster.clone(), label("blocker", b)],
                1.0,
            );
        }
        let stats = &s.cluster.stats;
        for (name, help, value) in [
            ("torpor_wakes_total", "backend starts", &stats.wakes),
            (
                "torpor_wake_failures_total",
                "backend starts that failed",
                &stats.wake_failures,
            ),
            (
                "torpor_drains_total",
                "completed scale-to-zero drains",
                &stats.drains,
            ),
            (
                "torpor_drains_refused_total",
                "drains refused because of blockers",
                &stats.drains_refused,
            ),
            (
                "torpor_drains_aborted_total",
                "drains called off by client activity",
                &stats.drains_aborted,
            ),
            (
                "torpor_freezes_total",
                "times the backend was frozen (freeze_after)",
                &stats.freezes,
            ),
            (
                "torpor_thaws_total",
                "times a frozen backend was thawed",
                &stats.thaws,
            ),
            (
                "torpor_local_answers_total",
                "requests torpor answered without the server (probes, SETs)",
                &s.local_answers,
            ),
        ] {
            m.counter(name, help, of_cluster, counter(value));
        }
        s.room.scrape(&mut m, &cluster);
        m.gauge(
            "torpor_pg_catalog_settings",
            "settings in the catalog learned from the server (0: not learned yet)",
            of_cluster,
            s.pg_catalog().map_or(0.0, |c| c.settings.len() as f64),
        );
        m.gauge(
            "torpor_mysql_catalog_variables",
            "MySQL variables in the catalog learned from the server (0: not learned yet)",
            of_cluster,
            s.my_catalog().map_or(0.0, |c| c.variables.len() as f64),
        );
        m.gauge(
            "torpor_idle_timeout_seconds",
            "configured idle timeout",
            of_cluster,
            s.cluster.idle_timeout().as_secs_f64(),
        );
    }
    let mut out = m.render();
    out.push_str(&admin.metrics.render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
