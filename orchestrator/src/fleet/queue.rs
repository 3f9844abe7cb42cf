//! The queue of pending tasks: one ready lane per distinct set of requirements, each in
//! rank order, filed in the lane index by what it needs; and the tasks in retry backoff
//! by the time they may run again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::lanes::LaneIndex;
use super::placement::Requirements;
use super::task::{micros, Rank, Task, TaskId};

#[derive(Default)]
pub(super) struct Queue {
    /// One FIFO lane per distinct set of requirements, ordered by rank.
    /// Changed only here, so the index always files exactly these lanes.
    pub lanes: HashMap<Arc<Requirements>, BTreeMap<Rank, TaskId>>,
    /// Every lane by the rank of its first task (ranks are unique), changed with `lanes`:
    /// the queue's head is read without visiting every lane.
    pub heads: BTreeMap<Rank, Arc<Requirements>>,
    pub index: LaneIndex,
    /// Tasks in retry backoff, by `(not_before in µs, seq)`.
    pub delayed: BTreeMap<Rank, TaskId>,
    /// Queued tasks that carry an expiry, by `(expires_at in µs, seq)`. An entry may
    /// outlive its task's pending state: it is checked when it comes due.
    pub expiring: BTreeMap<Rank, TaskId>,
}

impl Queue {
    /// Files a pending task: in backoff when it has a `not_before`, else in its lane.
    pub fn enqueue(&mut self, task: &Task, aging_s: f64) {
        if let Some(at) = task.expires_at {
            self.expiring
                .insert((micros(at), task.seq), task.id.clone());
        }
        match task.not_before {
            Some(nb) => {
                self.delayed.insert((micros(nb), task.seq), task.id.clone());
            }
            None => self.push_ready(&task.req, task.rank(aging_s), task.id.clone()),
        }
    }

    pub fn push_ready(&mut self, req: &Arc<Requirements>, key: Rank, id: TaskId) {
        let lane = self.lanes.entry(req.clone()).or_insert_with(|| {
            self.index.insert(req);
            BTreeMap::new()
        });
        let before = lane.first_key_value().map(|(k, _)| *k);
        lane.insert(key, id);
        if before.map_or(true, |b| key < b) {
            if let Some(b) = before {
                self.heads.remove(&b);
            }
            self.heads.insert(key, req.clone());
        }
    }

    pub fn remove_ready(&mut self, req: &Arc<Requirements>, key: Rank) -> Option<TaskId> {
        let lane = self.lanes.get_mut(req)?;
        let was_head = lane.first_key_value().is_some_and(|(k, _)| *k == key);
        let id = lane.remove(&key);
        if was_head {
            self.heads.remove(&key);
            if let Some((next, _)) = lane.first_key_value() {
                self.heads.insert(*next, req.clone());
            }
        }
        if lane.is_empty() {
            self.lanes.remove(req);
            self.index.remove(req);
        }
        id
    }

    /// Takes a pending task out of the queue (it was cancelled).
    pub fn remove(&mut self, task: &Task, aging_s: f64) {
        match task.not_before {
            Some(nb) => {
                self.delayed.remove(&(micros(nb), task.seq));
            }
            None => {
                self.remove_ready(&task.req, task.rank(aging_s));
            }
        }
    }

    /// Takes the next task whose backoff is over at `now`, if any.
    pub fn pop_due(&mut self, now: f64) -> Option<TaskId> {
        let entry = self.delayed.first_entry()?;
        (entry.key().0 <= micros(now)).then(|| entry.remove())
    }

    /// Takes the next task whose expiry has come at `now`, if any.
    pub fn pop_expired(&mut self, now: f64) -> Option<TaskId> {
        let entry = self.expiring.first_entry()?;
        (entry.key().0 <= micros(now)).then(|| entry.remove())
    }

    pub fn has_ready(&self) -> bool {
        !self.lanes.is_empty()
    }

