//! `torpor status`: the admin API's cluster list, for a person.

use std::fmt::Write as _;

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Deserialize)]
struct Sessions {
    attached: usize,
    parked: usize,
}

#[derive(Debug, Deserialize)]
struct Cluster {
    name: String,
    #[serde(default)]
    protocol: String,
    state: String,
    backend_pid: Option<u32>,
    sessions: Sessions,
    blockers: Vec<String>,
}

pub async fn run(admin: &str) -> anyhow::Result<String> {
    let body = http_get(admin, "/api/clusters").await?;
    let clusters: Vec<Cluster> =
        serde_json::from_str(&body).context("admin API answered with unexpected JSON")?;
    Ok(render(&clusters))
}

fn render(clusters: &[Cluster]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:<9} {:<9} {:>8} {:>9} {:>7}  blockers",
        "CLUSTER", "PROTOCOL", "STATE", "PID", "ATTACHED", "PARKED"
    );
    for c in clusters {
        let pid = c
            .backend_pid
            .map(|p| p.to_string())
            .unwrap_or_else(|| "-".into());
        let blockers = if c.blockers.is_empty() {
            "-".to_string()
        } else {
            c.blockers.join("; ")
        };
        let _ = writeln!(
            out,
            "{:<16} {:<9} {:<9} {:>8} {:>9} {:>7}  {}",
            c.name, c.protocol, c.state, pid, c.sessions.attached, c.sessions.parked, blockers
        );
    }
    out
}

/// A plain HTTP/1.1 GET; the admin API is local and unencrypted.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the admin API at {addr}; is torpor running?"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP answer from {addr}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "admin API answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_cluster() {
        let clusters: Vec<Cluster> = serde_json::from_str(
            r#"[{"name":"a","protocol":"postgres","state":"standby","backend_pid":null,"sessions":{"attached":0,"parked":3},"blockers":[]},
                {"name":"b","protocol":"mysql","state":"running","backend_pid":42,"sessions":{"attached":1,"parked":0},"blockers":["session 1: open transaction"]}]"#,
        )
        .unwrap();
        let text = render(&clusters);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[1].starts_with("a ") && lines[1].contains("standby") && lines[1].ends_with("-")
        );
        assert!(lines[2].contains("42") && lines[2].contains("open transaction"));
        assert!(lines[1].contains("postgres") && lines[2].contains("mysql"));
    }
}
