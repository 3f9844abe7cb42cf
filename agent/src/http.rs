//! What the agent's two HTTP clients (the orchestrator's and the local Ollama's) share:
//! how their `ureq::Agent` is built, and how an error answer is read.

use std::time::Duration;

use serde_json::Value;

/// Status answers come back as answers, not errors: both APIs explain themselves in the body.
pub fn agent(connect_timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(connect_timeout))
        .user_agent(concat!("pifleet-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// The `error` of a `{"error": "..."}` body (both APIs' shape), else the body's start.
pub fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.trim().chars().take(300).collect())
}
