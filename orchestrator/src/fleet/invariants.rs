//! The invariant checker: the bookkeeping that must always agree (counts, queue,
//! holders, the wait index). Test support: it walks everything under the lock, so the
//! randomized tests call it after every step.

use std::collections::HashSet;

use pifleet_protocol::TaskState;

use super::tally::Tally;
use super::{Fleet, Inner};

impl Fleet {
    pub fn check_invariants(&self) -> Result<(), String> {
        let inner = self.lock();
        check_counts(&inner)?;
        check_queue(&inner)?;
        check_holders(&inner)?;
        check_wait_index(&inner, &self.shared.limits.thermal)
    }
}

fn check_counts(inner: &Inner) -> Result<(), String> {
    let mut fresh = Tally::default();
    for t in inner.tasks.values() {
        fresh.enter(t.state, t.priority);
    }
    fresh.retried = inner.tally.retried;
    fresh.restore_pruned(inner.tally.pruned_completed, inner.tally.pruned_failed);
    if fresh != inner.tally {
        return Err(format!(
            "tally {:?} != tasks by state {fresh:?}",
            inner.tally
        ));
    }
    Ok(())
}

fn check_queue(inner: &Inner) -> Result<(), String> {
    let mut queued = HashSet::new();
    for lane in inner.queue.lanes.values() {
        for id in lane.values() {
            if !queued.insert(id.clone()) {
                return Err(format!("task {id} queued twice"));
            }
        }
    }
    for id in inner.queue.delayed.values() {
        if !queued.insert(id.clone()) {
            return Err(format!("task {id} both ready and delayed"));
        }
    }
    for id in &queued {
        match inner.tasks.get(id) {
            Some(t) if t.state == TaskState::Pending => {}
            Some(t) => return Err(format!("queued task {id} is {:?}", t.state)),
            None => return Err(format!("queued task {id} does not exist")),
        }
    }
    if queued.len() as u64 != inner.tally.pending {
        return Err(format!(
            "{} queued but {} pending",
            queued.len(),
            inner.tally.pending
        ));
    }
    Ok(())
}

fn check_holders(inner: &Inner) -> Result<(), String> {
    let mut held = 0u64;
    for n in inner.nodes.values() {
        for id in &n.current {
            held += 1;
            let t = inner
                .tasks
                .get(id)
                .ok_or_else(|| format!("{} holds missing {id}", n.id))?;
            if t.state != TaskState::Assigned || t.assigned_to.as_deref() != Some(n.id.as_str()) {
                return Err(format!(
                    "{} holds {id} which is {:?} on {:?}",
                    n.id, t.state, t.assigned_to
                ));
            }
        }
        if n.dead && !n.current.is_empty() {
            return Err(format!("dead node {} still holds tasks", n.id));
        }
    }
    if held != inner.tally.assigned {
        return Err(format!("{held} held but {} assigned", inner.tally.assigned));
    }
    Ok(())
}

fn check_wait_index(inner: &Inner, thermal: &super::Thermal) -> Result<(), String> {
    let mut filed = 0;
    for n in inner.nodes.values() {
        let f = n.facts();
        let should = !n.dead && !n.waiters.is_empty() && f.has_free_slot();
        match (&n.wait_entry, should) {
            (None, false) => {}
            (Some((key, seq)), true) => {
                filed += 1;
                if *key != f.base_key(thermal) {
                    return Err(format!("{} is filed under a stale key", n.id));
                }
                if Some(*seq) != n.waiters.front().map(|w| w.seq) {
                    return Err(format!("{} is filed under a stale waiter", n.id));
                }
                let entry = (*key, *seq, n.id.clone());
                if !inner.waiting.all.contains(&entry) {
                    return Err(format!("{} is missing from the wait index", n.id));
                }
                for m in f.loaded_models() {
                    let found = inner
                        .waiting
                        .loaded
                        .get(&m)
                        .is_some_and(|set| set.contains(&entry));
                    if !found {
                        return Err(format!("{} is missing from the {m} index", n.id));
                    }
                }
            }
            (Some(_), false) => return Err(format!("{} is filed but cannot wait", n.id)),
            (None, true) => return Err(format!("{} waits but is not filed", n.id)),
        }
    }
    if filed != inner.waiting.all.len() {
        return Err(format!(
            "{} filed, {} in the index",
            filed,
            inner.waiting.all.len()
        ));
    }
    Ok(())
}
