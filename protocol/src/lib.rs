//! Wire types shared by the pifleet agent and orchestrator.
//!
//! The protocol is the seed's D8 HTTP protocol (JSON over HTTP, default port 5000), kept
//! byte-for-byte compatible for existing clients and workers, plus additive extensions.
//! Every extension field is optional on the wire, and every type here accepts unknown
//! fields, so an old peer and a new peer understand each other in both directions.
//!
//! | method + path                          | request body        | response body            |
//! |----------------------------------------|---------------------|--------------------------|
//! | `GET /health`                          | -                   | [`HealthResponse`]       |
//! | `POST /api/workers/register`           | [`RegisterRequest`] | [`RegisterResponse`]     |
//! | `POST /api/workers/{id}/heartbeat`     | [`HeartbeatRequest`] (optional) | [`HeartbeatResponse`] |
//! | `GET /api/workers/{id}/tasks[?wait=S]` | -                   | [`PollResponse`]         |
//! | `POST /api/tasks/submit` (201)         | [`SubmitRequest`]   | [`SubmitResponse`]       |
//! | `POST /api/tasks/{id}/result`          | [`ResultRequest`]   | [`ResultResponse`]       |
//! | `GET /api/tasks/status/{id}[?wait=S]` | -                  | [`TaskStatusResponse`]   |
//! | `GET /api/workers/list`                | -                   | [`WorkersListResponse`]  |
//! | `POST /api/workers/{id}/unregister`    | -                   | [`UnregisterResponse`]   |
//! | `GET /api/stats`                       | -                   | [`StatsResponse`]        |
//! | `GET /api/tasks/queue`                 | -                   | [`QueueResponse`]        |
//! | `GET /api/tasks/recent[?limit=N]`      | -                   | [`RecentTasksResponse`]  |
//! | `GET /api/nodes`, `GET /api/nodes/{id}`| -                   | [`NodesResponse`], [`NodeDetail`] |
//! | `POST /api/nodes/{id}/drain`, `/undrain` | -                 | [`NodeView`]             |
//! | `GET /api/events`                      | -                   | `text/event-stream`      |
//! | `POST /api/tasks/{id}/stream?worker_id=W&attempt=N` | NDJSON chunks ([`OllamaApiTask`]) | `{"status":"ok"}` |
//! | `GET /metrics`                         | -                   | Prometheus text format   |
//!
//! Errors are always `{"error": "..."}` ([`ErrorResponse`]) with a 4xx/5xx status.
//! Authentication, when configured, is `Authorization: Bearer <token>`.
//! Timestamps are seconds since the Unix epoch as JSON numbers (like Python's `time.time()`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The orchestrator's default TCP port, as in the seed.
pub const DEFAULT_PORT: u16 = 5000;

/// Endpoint paths. `{id}` segments are filled with [`worker_path`] / [`task_path`].
pub mod paths {
    pub const HEALTH: &str = "/health";
    pub const REGISTER: &str = "/api/workers/register";
    pub const WORKERS_LIST: &str = "/api/workers/list";
    pub const SUBMIT: &str = "/api/tasks/submit";
    pub const TASK_STATUS_PREFIX: &str = "/api/tasks/status/";
    pub const QUEUE: &str = "/api/tasks/queue";
    /// The last settled tasks, newest first.
    pub const RECENT: &str = "/api/tasks/recent";
    pub const STATS: &str = "/api/stats";
    pub const NODES: &str = "/api/nodes";
    pub const METRICS: &str = "/metrics";
    /// Server-sent events for the status page: the fleet, pushed on every change.
    pub const EVENTS: &str = "/api/events";
    /// The status page.
    pub const PAGE: &str = "/";

