//! Workers joining and leaving: register, heartbeat (liveness and metrics), drain and
//! undrain, unregister.

use pifleet_protocol::{
    HeartbeatRequest, HeartbeatResponse, MetricSample, NodeView, RegisterRequest, RegisterResponse,
    TaskState, UnregisterResponse,
};
use tokio::sync::oneshot;

use super::error::{committed, FleetError};
use super::node::Node;
use super::reclaim::Holding;
use super::tasks::Revoke;
use super::{Fleet, Inner};
use crate::store::{CommitResult, Mutation};

impl Inner {
    /// Of the tasks a node says it runs, those it no longer holds: cancelled (its client
    /// hung up), settled otherwise, or given to another attempt. Unknown ids are left
    /// alone (not ours to judge).
    pub(super) fn not_held_by(&self, worker: &str, running: &[String]) -> Vec<String> {
        running
            .iter()
            .filter(|t| {
                self.tasks.get(t.as_str()).is_some_and(|task| {
                    task.state != TaskState::Assigned || task.assigned_to.as_deref() != Some(worker)
                })
            })
            .cloned()
            .collect()
    }

    /// The live node `id`, or why the fleet will not serve it.
    pub(super) fn live_node(&mut self, id: &str) -> Result<&mut Node, FleetError> {
        match self.nodes.get_mut(id) {
            Some(n) if !n.dead => Ok(n),
            other => Err(FleetError::unknown_worker(id, other.is_some())),
        }
    }
}

impl Fleet {
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
            .or_insert_with(|| Node::new(req.worker_id.clone(), worker_type.clone(), now));
        if node.dead {
            node.registered_at = now;
            node.dead = false;
        }
        node.worker_type = worker_type;
        node.caps = req.capabilities;
        node.last_seen = now;
        let commit = self.shared.store.write(vec![node.put()]);
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
                credential: None,
            },
            commit,
        )
    }

    /// Records a heartbeat. When it shows an attempt lost (see `reclaim.rs`), the attempt
    /// is requeued and the returned commit makes that durable: answer after it.
    pub fn heartbeat(
        &self,
        id: &str,
        hb: HeartbeatRequest,
    ) -> Result<(HeartbeatResponse, Option<oneshot::Receiver<CommitResult>>), FleetError> {
        let now = self.now();
        let mut inner = self.lock();
        let history_len = self.shared.limits.history_len;
        let node = inner.live_node(id)?;
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
        node.take_stage_reports(hb.staging, now, &self.shared.limits);
        let stage = node.stage_orders();
        let draining = node.draining;
        let may_take = health_changed && !node.waiters.is_empty();
        let stop_tasks = hb
            .running_tasks
            .as_ref()
            .map(|running| inner.not_held_by(id, running));
        let mut commit = None;
        if let (Some(running), Some(spooled)) = (&hb.running_tasks, &hb.spooled_results) {
            let holding = Holding { running, spooled };
            let mut muts = Vec::new();
            let lost = inner.reclaim_unseen(id, &holding, &self.shared, now, &mut muts);
            if !lost.is_empty() {
                commit = Some(self.shared.store.write(muts));
                inner.dispatch(&self.shared, now);
            }
        }
        // A node that cooled down or loaded a model may now take a task it could not.
        if may_take {
            inner.refile(id, &self.shared.limits.thermal);
            inner.dispatch(&self.shared, now);
        }
        drop(inner);
        self.changed();
        let resp = HeartbeatResponse {
            status: "ok".into(),
            draining: Some(draining),
            stage,
            stop_tasks: stop_tasks.filter(|s| !s.is_empty()),
        };
        Ok((resp, commit))
    }

    pub fn unregister(
        &self,
        id: &str,
    ) -> Result<(UnregisterResponse, oneshot::Receiver<CommitResult>), FleetError> {
        let now = self.now();
        let mut inner = self.lock();
        let Some(node) = inner.nodes.get(id) else {
            return Err(FleetError::unknown_worker(id, false));
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

    /// Drains (or undrains) a node: a draining node finishes what it holds and gets no
    /// new work. Durable once the returned future resolves.
    pub async fn set_draining(&self, id: &str, draining: bool) -> Result<NodeView, FleetError> {
        let now = self.now();
        let (view, commit) = {
            let mut inner = self.lock();
            let node = inner
                .nodes
                .get_mut(id)
                .ok_or_else(|| FleetError::NodeNotFound(id.to_string()))?;
            node.draining = draining;
            let commit = self
                .shared
                .store
                .write(vec![Mutation::PutWorker(node.row())]);
            let view = node.view();
            // A draining node takes nothing: the wait index must know it either way.
            inner.refile(id, &self.shared.limits.thermal);
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

    /// True while the node has a poll waiting for work.
    pub fn is_waiting(&self, id: &str) -> bool {
        self.lock().nodes.get(id).is_some_and(Node::has_open_waiter)
    }
}
