//! `pifleet-orchestrator simulate`: a fleet of simulated Pis on a simulated clock, to see
//! what a placement policy does before it ships, and for capacity planning.
//!
//! The `pifleet` policy is the orchestrator's own placement: the eligibility rules of
//! [`crate::fleet::placement`] (dead, hot, under-voltage, model, memory) and the expected-finish
//! ranking and bounded waiting of [`crate::fleet::finish`], fed by the speeds the real
//! [`crate::fleet::speed::SpeedBook`] learns from each simulated result. The simple
//! policies routers use (`least-loaded`, `round-robin`, `random`) get the same
//! eligibility rules and send each request to a node at once, where it queues FIFO as
//! in Ollama.

pub mod config;
mod run;
mod world;

use std::path::PathBuf;
use std::process::ExitCode;

pub use config::{SimConfig, DEFAULT_TOML};
pub use run::{simulate, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// Expected finish time from measured speeds, temperature trend, bounded waiting.
    Pifleet,
    /// Fewest tasks running or queued on the node.
    LeastLoaded,
    RoundRobin,
    Random,
}

impl Policy {
    pub const ALL: [Policy; 4] = [
        Policy::Pifleet,
        Policy::LeastLoaded,
        Policy::RoundRobin,
        Policy::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::Pifleet => "pifleet",
            Policy::LeastLoaded => "least-loaded",
            Policy::RoundRobin => "round-robin",
            Policy::Random => "random",
        }
    }
}

/// `pifleet-orchestrator simulate`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Fleet, models and workload as TOML [default: the built-in fleet, see --print-config].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Policies to compare (repeat the flag) [default: all four].
    #[arg(long = "policy", value_enum)]
    pub policies: Vec<Policy>,
    /// Simulated seconds of arrivals, overriding the file's duration_s.
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Arrivals as a fraction of the fleet's warm capacity, overriding the file's load.
    #[arg(long)]
    pub load: Option<f64>,
    /// One JSON object per policy, one per line.
    #[arg(long)]
    pub json: bool,
    /// Print the default configuration and exit.
    #[arg(long)]
    pub print_config: bool,
}

fn load(args: &Args) -> Result<SimConfig, String> {
    let mut c = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            SimConfig::parse(&text, &path.display().to_string())?
        }
        None => SimConfig::parse(DEFAULT_TOML, "the built-in configuration")?,
    };
    if let Some(d) = args.duration {
        c.duration_s = d;
        c.warmup_s = c.warmup_s.min(d / 4.0);
    }
    if let Some(l) = args.load {
        c.load = l;
    }
    // The overrides go through the same checks as the file.
    c.validate().map_err(|e| format!("the command line: {e}"))?;
    Ok(c)
}

pub fn main(args: Args) -> ExitCode {
    if args.print_config {
        print!("{DEFAULT_TOML}");
        return ExitCode::SUCCESS;
    }
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pifleet-orchestrator simulate: {e}");
            return ExitCode::from(2);
        }
    };
    let policies = if args.policies.is_empty() {
        Policy::ALL.to_vec()
    } else {
        args.policies.clone()
    };
    if !args.json {
        println!(
            "{} nodes, {} models, load {:.0} %, {:.0} s of arrivals ({:.1} tasks/s)",
            config.boards.iter().map(|b| b.count).sum::<usize>(),
            config.models.len(),
            config.load * 100.0,
            config.duration_s,
            run::arrival_rate(&config),
        );
        println!(
            "{:<13} {:>9} {:>8} {:>8} {:>8} {:>8} {:>12} {:>7}",
            "policy", "completed", "mean_s", "p50_s", "p99_s", "pending", "throttled_s", "wall_s"
        );
    }
    for p in policies {
        let r = simulate(&config, p);
        if args.json {
            println!("{}", r.json());
        } else {
            println!(
                "{:<13} {:>9} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>12.0} {:>7.2}",
                r.policy,
                r.completed,
                r.mean_s,
                r.p50_s,
                r.p99_s,
                r.unfinished,
                r.throttled_node_s,
                r.wall_s
            );
        }
    }
    ExitCode::SUCCESS
}
