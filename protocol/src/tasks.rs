//! Tasks on the wire: submit, assignment, results, status, queue, recent work, stats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::*;

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
    /// Seconds after submit at which the task fails as expired if still pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_s: Option<f64>,
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

/// Tasks ahead of a pending one are counted up to this many, so a status stays cheap in
/// a queue of 200,000.
pub const QUEUE_POSITION_COUNTED: u64 = 10_000;

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
    /// When the task fails as expired if no node has taken it (a submit's `expires_s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<f64>,
    /// A pending task's place in the offer order (`GET /api/tasks/queue`): 1 is next.
    /// Counted up to [`QUEUE_POSITION_COUNTED`]; one more means further back. Absent in
    /// retry backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u64>,
    /// Seconds until a node is expected to start this pending LLM task, from the measured
    /// speeds and the ends of the work ahead of it. Absent when the fleet cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_start_s: Option<f64>,
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
    /// Seconds until a node is expected to start this pending task, as in its status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_start_s: Option<f64>,
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
    /// The most pending tasks this answer lists: the `limit` asked for, capped at the
    /// orchestrator's maximum. `total_pending` counts them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_limit: Option<u64>,
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
    /// Attempts taken back because their node neither ran them nor held their result
    /// (the poll answer was lost); also counted in `retried`.
    #[serde(default)]
    pub reclaimed: u64,
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
