//! `torpor status`: the admin API's cluster list, or its sessions, for a person.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

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
    /// Why the last start failed, or how the backend last exited unasked.
    #[serde(default)]
    last_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Holds {
    settings: u64,
    statements: u64,
    temp_tables: u64,
    temp_rows: u64,
    channels: u64,
    locks: u64,
}

#[derive(Debug, Deserialize)]
struct Session {
    id: u64,
    user: String,
    database: Option<String>,
    client_addr: Option<String>,
    #[serde(default)]
    application_name: String,
    state: String,
    since: String,
    last_activity: String,
    #[serde(default)]
    holds: Holds,
    blocker: Option<String>,
}

/// Where the admin API is, and the token it asks for when one is configured.
pub struct AdminApi<'a> {
    pub addr: &'a str,
    pub token: Option<&'a str>,
}

pub async fn run(admin: &AdminApi<'_>) -> anyhow::Result<String> {
    Ok(render(&clusters(admin).await?))
}

async fn clusters(admin: &AdminApi<'_>) -> anyhow::Result<Vec<Cluster>> {
    let body = http_get(admin, "/api/clusters").await?;
    serde_json::from_str(&body).context("admin API answered with unexpected JSON")
}

/// `torpor status --sessions`: the sessions of one cluster, or of every cluster.
pub async fn sessions(admin: &AdminApi<'_>, cluster: Option<&str>) -> anyhow::Result<String> {
    let names = match cluster {
        Some(name) => {
            // Config validation allows only these, and they go into a URL path unescaped.
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                bail!("no cluster is named {name:?}: names are letters, digits, '_' or '-'");
            }
            vec![name.to_string()]
        }
        None => clusters(admin).await?.into_iter().map(|c| c.name).collect(),
    };
    let mut all = Vec::new();
    for name in names {
        let body = http_get(admin, &format!("/api/clusters/{name}/sessions")).await?;
        let sessions: Vec<Session> =
            serde_json::from_str(&body).context("admin API answered with unexpected JSON")?;
        all.push((name, sessions));
    }
    Ok(render_sessions(&all, SystemTime::now()))
}

fn render_sessions(clusters: &[(String, Vec<Session>)], now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:<12} {:<12} {:<21} {:<16} {:<8} {:>7} {:>7}  {:<24}  blocker",
        "CLUSTER",
        "ID",
        "USER",
        "DATABASE",
        "CLIENT",
        "APPLICATION",
        "STATE",
        "FOR",
        "IDLE",
        "HOLDS"
    );
    for (cluster, sessions) in clusters {
        for s in sessions {
            let _ = writeln!(
                out,
                "{:<16} {:>6} {:<12} {:<12} {:<21} {:<16} {:<8} {:>7} {:>7}  {:<24}  {}",
                cluster,
                s.id,
                printable(&s.user),
                printable(s.database.as_deref().unwrap_or("-")),
                s.client_addr.as_deref().unwrap_or("-"),
                or_dash(&printable(&s.application_name)),
                s.state,
                age(&s.since, now),
                age(&s.last_activity, now),
                holds(&s.holds),
                s.blocker
                    .as_deref()
                    .map(printable)
                    .unwrap_or_else(|| "-".into()),
            );
        }
    }
    out
}

/// Clients choose names and application names: control characters are shown escaped so they
/// can't drive the operator's terminal.
fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// How long ago an RFC 3339 timestamp was, to the second: `45s`, `3m12s`, `2h05m`, `4d03h`.
fn age(stamp: &str, now: SystemTime) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(stamp) else {
        return "?".into();
    };
    let secs = now.duration_since(t).unwrap_or(Duration::ZERO).as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// The non-zero counts, in a fixed order: `settings=2 temp_tables=1 temp_rows=40`.
fn holds(h: &Holds) -> String {
    let parts: Vec<String> = [
        ("settings", h.settings),
        ("statements", h.statements),
        ("temp_tables", h.temp_tables),
        ("temp_rows", h.temp_rows),
        ("channels", h.channels),
        ("locks", h.locks),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k}={n}"))
    .collect();
    or_dash(&parts.join(" "))
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
        if let Some(e) = &c.last_error {
            let _ = writeln!(out, "{:<16} last error: {}", "", printable(e));
        }
    }
    out
}

