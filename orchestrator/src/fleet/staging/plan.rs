//! Model staging in the fleet: the planning pass the tick runs (which models tasks wait
//! for, whether pulling beats waiting, which node to ask), the orders a node gets in its
//! heartbeat answer, the reports it sends back, and what the views and pending reasons
//! say about them. Orders live in memory only: after a restart demand asks again.

use std::collections::HashMap;

use pifleet_protocol::{StageAction, StageOrder, StageProgress, StageState};

use super::super::limits::{Limits, StagingMode};
use super::super::node::Node;
use super::super::placement::{canonical_model, Requirements};
use super::super::Inner;
use super::{
    blend_rate, choose_preloader, choose_puller, fleet_pull_rate, pull_rate_sample, pull_s, wait_s,
    Candidate,
};

/// A queue that grew over this many planning passes in a row "keeps growing".
const GROWTH_PASSES: u32 = 3;
/// Kept per node: the last orders, whatever their state.
const ORDERS_KEPT: usize = 16;

/// One order given to a node for one model, and how it went.
#[derive(Debug, Clone)]
pub(in crate::fleet) struct Order {
    pub id: u64,
    pub action: StageAction,
    pub state: StageState,
    pub asked_at: f64,
    /// When the node last reported progress (or was asked).
    pub updated_at: f64,
    pub progress: Option<StageProgress>,
    /// Failed attempts of this node and model.
    pub failures: u32,
    /// When the node may be asked for this model again after a failure (None: never).
    pub retry_at: Option<f64>,
}

impl Order {
    pub fn active(&self) -> bool {
        matches!(self.state, StageState::Asked | StageState::Running)
    }

    /// Not to be asked again for this model now.
    fn blocked(&self, now: f64) -> bool {
        self.state == StageState::Failed && self.retry_at.map_or(true, |at| now < at)
    }

    fn fail(&mut self, error: String, now: f64, l: &Limits) {
        self.state = StageState::Failed;
        self.failures += 1;
        self.updated_at = now;
        let p = self.progress.get_or_insert_with(|| {
            StageProgress::new(self.id, self.action, String::new(), StageState::Failed)
        });
        p.state = StageState::Failed;
        p.error = Some(error);
        let s = &l.staging;
        self.retry_at = (self.failures < s.max_failures)
            .then(|| now + s.retry_s * 2f64.powi(self.failures as i32 - 1));
    }
}

/// Fleet-wide staging bookkeeping.
#[derive(Debug, Default)]
pub(in crate::fleet) struct Book {
    seq: u64,
    /// Canonical model -> (queued tasks at the last pass, passes it grew in a row).
    growth: HashMap<String, (usize, u32)>,
    last_pass: f64,
}

impl Node {
    /// The orders to repeat in this node's heartbeat answer.
    pub fn stage_orders(&self) -> Vec<StageOrder> {
        self.staging
            .iter()
            .filter(|(_, o)| o.active())
            .map(|(m, o)| StageOrder {
                id: o.id,
                action: o.action,
                model: m.clone(),
            })
            .collect()
    }

    /// Takes the node's reports on its orders; stale ones (an older id) are ignored.
    pub fn take_stage_reports(&mut self, reports: Vec<StageProgress>, now: f64, l: &Limits) {
        for r in reports {
            let Some(o) = self.staging.get_mut(canonical_model(&r.model)) else {
                continue;
            };
            if o.id != r.id || !o.active() {
                continue;
            }
            if let Some(before) = &o.progress {
                if let Some(rate) = pull_rate_sample(before, o.updated_at, &r, now) {
                    self.pull_rate = Some(blend_rate(self.pull_rate, rate));
                }
            }
            o.updated_at = now;
            match r.state {
                StageState::Failed => {
                    let error = r.error.clone().unwrap_or_else(|| "failed".into());
                    tracing::warn!(worker = %self.id, model = %r.model, action = r.action.as_str(), error = %error, "model staging failed");
                    o.progress = Some(r);
                    o.fail(error, now, l);
                }
                StageState::Done => {
                    tracing::info!(worker = %self.id, model = %r.model, action = r.action.as_str(), "model staged");
                    o.state = StageState::Done;
                    o.failures = 0;
                    o.progress = Some(r);
                }
                StageState::Running | StageState::Asked => {
                    o.state = StageState::Running;
                    o.progress = Some(r);
                }
            }
        }
    }

