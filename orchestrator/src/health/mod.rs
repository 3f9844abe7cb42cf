//! Node health views, rendered from one [`FleetSnapshot`]: the status page's HTML
//! (`page`, with its escaping and sparklines in `html`), its live updates as server-sent
//! events (`events`, shared by every open stream in `feed`) and the Prometheus
//! exposition (`metrics`). Pure rendering: the routes, the token checks and the
//! snapshot-taking are in [`crate::http`] and [`crate::fleet`], so the page, the event
//! stream and the metrics always agree with each other and with `/api/nodes`.

pub mod events;
pub mod feed;
pub mod html;
pub mod metrics;
pub mod page;
pub mod work;

pub use crate::fleet::{FailedTask, FleetSnapshot};

/// An online node with nothing running and no metrics, for the renderers' tests.
#[cfg(test)]
pub(crate) fn test_node(id: &str, last_seen: f64) -> pifleet_protocol::NodeView {
    pifleet_protocol::NodeView {
        worker_id: id.into(),
        worker_type: "pifleet-agent".into(),
        status: pifleet_protocol::WorkerState::Online,
        draining: false,
        registered_at: 0.0,
        last_seen,
        capabilities: Default::default(),
        metrics: None,
        current_tasks: vec![],
        tasks_completed: 0,
        tasks_failed: 0,
        streaming: vec![],
        staging: vec![],
    }
}
