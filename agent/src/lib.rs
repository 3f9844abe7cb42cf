//! `pifleet-agent`: the minimal-footprint worker that turns a Raspberry Pi (or any Linux
//! box) into a pifleet node.
//!
//! Blocking by design: plain threads and `ureq`, no async runtime. One thread registers
//! and then runs a work loop per task slot (long-poll `GET /api/workers/{id}/tasks?wait=N`,
//! execute, spool the result, deliver it); one thread heartbeats live metrics from /proc
//! and /sys; the calling thread supervises: systemd notifications, the watchdog, signals.
//!
//! Where things live, by job:
//!
//! | file | job |
//! | --- | --- |
//! | `process.rs` | the binary: arguments, logger, daemon, signals, exit codes |
//! | `run.rs` | one agent's life: assemble, register, start the loops, shut down; [`Handle`] |
//! | `node.rs` | the parts every thread shares, one field per concern |
//! | `registration.rs` | capabilities, registering, the one "404 -> register again" policy |
//! | `work.rs` | the work loop: poll, run, spool the result |
//! | `delivery.rs` | the outbox: spool first, then post results oldest first |
//! | `spool.rs` | results on disk (write, list, remove), nothing else |
//! | `staging.rs` | model pulls and pre-loads the orchestrator asks for, with their progress |
//! | `heartbeat.rs` | the heartbeat loop: metrics, model changes, drain |
//! | `supervise.rs` | watchdog pings, STATUS=, the orderly shutdown |
//! | `abort.rs` | stopping a gateway request that waits for Ollama's first token, from the heartbeat |
//! | `activity.rs` | what the node is doing now: running tasks, drain, status, LED |
//! | `watchdog.rs` | systemd notify, progress deadlines ([`watchdog::Beat`]), [`watchdog::Stop`] |
//! | `retry.rs`, `rng.rs` | backoff, jitter, quiet failure logging; the seedable PRNG |
//! | `client.rs`, `ollama/`, `http.rs` | the orchestrator's and the local Ollama's HTTP APIs |
//! | `runner.rs` | one task in, one outcome out, per task type; `outcome.rs` builds them |
//! | `gateway.rs`, `relay.rs` | `ollama_api` tasks; streaming their chunks to the orchestrator |
//! | `evolution.rs` | the native crossover and mutation tasks |
//! | `probe.rs`, `gpio.rs` | /proc and /sys metrics; the status LED |
//! | `config/` | the config file, environment and flags, validated |
//!
//! Wire format: the types of `pifleet-protocol` (the seed's D8 HTTP protocol plus optional
//! fields). A sample config (`/etc/pifleet/agent.toml`):
//!
//! ```toml
//! orchestrator_url = "http://192.168.1.10:5000"
//! worker_token = "change-me"
//! ollama_url = "http://127.0.0.1:11434"
//! heartbeat_interval_s = 10
//! led_pin = 17
//! ```

pub mod abort;
pub mod activity;
pub mod client;
pub mod config;
pub mod credential;
pub mod delivery;
pub mod error;
pub mod evolution;
pub mod gateway;
pub mod gpio;
pub mod heartbeat;
pub mod http;
pub mod node;
pub mod ollama;
pub mod outcome;
pub mod probe;
pub mod process;
pub mod registration;
pub mod relay;
pub mod retry;
pub mod rng;
pub mod run;
pub mod runner;
pub mod spool;
pub mod staging;
pub mod supervise;
pub mod watchdog;
pub mod work;

pub use crate::config::{Args, Config, VERSION};
pub use crate::error::Error;
pub use crate::process::main_inner;
pub use crate::retry::jitter;
pub use crate::run::{run, Handle};
