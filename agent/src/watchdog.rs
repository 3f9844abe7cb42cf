//! Liveness: systemd's `Type=notify` protocol and the progress deadlines behind it.
//!
//! Every loop arms a [`Beat`] with the longest its next step may take (a long poll: its
//! wait plus the HTTP timeout; a task: the task timeout plus slack). The supervisor sends
//! `WATCHDOG=1` only while no beat is overdue, so a hung Ollama call or a wedged thread
//! stops the pings and systemd restarts the agent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A `sd_notify` message, kept as text so a test notifier can record it.
pub trait Notifier: Send + Sync {
    fn notify(&self, message: &str);
}

/// Talks to systemd through `$NOTIFY_SOCKET`; without one every call is a no-op.
pub struct SystemdNotifier;

impl Notifier for SystemdNotifier {
    fn notify(&self, message: &str) {
        let state = match message {
            "READY=1" => sd_notify::NotifyState::Ready,
            "STOPPING=1" => sd_notify::NotifyState::Stopping,
            "WATCHDOG=1" => sd_notify::NotifyState::Watchdog,
            other => match other.strip_prefix("STATUS=") {
                Some(s) => sd_notify::NotifyState::Status(s),
                None => sd_notify::NotifyState::Custom(other),
            },
        };
        if let Err(e) = sd_notify::notify(&[state]) {
            log::debug!("sd_notify {message}: {e}");
        }
    }
}

/// A notifier that only logs at debug level, for runs outside systemd.
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn notify(&self, message: &str) {
        log::trace!("notify {message}");
    }
}

/// A shutdown request every thread can wait on. Signal handlers may only set the flag;
/// the supervisor notices within a tick and wakes the sleepers.
#[derive(Clone, Default)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    lock: Arc<(Mutex<()>, Condvar)>,
}

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// The flag to hand to `signal_hook::flag::register`.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        let _g = self.lock.0.lock().unwrap_or_else(|e| e.into_inner());
        self.lock.1.notify_all();
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`; returns early (true) when a stop is requested.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.lock.0.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.requested() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .lock
                .1
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A loop's promise: "I will report again before this deadline".
pub struct Beat {
    name: String,
    epoch: Instant,
    deadline_ms: AtomicU64,
    /// A finished loop is no longer watched.
    done: AtomicBool,
}

impl Beat {
    pub fn new(name: &str, first: Duration) -> Beat {
        let b = Beat {
            name: name.to_string(),
            epoch: Instant::now(),
            deadline_ms: AtomicU64::new(0),
            done: AtomicBool::new(false),
        };
        b.arm(first);
        b
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next report will come within `within`.
    pub fn arm(&self, within: Duration) {
        let ms = (self.epoch.elapsed() + within).as_millis() as u64;
        self.deadline_ms.store(ms, Ordering::SeqCst);
    }

    pub fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
    }

    pub fn overdue(&self) -> bool {
        !self.done.load(Ordering::SeqCst)
            && self.epoch.elapsed().as_millis() as u64 > self.deadline_ms.load(Ordering::SeqCst)
    }
}

/// The beats the supervisor checks before each `WATCHDOG=1`.
#[derive(Clone, Default)]
pub struct Beats(Arc<Mutex<Vec<Arc<Beat>>>>);

impl Beats {
    pub fn add(&self, name: &str, first: Duration) -> Arc<Beat> {
        let b = Arc::new(Beat::new(name, first));
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(b.clone());
        b
    }

    /// Names of the loops that missed their deadline.
    pub fn overdue(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|b| b.overdue())
            .map(|b| b.name().to_string())
            .collect()
    }
}

/// What one supervisor tick did about the watchdog.
#[derive(Debug, PartialEq)]
pub enum Tick {
    NotDue,
    Pinged,
    /// The first withheld ping, naming the loops that are overdue.
    Withheld(Vec<String>),
    StillWithheld,
    /// Pinged again after withholding.
    Resumed,
}

/// Sends `WATCHDOG=1` every half `WATCHDOG_USEC`, and only while every beat is on time.
pub struct Watchdog {
    half: Duration,
    last_ping: Option<Instant>,
    stalled: bool,
}

impl Watchdog {
    pub fn new(watchdog_usec: Duration) -> Watchdog {
        Watchdog {
            half: watchdog_usec / 2,
            last_ping: None,
            stalled: false,
        }
    }

    pub fn half(&self) -> Duration {
        self.half
    }

    pub fn tick(&mut self, beats: &Beats, notifier: &dyn Notifier) -> Tick {
        if self.last_ping.is_some_and(|t| t.elapsed() < self.half) {
            return Tick::NotDue;
        }
        let overdue = beats.overdue();
        if overdue.is_empty() {
            notifier.notify("WATCHDOG=1");
            self.last_ping = Some(Instant::now());
            if std::mem::replace(&mut self.stalled, false) {
                Tick::Resumed
            } else {
                Tick::Pinged
            }
        } else if std::mem::replace(&mut self.stalled, true) {
            Tick::StillWithheld
        } else {
            Tick::Withheld(overdue)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count(Mutex<usize>);
    impl Notifier for Count {
        fn notify(&self, m: &str) {
            if m == "WATCHDOG=1" {
                *self.0.lock().unwrap() += 1;
            }
        }
    }

    #[test]
    fn a_stuck_loop_stops_the_pings_until_it_moves_again() {
        let beats = Beats::default();
        let hb = beats.add("heartbeat", Duration::from_secs(60));
        let work = beats.add("work loop 0", Duration::from_secs(60));
        let pings = Count::default();
        let mut dog = Watchdog::new(Duration::ZERO);
        assert_eq!(dog.tick(&beats, &pings), Tick::Pinged);
        // A hung Ollama call: the work loop's deadline passes.
        work.arm(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            dog.tick(&beats, &pings),
            Tick::Withheld(vec!["work loop 0".to_string()])
        );
        assert_eq!(dog.tick(&beats, &pings), Tick::StillWithheld);
        assert_eq!(*pings.0.lock().unwrap(), 1, "no ping while a loop is stuck");
        work.arm(Duration::from_secs(60));
        hb.arm(Duration::from_secs(60));
        assert_eq!(dog.tick(&beats, &pings), Tick::Resumed);
        assert_eq!(*pings.0.lock().unwrap(), 2);
    }

    #[test]
    fn pings_come_at_half_the_watchdog_interval() {
        let beats = Beats::default();
        let pings = Count::default();
        let mut dog = Watchdog::new(Duration::from_secs(3600));
        assert_eq!(dog.tick(&beats, &pings), Tick::Pinged);
        assert_eq!(dog.tick(&beats, &pings), Tick::NotDue);
    }

    #[test]
    fn beat_goes_overdue_and_recovers() {
        let beats = Beats::default();
        let b = beats.add("work", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(beats.overdue(), vec!["work".to_string()]);
        b.arm(Duration::from_secs(60));
        assert!(beats.overdue().is_empty());
        b.arm(Duration::ZERO);
        b.finish();
        std::thread::sleep(Duration::from_millis(5));
        assert!(beats.overdue().is_empty(), "finished loops are not watched");
    }

    #[test]
    fn stop_wakes_a_sleeper() {
        let stop = Stop::new();
        let s2 = stop.clone();
        let t = std::thread::spawn(move || s2.wait(Duration::from_secs(60)));
        std::thread::sleep(Duration::from_millis(20));
        stop.request();
        assert!(t.join().unwrap());
        assert!(stop.wait(Duration::from_secs(60)));
    }
}
