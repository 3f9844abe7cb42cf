//! Integration tests of the agent's pieces against fakes of the outside world: a fake Pi
//! /proc + /sys tree and the faithful Ollama double of `pifleet-system-tests`.

mod binary;
mod lifecycle;
mod metrics;
mod tasks;
#[path = "../util/mod.rs"]
mod util;