    /// Route patterns as the servers' routers spell them (`{id}` is one path segment).
    /// Clients fill them with [`crate::worker_path`], [`crate::task_path`] and
    /// [`crate::node_path`].
    pub mod routes {
        pub const TASK_STATUS: &str = "/api/tasks/status/{id}";
        pub const TASK_RESULT: &str = "/api/tasks/{id}/result";
        pub const WORKER_HEARTBEAT: &str = "/api/workers/{id}/heartbeat";
        pub const WORKER_TASKS: &str = "/api/workers/{id}/tasks";
        pub const WORKER_UNREGISTER: &str = "/api/workers/{id}/unregister";
        pub const NODE: &str = "/api/nodes/{id}";
        pub const NODE_DRAIN: &str = "/api/nodes/{id}/drain";
        pub const NODE_UNDRAIN: &str = "/api/nodes/{id}/undrain";
    }
}

/// `/api/nodes/{id}` (no action) or `/api/nodes/{id}/{action}` (`drain`, `undrain`).
pub fn node_path(node_id: &str, action: Option<&str>) -> String {
    match action {
        Some(a) => format!("{}/{}/{}", paths::NODES, encode_segment(node_id), a),
        None => format!("{}/{}", paths::NODES, encode_segment(node_id)),
    }
}

/// `/api/workers/{id}/{action}` with the id percent-encoded where it must be.
pub fn worker_path(worker_id: &str, action: &str) -> String {
    format!("/api/workers/{}/{}", encode_segment(worker_id), action)
}

/// `/api/tasks/{id}/stream?worker_id=W&attempt=N`: where an agent streams the chunks of an
/// [`task_type::OLLAMA_API`] task with `stream: true` (chunked NDJSON body, worker auth).
pub fn stream_path(task_id: &str, worker_id: &str, attempt: u32) -> String {
    format!(
        "{}?worker_id={}&attempt={attempt}",
        task_path(task_id, "stream"),
        encode_segment(worker_id)
    )
}

/// `/api/tasks/{id}/{action}`.
pub fn task_path(task_id: &str, action: &str) -> String {
    format!("/api/tasks/{}/{}", encode_segment(task_id), action)
}

/// Percent-encodes everything outside RFC 3986's unreserved set, so a worker id with a
/// space or a slash still names exactly one path segment.
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The task types of the seed. Types are strings on the wire so a custom worker may
/// offer types this crate does not know.
pub mod task_type {
    pub const AGENT_ACTION: &str = "agent_action";
    pub const EVOLUTION_CROSSOVER: &str = "evolution_crossover";
    pub const EVOLUTION_MUTATION: &str = "evolution_mutation";
    pub const CODE_GENERATION: &str = "code_generation";
    /// A request to the node's Ollama API made through the orchestrator's gateway. Data:
    /// [`crate::OllamaApiTask`]. Only nodes that list it in `capabilities.task_types` get
    /// one (a seed worker could not run it).
    pub const OLLAMA_API: &str = "ollama_api";
    pub const ALL: [&str; 4] = [
        AGENT_ACTION,
        EVOLUTION_CROSSOVER,
        EVOLUTION_MUTATION,
        CODE_GENERATION,
    ];
    /// Types that run on an LLM and so need `data.model` to be present on the node.
    pub const NEEDS_MODEL: [&str; 3] = [AGENT_ACTION, CODE_GENERATION, OLLAMA_API];
}

/// Lowest and highest task priority; higher runs first.
pub const PRIORITY_MIN: u8 = 1;
pub const PRIORITY_MAX: u8 = 10;
/// Priority of a submit that names none.
pub const PRIORITY_DEFAULT: u8 = 5;

/// Bits of the Pi firmware's `get_throttled` word.
pub mod throttle {
    pub const UNDER_VOLTAGE: u32 = 1 << 0;
    pub const FREQ_CAPPED: u32 = 1 << 1;
    pub const THROTTLED: u32 = 1 << 2;
    pub const SOFT_TEMP_LIMIT: u32 = 1 << 3;
    pub const UNDER_VOLTAGE_SINCE_BOOT: u32 = 1 << 16;
    pub const FREQ_CAPPED_SINCE_BOOT: u32 = 1 << 17;
    pub const THROTTLED_SINCE_BOOT: u32 = 1 << 18;
    pub const SOFT_TEMP_LIMIT_SINCE_BOOT: u32 = 1 << 19;
}

