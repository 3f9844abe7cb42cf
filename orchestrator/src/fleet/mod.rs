//! The fleet: nodes, tasks, the queue and the workers waiting on a long poll, as one
//! authoritative in-memory state behind one lock. This file holds the handle, the lock
//! and the change subscription; each concern lives in its own file:
//!
//! | file | holds |
//! |---|---|
//! | `limits.rs` | [`Limits`] and [`Thermal`]: every scheduling and liveness default |
//! | `error.rs` | [`FleetError`], the domain's errors (no HTTP in them), and [`committed`] |
//! | `task.rs`, `node.rs` | the task and node records, their one constructor each, row mapping |
//! | `tally.rs` | counts by state and pending tasks by priority |
//! | `queue.rs`, `waiting.rs` | ready lanes and the backoff set; the index of waiting nodes |
//! | `lanes.rs` | the lane index: lanes by what they need, nodes by what they can run |
//! | `placement.rs` | the pure eligibility and ranking rules |
//! | `speed.rs`, `finish.rs` | measured speeds per node and model; the pure expected-finish ranking |
//! | `estimate.rs` | expected-finish candidates for the dispatch, learning speeds from results |
//! | `staging.rs`, `staging/plan.rs` | model staging: the pure rules; orders, reports, the planning pass |
//! | `dispatch.rs` | placing lane heads on the best waiting node, assigning |
//! | `workers.rs`, `poll.rs` | register, heartbeat, drain, unregister; long-poll tickets |
//! | `tasks.rs`, `expiry.rs` | submit, settle (fencing), revoke, watch for settlement; expiry |
//! | `reclaim.rs` | taking back an attempt whose node neither runs nor holds it (lost answer) |
//! | `bodies.rs` | settled tasks' bodies on disk only, read back for their status |
//! | `housekeeping.rs`, `recover.rs` | the periodic tick and pruning; the start from the store |
//! | `views.rs`, `invariants.rs` | read models for the API and the page; the test checker |
//! | `standing.rs` | a pending task's place in the queue and its expected start |
//!
//! One `std::sync::Mutex` guards the state; nothing awaits while holding it, and every
//! change queues its mutations to the store before the lock is released, so the store
//! sees changes in the order they happened.
//!
//! Placement is decided here, among the workers that are waiting: when a task arrives or
//! a worker starts waiting, the best waiting node for each lane head gets it. A hot node
//! that polls first therefore does not beat a cool one already waiting.

mod bodies;
mod cancel;
mod dispatch;
mod error;
mod estimate;
mod expiry;
pub mod finish;
mod housekeeping;
mod invariants;
mod lanes;
mod limits;
mod node;
pub mod placement;
mod poll;
mod queue;
mod reclaim;
mod recover;
pub mod speed;
pub mod staging;
mod standing;
pub mod stream;
mod tally;
mod task;
mod tasks;
#[cfg(test)]
mod testing;
mod views;
mod waiting;
mod workers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use crate::store::{CommitResult, Mutation, StoreHandle};
use crate::telemetry::Histograms;

pub use bodies::BodyFootprint;
pub use error::{committed, FleetError};
pub use limits::{Limits, Staging, StagingMode, Thermal};
pub use poll::{Delivery, PollTicket};
pub use task::{NewTask, ResultReport, TaskId};
pub use tasks::Settled;
pub use views::{FailedTask, FleetSnapshot, NodeSpeed, Work};

use node::Node;
use queue::Queue;
use tally::Tally;
use task::Task;
use waiting::WaitIndex;

#[derive(Default)]
struct Inner {
    tasks: HashMap<TaskId, Task>,
    nodes: BTreeMap<String, Node>,
    queue: Queue,
    /// Nodes that wait for work and have a free slot, in placement order.
    waiting: WaitIndex,
    tally: Tally,
    next_seq: u64,
    next_waiter: u64,
    last_flush: f64,
    last_prune: f64,
    /// Status requests waiting (`?wait=`) for a task to complete or fail.
    settle_watchers: HashMap<TaskId, Vec<oneshot::Sender<()>>>,
    /// The most recently failed tasks, oldest first (bounded), for the status page.
    recent_failed: VecDeque<TaskId>,
    /// Measured speeds and expected-finish bookkeeping.
    estimates: estimate::Estimates,
    /// The most recently settled tasks, completed or failed, oldest first (bounded), for
    /// the recent work of the CLI's watch and the page.
    recent_settled: VecDeque<TaskId>,
    /// Model staging's fleet-wide bookkeeping (the orders live on the nodes).
    staging: staging::plan::Book,
}

impl Inner {
    /// Re-files a node in the wait index after anything that changes its key or waiters.
    fn refile(&mut self, id: &str, thermal: &Thermal) {
        if let Some(node) = self.nodes.get_mut(id) {
            self.waiting.refresh(node, thermal);
        }
    }
}

struct Shared {
    inner: Mutex<Inner>,
    store: StoreHandle,
    clock: Arc<dyn Clock>,
    limits: Limits,
    changes: watch::Sender<u64>,
    /// Scheduling latency and task duration, for `/metrics`.
    histograms: Histograms,
    started_at: f64,
    shutting_down: AtomicBool,
    /// Gateway answers being streamed from agents to their clients.
    streams: stream::StreamHub,
}

/// The orchestrator's shared state: cheap to clone, one per server.
#[derive(Clone)]
pub struct Fleet {
    shared: Arc<Shared>,
}

impl Fleet {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the whole fleet down with a poisoned lock; the
        // state itself is only changed by code that cannot panic half-way.
        self.shared
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn now(&self) -> f64 {
        self.shared.clock.now()
    }

    fn changed(&self) {
        self.shared.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Fires whenever a node or a task changes (coalesced: a slow reader sees the latest
    /// generation number, not every step).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// A receiver that answers once everything queued so far is committed.
    pub fn store_barrier(&self) -> oneshot::Receiver<CommitResult> {
        self.shared.store.write(Vec::new())
    }

    /// True once shutdown has begun: long-lived responses (event streams) should end.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Relaxed)
    }

    /// The relay of streamed gateway answers.
    pub fn streams(&self) -> &stream::StreamHub {
        &self.shared.streams
    }

    /// The scheduling-latency and task-duration histograms `/metrics` exports.
    pub fn histograms(&self) -> &Histograms {
        &self.shared.histograms
    }

    /// Answers every waiting poll with "no task" and refuses new waits, so a graceful
    /// shutdown does not hang on long polls.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        // Wakes the status page's event streams so they end and let the server stop.
        self.changed();
        let mut inner = self.lock();
        for n in inner.nodes.values_mut() {
            n.waiters.clear();
            n.wait_entry = None;
            n.wait_models.clear();
            n.wait_reach = None;
        }
        inner.settle_watchers.clear();
        inner.waiting = WaitIndex::default();
        // Heartbeat-only changes would otherwise be lost until the next flush.
        let muts: Vec<Mutation> = inner.nodes.values_mut().filter_map(Node::flush).collect();
        self.shared.store.write_detached(muts);
    }
}
