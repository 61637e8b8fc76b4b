//! STAND-IN FOR THE KUBERNETES API, since no API server can run on these machines (Debian has
//! no kube-apiserver, k3s, kind node image or kwok). It is the only stand-in the tests use.
//!
//! An HTTP server on 127.0.0.1 that serves exactly the calls torpor's kubernetes driver makes,
//! with JSON made from k8s-openapi's types (`Scale`, `Pod`, `List<Pod>`, `ObjectMeta`,
//! `Status`), and checks the bearer token of the kubeconfig it writes:
//! - `PATCH /apis/apps/v1/namespaces/{ns}/{statefulsets|deployments}/{name}/scale`
//!   (merge patch of `spec.replicas`);
//! - `PATCH /apis/postgresql.cnpg.io/v1/namespaces/{ns}/clusters/{name}` (merge patch of the
//!   `cnpg.io/hibernation` annotation);
//! - `GET /api/v1/namespaces/{ns}/pods?labelSelector=…`.
//!
//! Behind each workload is a real server process, its "pod": scaled to one (or woken) the
//! stand-in starts it and marks the pod Ready once its port accepts a connection, as a
//! kubelet's tcpSocket readiness probe would; scaled to zero it sends SIGTERM to that pid, lists
//! the pod as terminating until the process has exited, then drops it. What the stand-in does
//! NOT model: scheduling, volumes, Services (the "service" is the process's 127.0.0.1 port),
//! admission, resourceVersion conflicts, watches.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec, ScaleStatus};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status, Time};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "stand-in-token";

/// What a workload's pod runs: a command that starts a server listening on `port`.
pub type Container = Box<dyn Fn() -> tokio::process::Command + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    StatefulSet,
    Deployment,
    Cnpg,
}

/// The pod of a workload, as the API lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PodPhase {
    Starting(u32),
    Ready(u32),
    Terminating(u32),
}

struct Workload {
    kind: Kind,
    namespace: String,
    name: String,
    /// The 127.0.0.1 port the pod's server listens on (what its Service would reach).
    port: u16,
    labels: BTreeMap<String, String>,
    annotations: Mutex<BTreeMap<String, String>>,
    desired: watch::Sender<i32>,
    pod: Mutex<Option<PodPhase>>,
}

impl Workload {
    fn pod_name(&self) -> String {
        match self.kind {
            Kind::StatefulSet => format!("{}-0", self.name),
            Kind::Deployment => format!("{}-7d9f8b6c5-x2x4q", self.name),
            Kind::Cnpg => format!("{}-1", self.name),
        }
    }

    fn selector(&self) -> String {
        self.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn pod(&self) -> Option<PodPhase> {
        *self.pod.lock().unwrap()
    }
}

#[derive(Default)]
struct Shared {
    workloads: Mutex<Vec<Arc<Workload>>>,
    forbidden: AtomicBool,
    /// Every request as `METHOD path`, in order: what the driver called.
    calls: Mutex<Vec<String>>,
}

pub struct KubeStandin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: crate::serve::Switch,
    pods: Mutex<Vec<JoinHandle<()>>>,
}

impl KubeStandin {
    pub async fn start() -> KubeStandin {
        let port = crate::ports::free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let standin = KubeStandin {
            addr,
            shared: Arc::default(),
            server: Default::default(),
            pods: Mutex::new(Vec::new()),
        };
        standin.serve_again().await;
        standin
    }

