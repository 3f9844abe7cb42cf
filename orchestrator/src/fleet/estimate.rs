//! Placement by expected finish in the live dispatch: which nodes are candidates for an
//! LLM task, what each would take ([`super::finish`]), and learning the speeds
//! ([`super::speed`]) from every LLM result.
//!
//! Scanning every node for every task would cost a large fleet its dispatch rate, so the
//! candidates are a shortlist: the first waiting nodes of the wait index (with the model
//! loaded, then all; the index is already ordered coolest and least busy first) and the
//! nodes measured fastest for the model, whatever they are doing.

use std::collections::HashMap;

use pifleet_protocol::ModelSpeed;
use serde_json::Value;

use super::finish::{choose, Candidate, Choice, Job, Rules};
use super::limits::Thermal;
use super::node::Node;
use super::placement::{canonical_model, Requirements};
use super::speed::{Sample, Source};
use super::task::TaskId;
use super::Inner;
use crate::store::Mutation;

/// Waiting nodes taken from each list of the wait index.
const WAITING_SHORTLIST: usize = 16;
/// Fastest measured nodes per model kept as candidates.
const FASTEST_SHORTLIST: usize = 16;
/// A node with a free slot that is not polling right now (between a result and its next
/// poll) is counted as this far from free.
const BETWEEN_POLLS_S: f64 = 1.0;
/// Heartbeats within this window give a node's temperature trend.
const TREND_WINDOW_S: f64 = 60.0;
/// The job the fastest-node lists are ranked by.
const REFERENCE_JOB: Job = Job {
    prompt_tokens: 200.0,
    output_tokens: 200.0,
};

/// A task left queued for a busy node that should finish it sooner.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Held {
    pub node: String,
    /// Expected seconds of work it will take there (reserves the node for it).
    pub run_s: f64,
    pub finish_at: f64,
}

/// What the fleet keeps for placement by expected finish.
#[derive(Debug, Default)]
pub(super) struct Estimates {
    pub book: super::speed::SpeedBook,
    pub rules: Rules,
    /// Node -> when its running work is expected to end (tasks placed by expected finish).
    pub busy_until: HashMap<String, f64>,
    pub held: HashMap<TaskId, Held>,
    /// (node, canonical model) -> when a result last came from it: Ollama keeps a model
    /// loaded after use, which the node's next heartbeat will say (or deny).
    used: HashMap<(String, String), f64>,
    /// Canonical model -> nodes measured fastest for it, best first.
    fastest: HashMap<String, Vec<String>>,
}

/// What the expected-finish rule decided for one task.
pub(super) enum Pick {
    /// Assign to this waiting node; the work is expected to take `run_s`.
    Run { node: String, run_s: f64 },
    /// Leave it queued for a busy node.
    Hold,
    /// No candidate: the caller's own rules decide (and explain).
    Nowhere,
}

impl Estimates {
    /// Seconds a typical job of `model` takes on `node`: a 200-token prompt and the
    /// model's mean output (200 tokens until results say otherwise), at the node's
    /// measured speeds or the best fallback for it.
    pub fn typical_run_s(&self, node: &str, model: &str) -> f64 {
        let f = self.book.figures(node, None, model);
        let output = self.book.mean_output(model).unwrap_or(200.0);
        200.0 / f.prompt_tps + output / f.gen_tps
    }

    /// Canonical model -> the nodes measured fastest for it.
    pub fn fastest(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.fastest.iter().map(|(m, n)| (m.as_str(), n.as_slice()))
    }

    /// Recomputes the fallback medians and the fastest-node lists when results came in.
    pub fn refresh(&mut self, now: f64, force: bool) {
        if !self.book.refresh(now, force) {
            return;
        }
        let mut by_model: HashMap<String, Vec<(f64, String)>> = HashMap::new();
        for (node, speeds) in self.book.nodes() {
            for model in speeds.models.keys() {
                let f = self.book.figures(node, speeds.pi_model.as_deref(), model);
                if f.source != Source::Measured {
                    continue;
                }
                let s = REFERENCE_JOB.prompt_tokens / f.prompt_tps
                    + REFERENCE_JOB.output_tokens / f.gen_tps;
                by_model
                    .entry(model.clone())
                    .or_default()
                    .push((s, node.clone()));
            }
        }
        self.fastest = by_model
            .into_iter()
            .map(|(m, mut v)| {
                v.sort_by(|a, b| a.0.total_cmp(&b.0));
                v.truncate(FASTEST_SHORTLIST);
                (m, v.into_iter().map(|x| x.1).collect())
            })
            .collect();
    }
}

impl Inner {
    /// Learns a node's speeds from a successful LLM result, queuing the new figures for
    /// the store.
    pub(super) fn learn(&mut self, node: &str, result: &Value, now: f64, muts: &mut Vec<Mutation>) {
        self.estimates.busy_until.remove(node);
        let Some(sample) = Sample::from_result(result) else {
            return;
        };
        let pi = self.nodes.get(node).and_then(|n| n.caps.pi_model.clone());
        let est = &mut self.estimates;
        est.book.record(node, pi.as_deref(), &sample, now);
        est.used
            .insert((node.to_owned(), sample.model.clone()), now);
        if let Some(speeds) = est
            .book
            .node(node)
            .and_then(|s| serde_json::to_value(s).ok())
        {
            muts.push(Mutation::PutSpeeds {
                node: node.to_owned(),
                speeds,
            });
        }
    }

