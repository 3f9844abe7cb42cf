//! Taking back an attempt whose poll answer never reached its node (a Wi-Fi drop, a
//! crash right after the commit): a node that reports both what it runs and which
//! results it holds in its spool, and omits an attempt from both in [`UNSEEN_BEATS`]
//! heartbeats in a row, cannot settle it, so it is requeued at once instead of blocking
//! the node's slot until the attempt's timeout.
//!
//! Why two and not one: the agent samples what it runs before the heartbeat goes out,
//! so a heartbeat sampled just before a poll answer arrived omits a task the agent is
//! about to start. Only heartbeats that arrive after the answer went out count
//! ([`super::task::Task::handed`]), and the agent beats about one interval apart, so by
//! the second the task has long been in its running list (it starts a task as soon as
//! its poll returns) or, once run, in its spool (the result is spooled before the task
//! leaves the running list). A node that sends neither list (the seed's), or only
//! `running_tasks` (an agent that cannot say what it holds), keeps the timeout rule.

use pifleet_protocol::TaskState;

use super::task::TaskId;
use super::tasks::Revoke;
use super::{Inner, Shared};
use crate::store::Mutation;

/// Heartbeats in a row that must omit an attempt before it is taken back.
pub(super) const UNSEEN_BEATS: u8 = 2;

/// What one heartbeat says the node has: running, or finished and spooled.
pub(super) struct Holding<'a> {
    pub running: &'a [String],
    pub spooled: &'a [String],
}

impl Holding<'_> {
    fn has(&self, id: &str) -> bool {
        self.running.iter().chain(self.spooled).any(|t| t == id)
    }
}

impl Inner {
    /// Counts this heartbeat for every delivered attempt `node_id` holds, and takes back
    /// the ones it has now omitted [`UNSEEN_BEATS`] times in a row. Returns them.
    pub(super) fn reclaim_unseen(
        &mut self,
        node_id: &str,
        holding: &Holding,
        sh: &Shared,
        now: f64,
        muts: &mut Vec<Mutation>,
    ) -> Vec<(TaskId, u32)> {
        let Inner { nodes, tasks, .. } = self;
        let Some(node) = nodes.get(node_id) else {
            return Vec::new();
        };
        let mut lost = Vec::new();
        for id in &node.current {
            let Some(task) = tasks.get_mut(id) else {
                continue;
            };
            let ours =
                task.state == TaskState::Assigned && task.assigned_to.as_deref() == Some(node_id);
            if !ours || !task.handed {
                continue;
            }
            if holding.has(id) {
                task.unseen_beats = 0;
                continue;
            }
            task.unseen_beats = task.unseen_beats.saturating_add(1);
            if task.unseen_beats >= UNSEEN_BEATS {
                lost.push((id.clone(), task.attempt));
            }
        }
        for (id, attempt) in &lost {
            self.revoke(id, Revoke::Lost, sh, now, muts);
            muts.push(self.tally.reclaimed());
            tracing::warn!(
                task = %id,
                worker = node_id,
                attempt,
                "attempt reclaimed: the node neither runs it nor holds its result \
                 (its poll answer was lost); requeued"
            );
        }
        lost
    }
}

#[cfg(test)]
mod tests;
