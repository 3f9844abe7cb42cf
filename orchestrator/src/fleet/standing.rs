//! Where a pending task stands: its place in the offer order (the order of
//! `GET /api/tasks/queue`) and, where the fleet can tell, how long until a node starts it.

use std::sync::Arc;

use super::limits::Limits;
use super::placement::Requirements;
use super::queue::Queue;
use super::staging::wait_s;
use super::task::{Rank, Task};
use super::Inner;

use pifleet_protocol::QUEUE_POSITION_COUNTED as POSITION_COUNTED;

/// A ready task's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Standing {
    /// 1 = the next task offered to the fleet.
    pub position: u64,
    /// Tasks ahead of it with the same requirements (they compete for the same nodes).
    pub ahead_in_lane: u64,
}

impl Queue {
    /// The standing of the ready task `rank` in `req`'s lane; None when it is not there
    /// (in backoff, or not pending).
    pub(super) fn standing(&self, req: &Arc<Requirements>, rank: Rank) -> Option<Standing> {
        let lane = self.lanes.get(req)?;
        lane.get(&rank)?;
        let cap = POSITION_COUNTED as usize;
        let ahead_in_lane = lane.range(..rank).take(cap).count();
        let mut ahead = 0;
        // Only lanes whose first task ranks before this one have anything ahead of it,
        // and each such lane has at least one: the loop ends within `cap` lanes.
        for (_, other) in self.heads.range(..rank) {
            if ahead >= cap {
                break;
            }
            if let Some(l) = self.lanes.get(other) {
                ahead += l.range(..rank).take(cap - ahead).count();
            }
        }
        Some(Standing {
            position: ahead as u64 + 1,
            ahead_in_lane: ahead_in_lane as u64,
        })
    }
}

impl Inner {
    /// The standing of a pending task that is ready to be offered.
    pub(super) fn standing(&self, task: &Task, l: &Limits) -> Option<Standing> {
        self.queue.standing(&task.req, task.rank(l.aging_s))
    }

    /// Seconds until a node is expected to start `task`, for an LLM task whose nodes'
    /// ends are known: when it is held for a busy node, that node's expected end; else
    /// what its lane's [`Outlook`] says for the tasks ahead of it. None when the fleet
    /// cannot tell.
    pub(super) fn expected_start_s(
        &self,
        task: &Task,
        standing: &Standing,
        l: &Limits,
        now: f64,
    ) -> Option<f64> {
        self.held_start_s(task, now).or_else(|| {
            self.outlook(&task.req, l, now)?
                .start_after(standing.ahead_in_lane)
        })
    }

    /// When the busy node a task is held for is expected to start it.
    pub(super) fn held_start_s(&self, task: &Task, now: f64) -> Option<f64> {
        let held = self.estimates.held.get(&task.id)?;
        Some((held.finish_at - held.run_s - now).max(0.0))
    }

    /// What the nodes that can run tasks of `req` promise; None for a task without a
    /// model (its run time is not measured) or one no node can run.
    pub(super) fn outlook(&self, req: &Requirements, l: &Limits, now: f64) -> Option<Outlook> {
        let model = req.model.as_deref()?;
        let est = &self.estimates;
        let holders: Vec<_> = self
            .nodes
            .values()
            .filter(|n| n.facts().can_run(req, &l.thermal).is_ok())
            .collect();
        let first = holders.first()?;
        let free = holders
            .iter()
            .map(|n| match est.busy_until.get(&n.id) {
                Some(until) => Some(until - now),
                None if n.facts().has_free_slot() => Some(0.0),
                None => None,
            })
            .collect();
        Some(Outlook {
            free,
            run_s: est.typical_run_s(&first.id, model),
        })
    }
}

/// The nodes that can run one lane's tasks: when each is free (None: busy with an end
/// nobody knows), and the model's typical run time there.
pub(super) struct Outlook {
    free: Vec<Option<f64>>,
    run_s: f64,
}

impl Outlook {
    /// Seconds until a task with `ahead` tasks before it in its lane is expected to start:
    /// the first of the nodes to be free, then the tasks ahead spread over the nodes.
    pub fn start_after(&self, ahead: u64) -> Option<f64> {
        wait_s(&self.free, ahead as usize, self.run_s)
    }
}

/// Seconds as the API shows them: a tenth is as precise as an estimate gets.
pub(super) fn shown_s(s: f64) -> f64 {
    (s * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests;
