//! Runs one of the driver's shell commands with a timeout; a failure carries the tail of what
//! it wrote on stderr.

use std::process::Stdio;
use std::time::Duration;

use super::super::DriverError;

/// The most of a command's output kept for an error message.
const TAIL: usize = 2048;

/// The last [`TAIL`] bytes of `s`, on a character boundary.
pub(super) fn clip(s: &str) -> &str {
    let mut start = s.len().saturating_sub(TAIL);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// `sh -c command`; its stdout when it exits 0 within `timeout`.
pub(super) async fn run(
    cluster: &str,
    what: &str,
    command: &str,
    timeout: Duration,
) -> Result<String, DriverError> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| DriverError::Io {
            what: format!("cluster {cluster}: running its {what} command"),
            source,
        })?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(DriverError::Io {
                what: format!("cluster {cluster}: waiting for its {what} command"),
                source,
            });
        }
        Err(_) => {
            return Err(DriverError::Timeout(format!(
                "cluster {cluster}: its {what} command did not finish within {}",
                humantime::format_duration(timeout)
            )));
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(DriverError::Failed(format!(
            "cluster {cluster}: its {what} command failed ({}): {}",
            out.status,
            clip(stderr.trim())
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
