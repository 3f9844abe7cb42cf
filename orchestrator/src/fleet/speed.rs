//! Measured speed per node and model: prompt-processing speed, generation speed and
//! cold-load time, learned from the Ollama statistics in every LLM result.
//!
//! Each figure is smoothed in log space (speeds are ratios: a node twice as slow is as far
//! off as one twice as fast). Three rules keep the figure honest on a real Pi:
//! - warm-up: the first three samples are combined by their median, so the slow first
//!   request after a boot or a cold start does not become the node's speed;
//! - outliers: a sample more than 1.5x off moves the figure only as far as a 1.5x sample
//!   would (one stalled request does not halve a node's speed);
//! - change: three samples in a row off in the same direction replace the figure with
//!   their mean (a node that got slower — throttled case, swapped SD card, a second
//!   process — is believed after three tasks, not after thirty).
//!
//! A node and model never measured borrow the median of the nodes of the same Pi model
//! for that model, else the fleet's median for that model, else [`DEFAULT`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Weight of a new sample once the warm-up is over.
const ALPHA: f64 = 0.2;
/// ln(1.5): residuals beyond this are clipped.
const CLIP: f64 = 0.405_465_108;
/// Samples in a row beyond the clip, in one direction, that replace the figure.
const CHANGE_AFTER: usize = 3;
const WARMUP: usize = 3;

/// A smoothed positive quantity (a speed or a duration).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Smoothed {
    /// ln of the current figure; meaningful once `n > 0`.
    log: f64,
    n: u64,
    /// The warm-up samples, then the current run of same-direction outliers (ln).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<f64>,
    /// +1 when `pending` holds a run above the figure, -1 below, 0 during warm-up.
    #[serde(default)]
    dir: i8,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

impl Smoothed {
    pub fn samples(&self) -> u64 {
        self.n
    }

    pub fn value(&self) -> Option<f64> {
        (self.n > 0).then(|| self.log.exp())
    }

    pub fn add(&mut self, x: f64) {
        if !(x.is_finite() && x > 0.0) {
            return;
        }
        let l = x.ln();
        self.n += 1;
        if self.n as usize <= WARMUP {
            self.pending.push(l);
            self.log = median(&mut self.pending.clone());
            if self.n as usize == WARMUP {
                self.pending.clear();
            }
            return;
        }
        let r = l - self.log;
        if r.abs() <= CLIP {
            self.pending.clear();
            self.dir = 0;
            self.log += ALPHA * r;
            return;
        }
        let dir = if r > 0.0 { 1 } else { -1 };
        if dir != self.dir {
            self.pending.clear();
            self.dir = dir;
        }
        self.pending.push(l);
        if self.pending.len() >= CHANGE_AFTER {
            self.log = self.pending.iter().sum::<f64>() / self.pending.len() as f64;
            self.pending.clear();
            self.dir = 0;
        } else {
            self.log += ALPHA * CLIP * f64::from(dir);
        }
    }
}

/// One LLM result's statistics, as the agent reports them in its `TaskOutcome`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub model: String,
    pub prompt_tokens: Option<u64>,
    pub prompt_ms: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub eval_ms: Option<u64>,
    pub load_ms: Option<u64>,
}

/// Below these a measurement is mostly overhead (or Ollama's prompt cache) and says
/// little about the node's speed.
const MIN_PROMPT_TOKENS: u64 = 16;
const MIN_COMPLETION_TOKENS: u64 = 8;
const MIN_TIMED_MS: u64 = 20;
/// A load under this was a model already in memory, not a cold load.
const COLD_LOAD_MS: u64 = 500;

