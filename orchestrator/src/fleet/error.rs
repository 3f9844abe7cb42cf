//! The fleet's own errors: what went wrong in domain terms (who, which task, which
//! attempt). The web layer maps them to status codes and adds how to recover; nothing
//! here knows about HTTP.

use pifleet_protocol::TaskState;
use tokio::sync::oneshot;

use crate::store::{CommitError, CommitResult};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("worker \"{0}\" is not registered")]
    NotRegistered(String),
    #[error(
        "worker \"{0}\" was declared dead after missing its heartbeats and its tasks were requeued"
    )]
    Dead(String),
    #[error("task \"{0}\" not found")]
    TaskNotFound(String),
    #[error("node \"{0}\" not found")]
    NodeNotFound(String),
    /// The task completed or failed before this result came.
    #[error("task \"{task}\" is already {}; this result was not used", .state.as_str())]
    AlreadySettled { task: String, state: TaskState },
    /// The attempt was revoked (timeout, dead node, hang-up) and possibly handed on.
    #[error(
        "attempt {attempt} of task \"{task}\" is no longer current (it was revoked: {why}); \
         the task is now {} at attempt {current}",
        .state.as_str()
    )]
    StaleAttempt {
        task: String,
        attempt: u32,
        why: String,
        state: TaskState,
        current: u32,
    },
    #[error(
        "worker \"{worker}\" does not hold task \"{task}\" (it is {}{})",
        .state.as_str(),
        on_holder(.holder)
    )]
    NotHolder {
        task: String,
        worker: String,
        state: TaskState,
        holder: Option<String>,
    },
    /// The store could not commit: nothing was acknowledged.
    #[error("{0}")]
    StoreUnavailable(String),
    /// A settled task's result could not be read back from the store.
    #[error("{0}")]
    StoreRead(String),
}

fn on_holder(holder: &Option<String>) -> String {
    holder
        .as_deref()
        .map(|h| format!(" on \"{h}\""))
        .unwrap_or_default()
}

impl FleetError {
    /// The error for a worker id the fleet cannot serve, dead or never seen.
    pub(super) fn unknown_worker(id: &str, dead: bool) -> Self {
        if dead {
            FleetError::Dead(id.to_string())
        } else {
            FleetError::NotRegistered(id.to_string())
        }
    }
}

/// Waits for a store commit; a failure means nothing was acknowledged.
pub async fn committed(rx: oneshot::Receiver<CommitResult>) -> Result<(), FleetError> {
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(FleetError::StoreUnavailable(e.to_string())),
        Err(_) => Err(FleetError::StoreUnavailable(CommitError::Gone.to_string())),
    }
}
