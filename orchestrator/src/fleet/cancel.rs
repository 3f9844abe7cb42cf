//! Ending a task early for its client: cancelling it (the client hung up, or waited past
//! its queue time) and retrying an attempt whose stream broke before its first chunk.

use pifleet_protocol::TaskState;

use super::error::FleetError;
use super::tasks::Revoke;
use super::Fleet;
use crate::store::Mutation;

impl Fleet {
    /// Cancels a task that has not settled: out of the queue, or taken back from its node
    /// (which is free for its next task at once), and settled as `cancelled` with `why`.
    /// The node's stream is stopped, so the agent drops its Ollama request; its late
    /// result is refused. Returns false when the task had already settled.
    pub fn cancel(&self, task_id: &str, why: &str) -> bool {
        let now = self.now();
        let aging_s = self.shared.limits.aging_s;
        let mut inner = self.lock();
        let Some((id, task)) = inner.tasks.get_key_value(task_id) else {
            return false;
        };
        if task.is_settled() {
            return false;
        }
        let id = id.clone();
        let (from, priority, holder) = (task.state, task.priority, task.assigned_to.clone());
        if from == TaskState::Pending {
            remove_from_queue(&mut inner, &id, aging_s);
        }
        let mut muts = Vec::new();
        if let Some(task) = inner.tasks.get_mut(&id) {
            let attempt = task.attempt;
            task.state = TaskState::Cancelled;
            task.error = Some(match (&holder, from) {
                (Some(h), TaskState::Assigned) => {
                    format!("cancelled during attempt {attempt} on \"{h}\": {why}")
                }
                _ => format!("cancelled while pending: {why}"),
            });
            task.updated_at = now;
            task.assigned_at = None;
            task.not_before = None;
            muts.push(Mutation::UpdateTask(task.row()));
        }
        inner.tally.moved(from, TaskState::Cancelled, priority);
        if from == TaskState::Assigned {
            if let Some(h) = holder.as_deref() {
                if let Some(node) = inner.nodes.get_mut(h) {
                    node.current.retain(|t| *t != id);
                }
                inner.refile(h, &self.shared.limits.thermal);
            }
        }
        inner.notify_settled(&id);
        self.shared.store.write_detached(muts);
        inner.dispatch(&self.shared, now);
        drop(inner);
        self.shared.streams.stop(task_id, None);
        tracing::info!(task = %task_id, why, "task cancelled");
        self.changed();
        true
    }

    /// The stream of `attempt` broke before any chunk reached the client: take the
    /// attempt back (counted as a failure) so another node starts afresh at once,
    /// instead of waiting for the node to be declared dead.
    pub fn retry_attempt(&self, task_id: &str, attempt: u32) {
        let now = self.now();
        let mut inner = self.lock();
        let Some((id, task)) = inner.tasks.get_key_value(task_id) else {
            return;
        };
        if task.state != TaskState::Assigned || task.attempt != attempt {
            return;
        }
        let id = id.clone();
        let mut muts = Vec::new();
        inner.revoke(&id, Revoke::StreamBroken, &self.shared, now, &mut muts);
        self.shared.store.write_detached(muts);
        inner.dispatch(&self.shared, now);
        drop(inner);
        self.changed();
    }
}

fn remove_from_queue(inner: &mut super::Inner, id: &super::TaskId, aging_s: f64) {
    // Borrows the task and the queue side by side.
    let super::Inner { tasks, queue, .. } = inner;
    if let Some(task) = tasks.get(id) {
        queue.remove(task, aging_s);
    }
}

impl Fleet {
    /// Checks that `worker` holds `attempt` of the task now (before it may stream it).
    pub fn check_holder(
        &self,
        task_id: &str,
        worker: &str,
        attempt: u32,
    ) -> Result<(), FleetError> {
        let inner = self.lock();
        let task = inner
            .tasks
            .get(task_id)
            .ok_or_else(|| FleetError::TaskNotFound(task_id.to_string()))?;
        if task.held_by(worker, attempt) {
            return Ok(());
        }
        Err(if task.is_settled() {
            FleetError::AlreadySettled {
                task: task_id.to_string(),
                state: task.state,
            }
        } else if task.attempt != attempt || task.state != TaskState::Assigned {
            FleetError::StaleAttempt {
                task: task_id.to_string(),
                attempt,
                why: task.error.clone().unwrap_or_else(|| "reassigned".into()),
                state: task.state,
                current: task.attempt,
            }
        } else {
            FleetError::NotHolder {
                task: task_id.to_string(),
                worker: worker.to_string(),
                state: task.state,
                holder: task.assigned_to.clone(),
            }
        })
    }
}
