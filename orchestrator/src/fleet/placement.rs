//! Placement rules: which node may run which task, which of the eligible nodes is best,
//! and why a pending task is not running. Pure functions over the node's declared
//! capabilities and latest metrics, so the rules are testable without a server.

use std::cmp::Reverse;

use pifleet_protocol::{task_type, Capabilities, NodeMetrics};
use serde_json::Value;

use super::limits::Thermal;

/// What a task needs from a node. Tasks with equal requirements share one FIFO lane of
/// the queue, so a scheduling pass looks at one head per lane instead of the whole queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Requirements {
    pub task_type: String,
    /// The model an LLM task names in `data.model`.
    pub model: Option<String>,
    /// `data.min_memory_bytes`: total memory the node must have.
    pub min_memory_bytes: Option<u64>,
}

impl Requirements {
    pub fn of(task_type: &str, data: &Value) -> Self {
        let model = if task_type::NEEDS_MODEL.contains(&task_type) {
            data.get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
        } else {
            None
        };
        Requirements {
            task_type: task_type.to_owned(),
            model,
            min_memory_bytes: data.get("min_memory_bytes").and_then(Value::as_u64),
        }
    }
}

/// The view of a node the rules need.
pub struct NodeFacts<'a> {
    pub caps: &'a Capabilities,
    pub metrics: Option<&'a NodeMetrics>,
    pub running: usize,
    pub draining: bool,
    pub alive: bool,
}

/// Why a node cannot take a task, in the order the rules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    Dead,
    TaskType,
    Model,
    Memory,
    Draining,
    Hot,
    UnderVoltage,
    NoFreeSlot,
    /// Eligible with a free slot, but not polling right now.
    NotWaiting,
}

/// Ollama treats `llama3` and `llama3:latest` as one model.
pub fn same_model(a: &str, b: &str) -> bool {
    canonical_model(a) == canonical_model(b)
}

