//! Housekeeping, run by the periodic tick: silent nodes are declared dead and their work
//! requeued, attempts time out, retry backoffs end, heartbeat-only changes are flushed,
//! and settled tasks and dead nodes past their retention are forgotten.

use super::limits::Limits;
use super::task::TaskId;
use super::tasks::Revoke;
use super::{Fleet, Inner};
use crate::store::Mutation;

/// Retention is counted in hours or days: pruning once a minute is plenty.
const PRUNE_EVERY_S: f64 = 60.0;

impl Fleet {
    /// The server calls it periodically; tests call it after moving a manual clock.
    pub fn tick(&self) {
        let now = self.now();
        let sh = &self.shared;
        let l = &sh.limits;
        let mut inner = self.lock();
        self.release_committed(&mut inner);
        let mut muts = Vec::new();
        let mut changed = false;

        let mut newly_dead = Vec::new();
        for n in inner.nodes.values_mut() {
            if n.dead {
                continue;
            }
            if n.has_open_waiter() {
                n.last_seen = now;
            } else if now - n.last_seen > n.dead_after(l) {
                newly_dead.push(n.id.clone());
            }
        }
        for id in newly_dead {
            let held = match inner.nodes.get_mut(&id) {
                Some(n) => {
                    n.dead = true;
                    n.waiters.clear();
                    n.current.clone()
                }
                None => continue,
            };
            inner.refile(&id, &l.thermal);
            tracing::warn!(worker = %id, requeued = held.len(), "worker missed its heartbeats: declared dead");
            for t in &held {
                inner.revoke(t, Revoke::NodeDead, sh, now, &mut muts);
            }
            if let Some(n) = inner.nodes.get_mut(&id) {
                muts.push(n.put());
            }
            changed = true;
        }

        let expired: Vec<TaskId> = inner
            .nodes
            .values()
            .flat_map(|n| n.current.iter())
            .filter(|id| {
                inner
                    .tasks
                    .get(*id)
                    .is_some_and(|t| t.assigned_at.is_some_and(|at| now - at > t.timeout_s))
            })
            .cloned()
            .collect();
        for id in expired {
            inner.revoke(&id, Revoke::TimedOut, sh, now, &mut muts);
            changed = true;
        }

        inner.plan_staging(l, now);

        while let Some(id) = inner.queue.pop_due(now) {
            let inner = &mut *inner;
            if let Some(t) = inner.tasks.get_mut(&id) {
                t.not_before = None;
                inner.queue.enqueue(t, l.aging_s);
                changed = true;
            }
        }

        changed |= inner.expire_due(sh, now, &mut muts);

        if now - inner.last_flush >= l.node_flush_s {
            inner.last_flush = now;
            let flushed = inner.nodes.values_mut().filter_map(|n| n.flush());
            muts.extend(flushed);
        }

        if now - inner.last_prune >= PRUNE_EVERY_S {
            inner.last_prune = now;
            changed |= inner.prune(l, now, &mut muts);
        }

        inner.dispatch(sh, now);
        drop(inner);
        sh.store.write_detached(muts);
        if changed {
            self.changed();
        }
    }
}

impl Inner {
    /// Forgets settled tasks and dead nodes past their retention. Totals stay cumulative.
    fn prune(&mut self, l: &Limits, now: f64, muts: &mut Vec<Mutation>) -> bool {
        self.settle_watchers.retain(|_, w| {
            w.retain(|tx| !tx.is_closed());
            !w.is_empty()
        });
        let task_cutoff = now - l.task_retention_s;
        let old: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.is_settled() && t.updated_at < task_cutoff)
            .map(|t| t.id.clone())
            .collect();
        for id in &old {
            if let Some(t) = self.tasks.remove(id) {
                self.tally.pruned(t.state);
            }
            muts.push(Mutation::DeleteTask(id.to_string()));
        }
        if !old.is_empty() {
            muts.extend(self.tally.pruned_counters());
            tracing::info!(
                tasks = old.len(),
                "forgot settled tasks past their retention"
            );
        }
        let node_cutoff = now - l.dead_node_retention_s;
        let gone: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.dead && n.last_seen < node_cutoff)
            .map(|n| n.id.clone())
            .collect();
        for id in &gone {
            self.nodes.remove(id);
            muts.push(Mutation::DeleteWorker(id.clone()));
        }
        !old.is_empty() || !gone.is_empty()
    }
}
