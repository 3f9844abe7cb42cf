//! Task counts by state and pending tasks by priority, moved along with every task so
//! the views and `/metrics` read them without walking the tasks.

use std::collections::BTreeMap;

use pifleet_protocol::{TaskCounts, TaskState, PRIORITY_MAX, PRIORITY_MIN};

use crate::store::Mutation;

const LEVELS: usize = PRIORITY_MAX as usize + 1;

/// The names the cumulative counts are stored under.
const RETRIED: &str = "retried";
const RECLAIMED: &str = "reclaimed";
const PRUNED_COMPLETED: &str = "pruned_completed";
const PRUNED_FAILED: &str = "pruned_failed";

/// Completed and failed include the tasks already forgotten, so the totals stay
/// cumulative across pruning and restarts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Tally {
    pub pending: u64,
    pub assigned: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Attempts put back in the queue after a counted failure (cumulative).
    pub retried: u64,
    /// Attempts taken back because their poll answer was lost (cumulative, in `retried` too).
    pub reclaimed: u64,
    /// Settled tasks forgotten after their retention (still in completed / failed).
    pub pruned_completed: u64,
    pub pruned_failed: u64,
    /// Pending tasks per priority (index = priority), in step with `pending`.
    pending_by_priority: [u64; LEVELS],
}

impl Tally {
    fn of_state(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Pending => &mut self.pending,
            TaskState::Assigned => &mut self.assigned,
            TaskState::Completed => &mut self.completed,
            TaskState::Failed => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
        }
    }

    fn level(&mut self, priority: u8) -> &mut u64 {
        &mut self.pending_by_priority[usize::from(priority).min(LEVELS - 1)]
    }

    /// A task appears in `state` (submitted, or loaded from the store).
    pub fn enter(&mut self, state: TaskState, priority: u8) {
        *self.of_state(state) += 1;
        if state == TaskState::Pending {
            *self.level(priority) += 1;
        }
    }

    /// A task moves from one state to another.
    pub fn moved(&mut self, from: TaskState, to: TaskState, priority: u8) {
        let n = self.of_state(from);
        *n = n.saturating_sub(1);
        if from == TaskState::Pending {
            let n = self.level(priority);
            *n = n.saturating_sub(1);
        }
        self.enter(to, priority);
    }

    /// One more attempt requeued after a counted failure: the counter to store.
    pub fn retry(&mut self) -> Mutation {
        self.retried += 1;
        Mutation::Counter(RETRIED.into(), self.retried)
    }

    /// One more attempt taken back after its poll answer was lost: the counter to store.
    pub fn reclaimed(&mut self) -> Mutation {
        self.reclaimed += 1;
        Mutation::Counter(RECLAIMED.into(), self.reclaimed)
    }

    /// The forgotten-task counters to store after pruning.
    pub fn pruned_counters(&self) -> [Mutation; 2] {
        [
            Mutation::Counter(PRUNED_COMPLETED.into(), self.pruned_completed),
            Mutation::Counter(PRUNED_FAILED.into(), self.pruned_failed),
        ]
    }

    /// Carries on the cumulative counts of earlier runs, from the store's counters.
    pub fn restore(&mut self, counters: &[(String, u64)]) {
        let get = |name: &str| {
            counters
                .iter()
                .find(|(k, _)| k == name)
                .map_or(0, |(_, v)| *v)
        };
        self.retried = get(RETRIED);
        self.reclaimed = get(RECLAIMED);
        self.restore_pruned(get(PRUNED_COMPLETED), get(PRUNED_FAILED));
    }

    /// A settled task is forgotten; it still counts as completed or failed.
    pub fn pruned(&mut self, state: TaskState) {
        match state {
            TaskState::Failed => self.pruned_failed += 1,
            TaskState::Completed => self.pruned_completed += 1,
            // Cancelled requests are not work done or failed: they leave no total.
            _ => self.cancelled = self.cancelled.saturating_sub(1),
        }
    }

    /// Adds the forgotten tasks of earlier runs to the settled counts.
    pub fn restore_pruned(&mut self, completed: u64, failed: u64) {
        self.pruned_completed = completed;
        self.pruned_failed = failed;
        self.completed += completed;
        self.failed += failed;
    }

    /// Pending tasks per priority, only the levels that have any.
    pub fn pending_by_priority(&self) -> BTreeMap<u8, u64> {
        (PRIORITY_MIN..=PRIORITY_MAX)
            .map(|p| (p, self.pending_by_priority[usize::from(p)]))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The counts as the API shows them; `in_memory` is the number of tasks still held.
    pub fn counts(&self, in_memory: usize) -> TaskCounts {
        TaskCounts {
            total: in_memory as u64 + self.pruned_completed + self.pruned_failed,
            pending: self.pending,
            assigned: self.assigned,
            completed: self.completed,
            failed: self.failed,
            retried: self.retried,
            reclaimed: self.reclaimed,
            cancelled: self.cancelled,
        }
    }

    /// Completed over settled, once anything settled.
    pub fn success_rate(&self) -> Option<f64> {
        rate(self.completed, self.failed)
    }
}

