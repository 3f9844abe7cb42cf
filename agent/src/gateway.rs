//! The agent's side of the orchestrator's gateway: `ollama_api` tasks, an Ollama request
//! made by a client of the gateway, run on this node's Ollama as it came.
//!
//! `chat` and `generate` always stream from Ollama (so the first-token and stall bounds
//! apply) and are folded into the body `stream: false` would have returned, which is the
//! result's `response`. With `data.stream` true each line also goes, as Ollama wrote it,
//! into one chunked `POST /api/tasks/{id}/stream` (`relay.rs`). `embed` and `show`
//! are plain calls whose answer is the `response`.

use pifleet_protocol::{ollama_endpoint, OllamaApiTask, TaskAssignment};
use serde_json::Value;

use crate::ollama::{Kind, Limits, Ollama};
use crate::outcome::{answered, failed, with_response, Ran};
use crate::relay::{relay, StreamTo};

/// Runs one `ollama_api` task; Err is bad task data (a message naming the field).
pub fn run(
    ollama: &Ollama,
    task: &TaskAssignment,
    limits: Limits,
    to: Option<&StreamTo>,
) -> Result<Ran, String> {
    let api: OllamaApiTask = serde_json::from_value(task.data.clone())
        .map_err(|e| format!("data is not {{model, endpoint, request, stream}}: {e}"))?;
    if api.model.trim().is_empty() {
        return Err("data.model is empty".into());
    }
    let Value::Object(mut request) = api.request else {
        return Err("data.request must be an object (the Ollama request body)".into());
    };
    request
        .entry("model")
        .or_insert_with(|| Value::String(api.model.clone()));
    let body = Value::Object(request);
    let kind = match api.endpoint.as_str() {
        ollama_endpoint::CHAT => Kind::Chat,
        ollama_endpoint::GENERATE => Kind::Generate,
        ollama_endpoint::EMBED | ollama_endpoint::SHOW => {
            let path = format!("/api/{}", api.endpoint);
            return Ok(Ran::Done(match ollama.post(&path, &body, limits) {
                Ok(answer) => answered(&api.model, answer),
                Err(e) => failed(&e),
            }));
        }
        other => {
            return Err(format!(
                "data.endpoint is `{other}`, not one of {}",
                ollama_endpoint::ALL.join(", ")
            ))
        }
    };
    let Some(to) = to.filter(|_| api.stream) else {
        return Ok(Ran::Done(match ollama.stream(kind, body, limits) {
            Ok(s) => with_response(s.to_end()),
            Err(e) => failed(&e),
        }));
    };
    // A client may hang up while Ollama loads the model: until its first token the
    // request can be stopped from the heartbeat thread (see `abort.rs`).
    let (own, client) = ollama.own_client();
    to.aborts.waiting(&task.task_id, client);
    let opened = own.stream(kind, body, limits);
    if to.aborts.answered(&task.task_id) {
        return Ok(Ran::Abandoned(
            "the orchestrator no longer wants it (its client hung up) before Ollama's first token"
                .into(),
        ));
    }
    Ok(match opened {
        Ok(streaming) => relay(streaming, to, task, limits),
        Err(e) => Ran::Done(failed(&e)),
    })
}
