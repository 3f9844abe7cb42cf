//! Task execution: one [`TaskAssignment`] in, one [`TaskOutcome`] out, never a panic.
//!
//! - `agent_action` → Ollama `/api/chat` (messages, model, temperature + options, keep_alive)
//! - `code_generation` → Ollama `/api/generate` (prompt + language)
//! - `ollama_api` → the gateway's request, passed to Ollama as it came (`gateway.rs`)
//! - `evolution_crossover` / `evolution_mutation` → native (`evolution.rs`)
//! - anything else → a failed outcome naming the types this agent runs

use std::time::{Duration, Instant};

use pifleet_protocol::{task_type, TaskAssignment, TaskOutcome};
use serde_json::{json, Map, Value};

use crate::evolution::{crossover, mutation};
use crate::gateway;
use crate::ollama::{Limits, Ollama};
pub use crate::outcome::Ran;
use crate::outcome::{failure, generated};
use crate::relay::StreamTo;

/// The task types this agent runs. `ollama_api` is advertised only while Ollama answers
/// (see `registration.rs`).
pub const SUPPORTED: [&str; 5] = [
    task_type::AGENT_ACTION,
    task_type::EVOLUTION_CROSSOVER,
    task_type::EVOLUTION_MUTATION,
    task_type::CODE_GENERATION,
    task_type::OLLAMA_API,
];

pub struct Runner {
    ollama: Ollama,
    default_model: Option<String>,
    keep_alive: Option<String>,
    task_timeout: Duration,
    first_token_timeout: Duration,
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

    /// Runs a task with nowhere to stream to (a streaming `ollama_api` task is read to
    /// its end and only reported).
    pub fn run(&self, task: &TaskAssignment) -> TaskOutcome {
        match self.run_to(task, None) {
            Ran::Done(o) => o,
            Ran::Abandoned(why) => failure(why, true),
        }
    }

    /// Runs a task; a streaming `ollama_api` task streams its chunks through `to`.
    pub fn run_to(&self, task: &TaskAssignment, to: Option<&StreamTo>) -> Ran {
        let start = Instant::now();
        let result = match task.task_type.as_str() {
            task_type::OLLAMA_API => {
                match gateway::run(&self.ollama, task, self.limits(task), to) {
                    Ok(Ran::Abandoned(why)) => return Ran::Abandoned(why),
                    Ok(Ran::Done(o)) => Ok(o),
                    Err(msg) => Err(msg),
                }
            }
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
        Ran::Done(outcome)
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
        Ok(generated(self.ollama.chat(body, self.limits(task))))
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
        let mut outcome = generated(self.ollama.generate(body, self.limits(task)));
        outcome
            .extra
            .insert("language".into(), Value::String(language.to_string()));
        Ok(outcome)
    }
}