pub(super) fn rate(ok: u64, failed: u64) -> Option<f64> {
    let total = ok + failed;
    (total > 0).then(|| ok as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_moves_between_states_and_the_priorities_follow_pending() {
        let mut t = Tally::default();
        t.enter(TaskState::Pending, 3);
        t.enter(TaskState::Pending, 3);
        t.enter(TaskState::Pending, 9);
        assert_eq!((t.pending, t.assigned), (3, 0));
        assert_eq!(t.pending_by_priority(), [(3, 2), (9, 1)].into());

        t.moved(TaskState::Pending, TaskState::Assigned, 3);
        assert_eq!((t.pending, t.assigned), (2, 1));
        assert_eq!(t.pending_by_priority(), [(3, 1), (9, 1)].into());

        t.moved(TaskState::Assigned, TaskState::Completed, 3);
        t.moved(TaskState::Pending, TaskState::Assigned, 9);
        t.moved(TaskState::Assigned, TaskState::Failed, 9);
        assert_eq!((t.pending, t.assigned, t.completed, t.failed), (1, 0, 1, 1));
        assert_eq!(t.pending_by_priority(), [(3, 1)].into());
        assert_eq!(t.success_rate(), Some(0.5));
    }

    #[test]
    fn a_requeued_task_is_pending_at_its_priority_again() {
        let mut t = Tally::default();
        t.enter(TaskState::Pending, 7);
        t.moved(TaskState::Pending, TaskState::Assigned, 7);
        assert!(t.pending_by_priority().is_empty());
        t.moved(TaskState::Assigned, TaskState::Pending, 7);
        assert_eq!((t.pending, t.assigned), (1, 0));
        assert_eq!(t.pending_by_priority(), [(7, 1)].into());
    }

    #[test]
    fn forgotten_tasks_still_count_across_a_restart() {
        let mut t = Tally::default();
        t.enter(TaskState::Completed, 5);
        t.enter(TaskState::Failed, 5);
        t.enter(TaskState::Completed, 5);
        t.pruned(TaskState::Completed);
        t.pruned(TaskState::Failed);
        // One task still in memory; the two forgotten ones still count.
        let before = t.counts(1);
        assert_eq!((before.total, before.completed, before.failed), (3, 2, 1));

        let stored: Vec<(String, u64)> = t
            .pruned_counters()
            .into_iter()
            .chain([t.clone().retry()])
            .map(|m| match m {
                Mutation::Counter(name, n) => (name, n),
                other => panic!("not a counter: {other:?}"),
            })
            .collect();
        t.retried = 1;
        let mut after = Tally::default();
        after.enter(TaskState::Completed, 5);
        after.restore(&stored);
        assert_eq!(after.counts(1), t.counts(1));
        assert_eq!(after, t);
    }

    #[test]
    fn nothing_settled_has_no_success_rate() {
        let mut t = Tally::default();
        assert_eq!(t.success_rate(), None);
        t.enter(TaskState::Pending, 1);
        assert_eq!(t.success_rate(), None);
    }

    #[test]
    fn counts_never_wrap_and_odd_priorities_land_in_range() {
        let mut t = Tally::default();
        t.moved(TaskState::Assigned, TaskState::Pending, 200);
        assert_eq!((t.pending, t.assigned), (1, 0));
        assert_eq!(t.pending_by_priority(), [(PRIORITY_MAX, 1)].into());
    }
}
