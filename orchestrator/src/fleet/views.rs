//! Read models: what the API, the status page and `/metrics` show of the fleet, each
//! taken under the lock at one instant ([`FleetSnapshot`] for the page, the event
//! stream and `/metrics`, so they always agree with each other and with `/api/nodes`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use pifleet_protocol::{
    HealthResponse, NodeDetail, NodeView, NodesResponse, QueueEntry, QueueResponse, RecentTask,
    RecentTasksResponse, StatsResponse, TaskCounts, TaskState, TaskStatusResponse, Thresholds,
    WorkerCounts, WorkerSuccess, WorkerSummary, WorkersListResponse,
};
use serde::Serialize;

use super::limits::Limits;
use super::placement::{pending_reason, Refusal, Requirements};
use super::standing::{shown_s, Outlook};
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
    /// What runs, what waits and why, what just finished (empty when not asked for).
    pub work: Work,
}

/// The work the page shows: running tasks with their node, the head of the queue with
/// the reason each task waits, and the last settled tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Work {
    /// Oldest first.
    pub running: Vec<QueueEntry>,
    /// In the order they will be offered.
    pub pending: Vec<QueueEntry>,
    /// Newest first.
    pub recent: Vec<RecentTask>,
    /// Generation speed per node over the settled LLM tasks the fleet remembers.
    pub speeds: Vec<NodeSpeed>,
}

/// How fast a node generated, over its recent LLM tasks that reported a speed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSpeed {
    pub node: String,
    /// Mean of the tasks' tokens/s.
    pub tokens_per_s: f64,
    pub tasks: u64,
    /// The model of its latest such task.
    pub model: Option<String>,
}

impl Work {
    fn speeds_of(recent: &[RecentTask]) -> Vec<NodeSpeed> {
        let mut by_node: BTreeMap<&str, NodeSpeed> = BTreeMap::new();
        // Oldest first, so the last model seen is the latest.
        for t in recent.iter().rev() {
            let (Some(node), Some(tps)) = (t.node.as_deref(), t.tokens_per_s) else {
                continue;
            };
            let e = by_node.entry(node).or_insert_with(|| NodeSpeed {
                node: node.to_string(),
                tokens_per_s: 0.0,
                tasks: 0,
                model: None,
            });
            e.tokens_per_s += tps;
            e.tasks += 1;
            if t.model.is_some() {
                e.model = t.model.clone();
            }
        }
        by_node
            .into_values()
            .map(|mut s| {
                s.tokens_per_s /= s.tasks as f64;
                s
            })
            .collect()
    }
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
    pub(super) fn pending_reason(&self, task: &Task, l: &Limits, now: f64) -> String {
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
        let reason = pending_reason(&task.req, &refusals, &l.thermal);
        match &task.req.model {
            Some(m) if reason.starts_with("no node offers model") => {
                format!("{reason}: {}", self.staging_note(m, l, now))
            }
            _ => reason,
        }
    }
}

impl Fleet {
    /// The status as memory holds it, and whether its result and error are on disk only.
    pub(super) fn status_in_memory(&self, task_id: &str) -> Option<(TaskStatusResponse, bool)> {
        let now = self.now();
        let inner = self.lock();
        let task = inner.tasks.get(task_id)?;
        let l = &self.shared.limits;
        let pending = task.state == TaskState::Pending;
        let pending_reason = pending.then(|| inner.pending_reason(task, l, now));
        let standing = pending.then(|| inner.standing(task, l)).flatten();
        let expected_start_s = standing
            .as_ref()
            .and_then(|s| inner.expected_start_s(task, s, l, now))
            .map(shown_s);
        let status = TaskStatusResponse {
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
            expires_at: task.expires_at,
            queue_position: standing.map(|s| s.position),
            expected_start_s,
        };
        Some((status, task.summary.is_some()))
    }

    /// Pending tasks in the order they will be offered (up to `limit`), then the assigned.
    pub fn queue(&self, limit: usize) -> QueueResponse {
        let now = self.now();
        let inner = self.lock();
        let mut by_priority: BTreeMap<String, u64> = (1..=10).map(|p| (p.to_string(), 0)).collect();
        for (p, n) in inner.tally.pending_by_priority() {
            by_priority.insert(p.to_string(), n);
        }
        QueueResponse {
            total_pending: inner.tally.pending,
            total_assigned: inner.tally.assigned,
            pending: inner.pending_head(limit, &self.shared.limits, now),
            assigned: inner.running(),
            by_priority,
            pending_limit: Some(limit as u64),
        }
    }

    /// `GET /api/tasks/recent`: the last `limit` settled tasks still in memory, newest first.
    pub fn recent(&self, limit: usize) -> RecentTasksResponse {
        RecentTasksResponse {
            tasks: self.lock().recent(limit),
        }
    }

