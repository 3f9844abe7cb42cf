//! `pifleet`: the command line for a pifleet orchestrator.
//!
//! It talks to the orchestrator's HTTP API (`--url`, default `http://127.0.0.1:5000`, or
//! `PIFLEET_URL`) with the client token (`--token` or `PIFLEET_TOKEN`, sent as
//! `Authorization: Bearer`), and answers "how are my Pis?" in a terminal:
//!
//! ```text
//! pifleet nodes                  # table: name, status, temp, CPU, mem, models, task, last seen
//! pifleet nodes --json           # the raw /api/nodes answer
//! pifleet node pi-kitchen        # one node, with metric history sparklines
//! pifleet watch                  # nodes, queue and recent tasks, refreshed every 2 s
//! pifleet submit agent_action --data task.json --priority 8 --wait
//! pifleet task 5f0c…             # a task's status and result
//! pifleet drain pi-kitchen       # finish running work, take no new work
//! pifleet undrain pi-kitchen
//! ```
//!
//! Colours are used only when stdout is a terminal and `NO_COLOR` is unset.

pub mod client;
pub mod render;
pub mod work;

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use pifleet_protocol::{SubmitRequest, TaskState};

pub use client::{Client, Error, DEFAULT_URL};

#[derive(Debug, Parser)]
#[command(
    name = "pifleet",
    version,
    about = "Command line for a pifleet orchestrator: nodes, tasks, drain"
)]
pub struct Cli {
    /// Orchestrator base URL.
    #[arg(long, global = true, env = "PIFLEET_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Client bearer token, when the orchestrator requires one.
    #[arg(long, global = true, env = "PIFLEET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the nodes: status, temperature, CPU, memory, models, task, last seen.
    Nodes {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one node in detail, with its recent metric history.
    Node {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Submit a task; prints its id (or, with --wait, its final status).
    Submit {
        /// Task type: agent_action, code_generation, evolution_crossover, evolution_mutation, ...
        #[arg(value_name = "TYPE")]
        task_type: String,
        /// JSON file with the task's data; `-` reads standard input. Default: `{}`.
        #[arg(long, short = 'd', value_name = "FILE")]
        data: Option<PathBuf>,
        /// Priority 1-10, higher runs first (default 5).
        #[arg(long, short = 'p', value_parser = clap::value_parser!(u8).range(1..=10))]
        priority: Option<u8>,
        /// Per-attempt timeout in seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Attempts before the task fails.
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Wait until the task completes or fails, showing progress on stderr.
        #[arg(long, short = 'w')]
        wait: bool,
        /// Give up waiting after this many seconds (the task keeps going).
        #[arg(long, value_name = "SECONDS", default_value_t = 600)]
        wait_timeout: u64,
        #[arg(long)]
        json: bool,
    },
    /// Show a task's status and result.
    Task {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Drain a node: it finishes what it runs and gets no new work.
    Drain { id: String },
    /// Undo a drain: the node gets work again.
    Undrain { id: String },
    /// Nodes, queue (running, pending with reasons) and recent tasks, refreshed until
    /// interrupted.
    Watch {
        /// Seconds between refreshes.
        #[arg(long, short = 'n', default_value_t = 2.0)]
        interval: f64,
        /// Stop after this many refreshes (default: never).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// Everything a command failure can be.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Api(#[from] Error),
    #[error("cannot read task data from {path}: {source}")]
    DataRead {
        path: String,
        source: std::io::Error,
    },
    #[error("task data in {path} is not valid JSON: {source}")]
    DataJson {
        path: String,
        source: serde_json::Error,
    },
    #[error("task {task_id} failed: {reason}")]
    TaskFailed { task_id: String, reason: String },
    #[error("task {task_id} is still {state} after {waited_s} s (it keeps going; check it with `pifleet task {task_id}`)")]
    WaitTimeout {
        task_id: String,
        state: &'static str,
        waited_s: u64,
    },
    #[error("--interval must be a positive number of seconds")]
    BadInterval,
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// Where output goes and how it looks: injected so tests can capture it.
pub struct Term<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// Colours on stdout.
    pub color: bool,
    /// Stderr is a terminal: progress may redraw a line in place.
    pub err_tty: bool,
    /// Stdout is a terminal: `watch` may clear the screen.
    pub out_tty: bool,
}

/// Colours only on a terminal, and never when `NO_COLOR` is set to anything non-empty.
pub fn want_color(is_tty: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_tty && !matches!(no_color, Some(v) if !v.is_empty())
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs one command against the orchestrator.
pub fn run(cli: Cli, term: &mut Term<'_>) -> Result<(), CliError> {
    let client = Client::new(&cli.url, cli.token)?;
    match cli.command {
        Command::Nodes { json } => {
            let nodes = client.nodes()?;
            if json {
                writeln!(term.out, "{}", pretty(&nodes))?;
            } else {
                write!(
                    term.out,
                    "{}",
                    render::nodes_table(&nodes, now(), term.color)
                )?;
            }
        }
        Command::Node { id, json } => {
            let detail = client.node(&id)?;
            if json {
                writeln!(term.out, "{}", pretty(&detail))?;
            } else {
                write!(
                    term.out,
                    "{}",
                    render::node_detail(&detail, now(), term.color)
                )?;
            }
        }
        Command::Task { id, json } => {
            let status = client.task(&id)?;
            if json {
                writeln!(term.out, "{}", pretty(&status))?;
            } else {
                write!(term.out, "{}", render::task_status(&status, now()))?;
            }
        }
        Command::Drain { id } => {
            let node = client.drain(&id, true)?;
            let running = match node.current_tasks.len() {
                0 => "it runs nothing now".to_string(),
                1 => "it finishes its 1 running task".to_string(),
                n => format!("it finishes its {n} running tasks"),
            };
            writeln!(
                term.out,
                "{} is draining: {running} and takes no new work",
                node.worker_id
            )?;
        }
        Command::Undrain { id } => {
            let node = client.drain(&id, false)?;
            writeln!(term.out, "{} takes work again", node.worker_id)?;
        }
        Command::Watch { interval, count } => {
            if !(interval.is_finite() && interval > 0.0) {
                return Err(CliError::BadInterval);
            }
            watch(&client, term, Duration::from_secs_f64(interval), count)?;
        }
        Command::Submit {
            task_type,
            data,
            priority,
            timeout,
            max_attempts,
            wait,
            wait_timeout,
            json,
        } => {
            let data = read_data(data.as_deref())?;
            let req = SubmitRequest {
                task_type,
                data,
                priority,
                timeout_s: timeout,
                max_attempts,
                expires_s: None,
            };
            let submitted = client.submit(&req)?;
            if !wait {
                if json {
                    writeln!(term.out, "{}", pretty(&submitted))?;
                } else {
                    writeln!(term.out, "{}", submitted.task_id)?;
                }
                return Ok(());
            }
            let status = wait_for(
                &client,
                &submitted.task_id,
                Duration::from_secs(wait_timeout),
                term,
            )?;
            if json {
                writeln!(term.out, "{}", pretty(&status))?;
            } else {
                write!(term.out, "{}", render::task_status(&status, now()))?;
            }
            if status.status == TaskState::Failed {
                return Err(CliError::TaskFailed {
                    task_id: status.task_id.clone(),
                    reason: status
                        .error
                        .clone()
                        .unwrap_or_else(|| "no reason given".into()),
                });
            }
        }
    }
    Ok(())
}

fn pretty(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn read_data(path: Option<&std::path::Path>) -> Result<serde_json::Value, CliError> {
    let Some(path) = path else {
        return Ok(serde_json::json!({}));
    };
    let shown = path.display().to_string();
    let text = if shown == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|source| CliError::DataRead {
                path: "standard input".into(),
                source,
            })?;
        s
    } else {
        std::fs::read_to_string(path).map_err(|source| CliError::DataRead {
            path: shown.clone(),
            source,
        })?
    };
    let name = if shown == "-" {
        "standard input".to_string()
    } else {
        shown
    };
    serde_json::from_str(&text).map_err(|source| CliError::DataJson { path: name, source })
}

const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

/// Polls the task until it settles, drawing progress on stderr: a redrawn line on a
/// terminal, one line per state change otherwise.
fn wait_for(
    client: &Client,
    task_id: &str,
    limit: Duration,
    term: &mut Term<'_>,
) -> Result<pifleet_protocol::TaskStatusResponse, CliError> {
    let start = Instant::now();
    let mut last_line = String::new();
    let mut tick = 0usize;
    loop {
        let asked = Instant::now();
        let status = client.task_wait(task_id, Duration::from_secs(1))?;
        let settled = matches!(
            status.status,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled
        );
        let mut line = format!("task {} {}", short(task_id), status.status.as_str());
        if let Some(node) = &status.assigned_to {
            if status.status == TaskState::Assigned {
                line.push_str(&format!(" on {node}"));
            }
        }
        if let (Some(a), true) = (status.attempts, status.attempts.unwrap_or(0) > 1) {
            line.push_str(&format!(" (attempt {a})"));
        }
        if let Some(place) = render::standing(&status) {
            line.push_str(&format!(" ({place})"));
        }
        if let Some(reason) = &status.pending_reason {
            line.push_str(&format!(": {reason}"));
        }
        if term.err_tty {
            let elapsed = start.elapsed().as_secs_f64();
            let spin = if settled { ' ' } else { SPINNER[tick % 4] };
            write!(term.err, "\r\x1b[2K{spin} {line}  {elapsed:.1}s")?;
            if settled {
                writeln!(term.err)?;
            }
            term.err.flush()?;
        } else if line != last_line {
            writeln!(term.err, "{line}")?;
        }
        last_line = line;
        tick += 1;
        if settled {
            return Ok(status);
        }
        if start.elapsed() >= limit {
            if term.err_tty {
                writeln!(term.err)?;
            }
            return Err(CliError::WaitTimeout {
                task_id: task_id.to_string(),
                state: status.status.as_str(),
                waited_s: limit.as_secs(),
            });
        }
        // An orchestrator without long polls answers at once: do not hammer it.
        let took = asked.elapsed();
        if took < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(200) - took);
        }
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn watch(
    client: &Client,
    term: &mut Term<'_>,
    interval: Duration,
    count: Option<u64>,
) -> Result<(), CliError> {
    let mut n = 0u64;
    loop {
        let frame = match watch_frame(client, term.color) {
            Ok(frame) => frame,
            // A watch outlives orchestrator restarts: show the error and keep trying,
            // except for errors that retrying cannot fix.
            Err(
                e @ (Error::Unauthorized { .. } | Error::Forbidden { .. } | Error::BadUrl { .. }),
            ) => return Err(e.into()),
            Err(e) => format!("pifleet: {e}"),
        };
        if term.out_tty {
            // Home, draw, clear what the previous (longer) frame left below.
            write!(
                term.out,
                "\x1b[H\x1b[2J{} — {}\n\n{frame}\n",
                client.base_url(),
                clock()
            )?;
        } else {
            writeln!(term.out, "{frame}\n")?;
        }
        term.out.flush()?;
        n += 1;
        if count.is_some_and(|c| n >= c) {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}

/// Nodes, then the work: one frame of `pifleet watch`.
fn watch_frame(client: &Client, color: bool) -> Result<String, Error> {
    let nodes = client.nodes()?;
    let queue = client.queue_top(work::SHOWN)?;
    let recent = client.recent(work::SHOWN)?;
    let now = now();
    Ok(format!(
        "{}\n{}\n\n{}",
        render::nodes_table(&nodes, now, color),
        render::nodes_summary(&nodes),
        work::work_view(&queue, recent.as_ref(), now, color)
    ))
}

fn clock() -> String {
    let secs = now() as u64 % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The binary's entry point: parses nothing itself, returns the process exit code.
pub fn main_with(cli: Cli) -> std::process::ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let out_tty = stdout.is_terminal();
    let err_tty = stderr.is_terminal();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut term = Term {
        color: want_color(out_tty, std::env::var_os("NO_COLOR")),
        out: &mut out,
        err: &mut err,
        err_tty,
        out_tty,
    };
    match run(cli, &mut term) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(term.err, "pifleet: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
