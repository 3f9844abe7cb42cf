//! The event loop: arrivals, completions, heartbeats, failures, on a simulated clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Instant;

use serde_json::json;

use super::config::SimConfig;
use super::world::{Rng, Run, SimNode};
use super::Policy;
use crate::fleet::finish::{choose, expected_finish, temp_trend, Candidate, Choice, Estimate};
use crate::fleet::finish::{Job, Rules};
use crate::fleet::placement::{NodeFacts, Requirements};
use crate::fleet::speed::{Figures, Sample, SpeedBook};
use crate::fleet::Thermal;

/// Per policy: what the simulator prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub policy: &'static str,
    /// Measured tasks (submitted after the warm-up) that completed.
    pub completed: usize,
    /// Measured tasks still unfinished when the run stopped.
    pub unfinished: usize,
    pub mean_s: f64,
    pub p50_s: f64,
    pub p99_s: f64,
    pub throttled_node_s: f64,
    pub wall_s: f64,
}

impl Report {
    pub fn json(&self) -> String {
        json!({
            "policy": self.policy,
            "completed": self.completed,
            "mean_s": self.mean_s,
            "p50_s": self.p50_s,
            "p99_s": self.p99_s,
            "throttled_node_s": self.throttled_node_s,
            "wall_s": self.wall_s,
        })
        .to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive,
    Done { node: usize, epoch: u64 },
    Tick,
    Fail(usize),
    Detect(usize),
    Recover(usize),
    HoldExpired { task: usize, at_us: u64 },
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    node: usize,
    finish_at: f64,
    reserved_s: f64,
    expires_us: u64,
}

struct Task {
    model: usize,
    prompt: f64,
    output: f64,
    submitted: f64,
    done: Option<f64>,
    job: Job,
    rank: (i64, u64),
    hold: Option<Hold>,
}

/// Tasks per second that make `load` of the fleet's warm capacity.
pub fn arrival_rate(c: &SimConfig) -> f64 {
    let w = &c.workload;
    let lognormal_mean = |m: f64, s: f64| m * (s * s / 2.0).exp();
    let prompt = lognormal_mean(w.prompt_tokens_median, w.prompt_tokens_sigma);
    let output = lognormal_mean(w.output_tokens_median, w.output_tokens_sigma);
    let share: f64 = c.models.iter().map(|m| m.share).sum();
    let per_s: f64 = c
        .boards
        .iter()
        .map(|b| {
            let service: f64 = c
                .models
                .iter()
                .map(|m| {
                    let f = b.speed_factor;
                    m.share / share
                        * (prompt / (m.pi5_prompt_tps * f) + output / (m.pi5_gen_tps * f))
                })
                .sum();
            b.count as f64 / service
        })
        .sum();
    c.load * per_s
}

/// Measured tasks that have not finished by then are reported as unfinished.
const DRAIN_S: f64 = 3600.0;
/// Queued tasks a freed node looks at (pifleet), in queue order.
const WINDOW: usize = 256;
const TREND_WINDOW_S: f64 = 30.0;

struct Sim<'a> {
    c: &'a SimConfig,
    policy: Policy,
    rng: Rng,
    now: f64,
    seq: u64,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    nodes: Vec<SimNode>,
    trends: Vec<Option<f32>>,
    tasks: Vec<Task>,
    /// The central queue (pifleet), or tasks no node could take yet (the others).
    queue: BTreeMap<(i64, u64), usize>,
    reqs: Vec<Requirements>,
    thermal: Thermal,
    rules: Rules,
    book: SpeedBook,
    /// `book.ranking_figures` per node and model, recomputed when the book changes: the same
    /// answers, without hashing a node name per candidate.
    figures: Vec<Vec<Figures>>,
    /// The eligibility rules' answer per node and model, see `check_rules`.
    eligible: Vec<Vec<bool>>,
    rr: usize,
    rate: f64,
}

fn us(t: f64) -> u64 {
    (t * 1e6) as u64
}