    /// `workers_online` counts the nodes that take work (online or busy): a draining or
    /// dead node is not online here, as in `/api/stats`, `/api/nodes`, the CLI and the page.
    pub fn health(&self) -> HealthResponse {
        let store_error = self.store_failing();
        let inner = self.lock();
        let w = inner.worker_counts();
        HealthResponse {
            status: if store_error.is_some() {
                "degraded"
            } else {
                "healthy"
            }
            .into(),
            workers_online: Some(w.online + w.busy),
            tasks_pending: Some(inner.tally.pending),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            store_error,
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
        let workers = inner.worker_counts();
        let mut per_worker = BTreeMap::new();
        for n in inner.nodes.values() {
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
        let now = self.now();
        let mut views: Vec<NodeView> = self
            .lock()
            .nodes
            .values()
            .map(|n| NodeView {
                staging: n.stage_view(now),
                ..n.view()
            })
            .collect();
        self.mark_streaming(views.iter_mut());
        views
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
        let now = self.now();
        let inner = self.lock();
        let node = inner.nodes.get(id)?;
        let mut detail = node.detail();
        detail.speeds = inner.speed_view(node);
        detail.node.staging = node.stage_view(now);
        drop(inner);
        detail.thresholds = Some(self.shared.limits.thermal.thresholds());
        self.mark_streaming(std::iter::once(&mut detail.node));
        Some(detail)
    }

    /// Everything the health views show, under one lock: the nodes (with their metric
    /// history when `histories`), the queue by priority, the task counts, the `failures`
    /// most recent failures and up to `work` running, pending and recent tasks each.
    pub fn snapshot(&self, histories: bool, failures: usize, work: usize) -> FleetSnapshot {
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
                d.node.staging = n.stage_view(at);
                d
            })
            .collect();
        let mut snap = FleetSnapshot {
            at,
            nodes,
            pending_by_priority: inner.tally.pending_by_priority(),
            tasks: inner.tally.counts(inner.tasks.len()),
            recent_failures: inner.recent_failures(failures),
            thresholds: self.shared.limits.thermal.thresholds(),
            work: if work == 0 {
                Work::default()
            } else {
                let mut running = inner.running();
                running.truncate(work);
                let mut recent = inner.recent(usize::MAX);
                let speeds = Work::speeds_of(&recent);
                recent.truncate(work);
                Work {
                    running,
                    pending: inner.pending_head(work, &self.shared.limits, at),
                    recent,
                    speeds,
                }
            },
        };
        drop(inner);
        self.mark_streaming(snap.nodes.iter_mut().map(|d| &mut d.node));
        snap
    }

    /// Which gateway answers each node is streaming now (read after the fleet's lock).
    fn mark_streaming<'a>(&self, views: impl Iterator<Item = &'a mut NodeView>) {
        let streaming = self.shared.streams.streaming();
        if streaming.is_empty() {
            return;
        }
        for v in views {
            v.streaming = streaming
                .iter()
                .filter(|(_, w)| *w == v.worker_id)
                .map(|(t, _)| t.clone())
                .collect();
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
    /// Nodes by the status everyone shows (draining before busy, dead before both).
    fn worker_counts(&self) -> WorkerCounts {
        let mut c = WorkerCounts::default();
        for n in self.nodes.values() {
            c.count(n.state());
        }
        c
    }

    /// The first `limit` pending tasks in offer order, each with the reason it waits and
    /// its expected start. Reasons and outlooks are worked out once per lane.
    fn pending_head(&self, limit: usize, l: &Limits, now: f64) -> Vec<QueueEntry> {
        let mut reasons: HashMap<Arc<Requirements>, String> = HashMap::new();
        let mut outlooks: HashMap<Arc<Requirements>, Option<Outlook>> = HashMap::new();
        let mut ahead: HashMap<Arc<Requirements>, u64> = HashMap::new();
        self.queue
            .head(limit)
            .into_iter()
            .filter_map(|id| self.tasks.get(id))
            .map(|t| {
                if t.not_before.is_some_and(|nb| nb > now) {
                    return t.queue_entry(Some(self.pending_reason(t, l, now)));
                }
                let reason = reasons
                    .entry(t.req.clone())
                    .or_insert_with(|| self.pending_reason(t, l, now))
                    .clone();
                let before = ahead.entry(t.req.clone()).or_insert(0);
                let in_lane = *before;
                *before += 1;
                let start = self.held_start_s(t, now).or_else(|| {
                    outlooks
                        .entry(t.req.clone())
                        .or_insert_with(|| self.outlook(&t.req, l, now))
                        .as_ref()?
                        .start_after(in_lane)
                });
                QueueEntry {
                    expected_start_s: start.map(shown_s),
                    ..t.queue_entry(Some(reason))
                }
            })
            .collect()
    }

    /// Every assigned task, oldest first.
    fn running(&self) -> Vec<QueueEntry> {
        let mut assigned: Vec<QueueEntry> = self
            .nodes
            .values()
            .flat_map(|n| n.current.iter())
            .filter_map(|id| self.tasks.get(id))
            .map(|t| t.queue_entry(None))
            .collect();
        assigned.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        assigned
    }

    fn recent(&self, limit: usize) -> Vec<RecentTask> {
        self.recent_settled
            .iter()
            .rev()
            .filter_map(|id| self.tasks.get(id))
            .filter(|t| t.is_settled())
            .take(limit)
            .map(Task::recent)
            .collect()
    }

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
