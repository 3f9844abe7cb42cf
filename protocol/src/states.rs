//! Task and worker states, and the health answer.

use serde::{Deserialize, Serialize};

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