    /// Forgets holds of tasks that are no longer queued.
    pub(super) fn prune_holds(&mut self) {
        let tasks = &self.tasks;
        self.estimates.held.retain(|id, _| {
            tasks
                .get(id)
                .is_some_and(|t| t.state == pifleet_protocol::TaskState::Pending)
        });
    }

    /// Expected-finish placement of a queued LLM task.
    pub(super) fn pick_by_finish(
        &mut self,
        id: &TaskId,
        req: &Requirements,
        thermal: &Thermal,
        now: f64,
    ) -> Pick {
        let (Some(model), Some(task)) = (req.model.as_deref(), self.tasks.get(id)) else {
            return Pick::Nowhere;
        };
        let model = canonical_model(model);
        let est = &self.estimates;
        let job = Job::of(&task.data, est.book.mean_output(model));
        let ready_since = task
            .not_before
            .map_or(task.updated_at, |nb| nb.max(task.updated_at));
        let waited = (now - ready_since).max(0.0);

        let mut names: Vec<&str> = Vec::new();
        if let Some(set) = self.waiting.loaded.get(model) {
            names.extend(set.iter().take(WAITING_SHORTLIST).map(|e| e.2.as_str()));
        }
        names.extend(
            self.waiting
                .all
                .iter()
                .take(WAITING_SHORTLIST)
                .map(|e| e.2.as_str()),
        );
        if let Some(fast) = est.fastest.get(model) {
            names.extend(fast.iter().map(String::as_str));
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(*n));

        let mut cands: Vec<(usize, Candidate)> = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let Some(n) = self.nodes.get(*name) else {
                continue;
            };
            let f = n.facts();
            if f.can_run(req, thermal).is_err() {
                continue;
            }
            let free_in_s = if f.has_free_slot() {
                if n.has_open_waiter() {
                    0.0
                } else {
                    BETWEEN_POLLS_S
                }
            } else {
                // A busy node is worth waiting for only when we know when it frees up.
                let Some(until) = est.busy_until.get(*name) else {
                    continue;
                };
                let reserved: f64 = est
                    .held
                    .iter()
                    .filter(|(t, h)| h.node == *name && *t != id)
                    .map(|(_, h)| h.run_s)
                    .sum();
                (until - now).max(BETWEEN_POLLS_S) + reserved
            };
            let recent = n
                .history
                .iter()
                .rev()
                .take_while(|s| now - s.at <= TREND_WINDOW_S)
                .filter_map(|s| s.temperature_c.map(|t| (s.at, t)));
            let trend = super::finish::temp_trend(recent, now, TREND_WINDOW_S);
            let used_since_heartbeat = est
                .used
                .get(&(name.to_string(), model.to_owned()))
                .is_some_and(|t| n.last_heartbeat.map_or(true, |hb| hb <= *t));
            cands.push((
                i,
                Candidate {
                    free_in_s,
                    model_loaded: f.model_loaded(model) || used_since_heartbeat,
                    speed: est
                        .book
                        .ranking_figures(name, n.caps.pi_model.as_deref(), model),
                    temp_c: f.temperature(),
                    temp_trend: trend,
                    throttling: f.is_warm(thermal),
                },
            ));
        }
        let rules = Rules {
            soft_temp_c: thermal.soft_temp_c,
            ..est.rules.clone()
        };
        match choose(&job, cands, &rules, waited) {
            Choice::Run(i, e) => Pick::Run {
                node: names[i].to_owned(),
                run_s: e.run_s,
            },
            Choice::Wait(i, e) => {
                let held = Held {
                    node: names[i].to_owned(),
                    run_s: e.run_s,
                    finish_at: now + e.finish_s,
                };
                self.estimates.held.insert(id.clone(), held);
                Pick::Hold
            }
            Choice::Nowhere => Pick::Nowhere,
        }
    }

    /// The speeds placement ranks a node by: each model it has or has measured.
    pub(super) fn speed_view(&self, node: &Node) -> Vec<ModelSpeed> {
        let book = &self.estimates.book;
        let own = book.node(&node.id);
        let mut models: Vec<String> = node
            .caps
            .models
            .iter()
            .map(|m| canonical_model(m).to_owned())
            .collect();
        models.extend(own.into_iter().flat_map(|s| s.models.keys().cloned()));
        models.sort();
        models.dedup();
        models
            .into_iter()
            .map(|m| {
                let f = book.figures(&node.id, node.caps.pi_model.as_deref(), &m);
                let round = |x: f64| (x * 100.0).round() / 100.0;
                ModelSpeed {
                    results: own.and_then(|s| s.models.get(&m)).map_or(0, |s| s.results),
                    prompt_tps: round(f.prompt_tps),
                    gen_tps: round(f.gen_tps),
                    cold_load_s: round(f.load_s),
                    source: f.source.as_str().to_owned(),
                    model: m,
                }
            })
            .collect()
    }

    /// Why a held task is still queued, if it is held.
    pub(super) fn held_reason(&self, id: &TaskId, now: f64) -> Option<String> {
        let h = self.estimates.held.get(id)?;
        Some(format!(
            "waiting for node \"{}\", expected to finish it sooner (in about {:.0}s) than any idle node",
            h.node,
            (h.finish_at - now).max(0.0)
        ))
    }
}
