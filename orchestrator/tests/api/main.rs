//! The HTTP API, driven through `app().oneshot()` with a manual clock.

mod attempts;
mod nodes;
mod placement;
mod random_traffic;
mod refusals;
mod seed;

#[path = "../util/mod.rs"]
mod util;

use axum::http::StatusCode;
use pifleet_orchestrator::fleet::NewTask;
use pifleet_protocol::TaskState;
use serde_json::{json, Value};
use util::{get_json, GatedStore, Harness};

fn mib(n: u64) -> u64 {
    n * 1024 * 1024
}