/// How operators read sizes and ages, shared by the CLI and the status page so a number
/// reads the same in a terminal and a browser.
pub mod human {
    /// `1.5G`, `512M`, `900K`: binary units, one decimal below 10.
    pub fn bytes(n: u64) -> String {
        const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
        let mut v = n as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit < UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            format!("{n}B")
        } else if v < 10.0 {
            format!("{v:.1}{}", UNITS[unit])
        } else {
            format!("{v:.0}{}", UNITS[unit])
        }
    }

    /// How long ago `at` was, as of `now`: `3s ago`, `5m ago`, `2h ago`, `4d ago`.
    pub fn ago(at: f64, now: f64) -> String {
        let s = (now - at).max(0.0) as u64;
        match s {
            0..=59 => format!("{s}s ago"),
            60..=3599 => format!("{}m ago", s / 60),
            3600..=86_399 => format!("{}h ago", s / 3600),
            _ => format!("{}d ago", s / 86_400),
        }
    }

    /// A span of time: `850ms`, `3.2s`, `48s`, `2m05s`, `3h07m`.
    pub fn duration(secs: f64) -> String {
        let s = secs.max(0.0);
        if s < 1.0 {
            format!("{}ms", (s * 1000.0).round() as u64)
        } else if s < 10.0 {
            format!("{s:.1}s")
        } else if s < 60.0 {
            format!("{}s", s as u64)
        } else if s < 3600.0 {
            let s = s as u64;
            format!("{}m{:02}s", s / 60, s % 60)
        } else {
            let m = s as u64 / 60;
            format!("{}h{:02}m", m / 60, m % 60)
        }
    }
}

// ---------------------------------------------------------------------------------------
// States

/// A task's state: the seed's four, plus `cancelled` (its gateway client hung up, or
/// no node took it within the gateway's queue time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Pending,
    Assigned,
    Completed,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// The inverse of [`TaskState::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<TaskState> {
        match s {
            "pending" => Some(TaskState::Pending),
            "assigned" => Some(TaskState::Assigned),
            "completed" => Some(TaskState::Completed),
            "failed" => Some(TaskState::Failed),
            "cancelled" => Some(TaskState::Cancelled),
            _ => None,
        }
    }
}

/// A worker's state: the seed's online/busy/dead, plus draining (takes no new work).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    Online,
    Busy,
    Draining,
    Dead,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Online => "online",
            WorkerState::Busy => "busy",
            WorkerState::Draining => "draining",
            WorkerState::Dead => "dead",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Health

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `"healthy"`, or `"degraded"` while the store refuses commits.
    pub status: String,
    /// Absent when the request carried no valid token and tokens are configured: the
    /// fleet's size is nobody else's business.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers_online: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks_pending: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Why the store refuses commits (e.g. `database or disk is full`), while it does:
    /// submits and results are then answered 503 and nothing is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
}

// ---------------------------------------------------------------------------------------
// Workers

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

// ---------------------------------------------------------------------------------------
// Tasks

/// `{"task": {...}}` or `{"task": null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollResponse {
    pub task: Option<TaskAssignment>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskAssignment {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// 1 for the first try; a result must name it to settle this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// The task's timeout, counted from assignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
}

/// The typed view of a submit. Orchestrators validate the raw JSON themselves to name the
/// exact field at fault; clients build this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub task_id: String,
    /// `"submitted"`.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRequest {
    pub worker_id: String,
    pub result: Value,
    /// The attempt this result settles (from [`TaskAssignment::attempt`]). Seed workers
    /// omit it; then the worker currently holding the task settles its current attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
}

/// What pifleet agents put in [`ResultRequest::result`]. `success` is the seed's; a
/// result with `success: false` fails the task, unless `retryable` asks for another
/// attempt (an Ollama that stayed busy, a model that could not load in time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// The child or mutated genome of the evolution task types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genome: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Prompt + completion tokens, as the seed reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    /// Ollama's `prompt_eval_duration` and `eval_duration` in ms: how long reading the
    /// prompt and generating took, apart from loading the model (placement's speed figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_eval_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_ms: Option<u64>,
    /// For [`task_type::OLLAMA_API`]: the body Ollama returns with `stream: false` for
    /// that endpoint (for chat and generate the aggregated text plus the final statistics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// The Ollama endpoints an [`task_type::OLLAMA_API`] task may call.
