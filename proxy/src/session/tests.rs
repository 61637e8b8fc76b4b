//! The session engine alone: a scripted line protocol stands in for a database's wire protocol
//! and a scripted server for its backend, with a `memory://` store. The real protocols and
//! servers are exercised by the end-to-end tests; these check the engine's own decisions.
//!
//! The line protocol: the client sends `SET k v`, `GET k`, `BEGIN`, `END` or `QUIT`, one per
//! line; the backend answers each with one line. torpor asks the backend `DUMP` (its values as
//! `k=v;...`) to capture a session and sends `LOAD k=v;...` to restore one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use controller::{
    BackendInfo, BackendState, Cluster, ClusterState, Driver, DriverError, DriverStatus, SleepError,
};
use state_store::{Store, StoreConfig, StoreError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Capture, Error, Membership, Protocol, Session, Step};
use crate::cluster_front::ClusterFront;
use crate::config::{Config, TEST_CONFIG};
use crate::net::{Conn, Stream};
use crate::registry::{Holds, Registry};

/// A backend that keeps one map per connection and forgets everything when stopped.
struct Scripted {
    socket: PathBuf,
    running: Mutex<Option<(JoinHandle<()>, CancellationToken)>>,
    starts: AtomicU32,
    /// Starts fail while set.
    broken: AtomicBool,
}

impl Scripted {
    async fn start(&self) -> Result<BackendInfo, DriverError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(DriverError::Timeout("the server did not start".into()));
        }
        let _ = std::fs::remove_file(&self.socket);
        let listener = UnixListener::bind(&self.socket).map_err(|source| DriverError::Io {
            what: "bind".into(),
            source,
        })?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    Ok((io, _)) = listener.accept() => {
                        conns.push(tokio::spawn(serve_backend(io)));
                    }
                }
            }
            for c in conns {
                c.abort();
            }
        });
        *self.running.lock().unwrap() = Some((task, stop));
        self.starts.fetch_add(1, Ordering::SeqCst);
        Ok(BackendInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            socket: Some(self.socket.clone()),
        })
    }

    async fn stop(&self) -> Result<(), DriverError> {
        let running = self.running.lock().unwrap().take();
        if let Some((task, stop)) = running {
            stop.cancel();
            let _ = task.await;
        }
        Ok(())
    }

    async fn status(&self) -> DriverStatus {
        let state = if self.running.lock().unwrap().is_some() {
            BackendState::Running
        } else {
            BackendState::Stopped
        };
        DriverStatus {
            state,
            details: serde_json::Value::Null,
        }
    }
}

