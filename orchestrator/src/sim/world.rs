//! The simulated Pis: speed per model, a thermal model, models in memory, failures. Each
//! node also carries the wire view the orchestrator would have of it (capabilities and
//! the metrics of its last heartbeat), which is what placement gets to see.

use std::collections::VecDeque;

use pifleet_protocol::{throttle, Capabilities, LoadedModel, ModelInfo, NodeMetrics};

use super::config::{Board, SimConfig};

/// A small deterministic generator (splitmix64): runs repeat exactly for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    pub fn normal(&mut self) -> f64 {
        let (u, v) = (1.0 - self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// An index drawn by weight.
    pub fn pick(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// A task running on a node. Work is counted in seconds at full speed, so a change of
/// throttle state only changes the rate it drains at.
#[derive(Debug, Clone)]
pub struct Run {
    pub task: usize,
    pub work_left: f64,
    pub since: f64,
    pub started: f64,
    pub cold_load_s: f64,
    /// Full-speed seconds of prompt and of generation, to split the measured time.
    pub prompt_work: f64,
    pub gen_work: f64,
}

#[derive(Debug, Clone)]
pub struct SimNode {
    pub id: String,
    pub board: usize,
    pub caps: Capabilities,
    /// What the last heartbeat said.
    pub metrics: NodeMetrics,
    pub gen_tps: Vec<f64>,
    pub prompt_tps: Vec<f64>,
    pub load_s: Vec<f64>,
    pub temp: f64,
    pub temp_at: f64,
    pub throttled: bool,
    /// Models in memory, least recently used first, with when they were last used.
    pub loaded: Vec<(usize, f64)>,
    pub run: Option<Run>,
    /// Tasks queued on the node itself (the router policies: Ollama queues FIFO).
    pub queue: VecDeque<usize>,
    /// Bumped whenever the running task's end moves, to drop stale completion events.
    pub epoch: u64,
    /// Failed and not repaired.
    pub down: bool,
    /// What the orchestrator believes: false once the failure is detected.
    pub alive_seen: bool,
    /// Tasks handed to it while it was down but not yet known to be.
    pub lost: Vec<usize>,
    pub temps: VecDeque<(f64, f32)>,
    pub throttled_s: f64,
    /// The placement's own expectation of when the running task ends.
    pub expected_end: f64,
    /// Expected seconds of work held back for this node (pifleet's bounded waiting).
    pub reserved_s: f64,
}

/// Ollama keeps an idle model in memory this long (its default `keep_alive`).
pub const KEEP_ALIVE_S: f64 = 300.0;
/// The firmware lifts the throttle a little below where it set it.
const UNTHROTTLE_BELOW_C: f64 = 79.0;
/// Share of the full-load heat a throttled board still makes.
const THROTTLED_HEAT: f64 = 0.7;

impl SimNode {
    pub fn new(id: String, board_ix: usize, b: &Board, c: &SimConfig, rng: &mut Rng) -> SimNode {
        let spread = (b.speed_spread * rng.normal()).exp();
        let models = &c.models;
        let caps = Capabilities {
            models: models.iter().map(|m| m.name.clone()).collect(),
            slots: Some(1),
            cores: Some(4),
            memory_total_bytes: Some(b.memory_mb << 20),
            pi_model: Some(b.pi_model.clone()),
            model_details: models
                .iter()
                .map(|m| ModelInfo {
                    name: m.name.clone(),
                    size_bytes: Some((m.size_mb * 1048576.0) as u64),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let first = rng.pick(&models.iter().map(|m| m.share).collect::<Vec<_>>());
        let mut n = SimNode {
            id,
            board: board_ix,
            caps,
            metrics: NodeMetrics::default(),
            gen_tps: models
                .iter()
                .map(|m| m.pi5_gen_tps * b.speed_factor * spread)
                .collect(),
            prompt_tps: models
                .iter()
                .map(|m| m.pi5_prompt_tps * b.speed_factor * spread)
                .collect(),
            load_s: models
                .iter()
                .map(|m| 1.0 + m.size_mb / b.disk_mb_s)
                .collect(),
            temp: b.idle_c,
            temp_at: 0.0,
            throttled: false,
            loaded: vec![(first, 0.0)],
            run: None,
            queue: VecDeque::new(),
            epoch: 0,
            down: false,
            alive_seen: true,
            lost: Vec::new(),
            temps: VecDeque::new(),
            throttled_s: 0.0,
            expected_end: 0.0,
            reserved_s: 0.0,
        };
        n.report(0.0, c);
        n
    }

    pub fn busy(&self) -> bool {
        self.run.is_some()
    }

    /// Speed fraction now: 1 at full clock, the board's factor when throttled.
    pub fn rate(&self, b: &Board) -> f64 {
        if self.throttled {
            b.throttle_factor
        } else {
            1.0
        }
    }

    /// Moves temperature and the running task's work to `now`. True when the throttle
    /// state flipped (the caller then reschedules the task's end).
    pub fn advance(&mut self, now: f64, b: &Board, ambient: f64, soft_c: f64) -> bool {
        let dt = now - self.temp_at;
        if dt <= 0.0 {
            return false;
        }
        if self.throttled {
            self.throttled_s += dt;
        }
        let rate = self.rate(b);
        if let Some(r) = &mut self.run {
            r.work_left = (r.work_left - (now - r.since) * rate).max(0.0);
            r.since = now;
        }
        let target = if self.down {
            ambient
        } else if self.busy() {
            let heat = if self.throttled { THROTTLED_HEAT } else { 1.0 };
            b.idle_c + (b.load_c - b.idle_c) * heat
        } else {
            b.idle_c
        };
        self.temp = target + (self.temp - target) * (-dt / b.tau_s).exp();
        self.temp_at = now;
        let was = self.throttled;
        self.throttled = if was {
            self.temp >= UNTHROTTLE_BELOW_C
        } else {
            self.temp >= soft_c
        };
        was != self.throttled
    }

    /// Seconds until the running task ends at the current rate.
    pub fn time_left(&self, b: &Board) -> Option<f64> {
        self.run.as_ref().map(|r| r.work_left / self.rate(b))
    }

    /// Marks a model used, loading it (and evicting the least recently used one) when it
    /// is not in memory. Returns whether that was a cold load.
    pub fn touch(&mut self, model: usize, now: f64, max_loaded: usize) -> bool {
        self.loaded.retain(|(_, used)| now - used <= KEEP_ALIVE_S);
        let cold = !self.loaded.iter().any(|(m, _)| *m == model);
        self.loaded.retain(|(m, _)| *m != model);
        if self.loaded.len() >= max_loaded {
            self.loaded.remove(0);
        }
        self.loaded.push((model, now));
        cold
    }

    /// Refreshes the wire view, as a heartbeat would.
    pub fn report(&mut self, now: f64, c: &SimConfig) {
        self.metrics.temperature_c = Some(self.temp as f32);
        self.metrics.throttled = Some(if self.throttled {
            throttle::THROTTLED | throttle::SOFT_TEMP_LIMIT | throttle::THROTTLED_SINCE_BOOT
        } else {
            0
        });
        let b = &c.boards[self.board];
        let used: u64 = self
            .loaded
            .iter()
            .map(|(m, _)| (c.models[*m].size_mb as u64) << 20)
            .sum();
        self.metrics.memory_total_bytes = Some(b.memory_mb << 20);
        self.metrics.memory_available_bytes =
            Some((b.memory_mb << 20).saturating_sub(used + (600 << 20)));
        self.refresh_loaded(now, c);
        self.temps.push_back((now, self.temp as f32));
        while self.temps.len() > 12 {
            self.temps.pop_front();
        }
    }

    /// The agent reports `/api/ps` with each heartbeat; the orchestrator also learns of a
    /// load as soon as the result comes, so the sim keeps it current.
    pub fn refresh_loaded(&mut self, now: f64, c: &SimConfig) {
        self.metrics.models_loaded = Some(
            self.loaded
                .iter()
                .filter(|(_, used)| now - used <= KEEP_ALIVE_S)
                .map(|(m, _)| LoadedModel {
                    name: c.models[*m].name.clone(),
                    size_bytes: None,
                    expires_at: None,
                })
                .collect(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::DEFAULT_TOML;

    fn config() -> SimConfig {
        SimConfig::parse(DEFAULT_TOML, "default").unwrap()
    }

    #[test]
    fn a_bare_board_under_load_reaches_the_soft_limit_and_throttles() {
        let c = config();
        let bare = c
            .boards
            .iter()
            .position(|b| b.name == "pi4-4gb-bare")
            .unwrap();
        let b = &c.boards[bare];
        let mut n = SimNode::new("n".into(), bare, b, &c, &mut Rng::new(1));
        n.run = Some(Run {
            task: 0,
            work_left: 1e9,
            since: 0.0,
            started: 0.0,
            cold_load_s: 0.0,
            prompt_work: 0.0,
            gen_work: 0.0,
        });
        let mut flips = 0;
        for s in 1..=1200 {
            flips += usize::from(n.advance(f64::from(s), b, 25.0, 80.0));
        }
        assert!(
            flips >= 1 && n.throttled_s > 0.0,
            "{} {}",
            n.temp,
            n.throttled_s
        );
        assert!(
            n.temp < 85.0,
            "the throttle holds it near the soft limit: {}",
            n.temp
        );
        // Idle again: it cools off and runs at full speed.
        n.run = None;
        for s in 1201..=2400 {
            n.advance(f64::from(s), b, 25.0, 80.0);
        }
        assert!(!n.throttled && n.temp < 50.0, "{}", n.temp);
    }

    #[test]
    fn a_cooled_board_never_throttles() {
        let c = config();
        let b = &c.boards[0];
        let mut n = SimNode::new("n".into(), 0, b, &c, &mut Rng::new(1));
        n.run = Some(Run {
            task: 0,
            work_left: 1e9,
            since: 0.0,
            started: 0.0,
            cold_load_s: 0.0,
            prompt_work: 0.0,
            gen_work: 0.0,
        });
        for s in 1..=3600 {
            n.advance(f64::from(s), b, 25.0, 80.0);
        }
        assert_eq!(n.throttled_s, 0.0);
    }

    #[test]
    fn loading_evicts_the_least_recently_used_model() {
        let c = config();
        let mut n = SimNode::new("n".into(), 0, &c.boards[0], &c, &mut Rng::new(3));
        n.loaded = vec![(0, 0.0)];
        assert!(!n.touch(0, 1.0, 2));
        assert!(n.touch(1, 2.0, 2));
        assert!(n.touch(2, 3.0, 2));
        let models: Vec<usize> = n.loaded.iter().map(|l| l.0).collect();
        assert_eq!(models, [1, 2]);
        // Idle past keep_alive: unloaded, so the next use is a cold load again.
        assert!(n.touch(1, 3.0 + KEEP_ALIVE_S + 1.0, 2));
    }
}
