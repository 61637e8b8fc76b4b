//! The `torpor` binary, for tests about the process itself (signals, crashes, exit codes).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// `<target>/debug/torpor`, next to the test executable's `deps/` directory.
pub fn torpor_bin() -> PathBuf {
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("torpor")));
    let from_env =
        std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("debug").join("torpor"));
    for p in from_exe.iter().chain(from_env.iter()) {
        if p.is_file() {
            return p.clone();
        }
    }
    panic!(
        "the torpor binary is missing (looked at {from_exe:?} and {from_env:?}); \
         run `cargo build -p torpor` with the same CARGO_TARGET_DIR before these tests"
    );
}

pub struct Proc {
    pub child: Child,
    /// Lines torpor printed on stdout before it was ready.
    pub banner: Vec<String>,
    /// Every line torpor logged on stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Runs `torpor up --config <path>` and waits for its "admin API at" line.
pub async fn up(config: &std::path::Path) -> Proc {
    up_logging(config, "info").await
}

/// Like [`up`], with `TORPOR_LOG` set to `level`.
pub async fn up_logging(config: &std::path::Path, level: &str) -> Proc {
    let mut cmd = Command::new(torpor_bin());
    cmd.arg("up").arg("--config").arg(config);
    up_command(cmd, level).await
}

/// Runs `cmd`, which must end up running `torpor up` in its own process (a wrapper `exec`s
/// it), with `TORPOR_LOG` set to `level`, and waits for its "admin API at" line.
pub async fn up_command(mut cmd: Command, level: &str) -> Proc {
    let mut child = cmd
        .env("TORPOR_LOG", level)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn torpor");
    // Through eprintln! so the test harness captures torpor's log with the test's output.
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let log_w = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("torpor: {line}");
            log_w.lock().expect("log lock").push(line);
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    let ready = tokio::time::timeout(Duration::from_secs(90), async {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("torpor stdout: {line}");
            let done = line.contains("admin API at");
            banner.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "torpor did not become ready; stdout: {banner:?}"
    );
    // Keep draining stdout so torpor never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Proc { child, banner, log }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("torpor pid")
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the child we spawned and still own.
        let r = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(r, 0, "kill({}, {sig})", self.pid());
    }

    /// SIGTERM, and torpor must exit 0.
    pub async fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait().await;
        assert!(status.success(), "torpor exited with {status}");
    }

    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(90), self.child.wait())
            .await
            .expect("torpor did not exit within 90 s")
            .expect("wait torpor")
    }
}

/// Runs `torpor <args> --config <config>` to its end (90 s at most): whether it succeeded, and
/// what it printed on stdout and stderr.
pub async fn run(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(torpor_bin())
            .args(args)
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("torpor did not exit within 90 s")
    .expect("run torpor");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
