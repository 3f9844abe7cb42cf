//! What happens on a simulated node: starts, completions, heat, failures and recovery.

use super::*;

impl Sim<'_> {
    pub(super) fn start(&mut self, t: usize, i: usize, est: Option<Estimate>) {
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

    pub(super) fn done(&mut self, i: usize, epoch: u64) {
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

    pub(super) fn tick(&mut self) {
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

    pub(super) fn fail(&mut self, i: usize) {
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
    pub(super) fn detect(&mut self, i: usize) {
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

    pub(super) fn requeue(&mut self, t: usize) {
        match self.policy {
            Policy::Pifleet => {
                let waited = self.now - self.tasks[t].submitted;
                self.place(t, waited.min(self.rules.max_hold_s));
            }
            _ => self.route(t),
        }
    }

    pub(super) fn recover(&mut self, i: usize) {
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