async fn serve_backend(io: UnixStream) {
    let (r, mut w) = io.into_split();
    let mut lines = BufReader::new(r).lines();
    let mut values = BTreeMap::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut words = line.splitn(3, ' ');
        let reply = match (words.next(), words.next(), words.next()) {
            (Some("SET"), Some(k), Some(v)) => {
                values.insert(k.to_string(), v.to_string());
                "OK".to_string()
            }
            (Some("GET"), Some(k), None) => values.get(k).cloned().unwrap_or("-".into()),
            (Some("DUMP"), None, None) => values.iter().map(|(k, v)| format!("{k}={v};")).collect(),
            (Some("LOAD"), Some(all), None) => {
                for kv in all.split(';').filter(|s| !s.is_empty()) {
                    if let Some((k, v)) = kv.split_once('=') {
                        values.insert(k.into(), v.into());
                    }
                }
                "OK".into()
            }
            (Some("BEGIN" | "END"), None, None) => "OK".into(),
            _ => "ERR".into(),
        };
        if w.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The protocol side: whole lines go to the backend one at a time.
struct Lines {
    client: Conn,
    backend: Option<Conn>,
    waiting: bool,
    in_txn: bool,
    changed: bool,
}

type Values = Vec<(String, String)>;

fn line(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n').map(|i| i + 1)
}

impl Protocol for Lines {
    type Snapshot = Values;

    fn conns(&mut self) -> (&mut Conn, Option<&mut Conn>) {
        (&mut self.client, self.backend.as_mut())
    }

    async fn greet(_: &mut Session<Self>) -> Result<(), Error> {
        Ok(())
    }

    async fn on_client(s: &mut Session<Self>) -> Result<Option<Step>, Error> {
        if s.p.waiting {
            return Ok(None);
        }
        let Some(n) = line(&s.p.client.rbuf) else {
            return Ok(None);
        };
        let req = s.p.client.rbuf.split_to(n);
        if &req[..] == b"QUIT\n" {
            return Ok(Some(Step::Done));
        }
        if s.p.backend.is_none() {
            s.attach().await?;
        }
        s.activity().await?;
        match &req[..] {
            b"BEGIN\n" => s.p.in_txn = true,
            b"END\n" => s.p.in_txn = false,
            r if r.starts_with(b"SET ") => s.p.changed = true,
            _ => {}
        }
        s.p.waiting = true;
        s.update_busy();
        if let Some(b) = s.p.backend.as_mut() {
            b.send(&req).await?;
        }
        Ok(Some(Step::Continue))
    }

    async fn on_backend(s: &mut Session<Self>) -> Result<(), Error> {
        let Some(b) = s.p.backend.as_mut() else {
            return Ok(());
        };
        let Some(n) = line(&b.rbuf) else {
            return Ok(());
        };
        let reply = b.rbuf.split_to(n);
        s.p.waiting = false;
        s.update_busy();
        s.p.client.send(&reply).await?;
        Ok(())
    }

    fn attached(&self) -> bool {
        self.backend.is_some()
    }

    fn blocker(&self) -> Option<&'static str> {
        if self.waiting {
            Some("query in flight")
        } else if self.in_txn {
            Some("open transaction")
        } else {
            None
        }
    }

    fn in_flight(&self) -> bool {
        self.waiting
    }

    fn probing(&self) -> bool {
        false
    }

    fn changed(&self) -> bool {
        self.changed
    }

    fn settled(&self) -> bool {
        self.backend.is_some() && !self.waiting && !self.in_txn
    }

    async fn capture(s: &mut Session<Self>) -> Result<Capture<Values>, Error> {
        let Some(b) = s.p.backend.as_mut() else {
            return Err(Self::lost_backend());
        };
        b.send(b"DUMP\n").await?;
        let reply = read_line(b).await?;
        let values = reply
            .split(';')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Capture::Snapshot(Box::new(values)))
    }

    fn holds(snap: &Values) -> Holds {
        Holds {
            settings: snap.len() as u64,
            ..Holds::default()
        }
    }

    fn saved(&mut self) {
        self.changed = false;
    }

    async fn connect_and_restore(
        s: &mut Session<Self>,
        at: &BackendInfo,
        snap: Option<Values>,
        _: tokio::time::Instant,
        _: Option<crate::room::Handed>,
    ) -> Result<(), Error> {
        let mut b = Conn::new(crate::net::connect(at, false).await?, 1 << 20);
        if let Some(values) = snap {
            let all: String = values.iter().map(|(k, v)| format!("{k}={v};")).collect();
            b.send(format!("LOAD {all}\n").as_bytes()).await?;
            read_line(&mut b).await?;
        }
        s.p.backend = Some(b);
        Ok(())
    }

    fn detach(&mut self) {
        self.backend = None;
        self.waiting = false;
    }

    async fn goodbye(&mut self) {}

    fn lost_backend() -> Error {
        Error::pg("57P01", "lost")
    }

    fn ended(_: bool) -> Error {
        Error::pg("57P01", "ended")
    }

    fn wake_failed(why: String) -> Error {
        Error::Unavailable {
            code: super::error::Code::Sqlstate("57P03"),
            message: why,
        }
    }

    fn snapshot_lost(e: StoreError) -> Error {
        Error::pg("58000", e.to_string())
    }

    async fn refuse(s: &mut Session<Self>, e: &Error) -> Result<(), Error> {
        s.p.client.send(format!("ERROR {e}\n").as_bytes()).await?;
        Ok(())
    }

    fn put_failed(why: String) -> Error {
        Error::pg("58030", why)
    }

    async fn report(&mut self, _: &Error) {}
}

async fn read_line(b: &mut Conn) -> Result<String, Error> {
    loop {
        if let Some(n) = line(&b.rbuf) {
            let l = b.rbuf.split_to(n);
            return Ok(String::from_utf8_lossy(&l[..n - 1]).into_owned());
        }
        if b.fill().await? == 0 {
            return Err(Error::Closed);
        }
    }
}

struct Fixture {
    cluster: Arc<Cluster>,
    driver: Arc<Scripted>,
    front: Arc<ClusterFront>,
    _dir: tempfile::TempDir,
}

/// The cluster owns its driver; the test keeps a handle to count starts.
struct Handle(Arc<Scripted>);

