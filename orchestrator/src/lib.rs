//! pifleet orchestrator.

pub mod health;
