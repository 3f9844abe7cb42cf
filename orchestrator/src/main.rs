//! `pifleet-orchestrator serve [--config FILE] [--listen ADDR:PORT] [--db PATH] [--insecure]`
//! `pifleet-orchestrator keys add|list|revoke ...`, `pifleet-orchestrator nodes forget ID`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pifleet_orchestrator::config::{Config, LogFormat, RawConfig};
use pifleet_orchestrator::keys;
use tracing_subscriber::EnvFilter;

// glibc's allocator spent a tenth of the server's CPU under load (many small JSON and
// header allocations freed across threads); mimalloc handles that pattern far better.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "pifleet-orchestrator",
    version,
    about = "Schedules LLM work on a fleet of Raspberry Pis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the seed's D8 protocol plus pifleet's extensions).
    Serve {
        /// TOML configuration file (also PIFLEET_CONFIG).
        #[arg(long, env = "PIFLEET_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address and port to listen on [default: 127.0.0.1:5000].
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
        /// SQLite database file, or :memory: [default: pifleet.db in $STATE_DIRECTORY or
        /// the working directory].
        #[arg(long, value_name = "PATH")]
        db: Option<String>,
        /// Allow listening on a non-loopback address without tokens.
        #[arg(long)]
        insecure: bool,
    },
    /// Client keys: add (prints the secret once), list, revoke. Works beside a running server.
    Keys {
        #[command(flatten)]
        db: keys::cli::DbArgs,
        #[command(subcommand)]
        command: keys::cli::KeysCommand,
    },
    /// Nodes: forget a lost or stolen one (drops its credential). Works beside a running server.
    Nodes {
        #[command(flatten)]
        db: keys::cli::DbArgs,
        #[command(subcommand)]
        command: keys::cli::NodesCommand,
    },
    /// Compare placement policies on a simulated fleet (see --print-config).
    Simulate(pifleet_orchestrator::sim::Args),
}

fn load_config(
    file: Option<PathBuf>,
    listen: Option<String>,
    db: Option<String>,
    insecure: bool,
) -> Result<Config, pifleet_orchestrator::config::ConfigError> {
    let from_file = match file {
        Some(path) => RawConfig::from_file(&path)?,
        None => RawConfig::default(),
    };
    let from_env = RawConfig::from_env(|k| std::env::var(k).ok())?;
    let from_flags = RawConfig {
        listen,
        db,
        insecure: insecure.then_some(true),
        ..Default::default()
    };
    let state_dir = std::env::var("STATE_DIRECTORY").ok();
    Config::from_raw(
        from_file.overlay(from_env).overlay(from_flags),
        state_dir.as_deref(),
    )
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("PIFLEET_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // journald and files get plain text; a terminal gets colour.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn fail(msg: String) -> ExitCode {
    eprintln!("pifleet-orchestrator: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, listen, db, insecure) = match cli.command {
        Command::Serve {
            config,
            listen,
            db,
            insecure,
        } => (config, listen, db, insecure),
        Command::Keys { db, command } => {
            return db
                .file()
                .map_or_else(fail, |p| keys::cli::keys(&p, command))
        }
        Command::Nodes { db, command } => {
            return db
                .file()
                .map_or_else(fail, |p| keys::cli::nodes(&p, command))
        }
        Command::Simulate(args) => return pifleet_orchestrator::sim::main(args),
    };
    let config = match load_config(config, listen, db, insecure) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pifleet-orchestrator: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pifleet-orchestrator: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("listen on {}: {e}", config.listen))?;
        pifleet_orchestrator::run(listener, config, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pifleet-orchestrator: {e}");
            ExitCode::FAILURE
        }
    }
}