    /// The orders as the node's view shows them, newest first.
    pub fn stage_view(&self, now: f64) -> Vec<StageProgress> {
        let mut v: Vec<(f64, StageProgress)> = self
            .staging
            .iter()
            .map(|(m, o)| {
                let mut p = o
                    .progress
                    .clone()
                    .unwrap_or_else(|| StageProgress::new(o.id, o.action, m.clone(), o.state));
                p.model = m.clone();
                p.state = o.state;
                p.attempts = (o.failures > 0).then_some(o.failures);
                p.retry_in_s = match (o.state, o.retry_at) {
                    (StageState::Failed, Some(at)) => Some((at - now).max(0.0).ceil()),
                    _ => None,
                };
                (o.asked_at, p)
            })
            .collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0));
        v.into_iter().map(|x| x.1).collect()
    }
}

impl Inner {
    fn candidates<'a>(&'a self, model: &'a str, now: f64) -> impl Iterator<Item = Candidate<'a>> {
        self.nodes.values().map(move |n| {
            let order = n.staging.get(model);
            Candidate {
                id: &n.id,
                facts: n.facts(),
                staging: n.staging.values().any(Order::active),
                blocked: order.is_some_and(|o| o.blocked(now)),
                gen_tps: self
                    .estimates
                    .book
                    .figures(&n.id, n.caps.pi_model.as_deref(), model)
                    .gen_tps,
            }
        })
    }

    /// The size of `model` as any node reported it.
    fn model_size(&self, model: &str) -> Option<u64> {
        self.nodes.values().find_map(|n| {
            n.caps
                .model_details
                .iter()
                .find(|d| canonical_model(&d.name) == model)
                .and_then(|d| d.size_bytes)
        })
    }

    fn order(&mut self, node: &str, model: &str, action: StageAction, now: f64) {
        self.staging.seq += 1;
        let id = self.staging.seq;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let failures = n.staging.get(model).map_or(0, |o| o.failures);
        tracing::info!(worker = %node, model, action = action.as_str(), "asking node to stage a model");
        n.staging.insert(
            model.to_owned(),
            Order {
                id,
                action,
                state: StageState::Asked,
                asked_at: now,
                updated_at: now,
                progress: None,
                failures,
                retry_at: None,
            },
        );
        if n.staging.len() > ORDERS_KEPT {
            if let Some(oldest) = n
                .staging
                .iter()
                .filter(|(_, o)| !o.active())
                .min_by(|a, b| a.1.asked_at.total_cmp(&b.1.asked_at))
                .map(|(m, _)| m.clone())
            {
                n.staging.remove(&oldest);
            }
        }
    }

