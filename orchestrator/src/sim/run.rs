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

    fn arrive(&mut self) {
        let c = self.c;
        let w = &c.workload;
        let model = self
            .rng
            .pick(&c.models.iter().map(|m| m.share).collect::<Vec<_>>());
        let prompt = self
            .rng
            .lognormal(w.prompt_tokens_median, w.prompt_tokens_sigma)
            .clamp(4.0, 8000.0)
            .round();
        let output = self
            .rng
            .lognormal(w.output_tokens_median, w.output_tokens_sigma)
            .clamp(1.0, 4000.0)
            .round();
        let weights: Vec<f64> = w.priorities.iter().map(|p| p.1).collect();
        let priority = w.priorities[self.rng.pick(&weights)].0;
        // What a client would send: the prompt and, sometimes, a limit above the answer.
        let mut data =
            json!({"model": c.models[model].name, "prompt": "x".repeat(prompt as usize * 4)});
        if self.rng.unit() < w.max_tokens_share {
            data["max_tokens"] = json!((output as u64).next_power_of_two().max(64));
        }
        let job = Job::of(&data, self.book.mean_output(&c.models[model].name));
        let id = self.tasks.len();
        let created = (self.now * 1e6) as i64;
        let boost = (f64::from(priority) * c.placement.aging_s * 1e6) as i64;
        self.tasks.push(Task {
            model,
            prompt,
            output,
            submitted: self.now,
            done: None,
            job,
            rank: (created - boost, id as u64),
            hold: None,
        });
        self.route(id);
        let next = self.now + self.rng.exp(1.0 / self.rate);
        if next <= c.duration_s {
            self.at(next, Ev::Arrive);
        }
    }

    /// Sends a new or re-queued task where the policy says.
    fn route(&mut self, t: usize) {
        let model = self.tasks[t].model;
        let n = self.nodes.len();
        let pick = match self.policy {
            Policy::Pifleet => return self.place(t, 0.0),
            Policy::LeastLoaded => {
                let mut best: Option<(usize, usize)> = None;
                let mut ties = 0;
                for i in 0..n {
                    if !self.eligible(i, model) {
                        continue;
                    }
                    let load = usize::from(self.nodes[i].busy()) + self.nodes[i].queue.len();
                    match best {
                        Some((_, b)) if load > b => {}
                        Some((_, b)) if load == b => {
                            ties += 1;
                            if self.rng.below(ties + 1) == 0 {
                                best = Some((i, load));
                            }
                        }
                        _ => {
                            best = Some((i, load));
                            ties = 0;
                        }
                    }
                }
                best.map(|b| b.0)
            }
            Policy::RoundRobin => {
                let found = (0..n)
                    .map(|k| (self.rr + k) % n)
                    .find(|i| self.eligible(*i, model));
                if let Some(i) = found {
                    self.rr = i + 1;
                }
                found
            }
            Policy::Random => {
                let start = self.rng.below(n);
                (0..n)
                    .map(|k| (start + k) % n)
                    .find(|i| self.eligible(*i, model))
            }
        };
        match pick {
            Some(i) => self.send(t, i, None),
            None => {
                self.queue.insert(self.tasks[t].rank, t);
            }
        }
    }

    fn node_figures(&self, i: usize) -> Vec<Figures> {
        let n = &self.nodes[i];
        let pi = n.caps.pi_model.as_deref();
        self.c
            .models
            .iter()
            .map(|m| self.book.ranking_figures(&n.id, pi, &m.name))
            .collect()
    }

    fn candidate(&self, i: usize, model: usize) -> Candidate {
        let n = &self.nodes[i];
        let name = &self.c.models[model].name;
        let free_in_s = if n.busy() || n.down {
            (n.expected_end - self.now).max(1.0) + n.reserved_s
        } else {
            0.0
        };
        let f = self.facts(i);
        Candidate {
            free_in_s,
            model_loaded: f.model_loaded(name),
            speed: self.figures[i][model],
            temp_c: f.temperature(),
            temp_trend: self.trends[i],
            throttling: f.is_warm(&self.thermal),
        }
    }

    /// pifleet: run now, or hold for a busy node, by expected finish.
    fn place(&mut self, t: usize, waited_s: f64) {
        let (model, job) = (self.tasks[t].model, self.tasks[t].job);
        let cands = (0..self.nodes.len())
            .filter(|i| self.eligible(*i, model))
            .map(|i| (i, self.candidate(i, model)));
        match choose(&job, cands, &self.rules, waited_s) {
            Choice::Run(i, e) => self.send(t, i, Some(e)),
            Choice::Wait(j, e) => {
                let left = (self.rules.max_hold_s - waited_s).max(1.0);
                let expires_us = us(self.now + left);
                let hold = Hold {
                    node: j,
                    finish_at: self.now + e.finish_s,
                    reserved_s: e.run_s,
                    expires_us,
                };
                self.nodes[j].reserved_s += e.run_s;
                self.tasks[t].hold = Some(hold);
                self.queue.insert(self.tasks[t].rank, t);
                self.at(
                    self.now + left,
                    Ev::HoldExpired {
                        task: t,
                        at_us: expires_us,
                    },
                );
            }
            Choice::Nowhere => {
                self.queue.insert(self.tasks[t].rank, t);
            }
        }
    }

    fn release(&mut self, t: usize) {
        if let Some(h) = self.tasks[t].hold.take() {
            let r = &mut self.nodes[h.node].reserved_s;
            *r = (*r - h.reserved_s).max(0.0);
        }
    }

    fn hold_expired(&mut self, t: usize, at_us: u64) {
        let current = self.tasks[t].hold.is_some_and(|h| h.expires_us == at_us);
        if !current || self.queue.remove(&self.tasks[t].rank).is_none() {
            return;
        }
        self.release(t);
        self.place(t, self.rules.max_hold_s);
    }

    /// A node has a free slot (pifleet): the first queued task it suits takes it.
    fn node_free(&mut self, i: usize) {
        let n = &self.nodes[i];
        if self.policy != Policy::Pifleet || n.busy() || n.down || !n.alive_seen {
            return;
        }
        let mut take = None;
        for (_, &t) in self.queue.iter().take(WINDOW) {
            let task = &self.tasks[t];
            if !self.eligible(i, task.model) {
                continue;
            }
            let e = expected_finish(&task.job, &self.candidate(i, task.model), &self.rules);
            let better = match task.hold {
                Some(h) if h.node == i => true,
                Some(h) => self.now + e.finish_s < h.finish_at,
                None => true,
            };
            if better {
                take = Some((t, e));
                break;
            }
        }
        if let Some((t, e)) = take {
            self.queue.remove(&self.tasks[t].rank);
            self.release(t);
            self.send(t, i, Some(e));
        }
    }

    /// Hands a task to a node: it starts, queues there, or is lost with a dead node.
    fn send(&mut self, t: usize, i: usize, est: Option<Estimate>) {
        if self.nodes[i].down {
            self.nodes[i].lost.push(t);
        } else if self.nodes[i].busy() {
            self.nodes[i].queue.push_back(t);
        } else {
            self.start(t, i, est);
        }
    }

    fn start(&mut self, t: usize, i: usize, est: Option<Estimate>) {
        let c = self.c;
        let n = &mut self.nodes[i];
        let b = &c.boards[n.board];
        n.advance(self.now, b, c.ambient_c, f64::from(c.placement.soft_temp_c));
        let task = &self.tasks[t];
        let m = task.model;
        let cold = n.touch(m, self.now, b.max_loaded);
        n.refresh_loaded(self.now, c);
        // Each request runs a little faster or slower than the node's typical speed.
        let noise = (0.1 * self.rng.normal()).exp();
        let load = if cold { n.load_s[m] * noise } else { 0.0 };
        let prompt_work = task.prompt / n.prompt_tps[m] * noise;
        let gen_work = task.output / n.gen_tps[m] * noise;
        n.run = Some(Run {
            task: t,
            work_left: load + prompt_work + gen_work,
            since: self.now,
            started: self.now,
            cold_load_s: load,
            prompt_work,
            gen_work,
        });
        n.expected_end = self.now + est.map_or(0.0, |e| e.run_s);
        n.epoch += 1;
        let left = n.time_left(b).unwrap_or(0.0);
        let ev = Ev::Done {
            node: i,
            epoch: n.epoch,
        };
        self.at(self.now + left, ev);
        self.check_rules(i);
    }

    fn done(&mut self, i: usize, epoch: u64) {
        let c = self.c;
        let n = &mut self.nodes[i];
        if n.epoch != epoch || n.run.is_none() {
            return;
        }
        let b = &c.boards[n.board];
        n.advance(self.now, b, c.ambient_c, f64::from(c.placement.soft_temp_c));
        let Some(r) = n.run.take() else { return };
        let task = &mut self.tasks[r.task];
        task.done = Some(self.now);
        n.touch(task.model, self.now, b.max_loaded);
        // What Ollama would report: the measured time split in proportion to the work.
        let compute = (self.now - r.started - r.cold_load_s).max(1e-3);
        let work = (r.prompt_work + r.gen_work).max(1e-9);
        let sample = Sample {
            model: c.models[task.model].name.clone(),
            prompt_tokens: Some(task.prompt as u64),
            prompt_ms: Some((compute * r.prompt_work / work * 1000.0) as u64),
            completion_tokens: Some(task.output as u64),
            eval_ms: Some((compute * r.gen_work / work * 1000.0) as u64),
            load_ms: Some(if r.cold_load_s > 0.0 {
                (r.cold_load_s * 1000.0) as u64
            } else {
                3
            }),
        };
        self.book
            .record(&n.id, n.caps.pi_model.as_deref(), &sample, self.now);
        let next = n.queue.pop_front();
        self.figures[i] = self.node_figures(i);
        if let Some(next) = next {
            self.start(next, i, None);
        } else {
            self.node_free(i);
        }
    }

    fn tick(&mut self) {
        let c = self.c;
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            let b = &c.boards[n.board];
            if n.advance(self.now, b, c.ambient_c, f64::from(c.placement.soft_temp_c)) {
                // The clock changed: the running task ends at another time.
                n.epoch += 1;
                if let Some(left) = n.time_left(b) {
                    let ev = Ev::Done {
                        node: i,
                        epoch: n.epoch,
                    };
                    self.at(self.now + left, ev);
                }
            }
            let n = &mut self.nodes[i];
            if !n.down {
                n.report(self.now, c);
            }
            self.trends[i] = temp_trend(n.temps.iter().copied(), self.now, TREND_WINDOW_S);
            self.check_rules(i);
        }
        if self.book.refresh(self.now, false) {
            self.figures = (0..self.nodes.len())
                .map(|i| self.node_figures(i))
                .collect();
        }
        // Tasks no node could take (all hot, say) get another look.
        if !self.queue.is_empty() {
            let stuck: Vec<usize> = self
                .queue
                .values()
                .copied()
                .filter(|t| self.tasks[*t].hold.is_none())
                .take(WINDOW)
                .collect();
            for t in stuck {
                self.queue.remove(&self.tasks[t].rank);
                let waited = self.now - self.tasks[t].submitted;
                match self.policy {
                    Policy::Pifleet => self.place(t, waited),
                    _ => self.route(t),
                }
            }
        }
        if self.now < self.c.duration_s + DRAIN_S {
            self.at(self.now + c.heartbeat_s, Ev::Tick);
        }
    }

    fn fail(&mut self, i: usize) {
        let c = self.c;
        let n = &mut self.nodes[i];
        let b = &c.boards[n.board];
        n.advance(self.now, b, c.ambient_c, f64::from(c.placement.soft_temp_c));
        n.down = true;
        n.epoch += 1;
        if let Some(r) = n.run.take() {
            n.lost.push(r.task);
        }
        let queued: Vec<usize> = n.queue.drain(..).collect();
        n.lost.extend(queued);
        let repair = b.repair_s;
        self.at(self.now + c.dead_after_s, Ev::Detect(i));
        self.at(self.now + repair.max(c.dead_after_s + 1.0), Ev::Recover(i));
    }

    /// The orchestrator notices the silence: the node's tasks go back to the queue.
    fn detect(&mut self, i: usize) {
        self.nodes[i].alive_seen = false;
        self.check_rules(i);
        let lost: Vec<usize> = self.nodes[i].lost.drain(..).collect();
        let held: Vec<usize> = self
            .queue
            .values()
            .copied()
            .filter(|t| self.tasks[*t].hold.is_some_and(|h| h.node == i))
            .collect();
        for t in held {
            self.queue.remove(&self.tasks[t].rank);
            self.release(t);
            self.requeue(t);
        }
        for t in lost {
            self.requeue(t);
        }
    }

    fn requeue(&mut self, t: usize) {
        match self.policy {
            Policy::Pifleet => {
                let waited = self.now - self.tasks[t].submitted;
                self.place(t, waited.min(self.rules.max_hold_s));
            }
            _ => self.route(t),
        }
    }

    fn recover(&mut self, i: usize) {
        let c = self.c;
        let n = &mut self.nodes[i];
        let b = &c.boards[n.board];
        n.advance(self.now, b, c.ambient_c, f64::from(c.placement.soft_temp_c));
        n.down = false;
        n.alive_seen = true;
        n.loaded.clear();
        n.reserved_s = 0.0;
        n.report(self.now, c);
        let lost: Vec<usize> = n.lost.drain(..).collect();
        self.check_rules(i);
        let next = self.now + self.rng.exp(b.mtbf_h * 3600.0);
        self.at(next, Ev::Fail(i));
        for t in lost {
            self.requeue(t);
        }
        self.node_free(i);
    }
}

/// Runs one policy over the configured fleet and workload.
pub fn simulate(c: &SimConfig, policy: Policy) -> Report {
    Sim::new(c, policy).run()
}

#[cfg(test)]
mod tests;
