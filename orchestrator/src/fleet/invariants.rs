//! The invariant checker: the bookkeeping that must always agree (counts, queue,
//! holders, the wait index, the lane index). Test support: it walks everything under the lock, so the
//! randomized tests call it after every step.

use std::collections::{HashMap, HashSet};

use pifleet_protocol::TaskState;

use super::lanes::Reach;
use super::placement::{canonical_model, Requirements};
use super::tally::Tally;
use super::{Fleet, Inner};

impl Fleet {
    pub fn check_invariants(&self) -> Result<(), String> {
        let inner = self.lock();
        check_counts(&inner)?;
        check_queue(&inner)?;
        check_holders(&inner)?;
        let thermal = &self.shared.limits.thermal;
        check_wait_index(&inner, thermal)?;
        check_lane_index(&inner, thermal)
    }

    /// `(lanes queued, lanes a scheduling pass would try now)`: what the lane index saves,
    /// as a count a test can assert on rather than a time.
    pub fn lanes_in_pass(&self) -> (usize, usize) {
        let inner = self.lock();
        let tried = inner.candidate_lanes(&self.shared.limits.thermal).len();
        (inner.queue.lanes.len(), tried)
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
    let q = &inner.queue;
    let heads_match = q.heads.len() == q.lanes.len()
        && q.lanes.iter().all(|(req, lane)| {
            lane.first_key_value()
                .and_then(|(k, _)| q.heads.get(k))
                .is_some_and(|r| r == req)
        });
    if !heads_match {
        return Err(format!(
            "lane heads ({}) out of step with the lanes ({})",
            q.heads.len(),
            q.lanes.len()
        ));
    }
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
            Some(t) if t.state == TaskState::Pending => {
                let due = t.expires_at.map(|at| (super::task::micros(at), t.seq));
                if due.is_some_and(|k| inner.queue.expiring.get(&k) != Some(id)) {
                    return Err(format!("pending task {id} has an expiry nobody watches"));
                }
            }
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
                if n.wait_reach != Reach::of(&f, thermal) {
                    return Err(format!("{} is counted under a stale reach", n.id));
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
    let mut reach: HashMap<&Reach, usize> = HashMap::new();
    for r in inner.nodes.values().filter_map(|n| n.wait_reach.as_ref()) {
        *reach.entry(r).or_default() += 1;
    }
    let counted: HashMap<&Reach, usize> =
        inner.waiting.reach.iter().map(|(r, n)| (r, *n)).collect();
    if reach != counted {
        return Err(format!(
            "waiting nodes by reach {reach:?} != counted {counted:?}"
        ));
    }
    Ok(())
}

/// The lane index files exactly the queue's lanes, and a pass never leaves out a lane
/// that some node it could place on (a waiting one, or one measured fastest for the
/// lane's model) can run: the scan of every lane it replaces would place nothing more.
fn check_lane_index(inner: &Inner, thermal: &super::Thermal) -> Result<(), String> {
    inner.queue.index.check()?;
    let filed: HashSet<&Requirements> = inner
        .queue
        .index
        .filed()
        .into_iter()
        .map(|r| &**r)
        .collect();
    let lanes: HashSet<&Requirements> = inner.queue.lanes.keys().map(|r| &**r).collect();
    if filed != lanes {
        return Err(format!(
            "{} lanes queued but {} filed in the lane index",
            lanes.len(),
            filed.len()
        ));
    }
    let candidates = inner.candidate_lanes(thermal);
    let runs = |node: &str, req: &Requirements| {
        inner
            .nodes
            .get(node)
            .is_some_and(|n| n.facts().can_run(req, thermal).is_ok())
    };
    for req in inner.queue.lanes.keys() {
        if candidates.contains(req) {
            continue;
        }
        if let Some(e) = inner.waiting.all.iter().find(|e| runs(&e.2, req)) {
            return Err(format!(
                "{req:?} is left out of a pass but {} waits and can run it",
                e.2
            ));
        }
        let model = req.model.as_deref().map(canonical_model);
        let fastest = inner.estimates.fastest().filter(|(m, _)| Some(*m) == model);
        for (_, nodes) in fastest {
            if let Some(n) = nodes.iter().find(|n| runs(n, req)) {
                return Err(format!(
                    "{req:?} is left out of a pass but {n}, fastest for it, can run it"
                ));
            }
        }
    }
    Ok(())
}
