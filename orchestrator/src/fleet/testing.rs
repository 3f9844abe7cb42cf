//! A fleet for unit tests: a memory store, a manual clock, and the calls the HTTP layer
//! makes, each awaited until its commit.

use std::sync::Arc;

use pifleet_protocol::{Capabilities, RegisterRequest};
use serde_json::Value;

use super::{committed, Fleet, Limits, NewTask};
use crate::clock::ManualClock;
use crate::store::{MemoryStore, Snapshot, StoreHandle};

/// A fleet on a memory store, started from `snapshot`, on `clock`.
pub fn memory_fleet(limits: Limits, snapshot: Snapshot, clock: &ManualClock) -> Fleet {
    let (store, _join) = StoreHandle::spawn(Box::new(MemoryStore::new())).expect("store thread");
    Fleet::new(limits, store, snapshot, Arc::new(clock.clone()))
}

/// A priority-5 task of `task_type` with `data`, and nothing else set.
pub fn new_task(task_type: &str, data: Value) -> NewTask {
    NewTask {
        task_type: task_type.into(),
        data,
        priority: 5,
        timeout_s: None,
        max_attempts: None,
        expires_s: None,
    }
}

/// Submits `new` and waits for the commit; the task's id.
pub async fn submitted(f: &Fleet, new: NewTask) -> String {
    let (id, commit) = f.submit(new);
    committed(commit).await.expect("submit committed");
    id
}

/// Registers `id` as a `worker_type` with `capabilities` and waits for the commit.
pub async fn registered(f: &Fleet, id: &str, worker_type: &str, capabilities: Capabilities) {
    let (_, commit) = f.register(RegisterRequest {
        worker_id: id.into(),
        worker_type: Some(worker_type.into()),
        capabilities,
        want_credential: false,
    });
    committed(commit).await.expect("register committed");
}