fn field(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

impl Sample {
    /// Reads a result body (`TaskOutcome` fields, and Ollama's raw statistics under
    /// `response` for gateway tasks). None when it carries no usable figure.
    pub fn from_result(result: &Value) -> Option<Sample> {
        let model = result.get("model").and_then(Value::as_str).or_else(|| {
            result
                .get("response")
                .and_then(|r| r.get("model"))
                .and_then(Value::as_str)
        })?;
        let raw = result.get("response").filter(|r| r.is_object());
        let ns_ms = |k: &str| raw.and_then(|r| field(r, k)).map(|ns| ns / 1_000_000);
        let completion =
            field(result, "completion_tokens").or_else(|| raw.and_then(|r| field(r, "eval_count")));
        // Older agents send tokens_per_s but not eval_ms.
        let eval_ms = field(result, "eval_ms")
            .or_else(|| ns_ms("eval_duration"))
            .or_else(|| {
                let tps = result.get("tokens_per_s").and_then(Value::as_f64)?;
                let n = completion?;
                (tps > 0.0).then(|| (n as f64 / tps * 1000.0) as u64)
            });
        let s = Sample {
            model: super::placement::canonical_model(model).to_owned(),
            prompt_tokens: field(result, "prompt_tokens")
                .or_else(|| raw.and_then(|r| field(r, "prompt_eval_count"))),
            prompt_ms: field(result, "prompt_eval_ms").or_else(|| ns_ms("prompt_eval_duration")),
            completion_tokens: completion,
            eval_ms,
            load_ms: field(result, "load_duration_ms").or_else(|| ns_ms("load_duration")),
        };
        (s.prompt_tps().is_some() || s.gen_tps().is_some() || s.load_ms.is_some()).then_some(s)
    }

    pub fn prompt_tps(&self) -> Option<f64> {
        let (n, ms) = (self.prompt_tokens?, self.prompt_ms?);
        (n >= MIN_PROMPT_TOKENS && ms >= MIN_TIMED_MS).then(|| n as f64 * 1000.0 / ms as f64)
    }

    pub fn gen_tps(&self) -> Option<f64> {
        let (n, ms) = (self.completion_tokens?, self.eval_ms?);
        (n >= MIN_COMPLETION_TOKENS && ms >= MIN_TIMED_MS).then(|| n as f64 * 1000.0 / ms as f64)
    }

    pub fn cold_load_s(&self) -> Option<f64> {
        self.load_ms
            .filter(|ms| *ms >= COLD_LOAD_MS)
            .map(|ms| ms as f64 / 1000.0)
    }
}

/// What one node measured for one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSpeed {
    pub prompt_tps: Smoothed,
    pub gen_tps: Smoothed,
    pub load_s: Smoothed,
    pub results: u64,
    pub updated_at: f64,
}

/// Where a figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Measured,
    /// The median of nodes of the same Pi model.
    PiModel,
    /// The median of every node that measured the model.
    Fleet,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Measured => "measured",
            Source::PiModel => "pi_model",
            Source::Fleet => "fleet",
            Source::Default => "default",
        }
    }
}

/// Speeds for one node and model as placement uses them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub prompt_tps: f64,
    pub gen_tps: f64,
    pub load_s: f64,
    /// Where the generation speed came from (the figure that weighs most).
    pub source: Source,
}

/// A deliberately slow guess (a Pi 4 on a 3B model) for a model nobody measured yet:
/// an unmeasured node is tried, but not preferred over a measured fast one.
pub const DEFAULT: Figures = Figures {
    prompt_tps: 6.0,
    gen_tps: 2.0,
    load_s: 40.0,
    source: Source::Default,
};

#[derive(Debug, Clone, Copy, Default)]
struct Medians {
    prompt_tps: Option<f64>,
    gen_tps: Option<f64>,
    load_s: Option<f64>,
}

/// How much faster than the fastest measured node an untried one is assumed to be.
const EXPLORE_BONUS: f64 = 1.1;

/// How often, at most, the fallback medians are recomputed after new results.
const REFRESH_S: f64 = 10.0;