    /// A kubeconfig that reaches this stand-in with its token, `namespace` as the context's.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: torpor\n    namespace: {namespace}\ncurrent-context: standin\nusers:\n- name: torpor\n  user:\n    token: {TOKEN}\n",
            self.addr
        )
    }

    /// Adds a workload, scaled to zero (a CNPG cluster: hibernated), whose pod runs `container`.
    /// `port` is where that server listens once started.
    pub fn add(&self, kind: Kind, namespace: &str, name: &str, port: u16, container: Container) {
        let labels: BTreeMap<String, String> = match kind {
            Kind::Cnpg => [
                ("cnpg.io/cluster".to_string(), name.to_string()),
                ("cnpg.io/instanceRole".to_string(), "primary".to_string()),
            ]
            .into(),
            _ => [("app".to_string(), name.to_string())].into(),
        };
        let annotations = match kind {
            Kind::Cnpg => [("cnpg.io/hibernation".to_string(), "on".to_string())].into(),
            _ => BTreeMap::new(),
        };
        let (desired, rx) = watch::channel(0);
        let w = Arc::new(Workload {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            port,
            labels,
            annotations: Mutex::new(annotations),
            desired,
            pod: Mutex::new(None),
        });
        self.shared.workloads.lock().unwrap().push(w.clone());
        let task = tokio::spawn(kubelet(w, rx, container));
        self.pods.lock().unwrap().push(task);
    }

    /// Every call from then on is refused with 403, as RBAC would refuse a service account
    /// without the Role.
    pub fn forbid(&self, on: bool) {
        self.shared.forbidden.store(on, Ordering::SeqCst);
    }

    /// The API server goes away: its port refuses connections, open ones are cut. Returns
    /// once the server's task is gone: until then a kept-alive connection of the driver's
    /// could still be answered.
    pub async fn stop_serving(&self) {
        self.server.stop().await;
    }

    /// The API server comes back on the same port.
    pub async fn serve_again(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let shared = self.shared.clone();
        let task = crate::serve::http1(listener, move || {
            let shared = shared.clone();
            hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
            })
        });
        self.server.serve(task);
    }

    pub fn calls(&self) -> Vec<String> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// The pid of the workload's server process while its pod is listed.
    pub fn pod_pid(&self, name: &str) -> Option<u32> {
        let w = self.find_by_name(name)?;
        w.pod().map(|p| match p {
            PodPhase::Starting(pid) | PodPhase::Ready(pid) | PodPhase::Terminating(pid) => pid,
        })
    }

    pub fn annotation(&self, name: &str, key: &str) -> Option<String> {
        let w = self.find_by_name(name)?;
        w.annotations.lock().unwrap().get(key).cloned()
    }

    pub fn replicas(&self, name: &str) -> Option<i32> {
        Some(*self.find_by_name(name)?.desired.borrow())
    }

    fn find_by_name(&self, name: &str) -> Option<Arc<Workload>> {
        let workloads = self.shared.workloads.lock().unwrap();
        workloads.iter().find(|w| w.name == name).cloned()
    }
}

