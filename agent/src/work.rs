//! The work loop, one per task slot: deliver what is spooled, long-poll for a task, run
//! it, spool its result. A drained node keeps delivering but takes no work.

use std::sync::Arc;
use std::time::Instant;

use pifleet_protocol::{ResultRequest, TaskAssignment};

use crate::delivery::Delivery;
use crate::node::Node;
use crate::registration::{CALL, SLACK};
use crate::relay::StreamTo;
use crate::retry::{Backoff, Flap};
use crate::runner::Ran;
use crate::watchdog::Beat;

pub fn work_loop(s: Arc<Node>, beat: Arc<Beat>) {
    let mut backoff = Backoff::new(s.cfg.retry_base, s.cfg.retry_max);
    let mut delivery = Flap::default();
    let mut polling = Flap::default();
    while !s.stop.requested() {
        beat.arm(CALL * 2 + SLACK);
        match s.outbox.deliver() {
            Delivery::Done(_) => delivery.ok("result delivery"),
            Delivery::Retry(e) => {
                delivery.fail("result delivery", &e);
                s.activity
                    .set_status(format!("holding {} undelivered result(s)", s.outbox.len()));
                let d = backoff.delay();
                beat.arm(d + SLACK);
                if s.stop.wait(d) {
                    break;
                }
                continue;
            }
        }
        if s.activity.draining() {
            s.activity.set_status("drained: taking no work");
            beat.arm(s.cfg.poll_interval + SLACK);
            s.stop.wait(s.cfg.poll_interval);
            continue;
        }
        let wait = s.registrar.poll_wait();
        beat.arm(wait + CALL + SLACK);
        if s.activity.running_count() == 0 {
            s.activity.set_status("idle: waiting for work");
        }
        let t0 = Instant::now();
        let epoch = s.registrar.epoch();
        match s.client.poll(&s.cfg.id, wait) {
            Ok(Some(task)) => {
                polling.ok("polling");
                backoff.reset();
                if s.stop.requested() {
                    // Unregistering on the way out requeues it for another node.
                    log::info!("stopping: task {} handed back", task.task_id);
                    break;
                }
                execute(&s, &beat, task);
            }
            Ok(None) => {
                polling.ok("polling");
                backoff.reset();
                // An orchestrator that ignores `wait` (the seed's) answers at once:
                // fall back to interval polling.
                let e = t0.elapsed();
                if e < s.cfg.poll_interval {
                    beat.arm(s.cfg.poll_interval + SLACK);
                    s.stop.wait(s.cfg.poll_interval - e);
                }
            }
            Err(e) => {
                let e = match e.status() {
                    Some(404) => match s.registrar.forgotten(epoch, &e, None) {
                        Ok(()) => {
                            polling.ok("polling");
                            continue;
                        }
                        Err(e) => e,
                    },
                    _ => e,
                };
                polling.fail("polling for work", &e);
                let d = backoff.delay();
                beat.arm(d + SLACK);
                s.stop.wait(d);
            }
        }
    }
    beat.finish();
}

fn execute(s: &Node, beat: &Beat, task: TaskAssignment) {
    let id = task.task_id.clone();
    s.activity.begin(&id);
    s.activity
        .set_status(format!("running task {id} ({})", task.task_type));
    beat.arm(s.runner.timeout_for(&task) + SLACK);
    log::info!(
        "task {id}: {} (attempt {})",
        task.task_type,
        task.attempt.unwrap_or(1)
    );
    let to = StreamTo {
        client: &s.client,
        worker_id: &s.cfg.id,
        aborts: &s.aborts,
    };
    let outcome = match s.runner.run_to(&task, Some(&to)) {
        Ran::Done(outcome) => outcome,
        Ran::Abandoned(why) => {
            log::info!("task {id}: abandoned, nothing reported: {why}");
            s.activity.end(&id);
            return;
        }
    };
    if outcome.success {
        log::info!(
            "task {id}: done in {} ms{}",
            outcome.duration_ms.unwrap_or(0),
            outcome
                .tokens_per_s
                .map(|t| format!(", {t} tokens/s"))
                .unwrap_or_default()
        );
    } else {
        log::warn!(
            "task {id}: failed: {}",
            outcome.error.as_deref().unwrap_or("no reason given")
        );
    }
    let result = serde_json::to_value(&outcome).unwrap_or_else(
        |e| serde_json::json!({"success": false, "error": format!("cannot encode result: {e}")}),
    );
    let req = ResultRequest {
        worker_id: s.cfg.id.clone(),
        result,
        attempt: task.attempt,
    };
    s.outbox.keep(&id, &req);
    s.activity.end(&id);
}