pub mod ollama_endpoint {
    pub const CHAT: &str = "chat";
    pub const GENERATE: &str = "generate";
    pub const EMBED: &str = "embed";
    pub const SHOW: &str = "show";
    pub const ALL: [&str; 4] = [CHAT, GENERATE, EMBED, SHOW];
}

/// The `data` of an [`task_type::OLLAMA_API`] task: call `POST /api/{endpoint}` on the
/// node's Ollama with `request` as the body.
///
/// With `stream: true` the agent calls Ollama with streaming on and forwards each NDJSON
/// line, as Ollama wrote it and flushed at once, in ONE chunked
/// `POST /api/tasks/{id}/stream?worker_id=W&attempt=N` ([`stream_path`]); `200` when the
/// body ended, `409` (maybe before the body ends) when the attempt is no longer current:
/// then it drops its Ollama request at once. Either way it reports the result as usual:
/// [`TaskOutcome`] fields plus `response`, the body Ollama returns with `stream: false`
/// (aggregated text and Ollama's final statistics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OllamaApiTask {
    pub model: String,
    /// One of [`ollama_endpoint::ALL`].
    pub endpoint: String,
    pub request: Value,
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultResponse {
    /// `"received"` (or `"duplicate"` when the same attempt was already settled).
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatusResponse {
    pub task_id: String,
    pub status: TaskState,
    pub assigned_to: Option<String>,
    pub result: Option<Value>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// Attempts started so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Why the task failed, or why the last attempt was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why a pending task is not running yet, e.g. `no node offers model "llama3.2:1b"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub priority: u8,
    pub status: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
    #[serde(default)]
    pub attempts: u32,
    pub created_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_reason: Option<String>,
    /// When the current attempt was assigned (running tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<f64>,
}

/// The queue: pending tasks in the order they will be offered, then assigned ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueResponse {
    pub pending: Vec<QueueEntry>,
    pub assigned: Vec<QueueEntry>,
    /// Pending tasks per priority, keyed `"1"`..`"10"`.
    pub by_priority: BTreeMap<String, u64>,
    pub total_pending: u64,
    pub total_assigned: u64,
}

/// A task that completed or failed, as the CLI's watch and the status page list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentTask {
    pub task_id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    /// `completed` or `failed`.
    pub status: TaskState,
    /// The node that settled it (absent when it failed without ever running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub priority: u8,
    pub attempts: u32,
    pub created_at: f64,
    pub finished_at: f64,
    /// How long the settling attempt ran: the agent's own figure when it sent one, else
    /// assignment to result on the orchestrator's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Generation speed reported with the result (LLM tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentTasksResponse {
    /// Newest first.
    pub tasks: Vec<RecentTask>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerCounts {
    pub total: u64,
    pub online: u64,
    pub busy: u64,
    #[serde(default)]
    pub draining: u64,
    pub dead: u64,
}

