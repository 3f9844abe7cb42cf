//! Node health against a real orchestrator process with simulated agents: the node API,
//! drain, `/metrics` through a real Prometheus text parser, the live event stream and the
//! page's token handling. The `pifleet` command line has its own file, `cli.rs`.

mod metrics;
mod nodes;
mod page;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use pifleet_protocol::{NodeDetail, NodesResponse, WorkerState};
use pifleet_system_tests::cli::{ok, pifleet};
use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
use pifleet_system_tests::fleet;
use pifleet_system_tests::orch::Orch;
use pifleet_system_tests::sim::{pi_caps, pi_metrics, SimAgent};
use serde_json::{json, Value};

const TYPE: &str = "evolution_mutation";
