//! TLS from clients (issue 12): what the handshake adds to a cold wake. A session parked on
//! TLS keeps its TLS session with torpor across the backend's stop, so its wake should cost what
//! a plaintext one does; a client that connects to a sleeping cluster pays the handshake before
//! the wake. Both against plaintext in the same run, in alternating order.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use tokio_postgres::Client;

use crate::pg::{bare_postgres, check_wake_state, connect, wake_state};
use crate::stats::{Outcome, max, median, min, ms};
use crate::tls;
use crate::torpor::{Proto, Spec, Torpor};

/// The bare server's start → first query is the target's base, as for pg_cold_wake.
const TARGET: &str = "p50 ≤ bare + 30 ms";

#[derive(Clone, Copy)]
enum Way {
    Plain,
    Tls,
}

#[derive(Default)]
struct Figures {
    bare: Vec<f64>,
    /// Parked session's first query after a sleep.
    parked: [Vec<f64>; 2],
    /// Connect + first query while the cluster sleeps.
    new: [Vec<f64>; 2],
    /// Connect + first query while it runs: the handshake without a wake.
    awake: [Vec<f64>; 2],
}

/// Connect + first query samples per way and run while the cluster runs.
const AWAKE_SAMPLES: usize = 5;

pub(crate) async fn wake(bin: &Path, work: &Path, runs: usize) -> Result<()> {
    std::fs::create_dir_all(work)?;
    let spec = Spec {
        proto: Proto::Postgres,
        idle_timeout: "1h",
        freeze_after: None,
        settings: r#"{ fsync = "off" }"#,
    };
    let server = tls::Server::make(work)?;
    let t = Torpor::start_with(bin, work, &[spec], &server.toml).await?;
    let f = t.measure(async |t| measure(t, &server, runs).await).await?;
    let bare = median(&f.bare);
    let bare_text = format!(
        "bare postgres start→query p50 {bare:.1} ms (min {:.1}, max {:.1})",
        min(&f.bare),
        max(&f.bare)
    );
    let emit = |name: &str, pair: &[Vec<f64>; 2], what: &str, note: String| {
        let (plain, tls) = (median(&pair[0]), median(&pair[1]));
        Outcome {
            name: name.into(),
            unit: "ms".into(),
            runs: pair[1].clone(),
            baseline: format!(
                "plaintext {what} p50 {plain:.1} ms (min {:.1}, max {:.1}), same run; {bare_text}",
                min(&pair[0]),
                max(&pair[0])
            ),
            ratio: Some(tls / plain),
            target: TARGET.into(),
            met: tls <= bare + 30.0,
            note: format!(
                "TLS − plaintext = {:+.1} ms; TLS − bare = {:+.1} ms; {note}",
                tls - plain,
                tls - bare
            ),
        }
        .emit();
    };
    emit(
        "pg_cold_wake_tls",
        &f.parked,
        "session",
        "a session parked on TLS (sslmode=require, SCRAM-SHA-256-PLUS) with the pg_cold_wake state; its first query after a sleep".into(),
    );
    let (awake_plain, awake_tls) = (median(&f.awake[0]), median(&f.awake[1]));
    emit(
        "pg_cold_connect_tls",
        &f.new,
        "new connection",
        format!(
            "a new connection to the sleeping cluster, connect + handshake + SCRAM + first query; \
             with the server running: TLS {awake_tls:.2} ms, plaintext {awake_plain:.2} ms \
             ({:+.2} ms, p50 of {} each)",
            awake_tls - awake_plain,
            f.awake[1].len()
        ),
    );
    Ok(())
}

async fn open(t: &Torpor, server: &tls::Server, way: Way) -> Result<Client> {
    match way {
        Way::Plain => connect(t.listen).await,
        Way::Tls => server.connect(t.listen).await,
    }
}

/// A new connection and its first query, in ms.
async fn connect_and_query(t: &Torpor, server: &tls::Server, way: Way) -> Result<f64> {
    let start = Instant::now();
    let c = open(t, server, way).await?;
    c.simple_query("SELECT 2").await?;
    Ok(ms(start.elapsed()))
}

async fn measure(t: &Torpor, server: &tls::Server, runs: usize) -> Result<Figures> {
    let parked = [
        open(t, server, Way::Plain).await?,
        open(t, server, Way::Tls).await?,
    ];
    let mut stmts = Vec::new();
    for c in &parked {
        stmts.push(wake_state(c).await?);
    }
    let mut f = Figures::default();
    for run in 0..runs {
        // Each run starts with the other way, so drift on the machine falls on both alike.
        let order = if run % 2 == 0 {
            [Way::Plain, Way::Tls]
        } else {
            [Way::Tls, Way::Plain]
        };
        t.sleep().await?;
        // The bare server stops again: the first wake below needs no sleep of its own.
        f.bare.push(bare_postgres(&t.data_dir, t.backend).await?);
        for (i, way) in order.into_iter().enumerate() {
            if i > 0 {
                t.sleep().await?;
            }
            let start = Instant::now();
            // Not SELECT 1: torpor answers that probe itself while the database sleeps.
            parked[way as usize].simple_query("SELECT 2").await?;
            f.parked[way as usize].push(ms(start.elapsed()));
        }
        for way in order {
            t.sleep().await?;
            f.new[way as usize].push(connect_and_query(t, server, way).await?);
        }
        for _ in 0..AWAKE_SAMPLES {
            for way in order {
                f.awake[way as usize].push(connect_and_query(t, server, way).await?);
            }
        }
    }
    for (c, s) in parked.iter().zip(&stmts) {
        check_wake_state(c, s).await?;
    }
    Ok(f)
}
