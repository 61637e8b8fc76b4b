//! The frozen tier (`freeze_after`): an idle cluster's server is frozen in its cgroup while
//! every session stays attached with its state. Each test proves the freeze from the kernel's
//! side (`frozen 1` in the cgroup.events of the server's own cgroup, read through /proc, not
//! through torpor) before the next query, then that the answer came after a thaw (the thaw
//! counter, `frozen 0`) from the same server process. Probes are answered while frozen without
//! a thaw. Then the drain at the idle timeout (forced here) thaws and stops the server, and
//! the state comes back on a new one.

use std::path::PathBuf;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use torpor_tests::harness::{Opts, Pg, TestEnv, assert_pid_gone};
use torpor_tests::mysql::{exec_each, text};

fn opts(protocol_opts: Opts) -> Opts {
    protocol_opts.cluster_setting("freeze_after = \"300ms\"")
}

/// The cgroup v2 directory `pid` runs in, as the kernel says.
fn cgroup_of(pid: u32) -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .expect("a cgroup v2 mount");
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 path");
    mount.join(path.trim().trim_start_matches('/'))
}

fn frozen(pid: u32) -> bool {
    let events = std::fs::read_to_string(cgroup_of(pid).join("cgroup.events")).unwrap();
    events.lines().any(|l| l == "frozen 1")
}

/// Waits until the cluster says it is frozen, then checks with the kernel; `attached`
/// sessions are still attached.
async fn wait_frozen(env: &TestEnv, pid: u32, attached: u64) {
    // torpor shows `frozen` from the moment the freeze is decided (a wake must thaw from
    // then on), a little before the driver has frozen the cgroup: wait for both.
    env.wait_for(Duration::from_secs(30), "frozen", |c| {
        c["state"] == "frozen" && c["backend"]["frozen"] == true
    })
    .await;
    assert!(frozen(pid), "torpor says frozen, the cgroup does not");
    let status = env.cluster_status().await;
    assert_eq!(status["backend"]["frozen"], true, "{status}");
    assert_eq!(status["sessions"]["attached"], attached, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sessions_stay_attached_across_a_freeze_and_keep_their_state_across_the_stop() {
    let env = TestEnv::start(opts(Opts::default())).await;
    let s = env.connect().await;
    s.exec(
        "SET search_path TO pg_temp, public;
         SET myapp.tenant = '42';
         CREATE TEMP TABLE cart(id int PRIMARY KEY, item text);
         INSERT INTO cart SELECT g, 'item ' || g FROM generate_series(1, 500) g;
         PREPARE total AS SELECT count(*) || ':' || sum(id) FROM cart;
         SELECT pg_advisory_lock(77);
         LISTEN orders;",
    )
    .await;
    let state = async |s: &Pg| {
        assert_eq!(s.text("EXECUTE total").await, "500:125250");
        assert_eq!(s.text("SELECT current_setting('myapp.tenant')").await, "42");
        assert_eq!(
            s.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 77 AND pid = pg_backend_pid()")
                .await,
            "1"
        );
        assert_eq!(
            s.text("SELECT string_agg(c, ',') FROM pg_listening_channels() c")
                .await,
            "orders"
        );
    };
    let pid = env.backend_pid().await.expect("a server pid");
    let backend = s.text("SELECT pg_backend_pid()").await;

    wait_frozen(&env, pid, 1).await;
    assert_eq!(env.metric("torpor_thaws_total").await, 0.0);
    assert!(env.metric("torpor_freezes_total").await >= 1.0);
    // A health check on a new connection is answered while frozen, without a thaw.
    let probe = env.connect().await;
    assert_eq!(probe.text("SELECT 1").await, "1");
    assert!(frozen(pid), "a probe thawed the server");
    assert_eq!(env.metric("torpor_thaws_total").await, 0.0);

    // The next query thaws the same server; the session is on the same backend process.
    state(&s).await;
    assert!(!frozen(pid));
    assert_eq!(env.metric("torpor_thaws_total").await, 1.0);
    assert_eq!(s.text("SELECT pg_backend_pid()").await, backend);
    assert_eq!(env.backend_pid().await, Some(pid));

    // Frozen again, then drained: the drain thaws the server first and stops it.
    wait_frozen(&env, pid, 1).await;
    env.sleep_ok().await;
    assert_pid_gone(pid);
    state(&s).await;
    assert_ne!(s.text("SELECT pg_backend_pid()").await, backend);
    drop(probe);
    env.shutdown_after(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_sessions_stay_attached_across_a_freeze_and_keep_their_state_across_the_stop() {
    let env = TestEnv::start(opts(Opts::mysql())).await;
    let mut c = env.my().await;
    exec_each(
        &mut c,
        &[
            "SET @tenant = 'acme', @n = 41",
            "SET time_zone = '+05:30'",
            "CREATE TEMPORARY TABLE cart (id INT PRIMARY KEY, item VARCHAR(20))",
            "INSERT INTO cart VALUES (1, 'one'), (2, 'two'), (3, 'three')",
            "SELECT GET_LOCK('orders', 0)",
        ],
    )
    .await;
    let probe_sql = "SELECT CONCAT_WS(' ', @tenant, @n + 1, @@time_zone, \
                     (SELECT GROUP_CONCAT(item ORDER BY id) FROM cart), IS_USED_LOCK('orders') = @@pseudo_thread_id)";
    let want = "acme 42 +05:30 one,two,three 1";
    let pid = env.backend_pid().await.expect("a server pid");
    let thread: u64 = c
        .query_first("SELECT @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap();

    wait_frozen(&env, pid, 1).await;
    assert_eq!(env.metric("torpor_thaws_total").await, 0.0);
    // COM_PING, the default probe, is answered while frozen without a thaw.
    c.ping().await.unwrap();
    assert!(frozen(pid), "a ping thawed the server");
    assert_eq!(env.metric("torpor_thaws_total").await, 0.0);

    assert_eq!(text(&mut c, probe_sql).await, want);
    assert!(!frozen(pid));
    assert_eq!(env.metric("torpor_thaws_total").await, 1.0);
    let after: u64 = c
        .query_first("SELECT @@pseudo_thread_id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after, thread, "the same server thread");
    assert_eq!(env.backend_pid().await, Some(pid));

    wait_frozen(&env, pid, 1).await;
    env.sleep_ok().await;
    assert_pid_gone(pid);
    assert_eq!(text(&mut c, probe_sql).await, want);
    env.shutdown_after(c).await;
}