/// A plain HTTP/1.1 GET; the admin API is unencrypted.
async fn http_get(admin: &AdminApi<'_>, path: &str) -> anyhow::Result<String> {
    let addr = admin.addr;
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot reach the admin API at {addr}; is torpor running?"))?;
    let auth = admin
        .token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("malformed HTTP answer from {addr}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        // The API's own JSON error says more than the status line (e.g. which cluster).
        match serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
        {
            Some(error) => bail!("admin API answered {status}: {}", printable(&error)),
            None => bail!("admin API answered {status}"),
        }
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

    #[test]
    fn a_clusters_last_error_follows_its_line() {
        let clusters: Vec<Cluster> = serde_json::from_str(
            r#"[{"name":"a","protocol":"postgres","state":"standby","backend_pid":null,"sessions":{"attached":0,"parked":1},"blockers":[],"last_error":"backend exited: signal 9"},
                {"name":"b","protocol":"mysql","state":"running","backend_pid":42,"sessions":{"attached":1,"parked":0},"blockers":[],"last_error":null}]"#,
        )
        .unwrap();
        let text = render(&clusters);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].starts_with("a "), "{text}");
        assert!(
            lines[2].trim_start() == "last error: backend exited: signal 9",
            "{text}"
        );
        assert!(lines[3].starts_with("b "), "{text}");
    }

    #[test]
    fn renders_one_line_per_session() {
        let sessions: Vec<Session> = serde_json::from_str(
            r#"[{"id":5,"user":"app","database":"app","client_addr":"127.0.0.1:40312","application_name":"psql",
                 "state":"attached","since":"2025-01-01T00:00:00.000Z","last_activity":"2025-01-01T00:59:15.000Z",
                 "holds":{"settings":2,"statements":0,"temp_tables":1,"temp_rows":40,"channels":0,"locks":0},
                 "blocker":"session 5 (app@127.0.0.1:40312, application_name \"psql\"): open transaction"},
                {"id":6,"user":"viewer","database":null,"client_addr":null,"application_name":"evil\u001b[2J",
                 "state":"parked","since":"2024-12-30T22:00:00.000Z","last_activity":"2025-01-01T01:00:00.000Z",
                 "holds":{"settings":0,"statements":0,"temp_tables":0,"temp_rows":0,"channels":0,"locks":0},
                 "blocker":null}]"#,
        )
        .unwrap();
        let now = humantime::parse_rfc3339("2025-01-01T01:00:00Z").unwrap();
        let text = render_sessions(&[("pg".into(), sessions), ("other".into(), vec![])], now);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("CLUSTER") && lines[0].contains("HOLDS"));
        let words: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            &words[..11],
            &[
                "pg",
                "5",
                "app",
                "app",
                "127.0.0.1:40312",
                "psql",
                "attached",
                "1h00m",
                "45s",
                "settings=2",
                "temp_tables=1"
            ],
            "{text}"
        );
        assert!(lines[1].ends_with("open transaction"), "{text}");
        let words: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            &words,
            &[
                "pg",
                "6",
                "viewer",
                "-",
                "-",
                "evil\\u{1b}[2J",
                "parked",
                "1d03h",
                "0s",
                "-",
                "-"
            ],
            "{text}"
        );
        assert!(!text.contains('\u{1b}'));
    }

    #[test]
    fn ages_read_for_a_person() {
        let now = humantime::parse_rfc3339("2025-01-01T00:00:00Z").unwrap();
        let ago = |secs: u64| {
            humantime::format_rfc3339_millis(now - Duration::from_secs(secs)).to_string()
        };
        assert_eq!(age(&ago(0), now), "0s");
        assert_eq!(age(&ago(59), now), "59s");
        assert_eq!(age(&ago(192), now), "3m12s");
        assert_eq!(age(&ago(7500), now), "2h05m");
        assert_eq!(age(&ago(4 * 86400 + 3 * 3600 + 5), now), "4d03h");
        // A clock that went backwards, and garbage.
        assert_eq!(age("2025-01-01T00:00:09.000Z", now), "0s");
        assert_eq!(age("yesterday", now), "?");
    }
}
