//! Telemetry the fleet records as it works and `/metrics` exports: the scheduling
//! latency and task duration histograms. The domain may import this; it knows nothing
//! of HTTP or of the exposition format.

use prometheus_client::metrics::histogram::Histogram;

/// Submit → assign: sub-millisecond with waiting workers, up to minutes in a busy queue.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Assign → result: an LLM answer on a Pi takes seconds to many minutes.
const DURATION_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The live histograms. Cheap to clone (shared buckets); the scheduler observes into them.
#[derive(Debug, Clone)]
pub struct Histograms {
    pub(crate) scheduling_latency: Histogram,
    pub(crate) task_duration: Histogram,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            scheduling_latency: Histogram::new(LATENCY_BUCKETS),
            task_duration: Histogram::new(DURATION_BUCKETS),
        }
    }
}

impl Histograms {
    /// A task was assigned `seconds` after it was submitted (or requeued).
    pub fn observe_scheduling_latency(&self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.scheduling_latency.observe(seconds);
        }
    }

    /// An attempt was settled (completed or failed) `seconds` after it was assigned.
    pub fn observe_task_duration(&self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.task_duration.observe(seconds);
        }
    }
}
