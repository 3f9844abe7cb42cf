//! Scheduling and liveness settings, with the one set of defaults the configuration
//! starts from (the thermal thresholds included).

/// Scheduling and liveness settings, taken from the validated configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub heartbeat_interval_s: f64,
    /// A node silent for this many heartbeat intervals is dead.
    pub dead_after_missed: u32,
    pub max_wait_s: f64,
    pub default_timeout_s: f64,
    pub max_attempts: u32,
    pub retry_backoff_s: f64,
    pub retry_backoff_max_s: f64,
    pub thermal: Thermal,
    /// Seconds of waiting worth one priority level: a task that has waited this long
    /// ranks with tasks one level above it, so no priority starves forever.
    pub aging_s: f64,
    pub history_len: usize,
    /// How often heartbeat-only changes (metrics, last seen) are written to the store.
    pub node_flush_s: f64,
    /// Settled tasks older than this are forgotten (memory and store).
    pub task_retention_s: f64,
    /// Dead nodes silent for longer than this disappear from the lists.
    pub dead_node_retention_s: f64,
    pub staging: Staging,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            heartbeat_interval_s: 10.0,
            dead_after_missed: 3,
            max_wait_s: 30.0,
            default_timeout_s: 600.0,
            max_attempts: 3,
            retry_backoff_s: 1.0,
            retry_backoff_max_s: 60.0,
            thermal: Thermal::default(),
            aging_s: 60.0,
            history_len: 120,
            node_flush_s: 5.0,
            task_retention_s: 7.0 * 86400.0,
            dead_node_retention_s: 86400.0,
            staging: Staging::default(),
        }
    }
}

impl Limits {
    pub fn dead_after_s(&self) -> f64 {
        self.heartbeat_interval_s * f64::from(self.dead_after_missed)
    }
}

impl Thermal {
    /// The temperatures as the views send them.
    pub fn thresholds(&self) -> pifleet_protocol::Thresholds {
        pifleet_protocol::Thresholds {
            soft_temp_c: self.soft_temp_c,
            hard_temp_c: self.hard_temp_c,
        }
    }
}

/// Thresholds for health-aware placement.
#[derive(Debug, Clone, PartialEq)]
pub struct Thermal {
    /// At or above this a node only gets work no cooler waiting node can take.
    pub soft_temp_c: f32,
    /// At or above this a node gets no new work at all.
    pub hard_temp_c: f32,
    /// A node reporting under-voltage now gets no new work.
    pub exclude_under_voltage: bool,
}

impl Default for Thermal {
    /// The temperatures are the protocol's defaults, which a CLI also falls back to when
    /// an orchestrator does not send its own.
    fn default() -> Self {
        let t = pifleet_protocol::Thresholds::default();
        Thermal {
            soft_temp_c: t.soft_temp_c,
            hard_temp_c: t.hard_temp_c,
            exclude_under_voltage: true,
        }
    }
}

/// `model_staging`: what the orchestrator may ask nodes to do with models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagingMode {
    /// Nothing: a task for a model no node has waits, saying so.
    Off,
    /// Ask a node to pull a model tasks wait for.
    Pull,
    /// Pull, and pre-load a model on a second node that has it when its queue keeps growing.
    PullAndPreload,
}

impl StagingMode {
    pub fn parse(s: &str) -> Option<StagingMode> {
        match s {
            "off" => Some(StagingMode::Off),
            "pull" => Some(StagingMode::Pull),
            "pull_and_preload" => Some(StagingMode::PullAndPreload),
            _ => None,
        }
    }
}

/// Model staging: the mode, the models it may act on, and its pacing.
#[derive(Debug, Clone, PartialEq)]
pub struct Staging {
    pub mode: StagingMode,
    /// Canonical model names staging may pull or pre-load; `*` allows every model.
    pub models: Vec<String>,
    /// The download speed a pull is estimated at, for "is waiting longer than pulling?".
    pub pull_bytes_per_s: f64,
    /// After a failed pull or pre-load, the same node is not asked for the same model for
    /// this long, doubled after each further failure.
    pub retry_s: f64,
    /// After this many failures a node is not asked for that model again (until the
    /// orchestrator restarts).
    pub max_failures: u32,
    /// An order the node has not reported on (or made progress in) for this long failed.
    pub stall_s: f64,
}

impl Default for Staging {
    fn default() -> Self {
        Staging {
            mode: StagingMode::Off,
            models: Vec::new(),
            // A Pi on a home connection: 10 MB/s.
            pull_bytes_per_s: 10_000_000.0,
            retry_s: 300.0,
            max_failures: 3,
            stall_s: 300.0,
        }
    }
}

impl Staging {
    /// True when staging may act on `model` (canonical name) at all.
    pub fn allows(&self, model: &str) -> bool {
        self.mode != StagingMode::Off
            && self
                .models
                .iter()
                .any(|m| m == "*" || super::placement::same_model(m, model))
    }
}
