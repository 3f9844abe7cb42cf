//! A task as the fleet holds it: built once from a submit or from a stored row, turned
//! back into a row for the store, and ranked for the queue.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use pifleet_protocol::{QueueEntry, RecentTask, TaskState};
use serde_json::Value;

use super::limits::Limits;
use super::placement::Requirements;
use crate::store::{Summary, TaskRow};

pub type TaskId = Arc<str>;

/// A validated submit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub task_type: String,
    pub data: Value,
    pub priority: u8,
    pub timeout_s: Option<f64>,
    pub max_attempts: Option<u32>,
    /// Seconds after submit at which the task, if still pending, fails as expired.
    pub expires_s: Option<f64>,
}

/// A validated result report.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultReport {
    pub worker_id: String,
    pub attempt: Option<u32>,
    pub result: Value,
    pub success: bool,
    pub retryable: bool,
}

/// Position in the queue: earlier is better (`(aged creation time in µs, seq)`).
pub(super) type Rank = (i64, u64);

/// A task is its stored row plus what the fleet derives from it: the shared id the maps
/// key on and the requirements its lane is filed under. The row's fields read through.
pub(super) struct Task {
    pub id: TaskId,
    pub req: Arc<Requirements>,
    /// The current attempt's poll answer went out (or, after a restart, may have): only
    /// then can a heartbeat that omits the attempt mean its answer was lost.
    pub handed: bool,
    /// Consecutive heartbeats of the holder that neither ran nor held this attempt.
    pub unseen_beats: u8,
    row: TaskRow,
}

impl Deref for Task {
    type Target = TaskRow;
    fn deref(&self) -> &TaskRow {
        &self.row
    }
}

impl DerefMut for Task {
    fn deref_mut(&mut self) -> &mut TaskRow {
        &mut self.row
    }
}

impl Task {
    /// A fresh pending task from a submit; the limits fill what the submit left out.
    pub fn new(id: TaskId, new: NewTask, seq: u64, now: f64, l: &Limits) -> Task {
        Task::from_row(TaskRow {
            id: id.to_string(),
            task_type: new.task_type,
            data: Arc::new(new.data),
            priority: new.priority,
            state: TaskState::Pending,
            assigned_to: None,
            attempt: 0,
            failures: 0,
            max_attempts: new.max_attempts.unwrap_or(l.max_attempts),
            timeout_s: new.timeout_s.unwrap_or(l.default_timeout_s),
            result: None,
            error: None,
            created_at: now,
            updated_at: now,
            assigned_at: None,
            not_before: None,
            seq,
            settled_by: None,
            settled_attempt: None,
            expires_at: new.expires_s.map(|s| now + s),
            summary: None,
        })
    }

    /// The one place a task is built: from its stored form.
    pub fn from_row(row: TaskRow) -> Task {
        Task {
            id: Arc::from(row.id.as_str()),
            req: Arc::new(Requirements::of(&row.task_type, &row.data)),
            // A stored assignment was committed before its answer went out.
            handed: row.state == TaskState::Assigned,
            unseen_beats: 0,
            row,
        }
    }

    /// The row to store. Settled tasks are never written again (only deleted), so a row
    /// whose bodies are on disk only is never written back without them.
    pub fn row(&self) -> TaskRow {
        debug_assert!(
            self.summary.is_none(),
            "task {} rewritten after its bodies left memory",
            self.id
        );
        self.row.clone()
    }

    /// Each priority level is worth `aging_s` of waiting, which gives strict priority
    /// order among tasks submitted close together, FIFO within a priority, and a bounded
    /// wait for the lowest priority.
    pub fn rank(&self, aging_s: f64) -> Rank {
        let created = micros(self.created_at);
        let boost = (f64::from(self.priority) * aging_s * 1e6) as i64;
        (created.saturating_sub(boost), self.seq)
    }

    /// True while `worker` holds `attempt` of this task.
    pub fn held_by(&self, worker: &str, attempt: u32) -> bool {
        self.state == TaskState::Assigned
            && self.attempt == attempt
            && self.assigned_to.as_deref() == Some(worker)
    }

    pub fn queue_entry(&self, pending_reason: Option<String>) -> QueueEntry {
        QueueEntry {
            task_id: self.id.to_string(),
            task_type: self.task_type.clone(),
            priority: self.priority,
            status: self.state,
            assigned_to: self.assigned_to.clone(),
            attempts: self.attempt,
            created_at: self.created_at,
            pending_reason,
            assigned_at: self
                .assigned_at
                .filter(|_| self.state == TaskState::Assigned),
            expected_start_s: None,
        }
    }
}

impl Task {
    /// A settled task as the recent-work lists show it: the figures come from the agent's
    /// result when it sent them.
    pub fn recent(&self) -> RecentTask {
        let s = match &self.summary {
            Some(s) => Summary::clone(s),
            None => Summary::of(&self.data, self.result.as_deref()),
        };
        let ran_ms = self
            .assigned_at
            .map(|at| ((self.updated_at - at).max(0.0) * 1000.0) as u64);
        RecentTask {
            task_id: self.id.to_string(),
            task_type: self.task_type.clone(),
            status: self.state,
            node: self.assigned_to.clone(),
            priority: self.priority,
            attempts: self.attempt,
            created_at: self.created_at,
            finished_at: self.updated_at,
            duration_ms: s.duration_ms.or(ran_ms),
            model: s.model,
            completion_tokens: s.completion_tokens,
            tokens_per_s: s.tokens_per_s,
            error: self.error.clone(),
        }
    }
}

pub(super) fn micros(t: f64) -> i64 {
    (t * 1e6) as i64
}

#[cfg(test)]
impl Task {
    /// A pending `agent_action` task `t{seq}` with `data`, for unit tests.
    pub fn sample(seq: u64, priority: u8, created_at: f64, data: Value) -> Task {
        let new = NewTask {
            priority,
            ..super::testing::new_task("agent_action", data)
        };
        let id: TaskId = Arc::from(format!("t{seq}").as_str());
        Task::new(id, new, seq, created_at, &Limits::default())
    }
}
