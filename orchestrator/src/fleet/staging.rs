//! Model staging, the pure rules: when waiting for a model is worse than pulling it,
//! which node may pull or pre-load it, and which of those is best. The fleet's part
//! (orders, reports, the planning pass) is in `staging/plan.rs`.
//!
//! A node may be asked only when it said it pulls models (`model_pull` in its
//! capabilities: the agent's `allow_model_pull`), is live and not draining, is not busy
//! staging something else, is not backing off this model after a failure, passes the
//! task's other rules (task type, memory, temperature, voltage), and has the disk and
//! memory for the model when both are known.

use std::cmp::Ordering;

use pifleet_protocol::StageProgress;

use super::limits::Thermal;
use super::placement::{NodeFacts, Requirements};

pub(super) mod plan;

/// A model nobody reported the size of is assumed this big (a 3B model at Q4).
pub const DEFAULT_MODEL_BYTES: u64 = 2_000_000_000;
/// Room kept free on disk beyond the model itself: a full SD card takes the Pi down.
const DISK_HEADROOM: f64 = 1.1;

/// One node as the staging rules see it.
pub struct Candidate<'a> {
    pub id: &'a str,
    pub facts: NodeFacts<'a>,
    /// The node has a pull or pre-load under way.
    pub staging: bool,
    /// The node failed this model recently (or too often) and is not asked again yet.
    pub blocked: bool,
    /// Generation speed expected for the model on this node (tokens/s).
    pub gen_tps: f64,
}

/// Why a node is not asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAsked {
    Dead,
    OptedOut,
    Draining,
    /// It fails the task's other rules (type, memory total, heat, voltage).
    Unfit,
    HasModel,
    LacksModel,
    Loaded,
    Staging,
    Blocked,
    Disk,
    Memory,
}

/// The task's requirements without the model, for the rules a node must pass anyway.
fn without_model(req: &Requirements) -> Requirements {
    Requirements {
        model: None,
        ..req.clone()
    }
}

fn common(c: &Candidate, req: &Requirements, t: &Thermal) -> Result<(), NotAsked> {
    let f = &c.facts;
    if !f.alive {
        return Err(NotAsked::Dead);
    }
    if f.caps.model_pull != Some(true) {
        return Err(NotAsked::OptedOut);
    }
    if f.draining {
        return Err(NotAsked::Draining);
    }
    if f.can_run(&without_model(req), t).is_err() {
        return Err(NotAsked::Unfit);
    }
    if c.staging {
        return Err(NotAsked::Staging);
    }
    if c.blocked {
        return Err(NotAsked::Blocked);
    }
    Ok(())
}

/// May this node pull `model` (`size` bytes, when known) for tasks needing `req`?
pub fn can_pull(
    c: &Candidate,
    req: &Requirements,
    model: &str,
    size: Option<u64>,
    t: &Thermal,
) -> Result<(), NotAsked> {
    common(c, req, t)?;
    if c.facts.has_model(model) {
        return Err(NotAsked::HasModel);
    }
    let size = size.unwrap_or(DEFAULT_MODEL_BYTES);
    if let Some(free) = c.facts.metrics.and_then(|m| m.disk_free_bytes) {
        if (free as f64) < size as f64 * DISK_HEADROOM {
            return Err(NotAsked::Disk);
        }
    }
    if c.facts.memory_total().is_some_and(|total| total < size) {
        return Err(NotAsked::Memory);
    }
    Ok(())
}

/// May this node pre-load `model`, which it has on disk but not in memory?
pub fn can_preload(
    c: &Candidate,
    req: &Requirements,
    model: &str,
    size: Option<u64>,
    t: &Thermal,
) -> Result<(), NotAsked> {
    common(c, req, t)?;
    if !c.facts.has_model(model) {
        return Err(NotAsked::LacksModel);
    }
    if c.facts.model_loaded(model) {
        return Err(NotAsked::Loaded);
    }
    if let (Some(size), Some(avail)) = (size, c.facts.memory_available()) {
        if size > avail {
            return Err(NotAsked::Memory);
        }
    }
    Ok(())
}

