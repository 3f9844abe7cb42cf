//! Wall-clock time behind a trait, so leases, timeouts and liveness can be tested by
//! moving a manual clock instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as on the wire.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> f64;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }
}

/// A clock that only moves when told to. Stored as microseconds so it can be shared
/// without a lock.
#[derive(Debug, Clone)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn new(start_s: f64) -> Self {
        ManualClock {
            micros: Arc::new(AtomicU64::new((start_s * 1e6) as u64)),
        }
    }

    pub fn advance(&self, secs: f64) {
        self.micros.fetch_add((secs * 1e6) as u64, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(1_700_000_000.0)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> f64 {
        self.micros.load(Ordering::SeqCst) as f64 / 1e6
    }
}
