//! Building [`TaskOutcome`]s: from a generation's statistics, from a non-streaming Ollama
//! answer, from a failure. Durations from Ollama are in ns; outcomes carry ms.

use pifleet_protocol::TaskOutcome;
use serde_json::Value;

use crate::error::OllamaError;
use crate::ollama::Generation;

/// What running a task came to.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per task, moved once
pub enum Ran {
    /// Report this outcome.
    Done(TaskOutcome),
    /// The orchestrator no longer wants this attempt (it said 409, or the stream to it
    /// broke): report nothing for it.
    Abandoned(String),
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

pub fn failure(error: String, retryable: bool) -> TaskOutcome {
    TaskOutcome {
        success: false,
        error: Some(error),
        retryable: retryable.then_some(true),
        ..TaskOutcome::default()
    }
}

/// A failed call to Ollama; retryable when another try (here or elsewhere) could work.
pub fn failed(e: &OllamaError) -> TaskOutcome {
    failure(e.to_string(), e.retryable())
}

/// The outcome of a generation; `response` is left for the caller (only the gateway's
/// task type reports it).
pub fn generated(result: Result<Generation, OllamaError>) -> TaskOutcome {
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
                load_duration_ms: g.load_duration_ns.map(ms),
                prompt_eval_ms: g.prompt_eval_duration_ns.map(ms),
                eval_ms: g.eval_duration_ns.map(ms),
                tokens_per_s,
                ..TaskOutcome::default()
            }
        }
        Err(e) => failed(&e),
    }
}

/// The outcome of a non-streaming Ollama answer (`/api/embed`, `/api/show`): its
/// statistics where it has them, and the whole body as `response`.
pub fn answered(model: &str, body: Value) -> TaskOutcome {
    let num = |k: &str| body.get(k).and_then(Value::as_u64);
    TaskOutcome {
        success: true,
        model: Some(model.to_string()),
        prompt_tokens: num("prompt_eval_count"),
        tokens_used: num("prompt_eval_count"),
        duration_ms: num("total_duration").map(ms),
        load_duration_ms: num("load_duration").map(ms),
        prompt_eval_ms: num("prompt_eval_duration").map(ms),
        response: Some(body),
        ..TaskOutcome::default()
    }
}

/// A generation's outcome with the aggregated body as its `response`.
pub fn with_response(result: Result<Generation, OllamaError>) -> TaskOutcome {
    match result {
        Ok(mut g) => {
            let response = std::mem::take(&mut g.response);
            let mut o = generated(Ok(g));
            o.response = Some(response);
            o
        }
        Err(e) => failed(&e),
    }
}
