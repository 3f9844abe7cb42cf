//! The fleet's live state: nodes, tasks, the queue, and the workers waiting on a long
//! poll. One `std::sync::Mutex` guards it; nothing awaits while holding it, and every
//! change queues its mutations to the store before the lock is released, so the store
//! sees changes in the order they happened.
//!
//! Placement is decided here, among the workers that are waiting: when a task arrives or
//! a worker starts waiting, the best waiting node for each lane head gets it. A hot node
//! that polls first therefore does not beat a cool one already waiting.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pifleet_protocol::{
    Capabilities, HealthResponse, HeartbeatRequest, HeartbeatResponse, MetricSample, NodeDetail,
    NodeMetrics, NodeView, QueueEntry, QueueResponse, RegisterRequest, RegisterResponse,
    StatsResponse, TaskAssignment, TaskCounts, TaskState, TaskStatusResponse, UnregisterResponse,
    WorkerCounts, WorkerState, WorkerSuccess, WorkerSummary, WorkersListResponse,
};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use crate::error::AppError;
use crate::health::metrics::Histograms;
use crate::health::FailedTask;
use crate::scheduler::{
    canonical_model, pending_reason, BaseKey, NodeFacts, Refusal, Requirements, Thermal,
};
use crate::store::{CommitResult, Mutation, Snapshot, StoreHandle, TaskRow, WorkerRow};

pub type TaskId = Arc<str>;

/// A node's observed heartbeat period counts up to this many configured intervals.
const MAX_PERIOD_FACTOR: f64 = 6.0;

/// Scheduling and liveness settings, taken from the validated configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub heartbeat_interval_s: f64,
    /// A node silent for this many heartbeat intervals is dead.
    pub dead_after_missed: u32,
    pub max_wait_s: f64,
    pub default_timeout_s: f64,
    pub max_attempts: u32,
    pub retry_backoff_s: f64,
    pub retry_backoff_max_s: f64,
    pub thermal: Thermal,
    /// Seconds of waiting worth one priority level: a task that has waited this long
    /// ranks with tasks one level above it, so no priority starves forever.
    pub aging_s: f64,
    pub history_len: usize,
    /// How often heartbeat-only changes (metrics, last seen) are written to the store.
    pub node_flush_s: f64,
    /// Settled tasks older than this are forgotten (memory and store).
    pub task_retention_s: f64,
    /// Dead nodes silent for longer than this disappear from the lists.
    pub dead_node_retention_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            heartbeat_interval_s: 10.0,
            dead_after_missed: 3,
            max_wait_s: 30.0,
            default_timeout_s: 600.0,
            max_attempts: 3,
            retry_backoff_s: 1.0,
            retry_backoff_max_s: 60.0,
            thermal: Thermal::default(),
            aging_s: 60.0,
            history_len: 120,
            node_flush_s: 5.0,
            task_retention_s: 7.0 * 86400.0,
            dead_node_retention_s: 86400.0,
        }
    }
}

impl Limits {
    pub fn dead_after_s(&self) -> f64 {
        self.heartbeat_interval_s * f64::from(self.dead_after_missed)
    }
}

/// A validated submit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub task_type: String,
    pub data: Value,
    pub priority: u8,
    pub timeout_s: Option<f64>,
    pub max_attempts: Option<u32>,
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

/// What a waiting poll receives: the assignment, and the commit that makes it durable.
/// The poll answers only after the commit, so a restarted orchestrator never hands out
/// an attempt number twice.
pub struct Delivery {
    pub assignment: TaskAssignment,
    pub commit: oneshot::Receiver<CommitResult>,
}

/// A long poll in progress. Dropping it without [`Fleet::poll_finish`] (the client hung
/// up) withdraws the waiter and puts back an assignment the worker never saw.
pub struct PollTicket {
    fleet: Fleet,
    worker_id: String,
    waiter: u64,
    rx: Option<oneshot::Receiver<Delivery>>,
    /// Set once the worker has been told about the task.
    handed: Option<(TaskId, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revoke {
    NodeDead,
    TimedOut,
    Failed,
    Unregistered,
    Undelivered,
}

struct Waiter {
    seq: u64,
    tx: oneshot::Sender<Delivery>,
}

struct Task {
    id: TaskId,
    task_type: String,
    data: Arc<Value>,
    req: Arc<Requirements>,
    priority: u8,
    state: TaskState,
    assigned_to: Option<String>,
    attempt: u32,
    failures: u32,
    max_attempts: u32,
    timeout_s: f64,
    result: Option<Arc<Value>>,
    error: Option<String>,
    created_at: f64,
    updated_at: f64,
    assigned_at: Option<f64>,
    not_before: Option<f64>,
    seq: u64,
    settled_by: Option<String>,
    settled_attempt: Option<u32>,
}

impl Task {
    fn row(&self) -> TaskRow {
        TaskRow {
            id: self.id.to_string(),
            task_type: self.task_type.clone(),
            data: self.data.clone(),
            priority: self.priority,
            state: self.state.as_str().to_string(),
            assigned_to: self.assigned_to.clone(),
            attempt: self.attempt,
            failures: self.failures,
            max_attempts: self.max_attempts,
            timeout_s: self.timeout_s,
            result: self.result.clone(),
            error: self.error.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            assigned_at: self.assigned_at,
            not_before: self.not_before,
            seq: self.seq,
            settled_by: self.settled_by.clone(),
            settled_attempt: self.settled_attempt,
        }
    }

    /// Position in the queue: earlier is better. Each priority level is worth `aging_s`
    /// of waiting, which gives strict priority order among tasks submitted close together,
    /// FIFO within a priority, and a bounded wait for the lowest priority.
    fn rank(&self, aging_s: f64) -> (i64, u64) {
        let created = (self.created_at * 1e6) as i64;
        let boost = (f64::from(self.priority) * aging_s * 1e6) as i64;
        (created.saturating_sub(boost), self.seq)
    }
}

struct Node {
    id: String,
    worker_type: String,
    caps: Capabilities,
    registered_at: f64,
    last_seen: f64,
    metrics: Option<NodeMetrics>,
    history: VecDeque<MetricSample>,
    current: Vec<TaskId>,
    completed: u64,
    failed: u64,
    draining: bool,
    dead: bool,
    dirty: bool,
    waiters: VecDeque<Waiter>,
    /// When the last heartbeat came, and the node's own heartbeat period as observed:
    /// a seed worker beats every 30 s, and must not be declared dead for keeping its pace.
    last_heartbeat: Option<f64>,
    heartbeat_gap: f64,
    /// Where the node sits in the wait index, to find it again when it changes.
    wait_entry: Option<(BaseKey, u64)>,
    wait_models: Vec<String>,
}

impl Node {
    fn facts(&self) -> NodeFacts<'_> {
        NodeFacts {
            caps: &self.caps,
            metrics: self.metrics.as_ref(),
            running: self.current.len(),
            draining: self.draining,
            alive: !self.dead,
        }
    }

    fn state(&self) -> WorkerState {
        if self.dead {
            WorkerState::Dead
        } else if self.draining {
            WorkerState::Draining
        } else if !self.current.is_empty() {
            WorkerState::Busy
        } else {
            WorkerState::Online
        }
    }

    fn row(&self) -> WorkerRow {
        WorkerRow {
            id: self.id.clone(),
            worker_type: self.worker_type.clone(),
            capabilities: serde_json::to_value(&self.caps).unwrap_or(Value::Null),
            registered_at: self.registered_at,
            last_seen: self.last_seen,
            draining: self.draining,
            dead: self.dead,
            tasks_completed: self.completed,
            tasks_failed: self.failed,
            metrics: self
                .metrics
                .as_ref()
                .and_then(|m| serde_json::to_value(m).ok()),
        }
    }

    fn counts_mutation(&self) -> Mutation {
        Mutation::WorkerCounts {
            id: self.id.clone(),
            completed: self.completed,
            failed: self.failed,
        }
    }

    fn view(&self) -> NodeView {
        NodeView {
            worker_id: self.id.clone(),
            worker_type: self.worker_type.clone(),
            status: self.state(),
            draining: self.draining,
            registered_at: self.registered_at,
            last_seen: self.last_seen,
            capabilities: self.caps.clone(),
            metrics: self.metrics.clone(),
            current_tasks: self.current.iter().map(|t| t.to_string()).collect(),
            tasks_completed: self.completed,
            tasks_failed: self.failed,
        }
    }

    fn has_open_waiter(&self) -> bool {
        self.waiters.iter().any(|w| !w.tx.is_closed())
    }
}

#[derive(Default)]
struct Queue {
    /// One FIFO lane per distinct set of requirements, ordered by rank.
    lanes: HashMap<Arc<Requirements>, BTreeMap<(i64, u64), TaskId>>,
    /// Tasks in retry backoff, by the time they may run again.
    delayed: BTreeMap<(i64, u64), TaskId>,
}

impl Queue {
    fn push_ready(&mut self, req: &Arc<Requirements>, key: (i64, u64), id: TaskId) {
        self.lanes.entry(req.clone()).or_default().insert(key, id);
    }

