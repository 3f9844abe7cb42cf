//! The lane index: the queue's lanes filed by what they need (task type, model, memory),
//! and what a node can run ([`Reach`]) in the same terms, so a scheduling pass looks up
//! the lanes the waiting nodes can run instead of trying every lane on every node. Forty
//! thousand lanes no waiting node can run (each with its own type or memory need) then
//! cost a pass nothing.
//!
//! A reach is a superset of [`NodeFacts::can_run`]: a lane it leaves out is one the node
//! would refuse, so the pass places exactly what a scan of every lane would. What it
//! cannot tell from the lane alone (free memory for a model not loaded yet) the pass
//! still checks per task.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use pifleet_protocol::task_type;

use super::limits::Thermal;
use super::placement::{canonical_model, NodeFacts, Requirements};

/// Lanes by the memory they need (0 for none), smallest first.
type ByMemory = BTreeSet<(u64, Arc<Requirements>)>;

/// What a node can run as far as the lane index tells lanes apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Reach {
    /// The task types it declares, sorted; `None`: every type but the gateway's.
    pub types: Option<Vec<String>>,
    /// The canonical names of the models it has, sorted; `None`: any (a seed worker).
    pub models: Option<Vec<String>>,
    /// Its total memory; `None`: unknown, so any need may fit.
    pub memory: Option<u64>,
}

impl Reach {
    /// What the node can run now; `None` when it takes nothing (dead, draining, too hot,
    /// under-voltage).
    pub fn of(f: &NodeFacts, t: &Thermal) -> Option<Reach> {
        if !f.alive || f.refuses_all(t).is_some() {
            return None;
        }
        let types = (!f.caps.task_types.is_empty()).then(|| sorted(f.caps.task_types.clone()));
        let models = (!f.is_seed_worker()).then(|| {
            let metrics = f.metrics;
            let present = metrics.and_then(|m| m.models_present.as_ref());
            let loaded = metrics.and_then(|m| m.models_loaded.as_ref());
            let names = f
                .caps
                .models
                .iter()
                .chain(present.into_iter().flatten())
                .chain(loaded.into_iter().flatten().map(|l| &l.name));
            sorted(names.map(|m| canonical_model(m).to_owned()).collect())
        });
        Some(Reach {
            types,
            models,
            memory: f.memory_total(),
        })
    }

    /// True when the lane is one the index would give a node of this reach.
    #[cfg(test)]
    pub fn covers(&self, req: &Requirements) -> bool {
        let types_ok = match &self.types {
            Some(ts) => ts.contains(&req.task_type),
            None => req.task_type != task_type::OLLAMA_API,
        };
        let model_ok = match (&self.models, &req.model) {
            (Some(ms), Some(m)) => ms.iter().any(|x| x == canonical_model(m)),
            _ => true,
        };
        types_ok && model_ok && memory_need(req) <= self.memory.unwrap_or(u64::MAX)
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v.dedup();
    v
}

fn model_key(req: &Requirements) -> &str {
    req.model.as_deref().map_or("", canonical_model)
}

fn memory_need(req: &Requirements) -> u64 {
    req.min_memory_bytes.unwrap_or(0)
}

#[derive(Debug, Default)]
pub(super) struct LaneIndex {
    /// Task type -> canonical model (`""` for none) -> lanes.
    by_type: HashMap<String, HashMap<String, ByMemory>>,
    /// Canonical model (`""` for none) -> lanes of every type but the gateway's, which
    /// only a node declaring it may run.
    by_model: HashMap<String, ByMemory>,
    /// Every lane but the gateway's.
    by_memory: ByMemory,
}

impl LaneIndex {
    pub fn insert(&mut self, req: &Arc<Requirements>) {
        let entry = (memory_need(req), req.clone());
        let model = model_key(req);
        self.by_type
            .entry(req.task_type.clone())
            .or_default()
            .entry(model.to_owned())
            .or_default()
            .insert(entry.clone());
        if req.task_type != task_type::OLLAMA_API {
            self.by_model
                .entry(model.to_owned())
                .or_default()
                .insert(entry.clone());
            self.by_memory.insert(entry);
        }
    }