#[async_trait]
impl Driver for Handle {
    async fn prepare(&self) -> Result<(), DriverError> {
        Ok(())
    }
    async fn start(&self) -> Result<BackendInfo, DriverError> {
        self.0.start().await
    }
    async fn stop(&self) -> Result<(), DriverError> {
        self.0.stop().await
    }
    async fn status(&self) -> DriverStatus {
        self.0.status().await
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let driver = Arc::new(Scripted {
        socket: dir.path().join("backend.sock"),
        running: Mutex::new(None),
        starts: AtomicU32::new(0),
        broken: AtomicBool::new(false),
    });
    let cluster = Arc::new(Cluster::new(
        "t",
        Duration::from_secs(3600),
        Box::new(Handle(driver.clone())),
    ));
    let cfg = Config::parse(
        &TEST_CONFIG.replace("name = \"a\"", "name = \"t\""),
        dir.path(),
    )
    .unwrap();
    let store = Store::open(&StoreConfig::from_url("memory://")).unwrap();
    let front = Arc::new(
        ClusterFront::new(
            &cfg.clusters[0],
            cluster.clone(),
            store,
            Arc::new(Registry::default()),
        )
        .with_wake_timeout(Duration::from_millis(500)),
    );
    Fixture {
        cluster,
        driver,
        front,
        _dir: dir,
    }
}

/// A session on one end of a socket pair; the test holds the other end as the client.
fn connect(f: &Fixture) -> (UnixStream, JoinHandle<()>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let (_, reg) = f.front.registry.register(&f.front.name);
    let startup = [("user".to_string(), "app".to_string())];
    reg.entry.introduce_pg("app", &startup, None);
    let member = Membership::new(f.front.clone(), reg, "app", Some("app"));
    let p = Lines {
        client: Conn::new(Stream::Unix(theirs), 1 << 20),
        backend: None,
        waiting: false,
        in_txn: false,
        changed: false,
    };
    let session = Session::new(f.front.clone(), member, p);
    let task = tokio::spawn(session.run(CancellationToken::new()));
    (ours, task)
}

async fn ask(client: &mut UnixStream, req: &str) -> String {
    client
        .write_all(format!("{req}\n").as_bytes())
        .await
        .unwrap();
    let mut reply = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        tokio::io::AsyncReadExt::read_exact(client, &mut byte)
            .await
            .unwrap();
        if byte[0] == b'\n' {
            return String::from_utf8(reply).unwrap();
        }
        reply.push(byte[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_wakes_the_backend() {
    let f = fixture();
    let (mut c, _task) = connect(&f);
    assert_eq!(f.cluster.state(), ClusterState::Standby);
    assert_eq!(ask(&mut c, "GET a").await, "-");
    assert_eq!(f.cluster.state(), ClusterState::Running);
    assert_eq!(f.driver.starts.load(Ordering::SeqCst), 1);
}

/// A session that set `a` to 1, parked by a drain.
async fn parked_with_a(f: &Fixture) -> (UnixStream, JoinHandle<()>) {
    let (mut c, task) = connect(f);
    assert_eq!(ask(&mut c, "SET a 1").await, "OK");
    f.cluster.sleep().await.unwrap();
    (c, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_parks_the_session_and_the_next_request_restores_it() {
    let f = fixture();
    let (mut c, _task) = parked_with_a(&f).await;
    assert_eq!(f.cluster.state(), ClusterState::Standby);
    assert_eq!(f.front.registry.counts("t").parked, 1);
    assert_eq!(f.front.registry.sessions("t")[0].holds.settings, 1);
    // The server forgot everything; the snapshot in the store did not.
    assert_eq!(ask(&mut c, "GET a").await, "1");
    assert_eq!(f.driver.starts.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_changed_nothing_needs_no_snapshot() {
    let f = fixture();
    let (mut c, _task) = connect(&f);
    assert_eq!(ask(&mut c, "GET a").await, "-");
    f.cluster.sleep().await.unwrap();
    let sessions = f.front.registry.sessions("t");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].holds, Holds::default());
    assert_eq!(ask(&mut c, "GET a").await, "-");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocker_refuses_the_drain_and_the_session_keeps_its_backend() {
    let f = fixture();
    let (mut c, _task) = connect(&f);
    assert_eq!(ask(&mut c, "SET a 1").await, "OK");
    assert_eq!(ask(&mut c, "BEGIN").await, "OK");
    match f.cluster.sleep().await {
        Err(SleepError::Blocked(why)) => assert!(why[0].contains("busy"), "{why:?}"),
        other => panic!("the drain went ahead: {other:?}"),
    }
    assert_eq!(f.cluster.state(), ClusterState::Running);
    assert_eq!(ask(&mut c, "END").await, "OK");
    f.cluster.sleep().await.unwrap();
    assert_eq!(ask(&mut c, "GET a").await, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wake_that_fails_keeps_the_session_parked_for_the_next_request() {
    let f = fixture();
    let (mut c, task) = parked_with_a(&f).await;
    f.driver.broken.store(true, Ordering::SeqCst);
    let reply = ask(&mut c, "GET a").await;
    assert!(
        reply.starts_with("ERROR ") && reply.contains("did not start"),
        "{reply}"
    );
    assert!(!task.is_finished());
    assert_eq!(f.front.registry.counts("t").parked, 1);
    f.driver.broken.store(false, Ordering::SeqCst);
    assert_eq!(ask(&mut c, "GET a").await, "1");
}
