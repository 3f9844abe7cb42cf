//! Model staging orders from the orchestrator (in heartbeat answers): pull a model
//! through the local Ollama, or pre-load one. One order runs at a time, on a thread of
//! its own so heartbeats and tasks go on; its progress goes out with every heartbeat.
//! The orchestrator repeats an order until it hears of it, so an order whose id was seen
//! is not started again; a failure is reported, never retried here (the orchestrator
//! decides when, or whether, to ask again).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pifleet_protocol::{StageAction, StageOrder, StageProgress, StageState};

use crate::node::Node;
use crate::ollama::Limits;

/// Reports kept (and repeated in heartbeats): the latest per model, at most this many.
const REPORTS_KEPT: usize = 8;
/// What a pre-load keeps the model loaded for when the agent's config names no keep_alive.
const DEFAULT_PRELOAD_KEEP_ALIVE: &str = "30m";

#[derive(Default)]
pub struct Stager {
    reports: Mutex<Vec<StageProgress>>,
    busy: AtomicBool,
    said_refused: AtomicBool,
}

fn lock(m: &Mutex<Vec<StageProgress>>) -> MutexGuard<'_, Vec<StageProgress>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stager {
    /// The reports for the next heartbeat.
    pub fn reports(&self) -> Vec<StageProgress> {
        lock(&self.reports).clone()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut StageProgress)) {
        if let Some(r) = lock(&self.reports).iter_mut().find(|r| r.id == id) {
            f(r);
        }
    }

    /// Starts the first new order, unless one runs already (the orchestrator repeats the
    /// others until this node takes them).
    pub fn take(&self, orders: &[StageOrder], node: &Arc<Node>) {
        let Some(order) = orders
            .iter()
            .find(|o| !lock(&self.reports).iter().any(|r| r.id == o.id))
        else {
            return;
        };
        if !node.cfg.allow_model_pull {
            if !self.said_refused.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "the orchestrator asked to {} {}; allow_model_pull = false, so this node does not",
                    order.action.as_str(),
                    order.model
                );
            }
            return;
        }
        if self.busy.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let mut reports = lock(&self.reports);
            reports.retain(|r| r.model != order.model);
            if reports.len() >= REPORTS_KEPT {
                reports.remove(0);
            }
            reports.push(StageProgress::new(
                order.id,
                order.action,
                order.model.clone(),
                StageState::Running,
            ));
        }
        let id = order.id;
        let model = order.model.clone();
        let order = order.clone();
        let node = node.clone();
        let spawned = std::thread::Builder::new()
            .name("stage".into())
            .spawn(move || {
                let s = &node.stager;
                log::info!("{} {}: starting", order.action.as_str(), order.model);
                let result = match order.action {
                    StageAction::Pull => node.ollama.pull(&order.model, |p| {
                        s.update(order.id, |r| {
                            r.status = Some(p.status.clone());
                            r.completed_bytes = p.completed;
                            r.total_bytes = p.total;
                        })
                    }),
                    StageAction::Preload => node.ollama.preload(
                        &order.model,
                        node.cfg
                            .keep_alive
                            .as_deref()
                            .unwrap_or(DEFAULT_PRELOAD_KEEP_ALIVE),
                        Limits {
                            first_token: node.cfg.first_token_timeout,
                            total: node.cfg.task_timeout,
                        },
                    ),
                };
                match result {
                    Ok(()) => {
                        log::info!("{} {}: done", order.action.as_str(), order.model);
                        s.update(order.id, |r| r.state = StageState::Done);
                    }
                    Err(e) => {
                        log::warn!("{} {} failed: {e}", order.action.as_str(), order.model);
                        let message = match e {
                            crate::error::OllamaError::Stream(m) => m,
                            crate::error::OllamaError::Status { message, .. } => message,
                            other => other.to_string(),
                        };
                        s.update(order.id, |r| {
                            r.state = StageState::Failed;
                            r.error = Some(message);
                        });
                    }
                }
                s.busy.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log::warn!("cannot start a thread to stage {model}: {e}");
            self.update(id, |r| {
                r.state = StageState::Failed;
                r.error = Some(format!("the agent could not start a thread: {e}"));
            });
            self.busy.store(false, Ordering::SeqCst);
        }
    }
}