    fn remove_ready(&mut self, req: &Arc<Requirements>, key: (i64, u64)) -> Option<TaskId> {
        let lane = self.lanes.get_mut(req)?;
        let id = lane.remove(&key);
        if lane.is_empty() {
            self.lanes.remove(req);
        }
        id
    }
}

type WaitEntry = (BaseKey, u64, String);

/// The waiting nodes ordered by placement preference, and again per loaded model, so a
/// scheduling pass usually looks at the first entries only instead of every waiting node.
#[derive(Default)]
struct WaitIndex {
    all: BTreeSet<WaitEntry>,
    /// Canonical model name -> waiting nodes that have it loaded.
    loaded: HashMap<String, BTreeSet<WaitEntry>>,
}

impl WaitIndex {
    fn remove(&mut self, node: &mut Node) {
        let Some((key, seq)) = node.wait_entry.take() else {
            return;
        };
        let entry = (key, seq, node.id.clone());
        self.all.remove(&entry);
        for m in node.wait_models.drain(..) {
            if let Some(set) = self.loaded.get_mut(&m) {
                set.remove(&entry);
                if set.is_empty() {
                    self.loaded.remove(&m);
                }
            }
        }
    }

    /// Re-files a node after anything that changes its key or its waiters.
    fn refresh(&mut self, node: &mut Node, thermal: &Thermal) {
        self.remove(node);
        node.waiters.retain(|w| !w.tx.is_closed());
        let Some(seq) = node.waiters.front().map(|w| w.seq) else {
            return;
        };
        let facts = node.facts();
        if node.dead || !facts.has_free_slot() {
            return;
        }
        let key = facts.base_key(thermal);
        let models = facts.loaded_models();
        let entry = (key, seq, node.id.clone());
        for m in &models {
            self.loaded
                .entry(m.clone())
                .or_default()
                .insert(entry.clone());
        }
        self.all.insert(entry);
        node.wait_entry = Some((key, seq));
        node.wait_models = models;
    }

    fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

fn micros(t: f64) -> i64 {
    (t * 1e6) as i64
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<TaskId, Task>,
    nodes: BTreeMap<String, Node>,
    queue: Queue,
    /// Nodes that wait for work and have a free slot, in placement order.
    waiting: WaitIndex,
    counts: [u64; 4],
    retried: u64,
    next_seq: u64,
    next_waiter: u64,
    last_flush: f64,
    last_prune: f64,
    /// Settled tasks already forgotten, so the totals stay cumulative.
    pruned: [u64; 2],
    /// Status requests waiting (`?wait=`) for a task to complete or fail.
    settle_watchers: HashMap<TaskId, Vec<oneshot::Sender<()>>>,
    /// Pending tasks per priority (index = priority), kept with `counts[0]`.
    pending_by_priority: [u64; 11],
    /// The most recently failed tasks, oldest first (bounded), for the status page.
    recent_failed: VecDeque<TaskId>,
}

/// Failed tasks remembered for the status page.
const RECENT_FAILED_KEPT: usize = 50;

/// Counts a task entering (`+1`) or leaving (`-1`) the pending state. Free functions over
/// the fields, so they work while a task of `Inner::tasks` is borrowed.
fn count_pending(by_priority: &mut [u64; 11], priority: u8, delta: i64) {
    let n = &mut by_priority[usize::from(priority.min(10))];
    *n = n.saturating_add_signed(delta);
}

fn remember_failed(recent: &mut VecDeque<TaskId>, id: &TaskId) {
    if recent.len() >= RECENT_FAILED_KEPT {
        recent.pop_front();
    }
    recent.push_back(id.clone());
}

fn state_index(s: TaskState) -> usize {
    match s {
        TaskState::Pending => 0,
        TaskState::Assigned => 1,
        TaskState::Completed => 2,
        TaskState::Failed => 3,
    }
}

struct Shared {
    inner: Mutex<Inner>,
    store: StoreHandle,
    clock: Arc<dyn Clock>,
    limits: Limits,
    changes: watch::Sender<u64>,
    /// Scheduling latency and task duration, for `/metrics`.
    histograms: Histograms,
    started_at: f64,
    shutting_down: AtomicBool,
}

/// The orchestrator's shared state: cheap to clone, one per server.
#[derive(Clone)]
pub struct Fleet {
    shared: Arc<Shared>,
}

/// Waits for a store commit and turns a failure into 503.
pub async fn committed(rx: oneshot::Receiver<CommitResult>) -> Result<(), AppError> {
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(AppError::Unavailable(e)),
        Err(_) => Err(AppError::Unavailable("store thread is gone".into())),
    }
}

fn not_registered(id: &str, node: Option<&Node>) -> AppError {
    match node {
        Some(n) if n.dead => AppError::NotFound(format!(
            "worker \"{id}\" was declared dead after missing its heartbeats and its tasks were \
             requeued: register again (POST /api/workers/register)"
        )),
        _ => AppError::NotFound(format!(
            "worker \"{id}\" is not registered: register again (POST /api/workers/register)"
        )),
    }
}

impl Fleet {
    /// Builds the state from what the store had, giving every known node a fresh
    /// liveness window (they could not heartbeat while we were down).
    pub fn new(
        limits: Limits,
        store: StoreHandle,
        snapshot: Snapshot,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let now = clock.now();
        let mut inner = Inner {
            last_flush: now,
            last_prune: now,
            ..Default::default()
        };
        for w in snapshot.workers {
            let caps = serde_json::from_value(w.capabilities).unwrap_or_else(|e| {
                tracing::warn!(worker = %w.id, error = %e, "stored capabilities unreadable; using none");
                Capabilities::default()
            });
            let metrics = w.metrics.and_then(|m| serde_json::from_value(m).ok());
            inner.nodes.insert(
                w.id.clone(),
                Node {
                    id: w.id,
                    worker_type: w.worker_type,
                    caps,
                    registered_at: w.registered_at,
                    last_seen: if w.dead { w.last_seen } else { now },
                    metrics,
                    history: VecDeque::new(),
                    current: Vec::new(),
                    completed: w.tasks_completed,
                    failed: w.tasks_failed,
                    draining: w.draining,
                    dead: w.dead,
                    dirty: false,
                    waiters: VecDeque::new(),
                    last_heartbeat: None,
                    heartbeat_gap: 0.0,
                    wait_entry: None,
                    wait_models: Vec::new(),
                },
            );
        }
        let mut orphans = Vec::new();
        for row in snapshot.tasks {
            let state = match row.state.as_str() {
                "pending" => TaskState::Pending,
                "assigned" => TaskState::Assigned,
                "completed" => TaskState::Completed,
                "failed" => TaskState::Failed,
                other => {
                    tracing::warn!(task = %row.id, state = other, "stored task has an unknown state; treating it as pending");
                    TaskState::Pending
                }
            };
            let id: TaskId = Arc::from(row.id.as_str());
            let task = Task {
                req: Arc::new(Requirements::of(&row.task_type, &row.data)),
                id: id.clone(),
                task_type: row.task_type,
                data: row.data,
                priority: row.priority,
                state,
                assigned_to: row.assigned_to,
                attempt: row.attempt,
                failures: row.failures,
                max_attempts: row.max_attempts,
                timeout_s: row.timeout_s,
                result: row.result,
                error: row.error,
                created_at: row.created_at,
                updated_at: row.updated_at,
                assigned_at: row.assigned_at,
                not_before: row.not_before,
                seq: row.seq,
                settled_by: row.settled_by,
                settled_attempt: row.settled_attempt,
            };
            inner.next_seq = inner.next_seq.max(task.seq + 1);
            inner.counts[state_index(state)] += 1;
            if state == TaskState::Pending {
                count_pending(&mut inner.pending_by_priority, task.priority, 1);
            }
            match state {
                TaskState::Pending => inner.enqueue(&task, limits.aging_s),
                TaskState::Assigned => {
                    let holder = task
                        .assigned_to
                        .as_deref()
                        .and_then(|w| inner.nodes.get_mut(w))
                        .filter(|n| !n.dead);
                    match holder {
                        Some(node) => node.current.push(id.clone()),
                        None => orphans.push(id.clone()),
                    }
                }
                TaskState::Completed | TaskState::Failed => {}
            }
            inner.tasks.insert(id, task);
        }
        let counter = |name: &str| {
            snapshot
                .counters
                .iter()
                .find(|(k, _)| k == name)
                .map_or(0, |(_, v)| *v)
        };
        inner.retried = counter("retried");
        inner.pruned = [counter("pruned_completed"), counter("pruned_failed")];
        inner.counts[2] += inner.pruned[0];
        // The status page's recent failures survive a restart.
        let mut failed: Vec<(f64, TaskId)> = inner
            .tasks
            .values()
            .filter(|t| t.state == TaskState::Failed)
            .map(|t| (t.updated_at, t.id.clone()))
            .collect();
        failed.sort_by(|a, b| a.0.total_cmp(&b.0));
        let skip = failed.len().saturating_sub(RECENT_FAILED_KEPT);
        for (_, id) in failed.into_iter().skip(skip) {
            remember_failed(&mut inner.recent_failed, &id);
        }
        inner.counts[3] += inner.pruned[1];
        let (changes, _) = watch::channel(0);
        let fleet = Fleet {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                store,
                clock,
                limits,
                changes,
                histograms: Histograms::default(),
                started_at: now,
                shutting_down: AtomicBool::new(false),
            }),
        };
        if !orphans.is_empty() {
            // Held by a node that no longer exists: nobody can settle them.
            let mut inner = fleet.lock();
            let mut muts = Vec::new();
            for id in orphans {
                inner.revoke(&id, Revoke::Unregistered, &fleet.shared, now, &mut muts);
            }
            fleet.shared.store.write_detached(muts);
        }
        fleet
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the whole fleet down with a poisoned lock; the
        // state itself is only changed by code that cannot panic half-way.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn now(&self) -> f64 {
        self.shared.clock.now()
    }

    fn changed(&self) {
        self.shared.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Fires whenever a node or a task changes (coalesced: a slow reader sees the latest
    /// generation number, not every step).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    // -----------------------------------------------------------------------------------
    // Workers

    pub fn register(
        &self,
        req: RegisterRequest,
    ) -> (RegisterResponse, oneshot::Receiver<CommitResult>) {
        let now = self.now();
        let mut inner = self.lock();
        let worker_type = req.worker_type.unwrap_or_else(|| "generic".into());
        let node = inner
            .nodes
            .entry(req.worker_id.clone())
            .or_insert_with(|| Node {
                id: req.worker_id.clone(),
                worker_type: worker_type.clone(),
                caps: Capabilities::default(),
                registered_at: now,
                last_seen: now,
                metrics: None,
                history: VecDeque::new(),
                current: Vec::new(),
                completed: 0,
                failed: 0,
                draining: false,
                dead: false,
                dirty: false,
                waiters: VecDeque::new(),
                last_heartbeat: None,
                heartbeat_gap: 0.0,
                wait_entry: None,
                wait_models: Vec::new(),
            });
        if node.dead {
            node.registered_at = now;
            node.dead = false;
        }
        node.worker_type = worker_type;
        node.caps = req.capabilities;
        node.last_seen = now;
        node.dirty = false;
        let commit = self
            .shared
            .store
            .write(vec![Mutation::PutWorker(node.row())]);
        inner.refile(&req.worker_id, &self.shared.limits.thermal);
        tracing::info!(worker = %req.worker_id, "worker registered");
        // New capabilities may unblock waiting tasks for other waiting nodes too.
        inner.dispatch(&self.shared, now);
        drop(inner);
        self.changed();
        let l = &self.shared.limits;
        (
            RegisterResponse {
                status: "registered".into(),
                worker_id: req.worker_id,
                heartbeat_interval_s: Some(l.heartbeat_interval_s.ceil().max(1.0) as u64),
                max_wait_s: Some(l.max_wait_s.floor() as u64),
            },
            commit,
        )
    }

    pub fn heartbeat(&self, id: &str, hb: HeartbeatRequest) -> Result<HeartbeatResponse, AppError> {
        let now = self.now();
        let mut inner = self.lock();
        let history_len = self.shared.limits.history_len;
        let node = match inner.nodes.get_mut(id) {
            Some(n) if !n.dead => n,
            other => return Err(not_registered(id, other.map(|n| &*n))),
        };
        if let Some(prev) = node.last_heartbeat {
            // Slow to forget a long period: one quick extra beat must not shorten it.
            node.heartbeat_gap = (now - prev).max(node.heartbeat_gap * 0.75);
        }
        node.last_heartbeat = Some(now);
        node.last_seen = now;
        node.dirty = true;
        let mut health_changed = false;
        if let Some(m) = hb.metrics {
            if history_len > 0 {
                if node.history.len() >= history_len {
                    node.history.pop_front();
                }
                node.history.push_back(MetricSample {
                    at: now,
                    cpu_percent: m.cpu_percent,
                    temperature_c: m.temperature_c,
                    memory_available_bytes: m.memory_available_bytes,
                    load1: m.load_avg.map(|l| l[0]),
                });
            }
            health_changed = true;
            node.metrics = Some(m);
        }
        let draining = node.draining;
        // A node that cooled down or loaded a model may now take a task it could not.
        if health_changed && !node.waiters.is_empty() {
            inner.refile(id, &self.shared.limits.thermal);
            inner.dispatch(&self.shared, now);
        }
        drop(inner);
        self.changed();
        Ok(HeartbeatResponse {
            status: "ok".into(),
            draining: Some(draining),
        })
    }

    pub fn unregister(
        &self,
        id: &str,
    ) -> Result<(UnregisterResponse, oneshot::Receiver<CommitResult>), AppError> {
        let now = self.now();
        let mut inner = self.lock();
        let Some(node) = inner.nodes.get(id) else {
            return Err(not_registered(id, None));
        };
        let held = node.current.clone();
        let mut muts = Vec::new();
        for t in &held {
            inner.revoke(t, Revoke::Unregistered, &self.shared, now, &mut muts);
        }
        if let Some(mut node) = inner.nodes.remove(id) {
            inner.waiting.remove(&mut node);
        }
        muts.push(Mutation::DeleteWorker(id.to_string()));
        let commit = self.shared.store.write(muts);
        inner.dispatch(&self.shared, now);
        drop(inner);
        tracing::info!(worker = %id, requeued = held.len(), "worker unregistered");
        self.changed();
        Ok((
            UnregisterResponse {
                status: "unregistered".into(),
                requeued: Some(held.iter().map(|t| t.to_string()).collect()),
            },
            commit,
        ))
    }

    /// Starts a poll: the worker waits for the scheduler to pick it. Run a scheduling
    /// pass at once, so a worker that polls without `wait` still gets a task.
    pub fn poll_start(&self, id: &str) -> Result<PollTicket, AppError> {
        let now = self.now();
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let seq = inner.next_waiter;
        inner.next_waiter += 1;
        let node = match inner.nodes.get_mut(id) {
            Some(n) if !n.dead => n,
            other => return Err(not_registered(id, other.map(|n| &*n))),
        };
        node.last_seen = now;
        let mut ticket = PollTicket {
            fleet: self.clone(),
            worker_id: id.to_string(),
            waiter: seq,
            rx: Some(rx),
            handed: None,
        };
        if self.shared.shutting_down.load(Ordering::Relaxed) {
            // Dropping the sender answers the poll with no task at once.
            ticket.rx = None;
            return Ok(ticket);
        }
        node.waiters.push_back(Waiter { seq, tx });
        inner.refile(id, &self.shared.limits.thermal);
        inner.dispatch(&self.shared, now);
        Ok(ticket)
    }

    /// Withdraws a waiter, if it is still waiting.
    fn poll_cancel(&self, id: &str, seq: u64) {
        let now = self.now();
        let mut inner = self.lock();
        if let Some(node) = inner.nodes.get_mut(id) {
            node.waiters.retain(|w| w.seq != seq);
            if !node.dead {
                node.last_seen = now;
            }
            inner.refile(id, &self.shared.limits.thermal);
        }
    }

    /// Puts back an assignment the worker never received (it hung up first).
    fn undeliver(&self, task_id: &TaskId, worker: &str, attempt: u32) {
        let now = self.now();
        let mut inner = self.lock();
        let holds = inner.tasks.get(task_id).is_some_and(|t| {
            t.state == TaskState::Assigned
                && t.attempt == attempt
                && t.assigned_to.as_deref() == Some(worker)
        });
        if holds {
            let mut muts = Vec::new();
            inner.revoke(task_id, Revoke::Undelivered, &self.shared, now, &mut muts);
            self.shared.store.write_detached(muts);
            inner.dispatch(&self.shared, now);
            drop(inner);
            tracing::debug!(task = %task_id, worker, "assignment put back: the poll went away");
            self.changed();
        }
    }

    // -----------------------------------------------------------------------------------
    // Tasks

    pub fn submit(&self, new: NewTask) -> (String, oneshot::Receiver<CommitResult>) {
        let now = self.now();
        let id_string = uuid::Uuid::new_v4().to_string();
        let id: TaskId = Arc::from(id_string.as_str());
        let l = &self.shared.limits;
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let task = Task {
            id: id.clone(),
            req: Arc::new(Requirements::of(&new.task_type, &new.data)),
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
        };
        let commit = self.shared.store.write(vec![Mutation::PutTask(task.row())]);
        inner.enqueue(&task, l.aging_s);
        inner.counts[0] += 1;
        count_pending(&mut inner.pending_by_priority, task.priority, 1);
        inner.tasks.insert(id, task);
        inner.dispatch(&self.shared, now);
        drop(inner);
        self.changed();
        (id_string, commit)
    }

    /// Settles the current attempt of a task with a worker's result. Returns `"received"`
    /// or `"duplicate"`, and the commit to wait for when something changed.
    pub fn settle(
        &self,
        task_id: &str,
        report: ResultReport,
    ) -> Result<(&'static str, Option<oneshot::Receiver<CommitResult>>), AppError> {
        let now = self.now();
        let mut inner = self.lock();
        let Some((id, task)) = inner.tasks.get_key_value(task_id) else {
            return Err(AppError::NotFound(format!("task \"{task_id}\" not found")));
        };
        let id = id.clone();
        let w = report.worker_id.as_str();
        let same_settled = task.settled_by.as_deref() == Some(w)
            && report
                .attempt
                .map_or(true, |a| Some(a) == task.settled_attempt);
        let holds = task.state == TaskState::Assigned
            && task.assigned_to.as_deref() == Some(w)
            && report.attempt.map_or(true, |a| a == task.attempt);
        if !holds {
            if same_settled && (task.state != TaskState::Assigned || report.attempt.is_some()) {
                return Ok(("duplicate", None));
            }
            let msg = match (task.state, report.attempt) {
                (TaskState::Completed | TaskState::Failed, _) => format!(
                    "task \"{task_id}\" is already {}; this result was not used",
                    task.state.as_str()
                ),
                (_, Some(a)) if a != task.attempt || task.state != TaskState::Assigned => format!(
                    "attempt {a} of task \"{task_id}\" is no longer current (it was revoked: {}); \
                     the task is now {} at attempt {}",
                    task.error.as_deref().unwrap_or("reassigned"),
                    task.state.as_str(),
                    task.attempt
                ),
                _ => format!(
                    "worker \"{w}\" does not hold task \"{task_id}\" (it is {}{})",
                    task.state.as_str(),
                    task.assigned_to
                        .as_deref()
                        .map(|h| format!(" on \"{h}\""))
                        .unwrap_or_default()
                ),
            };
            return Err(AppError::Conflict(msg));
        }
        if let Some(at) = task.assigned_at {
            self.shared.histograms.observe_task_duration(now - at);
        }
        let mut muts = Vec::new();
        let result = Arc::new(report.result);
        if report.success || !report.retryable {
            let task = inner
                .tasks
                .get_mut(&id)
                .ok_or_else(|| AppError::Internal("task vanished".into()))?;
            let new_state = if report.success {
                TaskState::Completed
            } else {
                TaskState::Failed
            };
            task.state = new_state;
            task.result = Some(result.clone());
            task.updated_at = now;
            task.settled_by = Some(w.to_string());
            task.settled_attempt = Some(task.attempt);
            task.error = if report.success {
                None
            } else {
                Some(
                    result
                        .get("error")
                        .and_then(Value::as_str)
                        .map(|e| format!("attempt {} failed on \"{w}\": {e}", task.attempt))
                        .unwrap_or_else(|| format!("attempt {} failed on \"{w}\"", task.attempt)),
                )
            };
            muts.push(Mutation::UpdateTask(task.row()));
            inner.counts[1] -= 1;
            inner.counts[state_index(new_state)] += 1;
            inner.notify_settled(&id);
            if new_state == TaskState::Failed {
                remember_failed(&mut inner.recent_failed, &id);
            }
            if let Some(node) = inner.nodes.get_mut(w) {
                node.current.retain(|t| *t != id);
                if report.success {
                    node.completed += 1;
                } else {
                    node.failed += 1;
                }
                node.last_seen = now;
                muts.push(node.counts_mutation());
            }
            inner.refile(w, &self.shared.limits.thermal);
        } else {
            if let Some(task) = inner.tasks.get_mut(&id) {
                task.result = Some(result.clone());
                task.settled_by = Some(w.to_string());
                task.settled_attempt = Some(task.attempt);
            }
            inner.revoke(&id, Revoke::Failed, &self.shared, now, &mut muts);
        }
        let commit = self.shared.store.write(muts);
        inner.dispatch(&self.shared, now);
        drop(inner);
        self.changed();
        Ok(("received", Some(commit)))
    }

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

    /// A receiver that fires when the task completes or fails; `None` when it already has
    /// (or does not exist), so the caller answers at once.
    pub fn watch_settled(&self, task_id: &str) -> Option<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        let (id, task) = inner.tasks.get_key_value(task_id)?;
        if matches!(task.state, TaskState::Completed | TaskState::Failed) {
            return None;
        }
        let id = id.clone();
        let (tx, rx) = oneshot::channel();
        let watchers = inner.settle_watchers.entry(id).or_default();
        // Clients that gave up must not pile up on a task that never settles.
        watchers.retain(|w| !w.is_closed());
        watchers.push(tx);
        Some(rx)
    }

    /// Pending tasks in the order they will be offered (up to `limit`), then the assigned.
    pub fn queue(&self, limit: usize) -> QueueResponse {
        let now = self.now();
        let inner = self.lock();
        let l = &self.shared.limits;
        let mut order: Vec<(i64, u64, &TaskId)> = inner
            .queue
            .lanes
            .values()
            .flat_map(|lane| lane.iter().map(|((r, s), id)| (*r, *s, id)))
            .collect();
        order.sort_unstable();
        let delayed = inner.queue.delayed.values().map(|id| (0, 0, id));
        let mut reasons: HashMap<Arc<Requirements>, String> = HashMap::new();
        let mut by_priority: BTreeMap<String, u64> = (1..=10).map(|p| (p.to_string(), 0)).collect();
        let mut pending = Vec::new();
        for (_, _, id) in order.into_iter().chain(delayed) {
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
            pending.push(entry(t, Some(reason)));
        }
        let mut assigned: Vec<QueueEntry> = inner
            .nodes
            .values()
            .flat_map(|n| n.current.iter())
            .filter_map(|id| inner.tasks.get(id))
            .map(|t| entry(t, None))
            .collect();
        assigned.sort_by(|a, b| a.created_at.total_cmp(&b.created_at));
        QueueResponse {
            total_pending: inner.counts[0],
            total_assigned: inner.counts[1],
            pending,
            assigned,
            by_priority,
        }
    }

    // -----------------------------------------------------------------------------------
    // Views

    pub fn health(&self) -> HealthResponse {
        let inner = self.lock();
        HealthResponse {
            status: "healthy".into(),
            workers_online: inner.nodes.values().filter(|n| !n.dead).count() as u64,
            tasks_pending: inner.counts[0],
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
            workers.total += 1;
            match n.state() {
                WorkerState::Online => workers.online += 1,
                WorkerState::Busy => workers.busy += 1,
                WorkerState::Draining => workers.draining += 1,
                WorkerState::Dead => workers.dead += 1,
            }
            per_worker.insert(
                n.id.clone(),
                WorkerSuccess {
                    tasks_completed: n.completed,
                    tasks_failed: n.failed,
                    success_rate: rate(n.completed, n.failed),
                },
            );
        }
        let c = inner.counts;
        StatsResponse {
            workers,
            tasks: TaskCounts {
                total: inner.tasks.len() as u64 + inner.pruned[0] + inner.pruned[1],
                pending: c[0],
                assigned: c[1],
                completed: c[2],
                failed: c[3],
                retried: inner.retried,
            },
            success_rate: rate(c[2], c[3]),
            per_worker,
            uptime_s: Some((now - self.shared.started_at).max(0.0) as u64),
        }
    }

    /// Every node, sorted by id, as operators see it.
    pub fn nodes(&self) -> Vec<NodeView> {
        self.lock().nodes.values().map(Node::view).collect()
    }

    /// One node with its recent metric history (oldest first).
    pub fn node(&self, id: &str) -> Option<NodeDetail> {
        let inner = self.lock();
        let n = inner.nodes.get(id)?;
        Some(NodeDetail {
            node: n.view(),
            history: n.history.iter().cloned().collect(),
        })
    }

    /// True while the node has a poll waiting for work.
    pub fn is_waiting(&self, id: &str) -> bool {
        self.lock().nodes.get(id).is_some_and(Node::has_open_waiter)
    }

    /// Drains (or undrains) a node: a draining node finishes what it holds and gets no
    /// new work. Durable once the returned future resolves.
    pub async fn set_draining(&self, id: &str, draining: bool) -> Result<NodeView, AppError> {
        let now = self.now();
        let (view, commit) = {
            let mut inner = self.lock();
            let node = inner
                .nodes
                .get_mut(id)
                .ok_or_else(|| AppError::NotFound(format!("node \"{id}\" not found")))?;
            node.draining = draining;
            let commit = self
                .shared
                .store
                .write(vec![Mutation::PutWorker(node.row())]);
            let view = node.view();
            if !draining {
                inner.dispatch(&self.shared, now);
            }
            (view, commit)
        };
        tracing::info!(worker = %id, draining, "drain changed");
        self.changed();
        committed(commit).await?;
        Ok(view)
    }

    // -----------------------------------------------------------------------------------
    // Time

    /// Housekeeping: declares silent nodes dead and requeues their work, times out
    /// attempts, releases tasks whose backoff is over, and writes heartbeat-only changes.
    /// The server calls it periodically; tests call it after moving a manual clock.
    pub fn tick(&self) {
        let now = self.now();
        let sh = &self.shared;
        let l = &sh.limits;
        let mut inner = self.lock();
        let mut muts = Vec::new();
        let mut changed = false;

        let mut newly_dead = Vec::new();
        for n in inner.nodes.values_mut() {
            if n.dead {
                continue;
            }
            // Missed beats are counted in the node's own period, within reason.
            let period = n.heartbeat_gap.clamp(
                l.heartbeat_interval_s,
                MAX_PERIOD_FACTOR * l.heartbeat_interval_s,
            );
            let dead_after = period * f64::from(l.dead_after_missed);
            if n.has_open_waiter() {
                n.last_seen = now;
            } else if now - n.last_seen > dead_after {
                newly_dead.push(n.id.clone());
            }
        }
        for id in newly_dead {
            let held = match inner.nodes.get_mut(&id) {
                Some(n) => {
                    n.dead = true;
                    n.waiters.clear();
                    n.current.clone()
                }
                None => continue,
            };
            inner.refile(&id, &l.thermal);
            tracing::warn!(worker = %id, requeued = held.len(), "worker missed its heartbeats: declared dead");
            for t in &held {
                inner.revoke(t, Revoke::NodeDead, sh, now, &mut muts);
            }
            if let Some(n) = inner.nodes.get_mut(&id) {
                n.dirty = false;
                muts.push(Mutation::PutWorker(n.row()));
            }
            changed = true;
        }

        let expired: Vec<TaskId> = inner
            .nodes
            .values()
            .flat_map(|n| n.current.iter())
            .filter(|id| {
                inner
                    .tasks
                    .get(*id)
                    .is_some_and(|t| t.assigned_at.is_some_and(|at| now - at > t.timeout_s))
            })
            .cloned()
            .collect();
        for id in expired {
            inner.revoke(&id, Revoke::TimedOut, sh, now, &mut muts);
            changed = true;
        }

        let due = micros(now);
        while let Some(entry) = inner.queue.delayed.first_entry() {
            if entry.key().0 > due {
                break;
            }
            let id = entry.remove();
            if let Some(t) = inner.tasks.get_mut(&id) {
                t.not_before = None;
                let (req, key) = (t.req.clone(), t.rank(l.aging_s));
                inner.queue.push_ready(&req, key, id);
                changed = true;
            }
        }

        if now - inner.last_flush >= l.node_flush_s {
            inner.last_flush = now;
            for n in inner.nodes.values_mut() {
                if n.dirty {
                    n.dirty = false;
                    muts.push(Mutation::PutWorker(n.row()));
                }
            }
        }

        // Once a minute is plenty: retention is counted in hours or days.
        if now - inner.last_prune >= 60.0 {
            inner.last_prune = now;
            changed |= inner.prune(l, now, &mut muts);
        }

        inner.dispatch(sh, now);
        drop(inner);
        sh.store.write_detached(muts);
        if changed {
            self.changed();
        }
    }

    /// Checks the bookkeeping that must always agree (counts, queue, holders). For tests:
    /// it walks everything under the lock.
    pub fn check_invariants(&self) -> Result<(), String> {
        let inner = self.lock();
        let mut by_state = [0u64; 4];
        for t in inner.tasks.values() {
            by_state[state_index(t.state)] += 1;
        }
        by_state[2] += inner.pruned[0];
        by_state[3] += inner.pruned[1];
        if by_state != inner.counts {
            return Err(format!(
                "counts {:?} != tasks by state {by_state:?}",
                inner.counts
            ));
        }
        let mut queued = HashSet::new();
        for lane in inner.queue.lanes.values() {
            for id in lane.values() {
                if !queued.insert(id.clone()) {
                    return Err(format!("task {id} queued twice"));
                }
            }
        }
        for id in inner.queue.delayed.values() {
            if !queued.insert(id.clone()) {
                return Err(format!("task {id} both ready and delayed"));
            }
        }
        for id in &queued {
            match inner.tasks.get(id) {
                Some(t) if t.state == TaskState::Pending => {}
                Some(t) => return Err(format!("queued task {id} is {:?}", t.state)),
                None => return Err(format!("queued task {id} does not exist")),
            }
        }
        if queued.len() as u64 != inner.counts[0] {
            return Err(format!(
                "{} queued but {} pending",
                queued.len(),
                inner.counts[0]
            ));
        }
        let mut held = 0u64;
        for n in inner.nodes.values() {
            for id in &n.current {
                held += 1;
                let t = inner
                    .tasks
                    .get(id)
                    .ok_or_else(|| format!("{} holds missing {id}", n.id))?;
                if t.state != TaskState::Assigned || t.assigned_to.as_deref() != Some(n.id.as_str())
                {
                    return Err(format!(
                        "{} holds {id} which is {:?} on {:?}",
                        n.id, t.state, t.assigned_to
                    ));
                }
            }
            if n.dead && !n.current.is_empty() {
                return Err(format!("dead node {} still holds tasks", n.id));
            }
        }
        if held != inner.counts[1] {
            return Err(format!("{held} held but {} assigned", inner.counts[1]));
        }
        let thermal = &self.shared.limits.thermal;
        let mut filed = 0;
        for n in inner.nodes.values() {
            let f = n.facts();
            let should = !n.dead && !n.waiters.is_empty() && f.has_free_slot();
            match (&n.wait_entry, should) {
                (None, false) => {}
                (Some((key, seq)), true) => {
                    filed += 1;
                    if *key != f.base_key(thermal) {
                        return Err(format!("{} is filed under a stale key", n.id));
                    }
                    if Some(*seq) != n.waiters.front().map(|w| w.seq) {
                        return Err(format!("{} is filed under a stale waiter", n.id));
                    }
                    if !inner.waiting.all.contains(&(*key, *seq, n.id.clone())) {
                        return Err(format!("{} is missing from the wait index", n.id));
                    }
                    for m in f.loaded_models() {
                        let found = inner
                            .waiting
                            .loaded
                            .get(&m)
                            .is_some_and(|set| set.contains(&(*key, *seq, n.id.clone())));
                        if !found {
                            return Err(format!("{} is missing from the {m} index", n.id));
                        }
                    }
                }
                (Some(_), false) => return Err(format!("{} is filed but cannot wait", n.id)),
                (None, true) => return Err(format!("{} waits but is not filed", n.id)),
            }
        }
        if filed != inner.waiting.all.len() {
            return Err(format!(
                "{} filed, {} in the index",
                filed,
                inner.waiting.all.len()
            ));
        }
        Ok(())
    }

    /// A receiver that answers once everything queued so far is committed.
    pub fn store_barrier(&self) -> oneshot::Receiver<CommitResult> {
        self.shared.store.write(Vec::new())
    }

    /// Answers every waiting poll with "no task" and refuses new waits, so a graceful
    /// shutdown does not hang on long polls.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        // Wakes the status page's event streams so they end and let the server stop.
        self.changed();
        let mut inner = self.lock();
        for n in inner.nodes.values_mut() {
            n.waiters.clear();
            n.wait_entry = None;
            n.wait_models.clear();
        }
        inner.settle_watchers.clear();
        inner.waiting = WaitIndex::default();
        // Heartbeat-only changes would otherwise be lost until the next flush.
        let muts: Vec<Mutation> = inner
            .nodes
            .values_mut()
            .filter(|n| n.dirty)
            .map(|n| {
                n.dirty = false;
                Mutation::PutWorker(n.row())
            })
            .collect();
        self.shared.store.write_detached(muts);
    }
}

