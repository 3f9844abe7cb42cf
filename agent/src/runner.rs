//! Task execution: one [`TaskAssignment`] in, one [`TaskOutcome`] out, never a panic.
//!
//! - `agent_action` → Ollama `/api/chat` (messages, model, temperature + options, keep_alive)
//! - `code_generation` → Ollama `/api/generate` (prompt + language)
//! - `evolution_crossover` / `evolution_mutation` → native, on genomes that are maps of
//!   named numeric parameters; seedable so a result can be reproduced
//! - anything else → a failed outcome naming the types this agent runs

use std::time::{Duration, Instant};

use pifleet_protocol::{task_type, TaskAssignment, TaskOutcome};
use serde_json::{json, Map, Value};

use crate::error::OllamaError;
use crate::ollama::{Generation, Limits, Ollama};
use crate::rng::{fresh_seed, SplitMix64};

/// The task types this agent runs.
pub const SUPPORTED: [&str; 4] = task_type::ALL;

pub struct Runner {
    ollama: Ollama,
    default_model: Option<String>,
    keep_alive: Option<String>,
    task_timeout: Duration,
    first_token_timeout: Duration,
}

fn failure(error: String, retryable: bool) -> TaskOutcome {
    TaskOutcome {
        success: false,
        error: Some(error),
        retryable: retryable.then_some(true),
        ..TaskOutcome::default()
    }
}

fn bad_input(task: &TaskAssignment, msg: &str) -> TaskOutcome {
    failure(format!("{} task: {msg}", task.task_type), false)
}

impl Runner {
    pub fn new(
        ollama: Ollama,
        default_model: Option<String>,
        keep_alive: Option<String>,
        task_timeout: Duration,
        first_token_timeout: Duration,
    ) -> Runner {
        Runner {
            ollama,
            default_model,
            keep_alive,
            task_timeout,
            first_token_timeout,
        }
    }

    /// The longest one task may take here: the orchestrator's timeout when it sets a
    /// shorter one, else ours.
    pub fn timeout_for(&self, task: &TaskAssignment) -> Duration {
        task.timeout_s
            .map(Duration::from_secs)
            .filter(|d| !d.is_zero())
            .map_or(self.task_timeout, |d| d.min(self.task_timeout))
    }

    pub fn run(&self, task: &TaskAssignment) -> TaskOutcome {
        let start = Instant::now();
        let result = match task.task_type.as_str() {
            task_type::AGENT_ACTION => self.agent_action(task),
            task_type::CODE_GENERATION => self.code_generation(task),
            task_type::EVOLUTION_CROSSOVER => crossover(task),
            task_type::EVOLUTION_MUTATION => mutation(task),
            other => Ok(failure(
                format!(
                    "unsupported task type `{other}`; this agent runs {}",
                    SUPPORTED.join(", ")
                ),
                false,
            )),
        };
        let mut outcome = result.unwrap_or_else(|msg| bad_input(task, &msg));
        if outcome.duration_ms.is_none() {
            outcome.duration_ms = Some(start.elapsed().as_millis() as u64);
        }
        outcome
    }

    fn model_for(&self, task: &TaskAssignment) -> Result<String, String> {
        match task.data.get("model") {
            Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
            Some(Value::String(_)) | None | Some(Value::Null) => self
                .default_model
                .clone()
                .ok_or_else(|| "data.model is missing and the agent has no default_model".into()),
            Some(_) => Err("data.model must be a string".into()),
        }
    }

    fn limits(&self, task: &TaskAssignment) -> Limits {
        let total = self.timeout_for(task);
        Limits {
            first_token: self.first_token_timeout.min(total),
            total,
        }
    }

