//! Where the simulated tasks go: arrivals, the policy under test choosing a node, holds.

use super::*;

impl Sim<'_> {
    pub(super) fn arrive(&mut self) {
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
    pub(super) fn route(&mut self, t: usize) {
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

    pub(super) fn node_figures(&self, i: usize) -> Vec<Figures> {
        let n = &self.nodes[i];
        let pi = n.caps.pi_model.as_deref();
        self.c
            .models
            .iter()
            .map(|m| self.book.ranking_figures(&n.id, pi, &m.name))
            .collect()
    }

    pub(super) fn candidate(&self, i: usize, model: usize) -> Candidate {
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
    pub(super) fn place(&mut self, t: usize, waited_s: f64) {
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

    pub(super) fn release(&mut self, t: usize) {
        if let Some(h) = self.tasks[t].hold.take() {
            let r = &mut self.nodes[h.node].reserved_s;
            *r = (*r - h.reserved_s).max(0.0);
        }
    }

    pub(super) fn hold_expired(&mut self, t: usize, at_us: u64) {
        let current = self.tasks[t].hold.is_some_and(|h| h.expires_us == at_us);
        if !current || self.queue.remove(&self.tasks[t].rank).is_none() {
            return;
        }
        self.release(t);
        self.place(t, self.rules.max_hold_s);
    }

    /// A node has a free slot (pifleet): the first queued task it suits takes it.
    pub(super) fn node_free(&mut self, i: usize) {
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
    pub(super) fn send(&mut self, t: usize, i: usize, est: Option<Estimate>) {
        if self.nodes[i].down {
            self.nodes[i].lost.push(t);
        } else if self.nodes[i].busy() {
            self.nodes[i].queue.push_back(t);
        } else {
            self.start(t, i, est);
        }
    }
}