    /// The tick's staging pass: fails stalled orders, then asks for pulls (and
    /// pre-loads) where tasks wait for a model.
    pub(in crate::fleet) fn plan_staging(&mut self, l: &Limits, now: f64) {
        let s = &l.staging;
        if s.mode == StagingMode::Off {
            return;
        }
        for n in self.nodes.values_mut() {
            for o in n.staging.values_mut().filter(|o| o.active()) {
                if n.dead {
                    o.fail("the node died".into(), now, l);
                } else if now - o.updated_at > s.stall_s {
                    let e = format!("no progress reported for {:.0}s", s.stall_s);
                    o.fail(e, now, l);
                }
            }
        }
        // Growth is judged once per heartbeat interval, not per tick.
        let judge_growth = now - self.staging.last_pass >= l.heartbeat_interval_s;
        if judge_growth {
            self.staging.last_pass = now;
        }
        // One lane per set of requirements; the lanes of one model add up.
        let mut demand: HashMap<String, (Requirements, usize)> = HashMap::new();
        for (req, lane) in &self.queue.lanes {
            let Some(m) = req.model.as_deref() else {
                continue;
            };
            if lane.is_empty() {
                continue;
            }
            let e = demand
                .entry(canonical_model(m).to_owned())
                .or_insert_with(|| ((**req).clone(), 0));
            e.1 += lane.len();
        }
        if judge_growth {
            let growth = &mut self.staging.growth;
            growth.retain(|m, _| demand.contains_key(m));
            for (m, (_, queued)) in &demand {
                let g = growth.entry(m.clone()).or_insert((0, 0));
                g.1 = if *queued > g.0 { g.1 + 1 } else { 0 };
                g.0 = *queued;
            }
        }
        let learned = self.nodes.values().filter(|n| !n.dead);
        let bytes_per_s = fleet_pull_rate(
            learned.filter_map(|n| n.pull_rate).collect(),
            s.pull_bytes_per_s,
        );
        let mut models: Vec<&String> = demand.keys().collect();
        models.sort();
        let mut asks: Vec<(String, String, StageAction)> = Vec::new();
        for model in models {
            if !s.allows(model) {
                continue;
            }
            let (req, queued) = &demand[model];
            let in_flight = self
                .nodes
                .values()
                .any(|n| !n.dead && n.staging.get(model.as_str()).is_some_and(Order::active));
            if in_flight {
                continue;
            }
            let size = self.model_size(model);
            let holders: Vec<&Node> = self
                .nodes
                .values()
                .filter(|n| n.facts().can_run(req, &l.thermal).is_ok())
                .collect();
            let pull = if holders.is_empty() {
                true
            } else if holders.iter().any(|n| n.facts().has_free_slot()) {
                false
            } else {
                let est = &self.estimates;
                let free: Vec<Option<f64>> = holders
                    .iter()
                    .map(|n| est.busy_until.get(&n.id).map(|u| u - now))
                    .collect();
                let f = est.book.figures(&holders[0].id, None, model);
                let run_s = est.typical_run_s(&holders[0].id, model);
                let pull = pull_s(size, bytes_per_s, f.load_s);
                wait_s(&free, *queued, run_s).is_some_and(|w| w > pull)
            };
            if pull {
                if let Some(id) =
                    choose_puller(self.candidates(model, now), req, model, size, &l.thermal)
                {
                    asks.push((id.to_owned(), model.clone(), StageAction::Pull));
                }
                continue;
            }
            let growing = self
                .staging
                .growth
                .get(model.as_str())
                .is_some_and(|g| g.1 >= GROWTH_PASSES && g.0 >= 2);
            let loaded = holders
                .iter()
                .filter(|n| n.facts().model_loaded(model))
                .count();
            if s.mode == StagingMode::PullAndPreload && growing && loaded <= 1 {
                if let Some(id) =
                    choose_preloader(self.candidates(model, now), req, model, size, &l.thermal)
                {
                    asks.push((id.to_owned(), model.clone(), StageAction::Preload));
                    if let Some(g) = self.staging.growth.get_mut(model.as_str()) {
                        g.1 = 0;
                    }
                }
            }
        }
        for (node, model, action) in asks {
            self.order(&node, &model, action, now);
        }
    }

    /// What staging says about a task that waits because no node has its model.
    pub(in crate::fleet) fn staging_note(&self, model: &str, l: &Limits, now: f64) -> String {
        let model = canonical_model(model);
        let s = &l.staging;
        if s.mode == StagingMode::Off {
            return "model staging is off (model_staging = \"pull\" lets a node pull it)".into();
        }
        if !s.allows(model) {
            return "model staging may not pull it (it is not in staging_models)".into();
        }
        let mut failed = Vec::new();
        for n in self.nodes.values().filter(|n| !n.dead) {
            let Some(o) = n.staging.get(model) else {
                continue;
            };
            let p = o.progress.as_ref();
            match o.state {
                StageState::Asked => return format!("node \"{}\" was asked to pull it", n.id),
                StageState::Running => {
                    let pct = p
                        .and_then(StageProgress::percent)
                        .map(|x| format!(" ({x:.0}%)"))
                        .unwrap_or_default();
                    return format!("node \"{}\" is pulling it{pct}", n.id);
                }
                StageState::Failed => {
                    let e = p.and_then(|p| p.error.as_deref()).unwrap_or("failed");
                    let when = match o.retry_at {
                        Some(at) if at > now => format!("may ask again in {:.0}s", at - now),
                        Some(_) => "may ask again".into(),
                        None => "will not ask it again".into(),
                    };
                    failed.push(format!("the pull on \"{}\" failed: {e} ({when})", n.id));
                }
                StageState::Done => {}
            }
        }
        if !failed.is_empty() {
            return failed.join("; ");
        }
        "no node may pull it (none allows model pulls and has the disk and memory it needs)".into()
    }
}