    /// The first task of each of these lanes, best rank first.
    pub fn heads_of(
        &self,
        lanes: impl IntoIterator<Item = Arc<Requirements>>,
    ) -> Vec<(Rank, Arc<Requirements>)> {
        let mut heads: Vec<(Rank, Arc<Requirements>)> = lanes
            .into_iter()
            .filter_map(|req| {
                let head = self.lanes.get(&req)?.first_key_value()?;
                Some((*head.0, req))
            })
            .collect();
        heads.sort_unstable_by_key(|a| a.0);
        heads
    }

    /// The first task of every lane, best rank first.
    #[cfg(test)]
    pub fn heads(&self) -> Vec<(Rank, Arc<Requirements>)> {
        self.heads_of(self.lanes.keys().cloned())
    }

    /// Every queued task in the order it will be offered: the ready ones by rank, then
    /// the ones in backoff by when they are due. The reference [`Queue::head`] is tested
    /// against.
    #[cfg(test)]
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

    /// The first `n` of [`Queue::in_order`]: a merge that opens a lane only when its head
    /// is next, so what the page and the CLI show costs the same with 200,000 tasks queued
    /// or 40,000 lanes.
    pub fn head(&self, n: usize) -> Vec<&TaskId> {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        let mut unopened = self.heads.iter().peekable();
        let mut opened = Vec::new();
        let mut next = BinaryHeap::new();
        let mut out = Vec::with_capacity(n.min(1024));
        while out.len() < n {
            let open_next = match (unopened.peek(), next.peek()) {
                (Some((head, _)), Some(Reverse((best, _, _)))) => *head < best,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (i, id) = if open_next {
                let Some(mut lane) = unopened
                    .next()
                    .and_then(|(_, req)| self.lanes.get(req))
                    .map(|lane| lane.iter())
                else {
                    continue;
                };
                let Some((_, id)) = lane.next() else {
                    continue;
                };
                opened.push(lane);
                (opened.len() - 1, id)
            } else {
                let Some(Reverse((_, i, id))) = next.pop() else {
                    break;
                };
                (i, id)
            };
            out.push(id);
            if let Some((k, id)) = opened[i].next() {
                next.push(Reverse((*k, i, id)));
            }
        }
        let room = n - out.len();
        out.extend(self.delayed.values().take(room));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const AGING_S: f64 = 60.0;

    fn task(seq: u64, priority: u8, created_at: f64, data: Value) -> Task {
        Task::sample(seq, priority, created_at, data)
    }

    fn queued(tasks: &[Task]) -> Queue {
        let mut q = Queue::default();
        for t in tasks {
            q.enqueue(t, AGING_S);
        }
        q
    }

    fn order(q: &Queue) -> Vec<String> {
        q.in_order().map(|id| id.to_string()).collect()
    }

    #[test]
    fn head_is_the_start_of_the_full_order() {
        let a = json!({"model": "llama3.2:1b"});
        let b = json!({"model": "qwen2.5:0.5b"});
        let mut tasks: Vec<Task> = (0..40)
            .map(|i| {
                let data = if i % 3 == 0 { a.clone() } else { b.clone() };
                task(i, (i % 10 + 1) as u8, 100.0 + i as f64, data)
            })
            .collect();
        tasks[7].not_before = Some(5000.0);
        let q = queued(&tasks);
        let all = order(&q);
        for n in [0, 1, 5, 39, 40, 100] {
            let head: Vec<String> = q.head(n).iter().map(|id| id.to_string()).collect();
            assert_eq!(head, all[..n.min(all.len())], "first {n}");
        }
    }

    #[test]
    fn head_is_the_start_of_the_full_order_across_many_lanes_as_they_change() {
        // 60 lanes (models), tasks arriving out of rank order, some taken from the middle
        // and the front of their lanes.
        let tasks: Vec<Task> = (0..600u64)
            .map(|i| {
                let data = json!({"model": format!("m{}", (i * 7) % 60)});
                task(i, (i % 10 + 1) as u8, 100.0 + ((i * 37) % 600) as f64, data)
            })
            .collect();
        let mut q = queued(&tasks);
        for t in tasks.iter().filter(|t| t.seq % 3 == 0) {
            q.remove(t, AGING_S);
        }
        for _ in 0..20 {
            let (rank, req) = q.heads().remove(0);
            q.remove_ready(&req, rank);
        }
        let all = order(&q);
        assert_eq!(all.len(), 380);
        for n in [0, 1, 2, 59, 60, 61, 200, 380, 1000] {
            let head: Vec<String> = q.head(n).iter().map(|id| id.to_string()).collect();
            assert_eq!(head, all[..n.min(all.len())], "first {n}");
        }
    }

    #[test]
    fn higher_priority_first_then_first_come_first_served() {
        let q = queued(&[
            task(1, 5, 100.0, json!({})),
            task(2, 9, 101.0, json!({})),
            task(3, 5, 102.0, json!({})),
            task(4, 9, 103.0, json!({})),
        ]);
        assert_eq!(order(&q), ["t2", "t4", "t1", "t3"]);
    }

    #[test]
    fn a_long_wait_outranks_a_higher_priority() {
        // Each level is worth AGING_S of waiting: five levels down, six minutes earlier
        // is ahead; five levels down, four minutes earlier is still behind.
        let q = queued(&[
            task(1, 9, 1000.0, json!({})),
            task(2, 4, 1000.0 - 6.0 * AGING_S, json!({})),
            task(3, 4, 1000.0 - 4.0 * AGING_S, json!({})),
        ]);
        assert_eq!(order(&q), ["t2", "t1", "t3"]);
    }

    #[test]
    fn one_lane_per_requirement_set_and_heads_in_rank_order() {
        let a = json!({"model": "llama3.2:1b"});
        let b = json!({"model": "qwen2.5:0.5b"});
        let q = queued(&[
            task(1, 5, 100.0, a.clone()),
            task(2, 5, 101.0, b.clone()),
            task(3, 9, 102.0, a),
            task(4, 5, 99.0, b),
        ]);
        assert_eq!(q.lanes.len(), 2);
        let heads: Vec<Option<String>> = q
            .heads()
            .into_iter()
            .map(|(_, req)| req.model.clone())
            .collect();
        // Lane "llama" is headed by the priority-9 task, which ranks first overall.
        assert_eq!(
            heads,
            [Some("llama3.2:1b".into()), Some("qwen2.5:0.5b".into())]
        );
    }

    #[test]
    fn taking_the_last_task_of_a_lane_drops_the_lane() {
        let t = task(1, 5, 100.0, json!({}));
        let mut q = queued(std::slice::from_ref(&t));
        assert!(q.has_ready());
        let (rank, req) = q.heads().remove(0);
        assert_eq!(q.remove_ready(&req, rank).as_deref(), Some("t1"));
        assert!(!q.has_ready());
        assert!(q.lanes.is_empty());
        assert!(q.index.filed().is_empty(), "the index forgets the lane too");
        q.index.check().unwrap();
        assert_eq!(q.remove_ready(&req, rank), None);
    }

    #[test]
    fn a_task_in_backoff_waits_until_it_is_due_then_comes_last() {
        let mut late = task(1, 9, 100.0, json!({}));
        late.not_before = Some(130.0);
        let q0 = queued(&[late, task(2, 1, 110.0, json!({}))]);
        let mut q = q0;
        assert_eq!(order(&q), ["t2", "t1"], "backoff after every ready task");
        assert_eq!(q.heads().len(), 1, "a delayed task is in no lane");
        assert_eq!(q.pop_due(129.9), None);
        assert_eq!(q.pop_due(130.0).as_deref(), Some("t1"));
        assert_eq!(q.pop_due(1e9), None);
    }
}