impl WorkerCounts {
    /// Counts one node in `status` (and in the total).
    pub fn count(&mut self, status: WorkerState) {
        self.total += 1;
        match status {
            WorkerState::Online => self.online += 1,
            WorkerState::Busy => self.busy += 1,
            WorkerState::Draining => self.draining += 1,
            WorkerState::Dead => self.dead += 1,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskCounts {
    pub total: u64,
    pub pending: u64,
    pub assigned: u64,
    pub completed: u64,
    pub failed: u64,
    /// Attempts that were revoked and requeued (dead node, timeout, retryable failure).
    #[serde(default)]
    pub retried: u64,
    /// Gateway requests whose client hung up (or that waited past the queue time).
    #[serde(default)]
    pub cancelled: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerSuccess {
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    /// completed / (completed + failed), absent before the first settled task.
    pub success_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    pub workers: WorkerCounts,
    pub tasks: TaskCounts,
    /// Success rate over all settled tasks.
    pub success_rate: Option<f64>,
    pub per_worker: BTreeMap<String, WorkerSuccess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_s: Option<u64>,
}

// ---------------------------------------------------------------------------------------
// Node health views

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_state_words_round_trip_and_match_the_wire() {
        for s in [
            TaskState::Pending,
            TaskState::Assigned,
            TaskState::Completed,
            TaskState::Failed,
        ] {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        assert_eq!(TaskState::parse("Pending"), None);
    }

    #[test]
    fn seed_register_body_parses_and_means_every_type() {
        let req: RegisterRequest = serde_json::from_value(json!({
            "worker_id": "groq-worker-1",
            "worker_type": "groq",
            "capabilities": {"max_tokens": 2000, "models": ["llama-3.3-70b"]}
        }))
        .unwrap();
        assert_eq!(req.worker_id, "groq-worker-1");
        assert_eq!(req.capabilities.models, vec!["llama-3.3-70b"]);
        assert_eq!(req.capabilities.max_tokens, Some(2000));
        assert!(req.capabilities.task_types.is_empty());
    }

    #[test]
    fn unknown_capability_fields_are_kept() {
        let caps: Capabilities =
            serde_json::from_value(json!({"models": [], "gpu": "none"})).unwrap();
        assert_eq!(caps.extra.get("gpu"), Some(&json!("none")));
        let back = serde_json::to_value(&caps).unwrap();
        assert_eq!(back["gpu"], json!("none"));
    }

    #[test]
    fn empty_heartbeat_body_is_valid() {
        let hb: HeartbeatRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(hb, HeartbeatRequest::default());
    }

    #[test]
    fn poll_response_without_task_is_null() {
        let none = serde_json::to_value(PollResponse { task: None }).unwrap();
        assert_eq!(none, json!({"task": null}));
        let seed: PollResponse = serde_json::from_value(json!({
            "task": {"task_id": "uuid-1234", "type": "agent_action", "data": {}}
        }))
        .unwrap();
        let task = seed.task.unwrap();
        assert_eq!(task.task_type, "agent_action");
        assert_eq!(task.attempt, None);
    }

    #[test]
    fn seed_status_shape_round_trips() {
        let seed = json!({
            "task_id": "uuid-1234",
            "status": "completed",
            "assigned_to": "deepseek-raspi-1",
            "result": {"success": true}
        });
        let parsed: TaskStatusResponse = serde_json::from_value(seed.clone()).unwrap();
        assert_eq!(parsed.status, TaskState::Completed);
        assert_eq!(serde_json::to_value(&parsed).unwrap(), seed);
    }

    #[test]
    fn throttle_bits_are_read() {
        let m = NodeMetrics {
            throttled: Some(0x50005),
            ..Default::default()
        };
        assert!(m.under_voltage_now());
        assert!(m.throttled_now());
        assert!(!m.soft_temp_limit_now());
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human::duration(0.85), "850ms");
        assert_eq!(human::duration(3.24), "3.2s");
        assert_eq!(human::duration(48.9), "48s");
        assert_eq!(human::duration(125.0), "2m05s");
        assert_eq!(human::duration(3.0 * 3600.0 + 7.0 * 60.0 + 5.0), "3h07m");
        assert_eq!(human::duration(-1.0), "0ms");
    }

    #[test]
    fn ollama_api_task_reads_the_contract() {
        let t: OllamaApiTask = serde_json::from_value(json!({
            "model": "m", "endpoint": "chat",
            "request": {"model": "m", "messages": []}, "stream": true
        }))
        .unwrap();
        assert!(t.stream && t.endpoint == ollama_endpoint::CHAT);
        assert!(task_type::NEEDS_MODEL.contains(&task_type::OLLAMA_API));
        assert_eq!(
            stream_path("t 1", "pi/1", 2),
            "/api/tasks/t%201/stream?worker_id=pi%2F1&attempt=2"
        );
    }

    #[test]
    fn worker_path_encodes_odd_ids() {
        assert_eq!(
            worker_path("pi 1/a", "tasks"),
            "/api/workers/pi%201%2Fa/tasks"
        );
        assert_eq!(task_path("uuid-1", "result"), "/api/tasks/uuid-1/result");
    }
}
