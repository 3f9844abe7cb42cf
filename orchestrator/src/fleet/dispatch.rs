//! Dispatch: places lane heads on the best waiting nodes, and assigns a task to the
//! node's oldest open poll.

use std::collections::HashSet;
use std::sync::Arc;

use pifleet_protocol::{TaskAssignment, TaskState};

use super::estimate::Pick;
use super::lanes::Reach;
use super::limits::Thermal;
use super::placement::{canonical_model, Requirements};
use super::poll::Delivery;
use super::task::TaskId;
use super::tasks::Revoke;
use super::waiting::WaitEntry;
use super::{Inner, Shared};
use crate::store::Mutation;

impl Inner {
    /// Places lane heads on the best waiting nodes until no waiting node can take any.
    pub(super) fn dispatch(&mut self, sh: &Shared, now: f64) {
        let thermal = &sh.limits.thermal;
        self.prune_holds();
        self.estimates.refresh(now, false);
        loop {
            if self.waiting.is_empty() || !self.queue.has_ready() {
                return;
            }
            let mut placed = false;
            let lanes = self.candidate_lanes(thermal);
            for (key, req) in self.queue.heads_of(lanes) {
                // LLM tasks go where they are expected to finish first.
                let mut run_s = None;
                let head = self
                    .queue
                    .lanes
                    .get(&req)
                    .and_then(|l| l.get(&key))
                    .cloned();
                let pick = match (&req.model, head) {
                    (Some(_), Some(id)) => match self.pick_by_finish(&id, &req, thermal, now) {
                        Pick::Run { node, run_s: s } => {
                            run_s = Some(s);
                            Some(node)
                        }
                        Pick::Hold => None,
                        Pick::Nowhere => self.best_waiting(&req, thermal),
                    },
                    _ => self.best_waiting(&req, thermal),
                };
                if let Some(node_id) = pick {
                    if let Some(task_id) = self.queue.remove_ready(&req, key) {
                        if !self.assign(&task_id, &node_id, sh, now) {
                            // Its polls hung up just now; the node is re-filed without them.
                            self.queue.push_ready(&req, key, task_id);
                        } else if let Some(s) = run_s {
                            self.estimates.held.remove(&task_id);
                            self.estimates.busy_until.insert(node_id, now + s);
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

    /// The lanes a pass must try: those some waiting node can run, and, for the holds of
    /// expected-finish placement, those of a model that one of the nodes measured fastest
    /// for it can run. Any other lane would find no candidate node, so leaving it out
    /// changes nothing but the cost of the pass.
    pub(super) fn candidate_lanes(&self, thermal: &Thermal) -> HashSet<Arc<Requirements>> {
        let mut out = HashSet::new();
        for reach in self.waiting.reach.keys() {
            self.queue.index.reachable(reach, None, &mut out);
        }
        for (model, nodes) in self.estimates.fastest() {
            for node in nodes.iter().filter_map(|n| self.nodes.get(n)) {
                if let Some(reach) = Reach::of(&node.facts(), thermal) {
                    self.queue.index.reachable(&reach, Some(model), &mut out);
                }
            }
        }
        out
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
        task.handed = false;
        task.unseen_beats = 0;
        node.current.push(id.clone());
        self.waiting.refresh(node, &sh.limits.thermal);
        self.tally
            .moved(TaskState::Pending, TaskState::Assigned, task.priority);
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
}
