//! A client program a test steps through in phases: the program prints a line naming each
//! phase it has finished and waits for `go` on its stdin before the next, so the test can
//! change the cluster (put it to sleep) and check it between phases. Everything the program
//! prints is kept for the failure message.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::task::JoinHandle;

use crate::harness::SLOW;

pub struct Script {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every stdout line read so far.
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    stderr_task: JoinHandle<()>,
}

impl Script {
    /// Starts `cmd` (with its arguments and environment set) with piped stdio; it is killed
    /// if the test ends before it.
    pub fn spawn(mut cmd: tokio::process::Command) -> Script {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        // Read stderr as it comes, so a chatty program never blocks on a full pipe.
        let stderr_task = tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Script {
            child,
            stdin,
            stdout,
            seen: Vec::new(),
            stderr,
            stderr_task,
        }
    }

    /// Reads stdout until a line equal to `phase`; panics with the program's output when it
    /// exits or stays silent for [`SLOW`] first.
    pub async fn expect(&mut self, phase: &str) {
        loop {
            let line = match tokio::time::timeout(SLOW, self.stdout.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = self.child.wait().await.ok();
                    // Let stderr be read to its end before showing it.
                    let _ = tokio::time::timeout(SLOW, &mut self.stderr_task).await;
                    panic!(
                        "the client ended ({status:?}) before printing {phase:?}\n{}",
                        self.output()
                    )
                }
                Err(_) => panic!("no {phase:?} within {SLOW:?}\n{}", self.output()),
            };
            let done = line == phase;
            self.seen.push(line);
            if done {
                return;
            }
        }
    }

    /// Lets the program go on to its next phase.
    pub async fn go(&mut self) {
        self.stdin
            .write_all(b"go\n")
            .await
            .expect("write to the client");
        self.stdin.flush().await.expect("flush the client's stdin");
    }

    /// Waits for the program to exit after its last phase; panics unless it exits 0. Returns
    /// everything it printed.
    pub async fn finish(mut self) -> String {
        let status: ExitStatus = tokio::time::timeout(SLOW, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the client did not exit\n{}", self.output()))
            .expect("wait for the client");
        while let Ok(Ok(Some(line))) = tokio::time::timeout(SLOW, self.stdout.next_line()).await {
            self.seen.push(line);
        }
        let _ = tokio::time::timeout(SLOW, &mut self.stderr_task).await;
        assert!(
            status.success(),
            "client exited {status}\n{}",
            self.output()
        );
        self.output()
    }

    /// What the program printed so far, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "--- stdout\n{}\n--- stderr\n{}",
            self.seen.join("\n"),
            self.stderr.lock().unwrap_or_else(|e| e.into_inner())
        )
    }
}
