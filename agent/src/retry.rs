//! How the agent waits after a failure: exponential backoff with jitter, and [`Flap`],
//! which logs a failing call once when it starts failing and once when it recovers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::rng::{fresh_seed, SplitMix64};

/// `d` scaled by a random factor in [0.8, 1.2), so a fleet does not act in step.
pub fn jitter(d: Duration) -> Duration {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut s = STATE.load(Ordering::Relaxed);
    if s == 0 {
        s = fresh_seed("jitter");
    }
    let mut rng = SplitMix64::new(s);
    let f = 0.8 + 0.4 * rng.next_f64();
    STATE.store(rng.next_u64() | 1, Ordering::Relaxed);
    d.mul_f64(f)
}

/// Exponential backoff with jitter, capped.
pub struct Backoff {
    base: Duration,
    max: Duration,
    cur: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            cur: base,
        }
    }

    pub fn delay(&mut self) -> Duration {
        let d = jitter(self.cur);
        self.cur = (self.cur * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.cur = self.base;
    }
}

/// Logs a failing call once when it starts failing and once when it recovers, instead of
/// every few seconds while an orchestrator is down.
#[derive(Default)]
pub struct Flap(bool);

impl Flap {
    pub fn fail(&mut self, what: &str, e: &dyn std::fmt::Display) {
        if !self.0 {
            log::warn!("{what}: {e} (retrying quietly)");
        } else {
            log::debug!("{what}: {e}");
        }
        self.0 = true;
    }

    pub fn ok(&mut self, what: &str) {
        if self.0 {
            log::info!("{what}: working again");
        }
        self.0 = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..200 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(800) && d < Duration::from_millis(1200));
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let seq: Vec<Duration> = (0..5).map(|_| b.delay()).collect();
        assert!(seq[0] < Duration::from_millis(120), "{seq:?}");
        assert!(seq[2] >= Duration::from_millis(320), "{seq:?}");
        assert!(seq[4] < Duration::from_millis(480), "capped: {seq:?}");
        b.reset();
        assert!(b.delay() < Duration::from_millis(120));
    }
}