impl Drop for PollTicket {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            self.fleet.poll_cancel(&self.worker_id, self.waiter);
            if let Ok(d) = rx.try_recv() {
                self.handed = Some((
                    Arc::from(d.assignment.task_id.as_str()),
                    d.assignment.attempt.unwrap_or(0),
                ));
            }
        }
        if let Some((task, attempt)) = self.handed.take() {
            self.fleet.undeliver(&task, &self.worker_id, attempt);
        }
    }
}

impl PollTicket {
    /// Waits up to `wait_s` for an assignment; `None` when the wait ended without one.
    /// The assignment is durable when this returns it.
    pub async fn wait(&mut self, wait_s: f64) -> Result<Option<TaskAssignment>, AppError> {
        let Some(mut rx) = self.rx.take() else {
            return Ok(None);
        };
        let delivery = if wait_s <= 0.0 {
            rx.try_recv().ok()
        } else {
            match tokio::time::timeout(std::time::Duration::from_secs_f64(wait_s), &mut rx).await {
                Ok(Ok(d)) => Some(d),
                Ok(Err(_)) => None,
                Err(_) => None,
            }
        };
        let delivery = match delivery {
            Some(d) => Some(d),
            None => {
                self.fleet.poll_cancel(&self.worker_id, self.waiter);
                // Placed between the end of the wait and the withdrawal.
                rx.try_recv().ok()
            }
        };
        let Some(d) = delivery else {
            return Ok(None);
        };
        self.handed = Some((
            Arc::from(d.assignment.task_id.as_str()),
            d.assignment.attempt.unwrap_or(0),
        ));
        committed(d.commit).await?;
        Ok(Some(d.assignment))
    }

