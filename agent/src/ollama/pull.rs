//! Staging a model on this node's Ollama: `POST /api/pull` streamed (docs/api.md, "Pull a
//! Model"), one NDJSON progress object per line (`status`, and while a layer downloads
//! `digest`, `total`, `completed`), ending in `{"status": "success"}` or an `{"error"}`
//! line; and a pre-load, an empty `POST /api/generate` with `keep_alive`, which loads
//! the model and generates nothing.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{json, Value};

use super::{transport, Ollama};
use crate::error::OllamaError;
use crate::http::error_message;

/// Ollama answers a pull's head at once; a registry that stalls this long mid-download
/// is treated as gone (a layer's progress lines come several times a second).
const PULL_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// One progress line of a pull.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullProgress {
    pub status: String,
    pub completed: Option<u64>,
    pub total: Option<u64>,
}

impl Ollama {
    /// Pulls `model`, calling `progress` for each line Ollama sends; Ok once it said
    /// `success`, Err with Ollama's own message when it reported an error.
    pub fn pull(
        &self,
        model: &str,
        mut progress: impl FnMut(&PullProgress),
    ) -> Result<(), OllamaError> {
        let mut resp = self
            .agent
            .post(format!("{}/api/pull", self.base))
            .config()
            .timeout_recv_response(Some(PULL_READ_TIMEOUT))
            .timeout_per_read(Some(PULL_READ_TIMEOUT))
            .build()
            .send_json(json!({"model": model, "stream": true}))
            .map_err(transport)?;
        let status = resp.status().as_u16();
        if status != 200 {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(OllamaError::Status {
                status,
                message: error_message(&text),
            });
        }
        let reader = BufReader::new(resp.into_body().into_reader());
        let mut last = PullProgress::default();
        for line in reader.lines() {
            let line = line.map_err(|e| OllamaError::Stream(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(&line)
                .map_err(|e| OllamaError::Decode(format!("/api/pull: {e}")))?;
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                return Err(OllamaError::Stream(e.to_string()));
            }
            let status = v.get("status").and_then(Value::as_str).unwrap_or_default();
            last = PullProgress {
                status: status.to_string(),
                completed: v.get("completed").and_then(Value::as_u64),
                total: v.get("total").and_then(Value::as_u64),
            };
            progress(&last);
            if status == "success" {
                return Ok(());
            }
        }
        Err(OllamaError::Stream(format!(
            "the pull ended without success (last status: \"{}\")",
            last.status
        )))
    }

    /// Loads `model` into memory for `keep_alive` without generating anything.
    pub fn preload(
        &self,
        model: &str,
        keep_alive: &str,
        limits: super::Limits,
    ) -> Result<(), OllamaError> {
        let body = json!({"model": model, "prompt": "", "keep_alive": keep_alive, "stream": false});
        self.post("/api/generate", &body, limits).map(|_| ())
    }
}