impl Drop for KubeStandin {
    fn drop(&mut self) {
        // The server's task ends as its Switch is dropped.
        // Aborting a kubelet task drops its child, whose kill_on_drop ends the server.
        for task in self.pods.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Makes the workload's one pod follow its desired replicas with a real process.
async fn kubelet(w: Arc<Workload>, mut desired: watch::Receiver<i32>, container: Container) {
    let mut child: Option<tokio::process::Child> = None;
    loop {
        let want = *desired.borrow_and_update();
        match (want > 0, child.as_mut()) {
            (true, None) => {
                let mut cmd = container();
                cmd.kill_on_drop(true);
                let mut c = cmd.spawn().expect("the pod's server starts");
                let pid = c.id().expect("a pid");
                *w.pod.lock().unwrap() = Some(PodPhase::Starting(pid));
                // The readiness probe: the server's port accepts a connection.
                let port = w.port;
                loop {
                    if let Ok(Some(status)) = c.try_wait() {
                        panic!("{}'s server exited at start: {status}", w.name);
                    }
                    if tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .is_ok()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                *w.pod.lock().unwrap() = Some(PodPhase::Ready(pid));
                child = Some(c);
                continue;
            }
            (false, Some(c)) => {
                let pid = c.id().expect("a running child has a pid");
                *w.pod.lock().unwrap() = Some(PodPhase::Terminating(pid));
                // SIGTERM, as the kubelet sends a deleted pod's containers (postgres: smart
                // shutdown, which waits for every client to leave).
                // SAFETY: kill has no memory preconditions; pid is our own child's.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                let _ = c.wait().await;
                child = None;
                *w.pod.lock().unwrap() = None;
                continue;
            }
            _ => {}
        }
        if desired.changed().await.is_err() {
            return;
        }
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    shared
        .calls
        .lock()
        .unwrap()
        .push(format!("{method} {path}"));
    let bearer = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(400, "BadRequest", "unreadable body"),
    };
    if bearer.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let verb = match method.as_str() {
        "GET" => "list",
        "PATCH" => "patch",
        _ => return status(405, "MethodNotAllowed", "the stand-in serves GET and PATCH"),
    };
    if shared.forbidden.load(Ordering::SeqCst) {
        let (ns, resource) = match parts.as_slice() {
            ["api", "v1", "namespaces", ns, r] => (*ns, r.to_string()),
            ["apis", _, _, "namespaces", ns, r, _, sub] => (*ns, format!("{r}/{sub}")),
            ["apis", _, _, "namespaces", ns, r, _] => (*ns, r.to_string()),
            _ => ("", String::new()),
        };
        return status(
            403,
            "Forbidden",
            &format!(
                "{resource} is forbidden: User \"system:serviceaccount:{ns}:torpor\" cannot {verb} resource \"{resource}\" in the namespace \"{ns}\""
            ),
        );
    }
    if verb == "patch" && content_type != "application/merge-patch+json" {
        return status(415, "UnsupportedMediaType", "want a merge patch");
    }
    let patch: Value = if verb == "patch" {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return status(400, "BadRequest", &e.to_string()),
        }
    } else {
        Value::Null
    };
    let find = |kind: Kind, ns: &str, name: &str| {
        shared
            .workloads
            .lock()
            .unwrap()
            .iter()
            .find(|w| w.kind == kind && w.namespace == ns && w.name == name)
            .cloned()
    };
    match (verb, parts.as_slice()) {
        ("list", ["api", "v1", "namespaces", ns, "pods"]) => {
            let selector = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("labelSelector="))
                .map(percent_decode)
                .unwrap_or_default();
            let workloads = shared.workloads.lock().unwrap().clone();
            let items: Vec<Pod> = workloads
                .iter()
                .filter(|w| w.namespace == *ns && matches(&selector, &w.labels))
                .filter_map(|w| pod(w))
                .collect();
            let list = k8s_openapi::List::<Pod> {
                items,
                metadata: Default::default(),
            };
            ok(serde_json::to_value(list).unwrap())
        }
        (
            "patch",
            [
                "apis",
                "apps",
                "v1",
                "namespaces",
                ns,
                resource,
                name,
                "scale",
            ],
        ) => {
            let kind = match *resource {
                "statefulsets" => Kind::StatefulSet,
                "deployments" => Kind::Deployment,
                _ => return status(404, "NotFound", "no such resource"),
            };
            let Some(w) = find(kind, ns, name) else {
                return status(
                    404,
                    "NotFound",
                    &format!("{resource}.apps \"{name}\" not found"),
                );
            };
            let Some(replicas) = patch["spec"]["replicas"].as_i64() else {
                return status(422, "Invalid", "spec.replicas: Required value");
            };
            if !(0..=1).contains(&replicas) {
                return status(422, "Invalid", "the stand-in runs at most one replica");
            }
            w.desired.send_replace(replicas as i32);
            ok(serde_json::to_value(scale(&w)).unwrap())
        }
        (
            "patch",
            [
                "apis",
                "postgresql.cnpg.io",
                "v1",
                "namespaces",
                ns,
                "clusters",
                name,
            ],
        ) => {
            let Some(w) = find(Kind::Cnpg, ns, name) else {
                return status(
                    404,
                    "NotFound",
                    &format!("clusters.postgresql.cnpg.io \"{name}\" not found"),
                );
            };
            if patch.get("spec").is_some() {
                return status(422, "Invalid", "the stand-in only takes annotations");
            }
            if let Some(a) = patch["metadata"]["annotations"].as_object() {
                let mut annotations = w.annotations.lock().unwrap();
                for (k, v) in a {
                    match v.as_str() {
                        Some(v) => annotations.insert(k.clone(), v.to_string()),
                        None => annotations.remove(k),
                    };
                }
                let hibernated =
                    annotations.get("cnpg.io/hibernation").map(String::as_str) == Some("on");
                w.desired.send_replace(if hibernated { 0 } else { 1 });
            }
            ok(cnpg_cluster(&w))
        }
        _ => status(
            404,
            "NotFound",
            &format!("the stand-in does not serve {method} {path}"),
        ),
    }
}

fn pod(w: &Workload) -> Option<Pod> {
    let phase = w.pod()?;
    let ready = matches!(phase, PodPhase::Ready(_));
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(w.pod_name()),
            namespace: Some(w.namespace.clone()),
            labels: Some(w.labels.clone()),
            deletion_timestamp: matches!(phase, PodPhase::Terminating(_))
                .then(|| Time(k8s_openapi::jiff::Timestamp::now())),
            ..Default::default()
        },
        status: Some(PodStatus {
            phase: Some(if ready { "Running" } else { "Pending" }.into()),
            pod_ip: Some("127.0.0.1".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn scale(w: &Workload) -> Scale {
    Scale {
        metadata: ObjectMeta {
            name: Some(w.name.clone()),
            namespace: Some(w.namespace.clone()),
            ..Default::default()
        },
        spec: Some(ScaleSpec {
            replicas: Some(*w.desired.borrow()),
        }),
        status: Some(ScaleStatus {
            replicas: i32::from(w.pod().is_some()),
            selector: Some(w.selector()),
        }),
    }
}

/// A CloudNativePG `Cluster`: a custom resource, so no k8s-openapi type; its metadata is one.
fn cnpg_cluster(w: &Workload) -> Value {
    let metadata = ObjectMeta {
        name: Some(w.name.clone()),
        namespace: Some(w.namespace.clone()),
        annotations: Some(w.annotations.lock().unwrap().clone()),
        ..Default::default()
    };
    json!({
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": metadata,
        "spec": { "instances": 1 },
    })
}

fn matches(selector: &str, labels: &BTreeMap<String, String>) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
            None => false,
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ok(body: Value) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, body)
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let s = Status {
        code: Some(i32::from(code)),
        message: Some(message.to_string()),
        reason: Some(reason.to_string()),
        status: Some("Failure".into()),
        ..Default::default()
    };
    respond(
        StatusCode::from_u16(code).unwrap(),
        serde_json::to_value(s).unwrap(),
    )
}

fn respond(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
