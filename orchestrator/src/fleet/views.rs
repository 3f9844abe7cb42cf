//! Read models: what the API, the status page and `/metrics` show of the fleet, each
//! taken under the lock at one instant ([`FleetSnapshot`] for the page, the event
//! stream and `/metrics`, so they always agree with each other and with `/api/nodes`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pifleet_protocol::{
    HealthResponse, NodeDetail, NodeView, NodesResponse, QueueEntry, QueueResponse, StatsResponse,
    TaskCounts, TaskState, TaskStatusResponse, Thresholds, WorkerCounts, WorkerSuccess,
    WorkerSummary, WorkersListResponse,
};
use serde::Serialize;

use super::limits::Limits;
use super::node::Node;
use super::placement::{pending_reason, Refusal, Requirements};
use super::tally::rate;
use super::task::Task;
use super::{Fleet, Inner};

/// A task that failed for good, for the page's "recent failures".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedTask {
    pub task_id: String,
    pub task_type: String,
    pub error: String,
    pub worker_id: Option<String>,
    pub attempts: u32,
    pub failed_at: f64,
}

/// Everything the health views show, taken at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetSnapshot {
    /// Seconds since the Unix epoch when the snapshot was taken.
    pub at: f64,
    /// Every known node, by id, with its recent metric history (when asked for).
    pub nodes: Vec<NodeDetail>,
    /// Pending tasks per priority (1-10; absent = 0).
    pub pending_by_priority: BTreeMap<u8, u64>,
    pub tasks: TaskCounts,
    /// Most recent first.
    pub recent_failures: Vec<FailedTask>,
    /// The configured warm (soft) and hot (hard) temperatures.
    pub thresholds: Thresholds,
}

impl FleetSnapshot {
    pub fn pending(&self) -> u64 {
        self.pending_by_priority.values().sum()
    }

    /// Node counts by the status operators see (a draining node counts as draining).
    pub fn status_counts(&self) -> WorkerCounts {
        let mut c = WorkerCounts::default();
        for n in &self.nodes {
            c.count(n.node.shown_status());
        }
        c
    }
}

impl Inner {
    /// Why a pending task is not running, in words.
    fn pending_reason(&self, task: &Task, l: &Limits, now: f64) -> String {
        if let Some(nb) = task.not_before.filter(|nb| *nb > now) {
            return format!(
                "retry backoff: eligible again in {:.1}s (after {})",
                nb - now,
                task.error.as_deref().unwrap_or("a failed attempt")
            );
        }
        if let Some(held) = self.held_reason(&task.id, now) {
            return held;
        }
        let refusals: Vec<Refusal> = self
            .nodes
            .values()
            .map(|n| {
                let f = n.facts();
                match f.can_run(&task.req, &l.thermal) {
                    Err(r) => r,
                    Ok(()) if !f.has_free_slot() => Refusal::NoFreeSlot,
                    Ok(()) => Refusal::NotWaiting,
                }
            })
            .collect();
        pending_reason(&task.req, &refusals, &l.thermal)
    }
}

impl Fleet {
    pub fn status(&self, task_id: &str) -> Option<TaskStatusResponse> {
        let now = self.now();
        let inner = self.lock();
        let task = inner.tasks.get(task_id)?;
        let pending_reason = (task.state == TaskState::Pending)
            .then(|| inner.pending_reason(task, &self.shared.limits, now));
        Some(TaskStatusResponse {
            task_id: task.id.to_string(),
            status: task.state,
            assigned_to: task.assigned_to.clone(),
            result: task.result.as_deref().cloned(),
            task_type: Some(task.task_type.clone()),
            priority: Some(task.priority),
            attempts: Some(task.attempt),
            max_attempts: Some(task.max_attempts),
            error: task.error.clone(),
            pending_reason,
            created_at: Some(task.created_at),
            updated_at: Some(task.updated_at),
        })
    }

    /// Pending tasks in the order they will be offered (up to `limit`), then the assigned.
    pub fn queue(&self, limit: usize) -> QueueResponse {
        let now = self.now();
        let inner = self.lock();
        let l = &self.shared.limits;
        let mut reasons: HashMap<Arc<Requirements>, String> = HashMap::new();
        let mut by_priority: BTreeMap<String, u64> = (1..=10).map(|p| (p.to_string(), 0)).collect();
        let mut pending = Vec::new();
        for id in inner.queue.in_order() {
            let Some(t) = inner.tasks.get(id) else {
                continue;
            };
            *by_priority.entry(t.priority.to_string()).or_default() += 1;
            if pending.len() >= limit {
                continue;
            }
            let reason = if t.not_before.is_some_and(|nb| nb > now) {
                inner.pending_reason(t, l, now)
            } else {
                reasons
                    .entry(t.req.clone())
                    .or_insert_with(|| inner.pending_reason(t, l, now))
                    .clone()
            };
            pending.push(t.queue_entry(Some(reason)));
        }
        let mut assigned: Vec<QueueEntry> = inner
            .nodes
            .values()
            .flat_map(|n| n.current.iter())
            .filter_map(|id| inner.tasks.get(id))
            .map(|t| t.queue_entry(None))
            .collect();
        assigned.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        QueueResponse {
            total_pending: inner.tally.pending,
            total_assigned: inner.tally.assigned,
            pending,
            assigned,
            by_priority,
        }
    }

