//! Expiry: a task submitted with `expires_s` that is still pending that long after its
//! submit fails as expired, with why it never ran. A task already running is left to
//! finish; one that comes back to the queue after its expiry fails at the next tick.

use pifleet_protocol::TaskState;

use super::{Inner, Shared};
use crate::store::Mutation;

impl Inner {
    /// Fails every queued task whose expiry has come; true when any did.
    pub(super) fn expire_due(&mut self, sh: &Shared, now: f64, muts: &mut Vec<Mutation>) -> bool {
        let l = &sh.limits;
        let mut any = false;
        while let Some(id) = self.queue.pop_expired(now) {
            let Some(task) = self.tasks.get(&id) else {
                continue;
            };
            // The entry outlived the pending state (assigned, settled) or was refiled.
            let due = task.expires_at.is_some_and(|at| at <= now);
            if task.state != TaskState::Pending || !due {
                continue;
            }
            let why = self.pending_reason(task, l, now);
            let waited = now - task.created_at;
            let priority = task.priority;
            let Inner { tasks, queue, .. } = self;
            let Some(task) = tasks.get_mut(&id) else {
                continue;
            };
            queue.remove(task, l.aging_s);
            task.state = TaskState::Failed;
            task.error = Some(format!(
                "expired: still pending {waited:.0}s after submit (expires_s) without a node \
                 taking it: {why}"
            ));
            task.updated_at = now;
            task.not_before = None;
            muts.push(Mutation::UpdateTask(task.row()));
            self.tally
                .moved(TaskState::Pending, TaskState::Failed, priority);
            self.remember_settled(&id, true);
            self.notify_settled(&id);
            tracing::info!(task = %id, "pending task expired");
            any = true;
        }
        any
    }
}