    pub fn remove(&mut self, req: &Arc<Requirements>) {
        let entry = (memory_need(req), req.clone());
        let model = model_key(req);
        if let Some(models) = self.by_type.get_mut(&req.task_type) {
            remove_from(models, model, &entry);
            if models.is_empty() {
                self.by_type.remove(&req.task_type);
            }
        }
        remove_from(&mut self.by_model, model, &entry);
        self.by_memory.remove(&entry);
    }

    /// Adds to `out` every lane a node of `reach` may run; with `only_model`, only the
    /// lanes of that canonical model.
    pub fn reachable(
        &self,
        reach: &Reach,
        only_model: Option<&str>,
        out: &mut HashSet<Arc<Requirements>>,
    ) {
        let memory = reach.memory.unwrap_or(u64::MAX);
        let mut take = |set: Option<&ByMemory>| {
            let fits = set.into_iter().flatten().take_while(|e| e.0 <= memory);
            out.extend(fits.map(|e| e.1.clone()));
        };
        let models: Option<Vec<&str>> = match (only_model, &reach.models) {
            (Some(m), Some(ms)) if !ms.iter().any(|x| x == m) => return,
            (Some(m), _) => Some(vec![m]),
            (None, Some(ms)) => Some(
                std::iter::once("")
                    .chain(ms.iter().map(String::as_str))
                    .collect(),
            ),
            (None, None) => None,
        };
        match (&reach.types, models) {
            (Some(types), models) => {
                for by_model in types.iter().filter_map(|t| self.by_type.get(t)) {
                    match &models {
                        Some(ms) => ms.iter().for_each(|m| take(by_model.get(*m))),
                        None => by_model.values().for_each(|set| take(Some(set))),
                    }
                }
            }
            (None, Some(ms)) => ms.iter().for_each(|m| take(self.by_model.get(*m))),
            (None, None) => take(Some(&self.by_memory)),
        }
    }

    /// Every lane filed, for the invariant checker: each exactly once by type.
    pub fn filed(&self) -> Vec<&Arc<Requirements>> {
        let by_type = self.by_type.values().flat_map(HashMap::values);
        by_type.flatten().map(|e| &e.1).collect()
    }

    /// Checks the three views agree on the lanes filed.
    pub fn check(&self) -> Result<(), String> {
        let mut others: Vec<&Arc<Requirements>> = Vec::new();
        for (t, models) in &self.by_type {
            for (m, set) in models {
                if set.is_empty() {
                    return Err(format!("empty lane set kept for {t:?}/{m:?}"));
                }
                for (mem, req) in set {
                    if req.task_type != *t || model_key(req) != m || memory_need(req) != *mem {
                        return Err(format!("lane {req:?} filed under {t:?}/{m:?}/{mem}"));
                    }
                    if req.task_type != task_type::OLLAMA_API {
                        others.push(req);
                    }
                }
            }
        }
        let in_model: usize = self.by_model.values().map(BTreeSet::len).sum();
        if in_model != others.len() || self.by_memory.len() != others.len() {
            return Err(format!(
                "{} lanes by type (not gateway), {in_model} by model, {} by memory",
                others.len(),
                self.by_memory.len()
            ));
        }
        for req in others {
            let entry = (memory_need(req), req.clone());
            let by_model = self.by_model.get(model_key(req));
            if !by_model.is_some_and(|s| s.contains(&entry)) || !self.by_memory.contains(&entry) {
                return Err(format!(
                    "lane {req:?} missing from the model or memory view"
                ));
            }
        }
        Ok(())
    }
}

fn remove_from(map: &mut HashMap<String, ByMemory>, key: &str, entry: &(u64, Arc<Requirements>)) {
    if let Some(set) = map.get_mut(key) {
        set.remove(entry);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