    pub fn health(&self) -> HealthResponse {
        let inner = self.lock();
        HealthResponse {
            status: "healthy".into(),
            workers_online: inner.nodes.values().filter(|n| !n.dead).count() as u64,
            tasks_pending: inner.tally.pending,
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }
    }

    pub fn workers_list(&self) -> WorkersListResponse {
        let inner = self.lock();
        let workers: Vec<WorkerSummary> = inner
            .nodes
            .values()
            .map(|n| WorkerSummary {
                worker_id: n.id.clone(),
                worker_type: n.worker_type.clone(),
                status: n.state(),
                tasks_completed: n.completed,
                tasks_failed: n.failed,
                last_heartbeat: Some(n.last_seen),
                current_tasks: n.current.iter().map(|t| t.to_string()).collect(),
                capabilities: n.caps.clone(),
            })
            .collect();
        WorkersListResponse {
            total: workers.len() as u64,
            workers,
        }
    }

    pub fn stats(&self) -> StatsResponse {
        let now = self.now();
        let inner = self.lock();
        let mut workers = WorkerCounts::default();
        let mut per_worker = BTreeMap::new();
        for n in inner.nodes.values() {
            workers.count(n.state());
            per_worker.insert(
                n.id.clone(),
                WorkerSuccess {
                    tasks_completed: n.completed,
                    tasks_failed: n.failed,
                    success_rate: rate(n.completed, n.failed),
                },
            );
        }
        StatsResponse {
            workers,
            tasks: inner.tally.counts(inner.tasks.len()),
            success_rate: inner.tally.success_rate(),
            per_worker,
            uptime_s: Some((now - self.shared.started_at).max(0.0) as u64),
        }
    }

    /// Every node, sorted by id, as operators see it.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.lock().nodes.values().map(Node::view).collect()
    }

    /// `GET /api/nodes`: every node and the thresholds they are judged by.
    pub fn nodes_response(&self) -> NodesResponse {
        let nodes = self.nodes();
        NodesResponse {
            total: nodes.len() as u64,
            nodes,
            thresholds: Some(self.shared.limits.thermal.thresholds()),
        }
    }

    /// One node with its recent metric history (oldest first) and the thresholds.
    pub fn node(&self, id: &str) -> Option<NodeDetail> {
        let inner = self.lock();
        let node = inner.nodes.get(id)?;
        let mut detail = node.detail();
        detail.speeds = inner.speed_view(node);
        drop(inner);
        detail.thresholds = Some(self.shared.limits.thermal.thresholds());
        Some(detail)
    }

    /// Everything the health views show, under one lock: the nodes (with their metric
    /// history when `histories`), the queue by priority, the task counts and the
    /// `failures` most recent failures.
    pub fn snapshot(&self, histories: bool, failures: usize) -> FleetSnapshot {
        let at = self.now();
        let inner = self.lock();
        let nodes = inner
            .nodes
            .values()
            .map(|n| {
                let mut d: pifleet_protocol::NodeDetail = if histories {
                    n.detail()
                } else {
                    n.view().into()
                };
                d.speeds = inner.speed_view(n);
                d
            })
            .collect();
        FleetSnapshot {
            at,
            nodes,
            pending_by_priority: inner.tally.pending_by_priority(),
            tasks: inner.tally.counts(inner.tasks.len()),
            recent_failures: inner.recent_failures(failures),
            thresholds: self.shared.limits.thermal.thresholds(),
        }
    }

    /// Pending tasks per priority (ready and in retry backoff); kept as tasks move, so
    /// reading it costs nothing however long the queue.
    pub fn pending_by_priority(&self) -> BTreeMap<u8, u64> {
        self.lock().tally.pending_by_priority()
    }

    /// The `limit` most recently failed tasks still in memory, newest first.
    pub fn recent_failures(&self, limit: usize) -> Vec<FailedTask> {
        self.lock().recent_failures(limit)
    }
}

impl Inner {
    fn recent_failures(&self, limit: usize) -> Vec<FailedTask> {
        self.recent_failed
            .iter()
            .rev()
            .filter_map(|id| self.tasks.get(id))
            .filter(|t| t.state == TaskState::Failed)
            .take(limit)
            .map(|t| FailedTask {
                task_id: t.id.to_string(),
                task_type: t.task_type.clone(),
                error: t.error.clone().unwrap_or_default(),
                worker_id: t.assigned_to.clone(),
                attempts: t.attempt,
                failed_at: t.updated_at,
            })
            .collect()
    }
}
