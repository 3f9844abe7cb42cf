//! The fleet rebuilt from the store's snapshot at start: nodes get a fresh liveness
//! window, pending tasks go back in the queue, tasks held by a node that is gone are
//! requeued, and the cumulative counters carry on.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use pifleet_protocol::TaskState;
use tokio::sync::watch;

use super::limits::Limits;
use super::node::Node;
use super::task::{Task, TaskId};
use super::tasks::{remember, Revoke, RECENT_KEPT};
use super::{Fleet, Inner, Shared};
use crate::clock::Clock;
use crate::store::{Snapshot, StoreHandle};
use crate::telemetry::Histograms;

/// With `bodies_on_disk`, settled tasks keep only their summary (see `bodies.rs`).
fn build(
    snapshot: Snapshot,
    now: f64,
    limits: &Limits,
    bodies_on_disk: bool,
) -> (Inner, Vec<TaskId>) {
    let mut inner = Inner {
        last_flush: now,
        last_prune: now,
        ..Default::default()
    };
    for w in snapshot.workers {
        inner.nodes.insert(w.id.clone(), Node::from_row(w, now));
    }
    let mut orphans = Vec::new();
    for row in snapshot.tasks {
        let task = Task::from_row(row);
        let id = task.id.clone();
        inner.next_seq = inner.next_seq.max(task.seq + 1);
        inner.tally.enter(task.state, task.priority);
        match task.state {
            TaskState::Pending => inner.queue.enqueue(&task, limits.aging_s),
            TaskState::Assigned => {
                let holder = task
                    .assigned_to
                    .as_deref()
                    .and_then(|w| inner.nodes.get_mut(w))
                    .filter(|n| !n.dead);
                match holder {
                    Some(node) => node.current.push(id.clone()),
                    None => orphans.push(id.clone()),
                }
            }
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled => {}
        }
        inner.tasks.insert(id, task);
    }
    inner.tally.restore(&snapshot.counters);
    // The recent failures and the recent work survive a restart.
    let mut settled: Vec<(f64, TaskId, bool)> = inner
        .tasks
        .values()
        .filter(|t| t.is_settled())
        .map(|t| (t.updated_at, t.id.clone(), t.state == TaskState::Failed))
        .collect();
    settled.sort_by(|a, b| a.0.total_cmp(&b.0));
    let failed: Vec<&TaskId> = settled.iter().filter(|s| s.2).map(|s| &s.1).collect();
    for id in &failed[failed.len().saturating_sub(RECENT_KEPT)..] {
        remember(&mut inner.recent_failed, id);
    }
    for (_, id, _) in &settled[settled.len().saturating_sub(RECENT_KEPT)..] {
        remember(&mut inner.recent_settled, id);
    }
    if bodies_on_disk {
        for (_, id, _) in &settled {
            inner.release_body(id);
        }
    }
    // What placement learned of each node's speed carries on.
    for (node, doc) in snapshot.speeds {
        match serde_json::from_value(doc) {
            Ok(speeds) => inner.estimates.book.restore(&node, speeds),
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "stored speeds unreadable; relearning")
            }
        }
    }
    inner.estimates.refresh(now, true);
    (inner, orphans)
}

impl Fleet {
    /// Builds the state from what the store had, giving every known node a fresh
    /// liveness window (they could not heartbeat while we were down).
    pub fn new(
        limits: Limits,
        store: StoreHandle,
        snapshot: Snapshot,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let now = clock.now();
        let (inner, orphans) = build(snapshot, now, &limits, store.reads_bodies());
        let (changes, _) = watch::channel(0);
        let fleet = Fleet {
            shared: Arc::new(Shared {
                inner: Mutex::new(inner),
                store,
                clock,
                limits,
                changes,
                histograms: Histograms::default(),
                started_at: now,
                shutting_down: AtomicBool::new(false),
                streams: Default::default(),
            }),
        };
        let weak = Arc::downgrade(&fleet.shared);
        fleet
            .shared
            .store
            .on_failed_commit(Box::new(move |snapshot| {
                if let Some(shared) = weak.upgrade() {
                    Fleet { shared }.rebuild(snapshot);
                }
            }));
        fleet.requeue_orphans(orphans, now);
        fleet
    }

    fn requeue_orphans(&self, orphans: Vec<TaskId>, now: f64) {
        if !orphans.is_empty() {
            // Held by a node that no longer exists: nobody can settle them.
            let mut inner = self.lock();
            let mut muts = Vec::new();
            for id in orphans {
                inner.revoke(&id, Revoke::Unregistered, &self.shared, now, &mut muts);
            }
            self.shared.store.write_detached(muts);
        }
    }

    /// A commit failed and the store rolled it back: the state goes back to what the store
    /// holds, so nothing refused stays visible and nothing later refers to it. Waiting
    /// polls and status watchers are let go (they ask again); nodes keep their liveness.
    fn rebuild(&self, snapshot: Snapshot) {
        let now = self.now();
        let (fresh, orphans) = build(
            snapshot,
            now,
            &self.shared.limits,
            self.shared.store.reads_bodies(),
        );
        {
            let mut inner = self.lock();
            *inner = fresh;
            self.shared.store.next_generation();
        }
        self.requeue_orphans(orphans, now);
        self.changed();
    }

    /// The error of the last commit while the store refuses commits (a full disk).
    pub fn store_failing(&self) -> Option<String> {
        self.shared.store.failing()
    }
}