/// Every node's measured speeds, with the fallbacks for what a node has not measured.
#[derive(Debug, Default)]
pub struct SpeedBook {
    nodes: HashMap<String, NodeSpeeds>,
    /// Mean output tokens per model, for tasks that name no limit.
    outputs: HashMap<String, f64>,
    /// Pi class -> model -> medians.
    by_pi: HashMap<String, HashMap<String, Medians>>,
    by_model: HashMap<String, Medians>,
    /// Per model: the best measured speeds and the shortest cold load, for exploring.
    best: HashMap<String, Medians>,
    dirty: bool,
    /// A node measured a model for the first time: refresh without waiting.
    urgent: bool,
    refreshed_at: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSpeeds {
    pub pi_model: Option<String>,
    pub models: BTreeMap<String, ModelSpeed>,
}

/// `Raspberry Pi 4 Model B Rev 1.4` -> `Raspberry Pi 4 Model B`: revisions run alike.
pub fn pi_class(pi_model: &str) -> &str {
    pi_model
        .find(" Rev ")
        .map_or(pi_model, |i| &pi_model[..i])
        .trim()
}

impl SpeedBook {
    pub fn new() -> Self {
        SpeedBook::default()
    }

    /// Adds one result of `node` (whose board is `pi_model`).
    pub fn record(&mut self, node: &str, pi_model: Option<&str>, s: &Sample, now: f64) {
        let n = self.nodes.entry(node.to_owned()).or_default();
        if let Some(p) = pi_model {
            if n.pi_model.as_deref() != Some(pi_class(p)) {
                n.pi_model = Some(pi_class(p).to_owned());
            }
        }
        let m = n.models.entry(s.model.clone()).or_default();
        let first = m.gen_tps.samples() == 0 && m.prompt_tps.samples() == 0;
        if let Some(v) = s.prompt_tps() {
            m.prompt_tps.add(v);
        }
        if let Some(v) = s.gen_tps() {
            m.gen_tps.add(v);
        }
        if let Some(v) = s.cold_load_s() {
            m.load_s.add(v);
        }
        m.results += 1;
        m.updated_at = now;
        self.urgent |= first && (m.gen_tps.samples() > 0 || m.prompt_tps.samples() > 0);
        if let Some(c) = s.completion_tokens {
            let avg = self.outputs.entry(s.model.clone()).or_insert(c as f64);
            *avg += 0.05 * (c as f64 - *avg);
        }
        self.dirty = true;
    }

    /// Restores a node's figures from the store.
    pub fn restore(&mut self, node: &str, speeds: NodeSpeeds) {
        self.nodes.insert(node.to_owned(), speeds);
        self.dirty = true;
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&String, &NodeSpeeds)> {
        self.nodes.iter()
    }

    pub fn node(&self, node: &str) -> Option<&NodeSpeeds> {
        self.nodes.get(node)
    }

    pub fn forget(&mut self, node: &str) {
        if self.nodes.remove(node).is_some() {
            self.dirty = true;
        }
    }

    /// The running mean of output tokens for a model, if any result named it.
    pub fn mean_output(&self, model: &str) -> Option<f64> {
        self.outputs
            .get(super::placement::canonical_model(model))
            .copied()
    }

