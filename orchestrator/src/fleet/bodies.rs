//! Settled tasks keep their bodies (data, result, error text) on disk only. A body leaves
//! memory once the store has committed the settled row, never before: until then the
//! disk still holds the task's older row. Asking for the task reads the result and the
//! error back, so clients see the same answer as when they were in memory. Only the
//! tasks in the recent lists keep their error text, which the lists show.

use std::sync::Arc;

use pifleet_protocol::TaskStatusResponse;

use super::error::FleetError;
use super::task::TaskId;
use super::tasks::remember;
use super::{Fleet, Inner};
use crate::store::bodies::no_data;
use crate::store::{Bodies, StoreError, Summary};

/// What the settled tasks hold in memory of their bodies (see [`Fleet::body_footprint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyFootprint {
    pub settled: usize,
    /// Settled tasks still holding their data or result.
    pub settled_with_bodies: usize,
    /// Bytes of error text the settled tasks hold.
    pub error_bytes: usize,
}

impl Inner {
    fn in_recent(&self, id: &str) -> bool {
        self.recent_settled.iter().any(|t| &**t == id)
            || self.recent_failed.iter().any(|t| &**t == id)
    }

    /// Lets go of the bodies of a settled task the disk answers for.
    pub(super) fn release_body(&mut self, id: &str) {
        let listed = self.in_recent(id);
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        if !task.is_settled() {
            return;
        }
        if task.summary.is_none() {
            task.summary = Some(Box::new(Summary::of(&task.data, task.result.as_deref())));
            task.data = no_data();
            task.result = None;
        }
        if !listed {
            task.error = None;
        }
    }

    /// Files a settled task in the recent lists; a task that drops out of both lets go of
    /// its error text when its bodies are on disk.
    pub(super) fn remember_settled(&mut self, id: &TaskId, failed: bool) {
        let mut out = Vec::new();
        out.extend(remember(&mut self.recent_settled, id));
        if failed {
            out.extend(remember(&mut self.recent_failed, id));
        }
        for gone in out {
            if self.tasks.get(&gone).is_some_and(|t| t.summary.is_some()) {
                self.release_body(&gone);
            }
        }
    }
}

impl Fleet {
    /// Lets go of the bodies the store has committed since the last call.
    pub(super) fn release_committed(&self, inner: &mut Inner) {
        for id in self.shared.store.take_committed_settled() {
            inner.release_body(&id);
        }
    }

    /// A task's status; a settled task's result and error are read from disk (blocking,
    /// one point read).
    pub fn status(&self, task_id: &str) -> Result<Option<TaskStatusResponse>, FleetError> {
        let Some((status, on_disk)) = self.status_in_memory(task_id) else {
            return Ok(None);
        };
        if !on_disk {
            return Ok(Some(status));
        }
        with_bodies(status, self.shared.store.read_bodies(task_id))
    }

    /// As [`Fleet::status`], reading the disk off the async threads.
    pub async fn status_async(
        &self,
        task_id: &str,
    ) -> Result<Option<TaskStatusResponse>, FleetError> {
        let Some((status, on_disk)) = self.status_in_memory(task_id) else {
            return Ok(None);
        };
        if !on_disk {
            return Ok(Some(status));
        }
        let store = self.shared.store.clone();
        let id = task_id.to_string();
        let read = tokio::task::spawn_blocking(move || store.read_bodies(&id))
            .await
            .map_err(|e| FleetError::StoreRead(format!("task \"{task_id}\": {e}")))?;
        with_bodies(status, read)
    }

    /// Walks every task: what settled tasks still hold of their bodies. For tests and
    /// diagnostics (it takes the lock for a pass over all tasks).
    pub fn body_footprint(&self) -> BodyFootprint {
        let none = no_data();
        let inner = self.lock();
        let mut f = BodyFootprint::default();
        for t in inner.tasks.values().filter(|t| t.is_settled()) {
            f.settled += 1;
            if !Arc::ptr_eq(&t.data, &none) || t.result.is_some() {
                f.settled_with_bodies += 1;
            }
            f.error_bytes += t.error.as_ref().map_or(0, String::len);
        }
        f
    }
}

fn with_bodies(
    mut status: TaskStatusResponse,
    read: Result<Option<Bodies>, StoreError>,
) -> Result<Option<TaskStatusResponse>, FleetError> {
    match read {
        Ok(Some(b)) => {
            status.result = b.result;
            status.error = b.error;
            Ok(Some(status))
        }
        // Forgotten (retention) between the look in memory and the read.
        Ok(None) => Ok(None),
        Err(e) => Err(FleetError::StoreRead(format!(
            "task \"{}\": its result could not be read back: {e}",
            status.task_id
        ))),
    }
}
