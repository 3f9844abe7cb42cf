//! A task's life after submit: settling an attempt with a worker's result (fenced by the
//! attempt number), revoking an attempt (timeout, dead node, hang-up, retryable failure)
//! and watching for the task to settle.

use std::collections::VecDeque;
use std::sync::Arc;

use pifleet_protocol::TaskState;
use serde_json::Value;
use tokio::sync::oneshot;

use super::error::FleetError;
use super::task::{NewTask, ResultReport, Task, TaskId};
use super::{Fleet, Inner, Shared};
use crate::store::{CommitResult, Mutation};

/// Failed tasks, and settled tasks, remembered for the recent lists.
pub(super) const RECENT_KEPT: usize = 50;

/// What became of a result report.
#[derive(Debug)]
pub enum Settled {
    /// The result was used; it is durable once the commit answers.
    Received(oneshot::Receiver<CommitResult>),
    /// The same worker already reported this attempt: nothing changed.
    Duplicate,
}

impl Settled {
    /// The word the protocol answers with.
    pub fn as_str(&self) -> &'static str {
        match self {
            Settled::Received(_) => "received",
            Settled::Duplicate => "duplicate",
        }
    }
}

/// Why an attempt was taken back from its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Revoke {
    NodeDead,
    TimedOut,
    Failed,
    Unregistered,
    Undelivered,
    /// The attempt's stream to a gateway client broke before its first chunk.
    StreamBroken,
    /// The holder's heartbeats say it neither runs the attempt nor holds its result: the
    /// poll answer never reached it (see `reclaim.rs`).
    Lost,
}

/// Returns the task pushed out of the list, if any.
pub(super) fn remember(recent: &mut VecDeque<TaskId>, id: &TaskId) -> Option<TaskId> {
    let out = if recent.len() >= RECENT_KEPT {
        recent.pop_front()
    } else {
        None
    };
    recent.push_back(id.clone());
    out
}

/// Why `report` cannot settle `task`, or `None` when it repeats the settling report.
fn refusal(task_id: &str, task: &Task, report: &ResultReport) -> Option<FleetError> {
    let w = report.worker_id.as_str();
    let same_settled = task.settled_by.as_deref() == Some(w)
        && report
            .attempt
            .map_or(true, |a| Some(a) == task.settled_attempt);
    if same_settled && (task.state != TaskState::Assigned || report.attempt.is_some()) {
        return None;
    }
    Some(match (task.state, report.attempt) {
        (TaskState::Completed | TaskState::Failed | TaskState::Cancelled, _) => {
            FleetError::AlreadySettled {
                task: task_id.to_string(),
                state: task.state,
            }
        }
        (_, Some(a)) if a != task.attempt || task.state != TaskState::Assigned => {
            FleetError::StaleAttempt {
                task: task_id.to_string(),
                attempt: a,
                why: task.error.as_deref().unwrap_or("reassigned").to_string(),
                state: task.state,
                current: task.attempt,
            }
        }
        _ => FleetError::NotHolder {
            task: task_id.to_string(),
            worker: w.to_string(),
            state: task.state,
            holder: task.assigned_to.clone(),
        },
    })
}

impl Fleet {
    pub fn submit(&self, new: NewTask) -> (String, oneshot::Receiver<CommitResult>) {
        let now = self.now();
        let id_string = uuid::Uuid::new_v4().to_string();
        let id: TaskId = Arc::from(id_string.as_str());
        let l = &self.shared.limits;
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let task = Task::new(id.clone(), new, seq, now, l);
        let commit = self.shared.store.write(vec![Mutation::PutTask(task.row())]);
        inner.queue.enqueue(&task, l.aging_s);
        inner.tally.enter(TaskState::Pending, task.priority);
        inner.tasks.insert(id, task);
        inner.dispatch(&self.shared, now);
        drop(inner);
        self.changed();
        (id_string, commit)
    }