    /// Recomputes the fallback medians when results arrived, at most every
    /// [`REFRESH_S`] (a median over a thousand nodes per result would cost more than the
    /// placement it feeds). `force` ignores the rate limit. True when it recomputed.
    pub fn refresh(&mut self, now: f64, force: bool) -> bool {
        let recent = self.refreshed_at.is_some_and(|at| now - at < REFRESH_S);
        if !self.dirty || (!force && !self.urgent && recent) {
            return false;
        }
        type Lists = [Vec<f64>; 3];
        let mut by_pi: HashMap<String, HashMap<String, Lists>> = HashMap::new();
        let mut by_model: HashMap<String, Lists> = HashMap::new();
        for n in self.nodes.values() {
            for (model, m) in &n.models {
                let vals = [m.prompt_tps.value(), m.gen_tps.value(), m.load_s.value()];
                let mut lists = vec![by_model.entry(model.clone()).or_default()];
                if let Some(p) = &n.pi_model {
                    let group = by_pi.entry(p.clone()).or_default();
                    lists.push(group.entry(model.clone()).or_default());
                }
                for l in lists {
                    for (i, v) in vals.iter().enumerate() {
                        if let Some(v) = v {
                            l[i].push(*v);
                        }
                    }
                }
            }
        }
        let best = |l: &Lists| Medians {
            prompt_tps: l[0].iter().copied().reduce(f64::max),
            gen_tps: l[1].iter().copied().reduce(f64::max),
            load_s: l[2].iter().copied().reduce(f64::min),
        };
        self.best = by_model.iter().map(|(k, l)| (k.clone(), best(l))).collect();
        let medians = |mut l: Lists| {
            let m = |v: &mut Vec<f64>| (!v.is_empty()).then(|| median(v));
            Medians {
                prompt_tps: m(&mut l[0]),
                gen_tps: m(&mut l[1]),
                load_s: m(&mut l[2]),
            }
        };
        self.by_pi = by_pi
            .into_iter()
            .map(|(p, g)| (p, g.into_iter().map(|(k, l)| (k, medians(l))).collect()))
            .collect();
        self.by_model = by_model.into_iter().map(|(k, l)| (k, medians(l))).collect();
        self.dirty = false;
        self.urgent = false;
        self.refreshed_at = Some(now);
        true
    }

    /// The figures placement ranks `node` by: its own once it has measured the model;
    /// before that, optimistic ones (a tenth faster than the fastest node measured, the
    /// shortest cold load seen), so every node gets tried once and then ranks by what it
    /// showed. With nothing measured anywhere, the borrowed figures of [`Self::figures`].
    pub fn ranking_figures(&self, node: &str, pi_model: Option<&str>, model: &str) -> Figures {
        let f = self.figures(node, pi_model, model);
        if f.source == Source::Measured {
            return f;
        }
        let Some(best) = self.best.get(super::placement::canonical_model(model)) else {
            return f;
        };
        Figures {
            prompt_tps: best.prompt_tps.map_or(f.prompt_tps, |v| v * EXPLORE_BONUS),
            gen_tps: best.gen_tps.map_or(f.gen_tps, |v| v * EXPLORE_BONUS),
            load_s: best.load_s.unwrap_or(0.0),
            source: f.source,
        }
    }

    /// The figures placement uses for `node` running `model`, each one measured or
    /// borrowed. Call [`SpeedBook::refresh`] before a placement pass.
    pub fn figures(&self, node: &str, pi_model: Option<&str>, model: &str) -> Figures {
        let model = super::placement::canonical_model(model);
        let own = self.nodes.get(node);
        let mine = own.and_then(|n| n.models.get(model));
        let pi = pi_model
            .map(pi_class)
            .or_else(|| own.and_then(|n| n.pi_model.as_deref()));
        let group = pi
            .and_then(|p| self.by_pi.get(p))
            .and_then(|g| g.get(model));
        let fleet = self.by_model.get(model);
        let pick = |own: Option<f64>, g: fn(&Medians) -> Option<f64>, default: f64| {
            if let Some(v) = own {
                (v, Source::Measured)
            } else if let Some(v) = group.and_then(g) {
                (v, Source::PiModel)
            } else if let Some(v) = fleet.and_then(g) {
                (v, Source::Fleet)
            } else {
                (default, Source::Default)
            }
        };
        let (prompt_tps, _) = pick(
            mine.and_then(|m| m.prompt_tps.value()),
            |m| m.prompt_tps,
            DEFAULT.prompt_tps,
        );
        let (gen_tps, source) = pick(
            mine.and_then(|m| m.gen_tps.value()),
            |m| m.gen_tps,
            DEFAULT.gen_tps,
        );
        let (load_s, _) = pick(
            mine.and_then(|m| m.load_s.value()),
            |m| m.load_s,
            DEFAULT.load_s,
        );
        Figures {
            prompt_tps,
            gen_tps,
            load_s,
            source,
        }
    }
}

#[cfg(test)]
mod tests;
