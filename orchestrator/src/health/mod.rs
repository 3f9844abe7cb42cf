//! Node health views: the status page at `/`, its live updates at `/api/events`
//! (server-sent events), Prometheus metrics at `/metrics`, and the node API
//! (`/api/nodes`, `/api/nodes/{id}`, drain and undrain).
//!
//! Everything here renders from one [`FleetSnapshot`] taken from the orchestrator's
//! state, so the page, the event stream and the metrics always agree with each other
//! and with `/api/nodes`.

pub mod events;
pub mod metrics;
pub mod page;
pub mod routes;

use std::collections::BTreeMap;

use pifleet_protocol::{NodeDetail, TaskCounts, WorkerCounts, WorkerState};
use serde::Serialize;

pub use crate::fleet::FailedTask;

/// Everything the health views show, taken at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetSnapshot {
    /// Seconds since the Unix epoch when the snapshot was taken.
    pub at: f64,
    /// Every known node with its recent metric history.
    pub nodes: Vec<NodeDetail>,
    /// Pending tasks per priority (1-10; absent = 0).
    pub pending_by_priority: BTreeMap<u8, u64>,
    pub tasks: TaskCounts,
    /// Most recent first.
    pub recent_failures: Vec<FailedTask>,
}

impl FleetSnapshot {
    pub fn pending(&self) -> u64 {
        self.pending_by_priority.values().sum()
    }

    /// Node counts by the status operators see (a draining node counts as draining).
    pub fn status_counts(&self) -> WorkerCounts {
        let mut c = WorkerCounts {
            total: self.nodes.len() as u64,
            ..Default::default()
        };
        for n in &self.nodes {
            match shown_status(&n.node) {
                WorkerState::Online => c.online += 1,
                WorkerState::Busy => c.busy += 1,
                WorkerState::Draining => c.draining += 1,
                WorkerState::Dead => c.dead += 1,
            }
        }
        c
    }
}

/// The status a node shows everywhere: draining wins over online/busy, dead over all.
pub fn shown_status(node: &pifleet_protocol::NodeView) -> WorkerState {
    if node.draining && node.status != WorkerState::Dead {
        WorkerState::Draining
    } else {
        node.status
    }
}
