//! A node as the fleet holds it: built once (at registration or from a stored row),
//! its liveness period, its row for the store, and the view operators see.

use std::collections::{BTreeMap, VecDeque};

use pifleet_protocol::{
    Capabilities, MetricSample, NodeDetail, NodeMetrics, NodeView, WorkerState,
};
use serde_json::Value;
use tokio::sync::oneshot;

use super::lanes::Reach;
use super::limits::Limits;
use super::placement::{BaseKey, NodeFacts};
use super::poll::Delivery;
use super::staging::plan::Order;
use super::task::TaskId;
use crate::store::{Mutation, WorkerRow};

/// A node's observed heartbeat period counts up to this many configured intervals.
const MAX_PERIOD_FACTOR: f64 = 6.0;

/// One long poll waiting for a task.
pub(super) struct Waiter {
    pub seq: u64,
    pub tx: oneshot::Sender<Delivery>,
}

pub(super) struct Node {
    pub id: String,
    pub worker_type: String,
    pub caps: Capabilities,
    pub registered_at: f64,
    pub last_seen: f64,
    pub metrics: Option<NodeMetrics>,
    pub history: VecDeque<MetricSample>,
    pub current: Vec<TaskId>,
    pub completed: u64,
    pub failed: u64,
    pub draining: bool,
    pub dead: bool,
    /// Heartbeat-only changes not yet written to the store.
    pub dirty: bool,
    pub waiters: VecDeque<Waiter>,
    /// When the last heartbeat came, and the node's own heartbeat period as observed:
    /// a seed worker beats every 30 s, and must not be declared dead for keeping its pace.
    pub last_heartbeat: Option<f64>,
    pub heartbeat_gap: f64,
    /// Where the node sits in the wait index, to find it again when it changes.
    pub wait_entry: Option<(BaseKey, u64)>,
    pub wait_models: Vec<String>,
    /// Model staging orders given to the node, by canonical model.
    pub staging: BTreeMap<String, Order>,
    /// Bytes a second this node's pulls downloaded at, learned from its progress reports.
    pub pull_rate: Option<f64>,
    /// What it was counted as able to run in the wait index (`None`: nothing now).
    pub wait_reach: Option<Reach>,
}

impl Node {
    /// A node seen for the first time.
    pub fn new(id: String, worker_type: String, now: f64) -> Node {
        Node {
            id,
            worker_type,
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
            staging: BTreeMap::new(),
            pull_rate: None,
            wait_reach: None,
        }
    }

    /// A node as stored. A live one gets a fresh liveness window from `now`: it could not
    /// heartbeat while the orchestrator was down.
    pub fn from_row(w: WorkerRow, now: f64) -> Node {
        let caps = serde_json::from_value(w.capabilities).unwrap_or_else(|e| {
            tracing::warn!(worker = %w.id, error = %e, "stored capabilities unreadable; using none");
            Capabilities::default()
        });
        let mut node = Node::new(w.id, w.worker_type, w.registered_at);
        node.caps = caps;
        node.last_seen = if w.dead { w.last_seen } else { now };
        node.metrics = w.metrics.and_then(|m| serde_json::from_value(m).ok());
        node.completed = w.tasks_completed;
        node.failed = w.tasks_failed;
        node.draining = w.draining;
        node.dead = w.dead;
        node
    }

    pub fn facts(&self) -> NodeFacts<'_> {
        NodeFacts {
            caps: &self.caps,
            metrics: self.metrics.as_ref(),
            running: self.current.len(),
            draining: self.draining,
            alive: !self.dead,
        }
    }

    pub fn state(&self) -> WorkerState {
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

    /// Silence longer than this declares the node dead: missed beats are counted in the
    /// node's own period, within reason.
    pub fn dead_after(&self, l: &Limits) -> f64 {
        let period = self.heartbeat_gap.clamp(
            l.heartbeat_interval_s,
            MAX_PERIOD_FACTOR * l.heartbeat_interval_s,
        );
        period * f64::from(l.dead_after_missed)
    }

    pub fn row(&self) -> WorkerRow {
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

    /// The whole node for the store, clearing the heartbeat-only changes it includes.
    pub fn put(&mut self) -> Mutation {
        self.dirty = false;
        Mutation::PutWorker(self.row())
    }

    /// The node for the store when heartbeat-only changes are waiting.
    pub fn flush(&mut self) -> Option<Mutation> {
        self.dirty.then(|| self.put())
    }

    pub fn counts_mutation(&self) -> Mutation {
        Mutation::WorkerCounts {
            id: self.id.clone(),
            completed: self.completed,
            failed: self.failed,
        }
    }

    pub fn view(&self) -> NodeView {
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
            streaming: Vec::new(),
            staging: Vec::new(),
        }
    }

    /// The view with the recent metric history (oldest first).
    pub fn detail(&self) -> NodeDetail {
        NodeDetail {
            node: self.view(),
            history: self.history.iter().cloned().collect(),
            thresholds: None,
            speeds: Vec::new(),
        }
    }

    pub fn has_open_waiter(&self) -> bool {
        self.waiters.iter().any(|w| !w.tx.is_closed())
    }
}