    /// Settles the current attempt of a task with a worker's result.
    pub fn settle(&self, task_id: &str, report: ResultReport) -> Result<Settled, FleetError> {
        let now = self.now();
        let mut guard = self.lock();
        self.release_committed(&mut guard);
        let inner = &mut *guard;
        let Some(task) = inner.tasks.get_mut(task_id) else {
            return Err(FleetError::TaskNotFound(task_id.to_string()));
        };
        let w = report.worker_id.as_str();
        let holds = task.state == TaskState::Assigned
            && task.assigned_to.as_deref() == Some(w)
            && report.attempt.map_or(true, |a| a == task.attempt);
        if !holds {
            return match refusal(task_id, task, &report) {
                None => Ok(Settled::Duplicate),
                Some(e) => Err(e),
            };
        }
        let id = task.id.clone();
        if let Some(at) = task.assigned_at {
            self.shared.histograms.observe_task_duration(now - at);
        }
        let mut muts = Vec::new();
        let result = Arc::new(report.result);
        task.result = Some(result.clone());
        task.settled_by = Some(w.to_string());
        task.settled_attempt = Some(task.attempt);
        if report.success || !report.retryable {
            let new_state = if report.success {
                TaskState::Completed
            } else {
                TaskState::Failed
            };
            task.state = new_state;
            task.updated_at = now;
            task.error = (!report.success).then(|| {
                let attempt = task.attempt;
                match result.get("error").and_then(Value::as_str) {
                    Some(e) => format!("attempt {attempt} failed on \"{w}\": {e}"),
                    None => format!("attempt {attempt} failed on \"{w}\""),
                }
            });
            muts.push(Mutation::UpdateTask(task.row()));
            inner
                .tally
                .moved(TaskState::Assigned, new_state, task.priority);
            inner.notify_settled(&id);
            inner.remember_settled(&id, new_state == TaskState::Failed);
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
            if report.success {
                inner.learn(w, &result, now, &mut muts);
            }
            inner.refile(w, &self.shared.limits.thermal);
        } else {
            inner.revoke(&id, Revoke::Failed, &self.shared, now, &mut muts);
        }
        let commit = self.shared.store.write(muts);
        inner.dispatch(&self.shared, now);
        drop(guard);
        self.changed();
        Ok(Settled::Received(commit))
    }

    /// A receiver that fires when the task completes or fails; `None` when it already has
    /// (or does not exist), so the caller answers at once.
    pub fn watch_settled(&self, task_id: &str) -> Option<oneshot::Receiver<()>> {
        let mut inner = self.lock();
        let (id, task) = inner.tasks.get_key_value(task_id)?;
        if task.is_settled() {
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
}

impl Fleet {
    /// True while a status request waits (`?wait=`) for the task to settle.
    pub fn is_watched(&self, task_id: &str) -> bool {
        self.lock()
            .settle_watchers
            .get(task_id)
            .is_some_and(|w| w.iter().any(|tx| !tx.is_closed()))
    }
}

impl Inner {
    pub(super) fn notify_settled(&mut self, id: &TaskId) {
        for tx in self.settle_watchers.remove(id).unwrap_or_default() {
            let _ = tx.send(());
        }
    }

    /// Takes a task back from its holder. Counted failures may exhaust the task's
    /// attempts and fail it; otherwise it goes back to the queue (after a backoff for
    /// timeouts and reported failures).
    pub(super) fn revoke(
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
            Revoke::StreamBroken => {
                format!("attempt {attempt}: the stream from \"{holder}\" broke off")
            }
            Revoke::Lost => format!(
                "attempt {attempt}: \"{holder}\" neither runs it nor holds its result \
                 ({} heartbeats without it): the assignment never reached it",
                super::reclaim::UNSEEN_BEATS
            ),
        };
        // A stream is only ever fed by its current attempt.
        sh.streams.stop(id, Some(attempt));
        // A lost answer counts against the task's attempts: a task that kills its agent
        // before the agent can say it runs it must not circle the fleet for ever.
        let counted = matches!(
            why,
            Revoke::NodeDead
                | Revoke::TimedOut
                | Revoke::Failed
                | Revoke::StreamBroken
                | Revoke::Lost
        );
        if counted {
            task.failures += 1;
        }
        task.updated_at = now;
        task.assigned_at = None;
        let failed_for_good = counted && task.failures >= task.max_attempts;
        if failed_for_good {
            task.state = TaskState::Failed;
            task.error = Some(format!(
                "{reason}; gave up after {} failed attempt(s)",
                task.failures
            ));
            task.assigned_to = Some(holder.clone());
            tracing::warn!(task = %id, error = task.error.as_deref().unwrap_or(""), "task failed");
        } else {
            task.state = TaskState::Pending;
            task.error = Some(reason);
            let backoff = matches!(why, Revoke::TimedOut | Revoke::Failed);
            task.not_before = (backoff && l.retry_backoff_s > 0.0).then(|| {
                let exp = task.failures.saturating_sub(1).min(30);
                now + (l.retry_backoff_s * f64::from(1u32 << exp)).min(l.retry_backoff_max_s)
            });
            if why != Revoke::Undelivered {
                muts.push(self.tally.retry());
            }
            self.queue.enqueue(task, l.aging_s);
        }
        self.tally
            .moved(TaskState::Assigned, task.state, task.priority);
        muts.push(Mutation::UpdateTask(task.row()));
        if let Some(node) = self.nodes.get_mut(&holder) {
            node.current.retain(|t| t != id);
            // Neither a dead node nor a lost answer is the node failing a task it ran.
            if counted && !matches!(why, Revoke::NodeDead | Revoke::Lost) {
                node.failed += 1;
                muts.push(node.counts_mutation());
            }
            self.waiting.refresh(node, &l.thermal);
        }
        if failed_for_good {
            self.remember_settled(id, true);
            self.notify_settled(id);
        }
    }
}
