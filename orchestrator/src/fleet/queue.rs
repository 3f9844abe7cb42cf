//! The queue of pending tasks: one ready lane per distinct set of requirements, each in
//! rank order, and the tasks in retry backoff by the time they may run again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::placement::Requirements;
use super::task::{micros, Rank, Task, TaskId};

#[derive(Default)]
pub(super) struct Queue {
    /// One FIFO lane per distinct set of requirements, ordered by rank.
    pub lanes: HashMap<Arc<Requirements>, BTreeMap<Rank, TaskId>>,
    /// Tasks in retry backoff, by `(not_before in µs, seq)`.
    pub delayed: BTreeMap<Rank, TaskId>,
}

impl Queue {
    /// Files a pending task: in backoff when it has a `not_before`, else in its lane.
    pub fn enqueue(&mut self, task: &Task, aging_s: f64) {
        match task.not_before {
            Some(nb) => {
                self.delayed.insert((micros(nb), task.seq), task.id.clone());
            }
            None => self.push_ready(&task.req, task.rank(aging_s), task.id.clone()),
        }
    }

    pub fn push_ready(&mut self, req: &Arc<Requirements>, key: Rank, id: TaskId) {
        self.lanes.entry(req.clone()).or_default().insert(key, id);
    }

    pub fn remove_ready(&mut self, req: &Arc<Requirements>, key: Rank) -> Option<TaskId> {
        let lane = self.lanes.get_mut(req)?;
        let id = lane.remove(&key);
        if lane.is_empty() {
            self.lanes.remove(req);
        }
        id
    }

    /// Takes the next task whose backoff is over at `now`, if any.
    pub fn pop_due(&mut self, now: f64) -> Option<TaskId> {
        let entry = self.delayed.first_entry()?;
        (entry.key().0 <= micros(now)).then(|| entry.remove())
    }

    pub fn has_ready(&self) -> bool {
        !self.lanes.is_empty()
    }

    /// The first task of every lane, best rank first.
    pub fn heads(&self) -> Vec<(Rank, Arc<Requirements>)> {
        let mut heads: Vec<(Rank, Arc<Requirements>)> = self
            .lanes
            .iter()
            .filter_map(|(req, lane)| lane.first_key_value().map(|(k, _)| (*k, req.clone())))
            .collect();
        heads.sort_unstable_by_key(|a| a.0);
        heads
    }

    /// Every queued task in the order it will be offered: the ready ones by rank, then
    /// the ones in backoff by when they are due.
    pub fn in_order(&self) -> impl Iterator<Item = &TaskId> {
        let mut ready: Vec<(Rank, &TaskId)> = self
            .lanes
            .values()
            .flat_map(|lane| lane.iter().map(|(k, id)| (*k, id)))
            .collect();
        ready.sort_unstable();
        ready
            .into_iter()
            .map(|(_, id)| id)
            .chain(self.delayed.values())
    }
}