impl<'a> Sim<'a> {
    fn new(c: &'a SimConfig, policy: Policy) -> Sim<'a> {
        let mut rng = Rng::new(c.seed);
        let mut nodes = Vec::new();
        for (bi, b) in c.boards.iter().enumerate() {
            for k in 0..b.count {
                let id = format!("{}-{k:04}", b.name);
                nodes.push(SimNode::new(id, bi, b, c, &mut rng));
            }
        }
        let p = &c.placement;
        let mut s = Sim {
            c,
            policy,
            rng,
            now: 0.0,
            seq: 0,
            events: BinaryHeap::new(),
            trends: vec![None; nodes.len()],
            nodes,
            tasks: Vec::new(),
            queue: BTreeMap::new(),
            reqs: c
                .models
                .iter()
                .map(|m| Requirements::of("agent_action", &json!({"model": m.name})))
                .collect(),
            thermal: Thermal {
                soft_temp_c: p.soft_temp_c,
                hard_temp_c: p.hard_temp_c,
                exclude_under_voltage: true,
            },
            rules: Rules {
                soft_temp_c: p.soft_temp_c,
                throttled_speed: p.throttled_speed,
                max_hold_s: p.max_hold_s,
                hold_margin: p.hold_margin,
            },
            book: SpeedBook::new(),
            figures: Vec::new(),
            eligible: Vec::new(),
            rr: 0,
            rate: arrival_rate(c),
        };
        s.figures = (0..s.nodes.len()).map(|i| s.node_figures(i)).collect();
        s.eligible = vec![Vec::new(); s.nodes.len()];
        for i in 0..s.nodes.len() {
            s.check_rules(i);
        }
        for i in 0..s.nodes.len() {
            let mtbf = c.boards[s.nodes[i].board].mtbf_h * 3600.0;
            let at = s.rng.exp(mtbf);
            s.at(at, Ev::Fail(i));
        }
        let first = s.rng.exp(1.0 / s.rate);
        s.at(first, Ev::Arrive);
        s.at(c.heartbeat_s, Ev::Tick);
        s
    }

    fn at(&mut self, t: f64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((us(t), self.seq, ev)));
    }

    fn facts(&self, i: usize) -> NodeFacts<'_> {
        let n = &self.nodes[i];
        NodeFacts {
            caps: &n.caps,
            metrics: Some(&n.metrics),
            running: usize::from(n.busy()),
            draining: false,
            alive: n.alive_seen,
        }
    }

    fn eligible(&self, i: usize, model: usize) -> bool {
        self.eligible[i][model]
    }

    /// Re-runs the eligibility rules for a node after what they read changed (its
    /// heartbeat, its loaded models, its liveness): the same answers as calling them for
    /// every candidate, a thousand times cheaper.
    fn check_rules(&mut self, i: usize) {
        let ok = (0..self.reqs.len())
            .map(|m| self.facts(i).can_run(&self.reqs[m], &self.thermal).is_ok())
            .collect();
        self.eligible[i] = ok;
    }

    fn run(mut self) -> Report {
        let started = Instant::now();
        let end = self.c.duration_s + DRAIN_S;
        while let Some(Reverse((t, _, ev))) = self.events.pop() {
            self.now = t as f64 / 1e6;
            if self.now > end {
                break;
            }
            match ev {
                Ev::Arrive => self.arrive(),
                Ev::Done { node, epoch } => self.done(node, epoch),
                Ev::Tick => self.tick(),
                Ev::Fail(i) => self.fail(i),
                Ev::Detect(i) => self.detect(i),
                Ev::Recover(i) => self.recover(i),
                Ev::HoldExpired { task, at_us } => self.hold_expired(task, at_us),
            }
            let drained = self.now > self.c.duration_s
                && self.tasks.iter().all(|t| t.done.is_some())
                && self.queue.is_empty();
            if drained {
                break;
            }
        }
        self.report(started.elapsed().as_secs_f64())
    }

    fn report(&self, wall_s: f64) -> Report {
        let measured = self.tasks.iter().filter(|t| t.submitted >= self.c.warmup_s);
        let mut lat: Vec<f64> = measured
            .clone()
            .filter_map(|t| t.done.map(|d| d - t.submitted))
            .collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0)
        };
        let round = |x: f64| (x * 100.0).round() / 100.0;
        Report {
            policy: self.policy.name(),
            completed: lat.len(),
            unfinished: measured.filter(|t| t.done.is_none()).count(),
            mean_s: round(lat.iter().sum::<f64>() / lat.len().max(1) as f64),
            p50_s: round(pct(0.5)),
            p99_s: round(pct(0.99)),
            throttled_node_s: round(self.nodes.iter().map(|n| n.throttled_s).sum()),
            wall_s: round(wall_s),
        }
    }
}

/// Runs one policy over the configured fleet and workload.
pub fn simulate(c: &SimConfig, policy: Policy) -> Report {
    Sim::new(c, policy).run()
}

#[cfg(test)]
mod tests;

mod lifecycle;
mod placing;
