//! The `torpor` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use torpor::config::{Config, Protocol, same_addr};

#[derive(Parser)]
#[command(
    name = "torpor",
    version,
    about = "Stateful serverless proxy for PostgreSQL and MySQL/MariaDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the embedded default config when --config is not given).
    Up {
        #[arg(long, short, env = "TORPOR_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and what `up` needs of this machine (server binaries, a free
    /// data dir, free ports), without starting anything.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Read a password on standard input and print the `password_hash` value for it, one line.
    HashPassword {
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
    },
    /// Show the clusters of a running torpor.
    Status {
        /// The admin API address; defaults to the one in --config or the embedded default.
        #[arg(long)]
        admin: Option<String>,
        #[arg(long, short, env = "TORPOR_CONFIG")]
        config: Option<PathBuf>,
        /// List sessions (who they are, attached or parked, what they hold, what blocks)
        /// instead of clusters.
        #[arg(long)]
        sessions: bool,
        /// With --sessions: only this cluster's.
        #[arg(long, requires = "sessions")]
        cluster: Option<String>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProtocolArg {
    Postgres,
    Mysql,
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    match config {
        Some(path) => Config::load(path).with_context(|| format!("config {}", path.display())),
        None => Config::default_local().context("embedded default config"),
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TORPOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::HashPassword { protocol } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let protocol = match protocol {
                ProtocolArg::Postgres => Protocol::Postgres,
                ProtocolArg::Mysql => Protocol::Mysql,
            };
            println!("{}", torpor::hash_password::hash(protocol, &line)?);
            Ok(())
        }
        Command::Check { config } => {
            let cfg = load(Some(&config))?;
            let warnings = torpor::check::environment(&cfg)
                .with_context(|| format!("config {}", config.display()))?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: ok ({} cluster{})",
                config.display(),
                cfg.clusters.len(),
                if cfg.clusters.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Command::Status {
            admin,
            config,
            sessions,
            cluster,
        } => {
            // The config gives the address unless --admin does, and the token if it has one.
            let cfg = if admin.is_some() && config.is_none() {
                None
            } else {
                Some(load(config.as_ref())?)
            };
            let token = cfg.as_ref().map(|c| c.admin.token()).transpose()?.flatten();
            let addr = admin
                .or_else(|| cfg.as_ref().map(|c| c.admin.listen.clone()))
                .unwrap_or_default();
            let api = torpor::status::AdminApi {
                addr: &addr,
                token: token.as_deref(),
            };
            let text = if sessions {
                rt.block_on(torpor::status::sessions(&api, cluster.as_deref()))?
            } else {
                rt.block_on(torpor::status::run(&api))?
            };
            print!("{text}");
            Ok(())
        }
        Command::Up { config } => {
            let embedded = config.is_none();
            let cfg = load(config.as_ref())?;
            rt.block_on(up(cfg, embedded))
        }
    }
}

async fn up(cfg: Config, embedded: bool) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM that arrives as soon as the banner is out must still shut
    // down in order rather than kill the process.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let clusters = cfg.clusters.clone();
    let doors = cfg.doors();
    let running = torpor::server::start(cfg).await?;
    for (c, addr) in clusters.iter().zip(&running.listen_addrs) {
        let user = c
            .users
            .first()
            .map(|u| u.name.as_str())
            .unwrap_or("postgres");
        // The embedded default's password is documented; never print a configured one.
        let auth = if embedded {
            format!(
                "{user}:{}",
                c.users
                    .first()
                    .and_then(|u| u.password.as_deref())
                    .unwrap_or("")
            )
        } else {
            user.to_string()
        };
        // PostgreSQL users get a database of their name; MariaDB ones get the cluster's.
        let (scheme, db) = match c.protocol {
            Protocol::Postgres => ("postgres", user),
            Protocol::Mysql => ("mysql", c.name.as_str()),
        };
        // On an address other clusters share, the URL must name this one.
        let shared = doors
            .iter()
            .find(|(a, _)| c.listen.first().is_some_and(|f| same_addr(a, f)))
            .is_some_and(|(_, served)| served.len() > 1);
        let choose = if shared {
            format!("?options=-c%20torpor.cluster%3D{}", c.name)
        } else {
            String::new()
        };
        println!(
            "torpor: cluster {} ready at {scheme}://{auth}@{addr}/{db}{choose}",
            c.name
        );
    }
    println!("torpor: admin API at http://{}", running.admin_addr);

    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = hup.recv() => {
                running.reload_certificates();
            }
        }
    }
    tracing::info!("shutting down: closing clients, stopping backends");
    running.shutdown().await;
    Ok(())
}