impl NodeFacts<'_> {
    pub fn slots(&self) -> usize {
        self.caps.slots.unwrap_or(1).max(1) as usize
    }

    /// A worker that declares neither task types nor models is a seed worker: the seed
    /// let such workers run everything.
    pub(super) fn is_seed_worker(&self) -> bool {
        self.caps.task_types.is_empty()
            && self.caps.models.is_empty()
            && self
                .metrics
                .and_then(|m| m.models_present.as_ref())
                .map_or(true, |p| p.is_empty())
    }

    pub fn has_model(&self, model: &str) -> bool {
        self.caps.models.iter().any(|m| same_model(m, model))
            || self
                .metrics
                .and_then(|m| m.models_present.as_ref())
                .is_some_and(|p| p.iter().any(|m| same_model(m, model)))
            || self.model_loaded(model)
    }

    pub fn model_loaded(&self, model: &str) -> bool {
        self.metrics
            .and_then(|m| m.models_loaded.as_ref())
            .is_some_and(|l| l.iter().any(|x| same_model(&x.name, model)))
    }

    fn model_size(&self, model: &str) -> Option<u64> {
        self.caps
            .model_details
            .iter()
            .find(|d| same_model(&d.name, model))
            .and_then(|d| d.size_bytes)
    }

    pub fn memory_total(&self) -> Option<u64> {
        self.metrics
            .and_then(|m| m.memory_total_bytes)
            .or(self.caps.memory_total_bytes)
    }

    pub fn memory_available(&self) -> Option<u64> {
        self.metrics.and_then(|m| m.memory_available_bytes)
    }

    pub fn temperature(&self) -> Option<f32> {
        self.metrics.and_then(|m| m.temperature_c)
    }

    /// Hotter than the soft limit, or the firmware says it is capping or throttling.
    pub fn is_warm(&self, t: &Thermal) -> bool {
        self.temperature().is_some_and(|c| c >= t.soft_temp_c)
            || self
                .metrics
                .is_some_and(|m| m.soft_temp_limit_now() || m.throttled_now())
    }

    /// Checks every rule except the free slot, which the caller checks where it matters.
    pub fn can_run(&self, req: &Requirements, t: &Thermal) -> Result<(), Refusal> {
        if !self.alive {
            return Err(Refusal::Dead);
        }
        let seed = self.is_seed_worker();
        let offers = self.caps.task_types.iter().any(|x| x == &req.task_type);
        if !seed && !self.caps.task_types.is_empty() && !offers {
            return Err(Refusal::TaskType);
        }
        // A gateway request needs a node that speaks the stream contract; "runs every
        // type" (a seed worker, a worker that lists none) does not cover it.
        if req.task_type == task_type::OLLAMA_API && !offers {
            return Err(Refusal::TaskType);
        }
        if let Some(model) = &req.model {
            if !seed && !self.has_model(model) {
                return Err(Refusal::Model);
            }
            // A model that is not loaded yet must fit in what is free now.
            if !self.model_loaded(model) {
                if let (Some(size), Some(avail)) = (self.model_size(model), self.memory_available())
                {
                    if size > avail {
                        return Err(Refusal::Memory);
                    }
                }
            }
        }
        if let (Some(need), Some(total)) = (req.min_memory_bytes, self.memory_total()) {
            if need > total {
                return Err(Refusal::Memory);
            }
        }
        self.refuses_all(t).map_or(Ok(()), Err)
    }

    /// The rules that refuse every task alike (after the task's own needs are checked):
    /// the lane index leaves such a node out of a scheduling pass altogether.
    pub fn refuses_all(&self, t: &Thermal) -> Option<Refusal> {
        if self.draining {
            return Some(Refusal::Draining);
        }
        if self.temperature().is_some_and(|c| c >= t.hard_temp_c) {
            return Some(Refusal::Hot);
        }
        if t.exclude_under_voltage && self.metrics.is_some_and(NodeMetrics::under_voltage_now) {
            return Some(Refusal::UnderVoltage);
        }
        None
    }

    pub fn has_free_slot(&self) -> bool {
        self.running < self.slots()
    }

    /// Ordering key among eligible nodes, before model affinity; the smallest wins. Warm
    /// nodes come last; then the least busy, coolest, least loaded and freest. The
    /// scheduler ranks nodes with the task's model loaded ahead of the others within the
    /// warm and the cool group (a cold load on a Pi costs far more than the generation).
    pub fn base_key(&self, t: &Thermal) -> BaseKey {
        // Unknown temperature counts as a middling 50 °C: no reason to prefer or avoid it.
        let temp = self.temperature().unwrap_or(50.0);
        let cores = self.caps.cores.unwrap_or(1).max(1) as f32;
        let load = self
            .metrics
            .and_then(|m| m.load_avg)
            .map(|l| l[0] / cores)
            .unwrap_or(0.0);
        (
            self.is_warm(t),
            (self.running * 1000 / self.slots()) as u32,
            // Coarse buckets: a degree or two is noise, ten is a real difference.
            (temp / 5.0).floor() as i32,
            (load * 4.0).floor() as i32,
            Reverse(self.memory_available().unwrap_or(0)),
        )
    }

    /// Models loaded in memory now, by their canonical name.
    pub fn loaded_models(&self) -> Vec<String> {
        self.metrics
            .and_then(|m| m.models_loaded.as_ref())
            .map(|l| {
                l.iter()
                    .map(|m| canonical_model(&m.name).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `(warm, busy per mille, temperature bucket, load bucket, free memory)`.
pub type BaseKey = (bool, u32, i32, i32, Reverse<u64>);

/// The name Ollama resolves a tag to: `llama3` and `llama3:latest` are one model.
pub fn canonical_model(m: &str) -> &str {
    m.strip_suffix(":latest").unwrap_or(m)
}

/// Explains why a pending task is not running, given why each live node refused it.
pub fn pending_reason(req: &Requirements, refusals: &[Refusal], t: &Thermal) -> String {
    let live: Vec<Refusal> = refusals
        .iter()
        .copied()
        .filter(|r| *r != Refusal::Dead)
        .collect();
    if live.is_empty() {
        return "no live node".into();
    }
    let past = |stage: Refusal| live.iter().filter(|r| **r > stage).count();
    if past(Refusal::TaskType) == 0 {
        return format!("no node runs task type \"{}\"", req.task_type);
    }
    if past(Refusal::Model) == 0 {
        if let Some(m) = &req.model {
            return format!("no node offers model \"{m}\"");
        }
    }
    if past(Refusal::Memory) == 0 {
        return match (&req.model, req.min_memory_bytes) {
            (Some(m), _) => format!("no node with model \"{m}\" has the memory it needs free"),
            (None, Some(b)) => format!("no node has {b} bytes of memory"),
            (None, None) => "no node has the memory it needs".into(),
        };
    }
    if past(Refusal::Draining) == 0 {
        return "every node that can run it is draining".into();
    }
    if past(Refusal::UnderVoltage) == 0 {
        let hot = live.iter().filter(|r| **r == Refusal::Hot).count();
        let uv = live.iter().filter(|r| **r == Refusal::UnderVoltage).count();
        return match (hot, uv) {
            (_, 0) => format!(
                "every node that can run it is at or over the {} °C hard limit",
                t.hard_temp_c
            ),
            (0, _) => "every node that can run it reports under-voltage".into(),
            _ => format!(
                "every node that can run it is over the {} °C hard limit or under-voltage",
                t.hard_temp_c
            ),
        };
    }
    let eligible = live.iter().filter(|r| **r == Refusal::NoFreeSlot).count();
    let idle = live.iter().filter(|r| **r == Refusal::NotWaiting).count();
    if idle > 0 {
        format!("waiting for one of {idle} eligible idle node(s) to poll")
    } else {
        format!("waiting for a free slot on {eligible} eligible busy node(s)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caps(models: &[&str]) -> Capabilities {
        Capabilities {
            models: models.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn facts<'a>(caps: &'a Capabilities, metrics: Option<&'a NodeMetrics>) -> NodeFacts<'a> {
        NodeFacts {
            caps,
            metrics,
            running: 0,
            draining: false,
            alive: true,
        }
    }

    #[test]
    fn seed_worker_runs_everything() {
        let c = Capabilities::default();
        let req = Requirements::of("agent_action", &json!({"model": "llama3.2:1b"}));
        assert_eq!(facts(&c, None).can_run(&req, &Thermal::default()), Ok(()));
    }

    #[test]
    fn only_nodes_that_offer_it_get_gateway_requests() {
        let req = Requirements::of("ollama_api", &json!({"model": "llama3.2:1b"}));
        let t = Thermal::default();
        let seed = Capabilities::default();
        assert_eq!(facts(&seed, None).can_run(&req, &t), Err(Refusal::TaskType));
        let mut agent = caps(&["llama3.2:1b"]);
        assert_eq!(
            facts(&agent, None).can_run(&req, &t),
            Err(Refusal::TaskType)
        );
        agent.task_types = vec!["ollama_api".into()];
        assert_eq!(facts(&agent, None).can_run(&req, &t), Ok(()));
    }

    #[test]
    fn model_must_be_present() {
        let c = caps(&["qwen2.5:0.5b"]);
        let req = Requirements::of("agent_action", &json!({"model": "llama3.2:1b"}));
        assert_eq!(
            facts(&c, None).can_run(&req, &Thermal::default()),
            Err(Refusal::Model)
        );
        let c = caps(&["llama3.2:1b"]);
        assert_eq!(facts(&c, None).can_run(&req, &Thermal::default()), Ok(()));
    }

    #[test]
    fn latest_tag_is_the_bare_name() {
        assert!(same_model("llama3", "llama3:latest"));
        assert!(!same_model("llama3", "llama3:8b"));
    }

    #[test]
    fn hard_limit_excludes_and_soft_limit_deprioritises() {
        let c = Capabilities::default();
        let req = Requirements::of("evolution_mutation", &json!({}));
        let t = Thermal::default();
        let hot = NodeMetrics {
            temperature_c: Some(86.0),
            ..Default::default()
        };
        assert_eq!(facts(&c, Some(&hot)).can_run(&req, &t), Err(Refusal::Hot));
        let warm = NodeMetrics {
            temperature_c: Some(81.0),
            ..Default::default()
        };
        let cool = NodeMetrics {
            temperature_c: Some(45.0),
            ..Default::default()
        };
        assert!(facts(&c, Some(&cool)).base_key(&t) < facts(&c, Some(&warm)).base_key(&t));
    }

    #[test]
    fn reason_names_the_missing_model() {
        let req = Requirements::of("agent_action", &json!({"model": "llama3.2:1b"}));
        assert_eq!(
            pending_reason(&req, &[Refusal::Model, Refusal::Dead], &Thermal::default()),
            "no node offers model \"llama3.2:1b\""
        );
        assert_eq!(
            pending_reason(&req, &[], &Thermal::default()),
            "no live node"
        );
    }

    #[test]
    fn declared_task_types_limit_what_a_node_runs() {
        let c = Capabilities {
            task_types: vec!["code_generation".into()],
            models: vec!["llama3.2:1b".into()],
            ..Default::default()
        };
        let t = Thermal::default();
        let other = Requirements::of("evolution_mutation", &json!({}));
        assert_eq!(facts(&c, None).can_run(&other, &t), Err(Refusal::TaskType));
        let mine = Requirements::of("code_generation", &json!({"model": "llama3.2:1b"}));
        assert_eq!(facts(&c, None).can_run(&mine, &t), Ok(()));
    }

    #[test]
    fn a_model_not_loaded_must_fit_in_free_memory() {
        let c = Capabilities {
            models: vec!["big:7b".into()],
            model_details: vec![pifleet_protocol::ModelInfo {
                name: "big:7b".into(),
                size_bytes: Some(4_000_000_000),
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = Thermal::default();
        let req = Requirements::of("agent_action", &json!({"model": "big:7b"}));
        let tight = NodeMetrics {
            memory_available_bytes: Some(3_000_000_000),
            ..Default::default()
        };
        assert_eq!(
            facts(&c, Some(&tight)).can_run(&req, &t),
            Err(Refusal::Memory)
        );
        let roomy = NodeMetrics {
            memory_available_bytes: Some(5_000_000_000),
            ..Default::default()
        };
        assert_eq!(facts(&c, Some(&roomy)).can_run(&req, &t), Ok(()));
    }

    #[test]
    fn draining_and_dead_nodes_take_nothing() {
        let c = Capabilities::default();
        let t = Thermal::default();
        let req = Requirements::of("evolution_mutation", &json!({}));
        let mut f = facts(&c, None);
        f.draining = true;
        assert_eq!(f.can_run(&req, &t), Err(Refusal::Draining));
        f.alive = false;
        assert_eq!(f.can_run(&req, &t), Err(Refusal::Dead));
    }

    #[test]
    fn a_less_busy_node_ranks_first_and_a_full_one_has_no_slot() {
        let c = Capabilities {
            slots: Some(2),
            ..Default::default()
        };
        let t = Thermal::default();
        let idle = facts(&c, None);
        let mut half = facts(&c, None);
        half.running = 1;
        assert!(idle.base_key(&t) < half.base_key(&t));
        assert!(half.has_free_slot());
        half.running = 2;
        assert!(!half.has_free_slot());
    }

    #[test]
    fn reason_follows_the_furthest_rule_any_node_passed() {
        let t = Thermal::default();
        let req = Requirements::of("evolution_mutation", &json!({}));
        assert_eq!(
            pending_reason(&req, &[Refusal::TaskType, Refusal::TaskType], &t),
            "no node runs task type \"evolution_mutation\""
        );
        assert_eq!(
            pending_reason(&req, &[Refusal::TaskType, Refusal::Draining], &t),
            "every node that can run it is draining"
        );
        assert_eq!(
            pending_reason(&req, &[Refusal::Hot, Refusal::Draining], &t),
            "every node that can run it is at or over the 85 °C hard limit"
        );
        assert_eq!(
            pending_reason(&req, &[Refusal::NoFreeSlot, Refusal::Hot], &t),
            "waiting for a free slot on 1 eligible busy node(s)"
        );
        assert_eq!(
            pending_reason(&req, &[Refusal::NoFreeSlot, Refusal::NotWaiting], &t),
            "waiting for one of 1 eligible idle node(s) to poll"
        );
    }
}
