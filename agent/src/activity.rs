//! What the node is doing right now, as every thread sees it: the tasks running, whether
//! the operator drained it, the one-line STATUS for systemd, and the LED that shows it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::gpio::{LedState, Status};

/// A poisoned lock still guards good data here: every critical section is a plain copy.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Activity {
    led: Status,
    running: Mutex<Vec<String>>,
    draining: AtomicBool,
    status: Mutex<String>,
}

impl Activity {
    pub fn new(led: Status) -> Activity {
        Activity {
            led,
            running: Mutex::new(Vec::new()),
            draining: AtomicBool::new(false),
            status: Mutex::new("starting".into()),
        }
    }

    pub fn led(&self) -> &Status {
        &self.led
    }

    pub fn show(&self, state: LedState) {
        self.led.set(state);
    }

    pub fn set_status(&self, s: impl Into<String>) {
        *lock(&self.status) = s.into();
    }

    pub fn status(&self) -> String {
        lock(&self.status).clone()
    }

    /// A task starts in one of the slots.
    pub fn begin(&self, task_id: &str) {
        lock(&self.running).push(task_id.to_string());
        self.led.set(LedState::Working);
    }

    /// A task's slot is free again; the LED goes idle with the last one.
    pub fn end(&self, task_id: &str) {
        let mut running = lock(&self.running);
        running.retain(|r| r != task_id);
        if running.is_empty() {
            self.led.set(LedState::Idle);
        }
    }

    pub fn running(&self) -> Vec<String> {
        lock(&self.running).clone()
    }

    pub fn running_count(&self) -> usize {
        lock(&self.running).len()
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Records the orchestrator's word; true when it changed.
    pub fn set_draining(&self, draining: bool) -> bool {
        self.draining.swap(draining, Ordering::SeqCst) != draining
    }
}
