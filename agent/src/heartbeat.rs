//! The heartbeat loop: live metrics from /proc and /sys plus Ollama's state, every
//! interval (or faster when the orchestrator expects it); re-registers when the model
//! set changes; learns from the answer whether the operator drained this node, and
//! which models it asks this node to stage.

use std::sync::Arc;

use pifleet_protocol::HeartbeatRequest;

use crate::abort::WAITING_BEAT;
use crate::node::Node;
use crate::probe::{Probe, SysProbe};
use crate::registration::{model_names, CALL, SLACK};
use crate::retry::{jitter, Flap};
use crate::watchdog::Beat;

pub fn heartbeat_loop(s: Arc<Node>, beat: Arc<Beat>, mut probe: SysProbe) {
    let mut orch = Flap::default();
    let mut ollama_flap = Flap::default();
    let mut said_interval = false;
    loop {
        let interval = s.registrar.heartbeat_interval();
        if interval < s.cfg.heartbeat_interval && !said_interval {
            log::info!(
                "the orchestrator expects a heartbeat every {interval:?}: beating at that pace, not every {:?}",
                s.cfg.heartbeat_interval
            );
            said_interval = true;
        }
        beat.arm(interval * 2 + CALL * 3 + SLACK);
        let mut m = probe.metrics();
        let models = match s.ollama.tags() {
            Ok(models) => {
                ollama_flap.ok("ollama");
                m.ollama_reachable = Some(true);
                m.models_present = Some(model_names(&models));
                if let Ok(ps) = s.ollama.ps() {
                    m.models_loaded = Some(ps);
                }
                Some(models)
            }
            Err(e) => {
                ollama_flap.fail(&format!("ollama at {}", s.cfg.ollama_url), &e);
                m.ollama_reachable = Some(false);
                None
            }
        };
        if let Some(models) = &models {
            s.registrar.refresh_models(models);
        }
        // Running first, then the spool: a task is spooled before it leaves the running
        // list, so one read or the other sees it and the orchestrator never takes back
        // work this node still has.
        let running = s.activity.running();
        let spooled = s.outbox.held();
        let req = HeartbeatRequest {
            metrics: Some(m),
            running_tasks: Some(running),
            spooled_results: Some(spooled),
            staging: s.stager.reports(),
        };
        let epoch = s.registrar.epoch();
        match s.client.heartbeat(&s.cfg.id, &req) {
            Ok(resp) => {
                orch.ok("heartbeat");
                s.stager.take(&resp.stage, &s);
                for task in resp.stop_tasks.iter().flatten() {
                    if s.aborts.stop(task) {
                        log::info!("task {task}: the orchestrator no longer wants it; closed its Ollama request");
                    }
                }
                let draining = resp.draining.unwrap_or(false);
                if s.activity.set_draining(draining) {
                    log::info!(
                        "{}",
                        if draining {
                            "drained by the operator: finishing current work, taking none"
                        } else {
                            "drain lifted: taking work again"
                        }
                    );
                }
            }
            Err(e) if e.status() == Some(404) => {
                if let Err(e) = s.registrar.forgotten(epoch, &e, models) {
                    orch.fail("re-registration", &e);
                }
            }
            Err(e) => orch.fail("heartbeat", &e),
        }
        if sleep_until_next_beat(&s, jitter(interval)) {
            break;
        }
    }
    beat.finish();
}

/// Sleeps `interval`, or only until a request has waited `WAITING_BEAT` for Ollama's
/// first token: such a request learns of its client's hang-up only from a heartbeat
/// answer, so it must not wait out a whole interval for the next one. True on stop.
fn sleep_until_next_beat(s: &Node, interval: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    loop {
        let left = interval.saturating_sub(start.elapsed());
        if left.is_zero() {
            return false;
        }
        if s.stop.wait(left.min(WAITING_BEAT)) {
            return true;
        }
        if s.aborts.any_waiting() {
            return false;
        }
    }
}
