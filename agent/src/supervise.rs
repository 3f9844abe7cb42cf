//! Supervision, on the calling thread: turns signals into a stop, pings systemd's
//! watchdog while every loop keeps its deadline, keeps the STATUS= line current; then
//! the orderly shutdown (let running tasks finish, flush the spool, unregister).

use std::time::{Duration, Instant};

use crate::delivery::Delivery;
use crate::gpio::LedState;
use crate::node::Node;
use crate::watchdog::{Tick, Watchdog};

pub fn supervise(s: &Node) {
    let mut dog = s.cfg.watchdog.map(Watchdog::new);
    let tick = dog.as_ref().map_or(Duration::from_secs(1), |d| {
        d.half().min(Duration::from_secs(1))
    });
    let mut last_status = String::new();
    loop {
        if s.stop.requested() {
            // Set by a signal handler, which cannot wake the sleepers itself.
            s.stop.request();
            break;
        }
        if let Some(dog) = dog.as_mut() {
            match dog.tick(&s.beats, s.notifier.as_ref()) {
                Tick::Withheld(overdue) => {
                    log::error!(
                        "{} missed its deadline: withholding watchdog pings so systemd restarts us",
                        overdue.join(", ")
                    );
                    s.activity.show(LedState::Error);
                }
                Tick::Resumed => {
                    log::info!("all loops progressing again: watchdog pings resumed")
                }
                _ => {}
            }
        }
        let status = s.activity.status();
        if status != last_status {
            s.notifier.notify(&format!("STATUS={status}"));
            last_status = status;
        }
        s.stop.wait(tick);
    }
}

/// Stop taking work, let the running tasks finish (up to `stop_grace`), flush the spool,
/// unregister.
pub fn shutdown(s: &Node) {
    s.notifier.notify("STOPPING=1");
    s.notifier.notify("STATUS=stopping");
    let deadline = Instant::now() + s.cfg.stop_grace;
    let mut said = false;
    loop {
        let n = s.activity.running_count();
        if n == 0 {
            break;
        }
        if Instant::now() >= deadline {
            log::warn!(
                "stopping: {n} task(s) still running after {:?}: handing them back",
                s.cfg.stop_grace
            );
            break;
        }
        if !said {
            log::info!("stopping: waiting for {n} running task(s) to finish");
            said = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match s.outbox.deliver() {
        Delivery::Done(_) => {}
        Delivery::Retry(e) => log::warn!(
            "stopping with {} result(s) spooled in {} ({e}): they go first on the next start",
            s.outbox.len(),
            s.outbox.dir().display()
        ),
    }
    if s.registrar.registered() {
        match s.client.unregister(&s.cfg.id) {
            Ok(r) => {
                let requeued = r.requeued.unwrap_or_default();
                log::info!(
                    "unregistered{}",
                    if requeued.is_empty() {
                        String::new()
                    } else {
                        format!("; handed back {}", requeued.join(", "))
                    }
                );
            }
            Err(e) => {
                log::warn!("unregister failed ({e}); the orchestrator will notice the silence")
            }
        }
    }
    log::info!("stopped");
}