    /// Ollama `options` from `data.options`, with the seed's `temperature` and
    /// `max_tokens` folded in.
    fn options(task: &TaskAssignment) -> Result<Map<String, Value>, String> {
        let mut options = match task.data.get("options") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(_) => return Err("data.options must be an object".into()),
        };
        match task.data.get("temperature") {
            None | Some(Value::Null) => {}
            Some(t @ Value::Number(_)) => {
                options.insert("temperature".into(), t.clone());
            }
            Some(_) => return Err("data.temperature must be a number".into()),
        }
        match task.data.get("max_tokens") {
            None | Some(Value::Null) => {}
            Some(n @ Value::Number(_)) => {
                options.insert("num_predict".into(), n.clone());
            }
            Some(_) => return Err("data.max_tokens must be a number".into()),
        }
        Ok(options)
    }

    fn keep_alive(&self, task: &TaskAssignment) -> Option<Value> {
        match task.data.get("keep_alive") {
            Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
            _ => self.keep_alive.clone().map(Value::String),
        }
    }

    fn agent_action(&self, task: &TaskAssignment) -> Result<TaskOutcome, String> {
        let model = self.model_for(task)?;
        let messages = match task.data.get("messages") {
            Some(Value::Array(ms)) if !ms.is_empty() => {
                let ok = ms.iter().all(|m| {
                    m.get("role").is_some_and(Value::is_string)
                        && m.get("content").is_some_and(Value::is_string)
                });
                if !ok {
                    return Err("each of data.messages needs string `role` and `content`".into());
                }
                ms.clone()
            }
            Some(Value::Array(_)) => return Err("data.messages is empty".into()),
            Some(_) => return Err("data.messages must be an array".into()),
            None => match task.data.get("prompt").and_then(Value::as_str) {
                Some(p) => vec![json!({"role": "user", "content": p})],
                None => return Err("data.messages is missing".into()),
            },
        };
        let options = Self::options(task)?;
        let mut body = json!({"model": model, "messages": messages});
        if !options.is_empty() {
            body["options"] = Value::Object(options);
        }
        if let Some(k) = self.keep_alive(task) {
            body["keep_alive"] = k;
        }
        if let Some(f) = task.data.get("format").filter(|f| !f.is_null()) {
            body["format"] = f.clone();
        }
        Ok(outcome_of(self.ollama.chat(body, self.limits(task))))
    }

    fn code_generation(&self, task: &TaskAssignment) -> Result<TaskOutcome, String> {
        let model = self.model_for(task)?;
        let Some(prompt) = task.data.get("prompt").and_then(Value::as_str) else {
            return Err("data.prompt must be a string".into());
        };
        let language = task
            .data
            .get("language")
            .and_then(Value::as_str)
            .filter(|l| !l.trim().is_empty())
            .unwrap_or("python");
        let options = Self::options(task)?;
        let system = format!(
            "You are a careful {language} programmer. Answer with {language} code only, \
             in one fenced code block, with brief comments where they help."
        );
        let mut body = json!({"model": model, "prompt": prompt, "system": system});
        if !options.is_empty() {
            body["options"] = Value::Object(options);
        }
        if let Some(k) = self.keep_alive(task) {
            body["keep_alive"] = k;
        }
        let mut outcome = outcome_of(self.ollama.generate(body, self.limits(task)));
        outcome
            .extra
            .insert("language".into(), Value::String(language.to_string()));
        Ok(outcome)
    }
}

fn outcome_of(result: Result<Generation, OllamaError>) -> TaskOutcome {
    match result {
        Ok(g) => {
            let tokens_per_s = g.tokens_per_s().map(|t| (t * 100.0).round() / 100.0);
            let used = match (g.prompt_eval_count, g.eval_count) {
                (None, None) => None,
                (p, e) => Some(p.unwrap_or(0) + e.unwrap_or(0)),
            };
            TaskOutcome {
                success: true,
                output: Some(g.text),
                model: Some(g.model),
                tokens_used: used,
                prompt_tokens: g.prompt_eval_count,
                completion_tokens: g.eval_count,
                duration_ms: Some(
                    g.total_duration_ns
                        .map_or(g.wall.as_millis() as u64, |ns| ns / 1_000_000),
                ),
                load_duration_ms: g.load_duration_ns.map(|ns| ns / 1_000_000),
                tokens_per_s,
                ..TaskOutcome::default()
            }
        }
        Err(e) => failure(e.to_string(), e.retryable()),
    }
}

fn genome<'a>(task: &'a TaskAssignment, key: &str) -> Result<&'a Map<String, Value>, String> {
    match task.data.get(key) {
        Some(Value::Object(g)) => Ok(g),
        Some(_) => Err(format!("data.{key} must be an object of named numbers")),
        None => Err(format!("data.{key} is missing")),
    }
}

fn seed_of(task: &TaskAssignment) -> Result<u64, String> {
    match task.data.get("seed") {
        None | Some(Value::Null) => Ok(fresh_seed(&task.task_id)),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| "data.seed must be a non-negative integer".into()),
    }
}

fn native(genome: Map<String, Value>, seed: u64) -> TaskOutcome {
    let mut o = TaskOutcome {
        success: true,
        genome: Some(Value::Object(genome)),
        tokens_used: Some(0),
        ..TaskOutcome::default()
    };
    o.extra.insert("seed".into(), json!(seed));
    o
}

/// Uniform crossover: each parameter comes from either parent with equal chance; a
/// parameter only one parent has is inherited from it.
fn crossover(task: &TaskAssignment) -> Result<TaskOutcome, String> {
    let a = genome(task, "genome1")?;
    let b = genome(task, "genome2")?;
    let seed = seed_of(task)?;
    let mut rng = SplitMix64::new(seed);
    let mut child = Map::new();
    for (k, va) in a {
        let v = match b.get(k) {
            Some(vb) if rng.next_f64() >= 0.5 => vb.clone(),
            _ => va.clone(),
        };
        child.insert(k.clone(), v);
    }
    for (k, vb) in b {
        if !a.contains_key(k) {
            child.insert(k.clone(), vb.clone());
        }
    }
    Ok(native(child, seed))
}