    /// The worker has its task: from now on only a result or a timeout settles it.
    pub fn finish(mut self) {
        self.handed = None;
    }
}

fn entry(t: &Task, pending_reason: Option<String>) -> QueueEntry {
    QueueEntry {
        task_id: t.id.to_string(),
        task_type: t.task_type.clone(),
        priority: t.priority,
        status: t.state,
        assigned_to: t.assigned_to.clone(),
        attempts: t.attempt,
        created_at: t.created_at,
        pending_reason,
        assigned_at: t.assigned_at.filter(|_| t.state == TaskState::Assigned),
    }
}

fn rate(ok: u64, failed: u64) -> Option<f64> {
    let total = ok + failed;
    (total > 0).then(|| ok as f64 / total as f64)
}

impl Inner {
    fn enqueue(&mut self, task: &Task, aging_s: f64) {
        match task.not_before {
            Some(nb) => {
                self.queue
                    .delayed
                    .insert((micros(nb), task.seq), task.id.clone());
            }
            None => self
                .queue
                .push_ready(&task.req, task.rank(aging_s), task.id.clone()),
        }
    }

    /// Takes a task back from its holder. Counted failures may exhaust the task's
    /// attempts and fail it; otherwise it goes back to the queue (after a backoff for
    /// timeouts and reported failures).
    fn revoke(
        &mut self,
        id: &TaskId,
        why: Revoke,
        sh: &Shared,
        now: f64,
        muts: &mut Vec<Mutation>,
    ) {
        let l = &sh.limits;
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if task.state != TaskState::Assigned {
            return;
        }
        let holder = task.assigned_to.take().unwrap_or_default();
        let attempt = task.attempt;
        let reason = match why {
            Revoke::NodeDead => {
                format!("attempt {attempt}: node \"{holder}\" stopped heartbeating")
            }
            Revoke::TimedOut => format!(
                "attempt {attempt} timed out after {}s on \"{holder}\"",
                task.timeout_s
            ),
            Revoke::Failed => {
                let detail = task
                    .result
                    .as_deref()
                    .and_then(|r| r.get("error"))
                    .and_then(Value::as_str)
                    .unwrap_or("no detail");
                format!("attempt {attempt} failed on \"{holder}\" (retryable): {detail}")
            }
            Revoke::Unregistered => format!("attempt {attempt}: node \"{holder}\" unregistered"),
            Revoke::Undelivered => {
                format!("attempt {attempt}: \"{holder}\" hung up before receiving it")
            }
        };
        let counted = matches!(why, Revoke::NodeDead | Revoke::TimedOut | Revoke::Failed);
        if counted {
            task.failures += 1;
        }
        task.updated_at = now;
        task.assigned_at = None;
        self.counts[1] -= 1;
        let failed_for_good = counted && task.failures >= task.max_attempts;
        if failed_for_good {
            task.state = TaskState::Failed;
            task.error = Some(format!(
                "{reason}; gave up after {} failed attempt(s)",
                task.failures
            ));
            task.assigned_to = Some(holder.clone());
            self.counts[3] += 1;
            remember_failed(&mut self.recent_failed, id);
            tracing::warn!(task = %id, error = task.error.as_deref().unwrap_or(""), "task failed");
        } else {
            task.state = TaskState::Pending;
            task.error = Some(reason);
            let backoff = matches!(why, Revoke::TimedOut | Revoke::Failed);
            task.not_before = (backoff && l.retry_backoff_s > 0.0).then(|| {
                let exp = task.failures.saturating_sub(1).min(30);
                now + (l.retry_backoff_s * f64::from(1u32 << exp)).min(l.retry_backoff_max_s)
            });
            self.counts[0] += 1;
            count_pending(&mut self.pending_by_priority, task.priority, 1);
            if why != Revoke::Undelivered {
                self.retried += 1;
                muts.push(Mutation::Counter("retried".into(), self.retried));
            }
        }
        muts.push(Mutation::UpdateTask(task.row()));
        if !failed_for_good {
            let (nb, seq, req, key) = (
                task.not_before,
                task.seq,
                task.req.clone(),
                task.rank(l.aging_s),
            );
            match nb {
                Some(nb) => {
                    self.queue.delayed.insert((micros(nb), seq), id.clone());
                }
                None => self.queue.push_ready(&req, key, id.clone()),
            }
        }
        if let Some(node) = self.nodes.get_mut(&holder) {
            node.current.retain(|t| t != id);
            if counted && why != Revoke::NodeDead {
                node.failed += 1;
                muts.push(node.counts_mutation());
            }
            self.waiting.refresh(node, &l.thermal);
        }
        if failed_for_good {
            self.notify_settled(id);
        }
    }

