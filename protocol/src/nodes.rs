//! Node health views: one node as operators see it, heat thresholds, history, measured speeds.

use serde::{Deserialize, Serialize};

use crate::*;

/// One node as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub worker_id: String,
    pub worker_type: String,
    pub status: WorkerState,
    pub draining: bool,
    pub registered_at: f64,
    pub last_seen: f64,
    pub capabilities: Capabilities,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<NodeMetrics>,
    #[serde(default)]
    pub current_tasks: Vec<String>,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    /// Gateway tasks whose answer the node is streaming to a client right now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streaming: Vec<String>,
    /// The node's model pulls and pre-loads: running, done, failed (with Ollama's message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staging: Vec<StageProgress>,
}

impl NodeView {
    /// The status a node shows everywhere (page, CLI, metrics): draining wins over
    /// online and busy, dead over everything.
    pub fn shown_status(&self) -> WorkerState {
        if self.draining && self.status != WorkerState::Dead {
            WorkerState::Draining
        } else {
            self.status
        }
    }
}

impl From<NodeView> for NodeDetail {
    /// A node without its history.
    fn from(node: NodeView) -> Self {
        NodeDetail {
            node,
            history: Vec::new(),
            thresholds: None,
            speeds: Vec::new(),
        }
    }
}

/// The temperatures the orchestrator schedules by, sent with the node views so the page
/// and the CLI mark nodes warm and hot at the configured values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// At or above this a node only gets work no cooler node can take (warm).
    pub soft_temp_c: f32,
    /// At or above this a node gets no new work (hot).
    pub hard_temp_c: f32,
}

impl Default for Thresholds {
    /// The orchestrator's defaults, for an orchestrator that does not send them.
    fn default() -> Self {
        Thresholds {
            soft_temp_c: 80.0,
            hard_temp_c: 85.0,
        }
    }
}

/// How a temperature compares with the [`Thresholds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heat {
    Cool,
    /// At or above the soft limit.
    Warm,
    /// At or above the hard limit.
    Hot,
}

impl Thresholds {
    pub fn heat(&self, temp_c: f32) -> Heat {
        if temp_c >= self.hard_temp_c {
            Heat::Hot
        } else if temp_c >= self.soft_temp_c {
            Heat::Warm
        } else {
            Heat::Cool
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodesResponse {
    pub nodes: Vec<NodeView>,
    pub total: u64,
    /// Absent from orchestrators before thresholds were sent: use the defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
}

/// One point of a node's recent history (a bounded ring of heartbeats).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    pub at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_available_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load1: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDetail {
    #[serde(flatten)]
    pub node: NodeView,
    pub history: Vec<MetricSample>,
    /// Sent by `GET /api/nodes/{id}`; absent inside lists that carry them once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    /// The speeds placement ranks the node by, per model (`GET /api/nodes/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speeds: Vec<ModelSpeed>,
}

/// What placement knows of one model's speed on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpeed {
    pub model: String,
    /// Prompt tokens processed per second.
    pub prompt_tps: f64,
    /// Tokens generated per second.
    pub gen_tps: f64,
    /// Seconds to load the model when it is not in memory.
    pub cold_load_s: f64,
    /// Where the generation speed comes from: `measured` on this node, or borrowed from
    /// nodes of the same Pi model (`pi_model`), the whole fleet (`fleet`), or a `default`.
    pub source: String,
    /// Results of this node and model the figures were learned from.
    pub results: u64,
}