/// Each numeric parameter mutates with probability `mutation_rate`, by Gaussian noise of
/// `mutation_strength` (default 0.1) times its magnitude; integers stay integers.
fn mutation(task: &TaskAssignment) -> Result<TaskOutcome, String> {
    let g = genome(task, "genome")?;
    let num = |key: &str, default: f64| -> Result<f64, String> {
        match task.data.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("data.{key} must be a number in 0..=1")),
        }
    };
    let rate = num("mutation_rate", 0.1)?;
    let strength = num("mutation_strength", 0.1)?;
    let seed = seed_of(task)?;
    let mut rng = SplitMix64::new(seed);
    let mut out = Map::new();
    let mut mutated = 0u64;
    for (k, v) in g {
        // Draw for every key, numeric or not, so a seed maps to one result.
        let roll = rng.next_f64();
        let noise = rng.next_gaussian();
        let nv = match v {
            Value::Number(n) if roll < rate => {
                mutated += 1;
                let x = n.as_f64().unwrap_or(0.0);
                let scale = if x == 0.0 { 1.0 } else { x.abs() };
                let y = x + noise * strength * scale;
                if n.is_f64() {
                    json!(y)
                } else {
                    json!(y.round() as i64)
                }
            }
            other => other.clone(),
        };
        out.insert(k.clone(), nv);
    }
    let mut o = native(out, seed);
    o.extra.insert("mutated".into(), json!(mutated));
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(kind: &str, data: Value) -> TaskAssignment {
        TaskAssignment {
            task_id: "t1".into(),
            task_type: kind.into(),
            data,
            priority: None,
            attempt: Some(1),
            timeout_s: None,
        }
    }

    #[test]
    fn crossover_takes_each_gene_from_a_parent() {
        let t = task(
            "evolution_crossover",
            json!({"genome1": {"a": 1.0, "b": 10, "only1": 5}, "genome2": {"a": 2.0, "b": 20, "only2": 7}, "seed": 7}),
        );
        let o = crossover(&t).unwrap();
        assert!(o.success);
        let g = o.genome.unwrap();
        assert!(g["a"] == json!(1.0) || g["a"] == json!(2.0));
        assert!(g["b"] == json!(10) || g["b"] == json!(20));
        assert_eq!(g["only1"], json!(5));
        assert_eq!(g["only2"], json!(7));
        assert_eq!(
            crossover(&t).unwrap().genome.unwrap(),
            g,
            "same seed, same child"
        );
    }

    #[test]
    fn crossover_mixes_over_many_genes() {
        let g1: Map<String, Value> = (0..64).map(|i| (format!("p{i}"), json!(0))).collect();
        let g2: Map<String, Value> = (0..64).map(|i| (format!("p{i}"), json!(1))).collect();
        let t = task(
            "evolution_crossover",
            json!({"genome1": g1, "genome2": g2, "seed": 1}),
        );
        let child = crossover(&t).unwrap().genome.unwrap();
        let ones = child
            .as_object()
            .unwrap()
            .values()
            .filter(|v| **v == json!(1))
            .count();
        assert!(
            (10..54).contains(&ones),
            "uniform crossover took {ones}/64 from parent 2"
        );
    }

    #[test]
    fn mutation_rate_zero_and_one() {
        let g = json!({"lr": 0.5, "layers": 4, "name": "x"});
        let none = mutation(&task(
            "evolution_mutation",
            json!({"genome": g, "mutation_rate": 0.0, "seed": 3}),
        ))
        .unwrap();
        assert_eq!(none.genome.unwrap(), g);
        let all = mutation(&task(
            "evolution_mutation",
            json!({"genome": g, "mutation_rate": 1.0, "mutation_strength": 1.0, "seed": 3}),
        ))
        .unwrap();
        let m = all.genome.unwrap();
        assert_ne!(m["lr"], g["lr"]);
        assert!(m["layers"].is_i64(), "integers stay integers: {m}");
        assert_eq!(m["name"], json!("x"));
        assert_eq!(all.extra["mutated"], json!(2));
    }

    #[test]
    fn bad_genomes_fail_cleanly() {
        let e = mutation(&task("evolution_mutation", json!({"genome": [1, 2]}))).unwrap_err();
        assert!(e.contains("data.genome"), "{e}");
        let e = mutation(&task(
            "evolution_mutation",
            json!({"genome": {}, "mutation_rate": 3}),
        ))
        .unwrap_err();
        assert!(e.contains("mutation_rate"), "{e}");
        let e = crossover(&task("evolution_crossover", json!({"genome1": {}}))).unwrap_err();
        assert!(e.contains("genome2"), "{e}");
    }
}