    fn notify_settled(&mut self, id: &TaskId) {
        for tx in self.settle_watchers.remove(id).unwrap_or_default() {
            let _ = tx.send(());
        }
    }

    fn refile(&mut self, id: &str, thermal: &Thermal) {
        if let Some(node) = self.nodes.get_mut(id) {
            self.waiting.refresh(node, thermal);
        }
    }

    /// Forgets settled tasks and dead nodes past their retention. Totals stay cumulative.
    fn prune(&mut self, l: &Limits, now: f64, muts: &mut Vec<Mutation>) -> bool {
        self.settle_watchers.retain(|_, w| {
            w.retain(|tx| !tx.is_closed());
            !w.is_empty()
        });
        let task_cutoff = now - l.task_retention_s;
        let old: Vec<(TaskId, TaskState)> = self
            .tasks
            .values()
            .filter(|t| {
                matches!(t.state, TaskState::Completed | TaskState::Failed)
                    && t.updated_at < task_cutoff
            })
            .map(|t| (t.id.clone(), t.state))
            .collect();
        for (id, state) in &old {
            self.tasks.remove(id);
            muts.push(Mutation::DeleteTask(id.to_string()));
            self.pruned[usize::from(*state == TaskState::Failed)] += 1;
        }
        if !old.is_empty() {
            muts.push(Mutation::Counter("pruned_completed".into(), self.pruned[0]));
            muts.push(Mutation::Counter("pruned_failed".into(), self.pruned[1]));
            tracing::info!(
                tasks = old.len(),
                "forgot settled tasks past their retention"
            );
        }
        let node_cutoff = now - l.dead_node_retention_s;
        let gone: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.dead && n.last_seen < node_cutoff)
            .map(|n| n.id.clone())
            .collect();
        for id in &gone {
            self.nodes.remove(id);
            muts.push(Mutation::DeleteWorker(id.clone()));
        }
        !old.is_empty() || !gone.is_empty()
    }

    /// Places lane heads on the best waiting nodes until no waiting node can take any.
    fn dispatch(&mut self, sh: &Shared, now: f64) {
        let thermal = &sh.limits.thermal;
        loop {
            if self.waiting.is_empty() || self.queue.lanes.is_empty() {
                return;
            }
            let mut heads: Vec<((i64, u64), Arc<Requirements>)> = self
                .queue
                .lanes
                .iter()
                .filter_map(|(req, lane)| lane.first_key_value().map(|(k, _)| (*k, req.clone())))
                .collect();
            heads.sort_unstable_by_key(|a| a.0);
            let mut placed = false;
            for (key, req) in heads {
                if let Some(node_id) = self.best_waiting(&req, thermal) {
                    if let Some(task_id) = self.queue.remove_ready(&req, key) {
                        if !self.assign(&task_id, &node_id, sh, now) {
                            // Its polls hung up just now; the node is re-filed without them.
                            self.queue.push_ready(&req, key, task_id);
                        }
                        placed = true;
                        break;
                    }
                }
            }
            if !placed {
                return;
            }
        }
    }

    /// The best waiting node for a task, in tiers: cool with the model loaded, cool,
    /// warm with the model loaded, warm. Within a tier the wait index is already in
    /// preference order, so the first eligible entry wins.
    fn best_waiting(&self, req: &Requirements, thermal: &Thermal) -> Option<String> {
        let eligible = |e: &&WaitEntry| {
            self.nodes.get(&e.2).is_some_and(|n| {
                let f = n.facts();
                n.has_open_waiter() && f.has_free_slot() && f.can_run(req, thermal).is_ok()
            })
        };
        let loaded = req
            .model
            .as_deref()
            .and_then(|m| self.waiting.loaded.get(canonical_model(m)));
        for warm in [false, true] {
            let in_tier = |e: &&WaitEntry| e.0 .0 == warm;
            if let Some(set) = loaded {
                if let Some(e) = set.iter().filter(in_tier).find(eligible) {
                    return Some(e.2.clone());
                }
            }
            if let Some(e) = self.waiting.all.iter().filter(in_tier).find(eligible) {
                return Some(e.2.clone());
            }
        }
        None
    }

    /// Gives a task to a waiting node. False when the node had no open poll left.
    fn assign(&mut self, id: &TaskId, node_id: &str, sh: &Shared, now: f64) -> bool {
        let (Some(task), Some(node)) = (self.tasks.get_mut(id), self.nodes.get_mut(node_id)) else {
            return false;
        };
        // Polls that hung up since the node was filed do not count.
        let waiter = loop {
            match node.waiters.pop_front() {
                Some(w) if w.tx.is_closed() => continue,
                Some(w) => break w,
                None => {
                    self.waiting.refresh(node, &sh.limits.thermal);
                    return false;
                }
            }
        };
        // Queued since submit or requeue, or since its retry backoff ended.
        let ready_since = task
            .not_before
            .map_or(task.updated_at, |nb| nb.max(task.updated_at));
        sh.histograms.observe_scheduling_latency(now - ready_since);
        task.state = TaskState::Assigned;
        task.attempt += 1;
        task.assigned_to = Some(node_id.to_string());
        task.assigned_at = Some(now);
        task.not_before = None;
        task.updated_at = now;
        node.current.push(id.clone());
        self.waiting.refresh(node, &sh.limits.thermal);
        self.counts[0] -= 1;
        count_pending(&mut self.pending_by_priority, task.priority, -1);
        self.counts[1] += 1;
        let commit = sh.store.write(vec![Mutation::UpdateTask(task.row())]);
        let assignment = TaskAssignment {
            task_id: id.to_string(),
            task_type: task.task_type.clone(),
            data: (*task.data).clone(),
            priority: Some(task.priority),
            attempt: Some(task.attempt),
            timeout_s: Some(task.timeout_s.ceil() as u64),
        };
        tracing::debug!(task = %id, worker = node_id, attempt = task.attempt, "assigned");
        if waiter.tx.send(Delivery { assignment, commit }).is_err() {
            // The poll hung up after it was picked.
            let mut muts = Vec::new();
            self.revoke(id, Revoke::Undelivered, sh, now, &mut muts);
            sh.store.write_detached(muts);
        }
        true
    }

    fn pending_reason(&self, task: &Task, l: &Limits, now: f64) -> String {
        if let Some(nb) = task.not_before.filter(|nb| *nb > now) {
            return format!(
                "retry backoff: eligible again in {:.1}s (after {})",
                nb - now,
                task.error.as_deref().unwrap_or("a failed attempt")
            );
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

// ---------------------------------------------------------------------------------------
// Node health views (see `crate::health`)

impl Fleet {
    /// Every node with its recent metric history, sorted by id.
    pub fn node_details(&self) -> Vec<NodeDetail> {
        self.lock()
            .nodes
            .values()
            .map(|n| NodeDetail {
                node: n.view(),
                history: n.history.iter().cloned().collect(),
            })
            .collect()
    }

    /// Pending tasks per priority (ready and in retry backoff); kept as tasks move, so
    /// reading it costs nothing however long the queue.
    pub fn pending_by_priority(&self) -> BTreeMap<u8, u64> {
        let inner = self.lock();
        (1..=10u8)
            .map(|p| (p, inner.pending_by_priority[usize::from(p)]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The `limit` most recently failed tasks still in memory, newest first.
    pub fn recent_failures(&self, limit: usize) -> Vec<FailedTask> {
        let inner = self.lock();
        inner
            .recent_failed
            .iter()
            .rev()
            .filter_map(|id| inner.tasks.get(id))
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

    /// True once shutdown has begun: long-lived responses (event streams) should end.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Relaxed)
    }

    /// The scheduling-latency and task-duration histograms `/metrics` exports.
    pub fn histograms(&self) -> &Histograms {
        &self.shared.histograms
    }
}
