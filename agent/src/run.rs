//! One agent's life inside a process: assemble the [`Node`], register, say READY, start
//! the heartbeat and the work loops, supervise until a stop, shut down in order.
//! [`Handle`] runs it on a thread, for tests and embedding.

use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::Config;
use crate::config::VERSION;
use crate::delivery::Delivery;
use crate::error::Error;
use crate::gpio;
use crate::heartbeat::heartbeat_loop;
use crate::node::Node;
use crate::probe::SysProbe;
use crate::registration::{CALL, SLACK};
use crate::supervise::{shutdown, supervise};
use crate::watchdog::{Beat, Notifier, Stop};
use crate::work::work_loop;

/// Runs the agent until `stop` is requested (or a signal sets its flag): registers,
/// heartbeats, takes and runs work; then drains, flushes the spool and unregisters.
pub fn run(cfg: Config, notifier: Arc<dyn Notifier>, stop: Stop) -> Result<(), Error> {
    let (node, probe) = Node::open(cfg, notifier, stop.clone())?;
    let cfg = &node.cfg;
    log::info!(
        "pifleet-agent {VERSION} starting: id {}, orchestrator {}, ollama {}, state {}{}",
        cfg.id,
        cfg.orchestrator_url,
        cfg.ollama_url,
        cfg.state_dir.display(),
        cfg.config_path
            .as_ref()
            .map(|p| format!(", config {}", p.display()))
            .unwrap_or_default()
    );
    let pending = node.outbox.len();
    if pending > 0 {
        log::info!("{pending} spooled result(s) from a previous run will be delivered first");
    }
    let node = Arc::new(node);
    let led = gpio::start(node.cfg.led_pin, node.activity.led().clone(), stop.clone());

    let boot = {
        let s = node.clone();
        let beat = node.beats.add("work loop 0", CALL * 2 + SLACK);
        std::thread::Builder::new()
            .name("work-0".into())
            .spawn(move || boot(s, beat, probe))
            .map_err(Error::Thread)?
    };
    supervise(&node);
    shutdown(&node);
    if boot.is_finished() {
        let _ = boot.join();
    }
    if let Some(l) = led {
        let _ = l.join();
    }
    Ok(())
}

/// Registers, says READY, then starts the heartbeat and the other slots and becomes slot 0.
fn boot(s: Arc<Node>, beat: Arc<Beat>, probe: SysProbe) {
    // Results from a previous run go first, even before registering: the orchestrator
    // settles them by task and attempt, and a re-registration requeues nothing.
    if let Delivery::Done(n) = s.outbox.deliver() {
        if n > 0 {
            log::info!("{n} spooled result(s) delivered");
        }
    }
    if !s.registrar.until_registered(&beat, &s.stop, &s.activity) {
        beat.finish();
        return;
    }
    s.notifier.notify("READY=1");
    {
        let s = s.clone();
        let beat = s
            .beats
            .add("heartbeat", s.cfg.heartbeat_interval * 2 + CALL * 3 + SLACK);
        let _ = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || heartbeat_loop(s, beat, probe));
    }
    for slot in 1..s.cfg.slots {
        let s = s.clone();
        let beat = s.beats.add(&format!("work loop {slot}"), CALL * 2 + SLACK);
        let _ = std::thread::Builder::new()
            .name(format!("work-{slot}"))
            .spawn(move || work_loop(s, beat));
    }
    work_loop(s, beat);
}

/// A running agent inside the current process, for tests and embedding.
pub struct Handle {
    stop: Stop,
    thread: Option<JoinHandle<Result<(), Error>>>,
}

impl Handle {
    pub fn spawn(cfg: Config, notifier: Arc<dyn Notifier>) -> Handle {
        let stop = Stop::new();
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || run(cfg, notifier, s2));
        Handle {
            stop,
            thread: Some(thread),
        }
    }

    /// As SIGTERM would: drain, flush, unregister; returns what `run` returned.
    pub fn stop(mut self) -> Result<(), Error> {
        self.stop.request();
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(Ok(())))
            .unwrap_or(Ok(()))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.request();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
