//! What workers send and get: registration, heartbeats with live metrics, the worker list.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub worker_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_type: Option<String>,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Asks for a credential of the node's own (pifleet agents do; seed workers do not,
    /// and keep using the shared token). Granted on a registration with the join token
    /// for an id that has none, when the orchestrator keeps a database file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub want_credential: bool,
}

/// What a node can do. The seed sends `models` and `max_tokens`; the rest is pifleet's.
/// A worker that declares no `task_types` (every seed worker) can run every type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Model names present on the node (Ollama tags such as `llama3.2:1b`).
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Task types the node runs; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub task_types: Vec<String>,
    /// How many tasks the node runs at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// `/proc/device-tree/model`, e.g. `Raspberry Pi 4 Model B Rev 1.4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pi_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Details of the models in `models`, from Ollama's `/api/tags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_details: Vec<ModelInfo>,
    /// True when the node pulls and pre-loads models when asked ([`StageOrder`]); a node
    /// that does not say so (a seed worker, an agent with `allow_model_pull = false`) is
    /// never asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_pull: Option<bool>,
    /// Anything else a worker sends is kept and shown, never rejected.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// `"registered"`.
    pub status: String,
    pub worker_id: String,
    /// The heartbeat interval the orchestrator expects, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_s: Option<u64>,
    /// The longest `?wait=` the orchestrator honours on a poll, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_s: Option<u64>,
    /// The node's own credential, issued once (see [`RegisterRequest::want_credential`]):
    /// keep it (mode 0600) and send it as the bearer token on every later call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The heartbeat body. The seed sends none; an empty body is a valid heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<NodeMetrics>,
    /// Ids of the tasks the node is running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_tasks: Option<Vec<String>>,
    /// Ids of the tasks whose results the node holds in its spool, not yet delivered.
    /// Sent together with `running_tasks`, it lets the orchestrator take back at once an
    /// attempt the node neither runs nor holds (its poll answer was lost); a node that
    /// sends only one of the two keeps the per-attempt timeout rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spooled_results: Option<Vec<String>>,
    /// How the staging orders the node was given are going (see [`StageOrder`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staging: Vec<StageProgress>,
}

/// Live health of a node. A field the node could not read is absent, never invented.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeMetrics {
    /// Whole-machine CPU use since the previous heartbeat, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f32>,
    /// 1, 5 and 15 minute load averages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_avg: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_available_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_free_bytes: Option<u64>,
    /// SoC temperature in degrees Celsius.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f32>,
    /// The raw `get_throttled` word; see [`throttle`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<u32>,
    /// Free bytes on the filesystem of the agent's state directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ollama_reachable: Option<bool>,
    /// Models present on disk (`/api/tags`), when the node has looked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models_present: Option<Vec<String>>,
    /// Models loaded in memory now (`/api/ps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models_loaded: Option<Vec<LoadedModel>>,
}

impl NodeMetrics {
    fn throttle_bit(&self, bit: u32) -> bool {
        self.throttled.is_some_and(|t| t & bit != 0)
    }
    pub fn under_voltage_now(&self) -> bool {
        self.throttle_bit(throttle::UNDER_VOLTAGE)
    }
    pub fn throttled_now(&self) -> bool {
        self.throttle_bit(throttle::THROTTLED) || self.throttle_bit(throttle::FREQ_CAPPED)
    }
    pub fn soft_temp_limit_now(&self) -> bool {
        self.throttle_bit(throttle::SOFT_TEMP_LIMIT)
    }
    pub fn has_model_loaded(&self, model: &str) -> bool {
        self.models_loaded
            .as_ref()
            .is_some_and(|m| m.iter().any(|l| l.name == model))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadedModel {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// When Ollama will unload it (RFC 3339, as Ollama reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// `"ok"`.
    pub status: String,
    /// True while an operator has drained the node: it should finish its work and take none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining: Option<bool>,
    /// Models the orchestrator asks the node to pull or pre-load (only nodes that declared
    /// `model_pull` are asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stage: Vec<StageOrder>,
    /// Tasks of the heartbeat's `running_tasks` that are no longer this node's (their
    /// client hung up, or the attempt went elsewhere): drop their work, report nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_tasks: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnregisterResponse {
    /// `"unregistered"`.
    pub status: String,
    /// Tasks the node held that went back to the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requeued: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerSummary {
    pub worker_id: String,
    pub worker_type: String,
    pub status: WorkerState,
    pub tasks_completed: u64,
    #[serde(default)]
    pub tasks_failed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<f64>,
    #[serde(default)]
    pub current_tasks: Vec<String>,
    #[serde(default)]
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkersListResponse {
    pub workers: Vec<WorkerSummary>,
    pub total: u64,
}
