//! Long polls: a worker's poll becomes a waiter on its node, dispatch hands it a
//! [`Delivery`], and a poll that goes away before answering gives its task back.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use pifleet_protocol::TaskAssignment;
use tokio::sync::oneshot;

use super::error::{committed, FleetError};
use super::node::Waiter;
use super::task::TaskId;
use super::tasks::Revoke;
use super::Fleet;
use crate::store::CommitResult;

/// What a waiting poll receives: the assignment, and the commit that makes it durable.
/// The poll answers only after the commit, so a restarted orchestrator never hands out
/// an attempt number twice.
pub struct Delivery {
    pub assignment: TaskAssignment,
    pub commit: oneshot::Receiver<CommitResult>,
}

/// A long poll in progress. Dropping it without [`PollTicket::finish`] (the client hung
/// up) withdraws the waiter and puts back an assignment the worker never saw.
pub struct PollTicket {
    fleet: Fleet,
    worker_id: String,
    waiter: u64,
    rx: Option<oneshot::Receiver<Delivery>>,
    /// Set once the worker has been told about the task.
    handed: Option<(TaskId, u32)>,
}

impl Fleet {
    /// Starts a poll: the worker waits for the scheduler to pick it. Run a scheduling
    /// pass at once, so a worker that polls without `wait` still gets a task.
    pub fn poll_start(&self, id: &str) -> Result<PollTicket, FleetError> {
        let now = self.now();
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let seq = inner.next_waiter;
        inner.next_waiter += 1;
        let node = inner.live_node(id)?;
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
        if inner
            .tasks
            .get(task_id)
            .is_some_and(|t| t.held_by(worker, attempt))
        {
            let mut muts = Vec::new();
            inner.revoke(task_id, Revoke::Undelivered, &self.shared, now, &mut muts);
            self.shared.store.write_detached(muts);
            inner.dispatch(&self.shared, now);
            drop(inner);
            tracing::debug!(task = %task_id, worker, "assignment put back: the poll went away");
            self.changed();
        }
    }
}

impl Fleet {
    /// The poll answer carrying `attempt` went out: from now on a heartbeat that omits it
    /// counts towards taking it back (see `reclaim.rs`).
    fn handed(&self, task_id: &TaskId, worker: &str, attempt: u32) {
        let mut inner = self.lock();
        if let Some(t) = inner.tasks.get_mut(task_id) {
            if t.held_by(worker, attempt) {
                t.handed = true;
            }
        }
    }
}

fn handed(d: &Delivery) -> (TaskId, u32) {
    (
        Arc::from(d.assignment.task_id.as_str()),
        d.assignment.attempt.unwrap_or(0),
    )
}

impl Drop for PollTicket {
    fn drop(&mut self) {
        if let Some(rx) = self.rx.as_mut() {
            self.fleet.poll_cancel(&self.worker_id, self.waiter);
            if let Ok(d) = rx.try_recv() {
                self.handed = Some(handed(&d));
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
    pub async fn wait(&mut self, wait_s: f64) -> Result<Option<TaskAssignment>, FleetError> {
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
        self.handed = Some(handed(&d));
        committed(d.commit).await?;
        Ok(Some(d.assignment))
    }

    /// The worker has its task: from now on only a result, a timeout, or heartbeats that
    /// show the node neither runs nor holds it (the answer was lost after all) take it back.
    pub fn finish(mut self) {
        if let Some((task, attempt)) = self.handed.take() {
            self.fleet.handed(&task, &self.worker_id, attempt);
        }
    }
}