/// Best first: an idle node before a busy one (a pull competes with generation for the
/// SD card and the CPU), then the faster one for the model, then the one with more free
/// disk (in whole gigabytes: a few megabytes are noise), then the name, so the choice is
/// stable.
fn better(a: &Candidate, b: &Candidate) -> Ordering {
    let disk = |c: &Candidate| {
        c.facts.metrics.and_then(|m| m.disk_free_bytes).unwrap_or(0) / 1_000_000_000
    };
    (a.facts.running > 0)
        .cmp(&(b.facts.running > 0))
        .then(b.gen_tps.total_cmp(&a.gen_tps))
        .then(disk(b).cmp(&disk(a)))
        .then(a.id.cmp(b.id))
}

/// The node to pull `model` on, if any may.
pub fn choose_puller<'a>(
    cands: impl IntoIterator<Item = Candidate<'a>>,
    req: &Requirements,
    model: &str,
    size: Option<u64>,
    t: &Thermal,
) -> Option<&'a str> {
    best(cands, |c| can_pull(c, req, model, size, t).is_ok())
}

/// The node to pre-load `model` on, if any may.
pub fn choose_preloader<'a>(
    cands: impl IntoIterator<Item = Candidate<'a>>,
    req: &Requirements,
    model: &str,
    size: Option<u64>,
    t: &Thermal,
) -> Option<&'a str> {
    best(cands, |c| can_preload(c, req, model, size, t).is_ok())
}

fn best<'a>(
    cands: impl IntoIterator<Item = Candidate<'a>>,
    may: impl Fn(&Candidate<'a>) -> bool,
) -> Option<&'a str> {
    cands
        .into_iter()
        .filter(|c| may(c))
        .min_by(better)
        .map(|c| c.id)
}

/// Reports closer together than this give no download rate (a heartbeat carrying two
/// reports, a node's clock step).
const RATE_MIN_GAP_S: f64 = 1.0;

/// The download rate between two progress reports of one pull, in bytes a second: only
/// within one layer (Ollama counts each layer's bytes from zero under its own status line).
pub fn pull_rate_sample(
    before: &StageProgress,
    before_at: f64,
    after: &StageProgress,
    after_at: f64,
) -> Option<f64> {
    let gap = after_at - before_at;
    if before.status.is_none() || before.status != after.status || gap < RATE_MIN_GAP_S {
        return None;
    }
    let grew = after
        .completed_bytes?
        .checked_sub(before.completed_bytes?)?;
    (grew > 0).then(|| grew as f64 / gap)
}

/// A node's learned rate with one more sample: the recent pulls count most (a link's
/// speed changes with the time of day and who else is on it).
pub fn blend_rate(learned: Option<f64>, sample: f64) -> f64 {
    match learned {
        Some(r) => 0.5 * r + 0.5 * sample,
        None => sample,
    }
}

/// The rate a pull is estimated at: the median of what the fleet's nodes measured, or
/// the configured `staging_pull_bytes_per_s` until a pull was measured.
pub fn fleet_pull_rate(mut learned: Vec<f64>, configured: f64) -> f64 {
    if learned.is_empty() {
        return configured;
    }
    learned.sort_by(f64::total_cmp);
    learned[learned.len() / 2]
}

/// Seconds a pull of `size` bytes is expected to take until the model can answer: the
/// download and a cold load.
pub fn pull_s(size: Option<u64>, bytes_per_s: f64, load_s: f64) -> f64 {
    size.unwrap_or(DEFAULT_MODEL_BYTES) as f64 / bytes_per_s.max(1.0) + load_s
}

/// Seconds the last of `queued` tasks waits for the nodes that have the model: until the
/// first of them is free (`free_in_s`, one per node), then its share of the queue ahead
/// of it, `run_s` each, spread over those nodes. None when a node's end is not known.
pub fn wait_s(free_in_s: &[Option<f64>], queued: usize, run_s: f64) -> Option<f64> {
    if free_in_s.is_empty() {
        return None;
    }
    let mut first = f64::INFINITY;
    for f in free_in_s {
        first = first.min((*f)?.max(0.0));
    }
    Some(first + queued as f64 * run_s / free_in_s.len() as f64)
}

#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod tests;
