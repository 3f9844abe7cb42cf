//! A blocking client for the local Ollama (`docs/api.md` of Ollama): `/api/tags`,
//! `/api/ps`, `/api/embed`, `/api/show`, and the streaming `/api/chat` and
//! `/api/generate` (read line by line in [`stream`]), and `/api/pull` with the pre-load
//! ([`pull`]).
//!
//! Ollama writes no response head until the first token exists (a cold model load on a Pi
//! is a long silence), so the first-token timeout is the wait for the head plus the wait
//! for the first content line, and the same bound applies to each later read so a stream
//! that stalls mid-way is caught too. The total timeout bounds everything.

mod pull;
mod stream;

use std::time::{Duration, Instant};

use pifleet_protocol::{LoadedModel, ModelInfo};
use serde::Deserialize;
use serde_json::Value;

use crate::error::OllamaError;
use crate::http::{self, error_message};

pub use pull::PullProgress;
pub use stream::{Generation, Kind, Limits, Streaming};

/// How many times a 503 "server busy" is retried before giving up on this node.
const BUSY_ATTEMPTS: u32 = 6;
/// Bound for the small metadata calls; a local Ollama answers these in milliseconds.
const META_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Ollama {
    base: String,
    agent: ureq::Agent,
    retry_base: Duration,
    retry_max: Duration,
}

#[derive(Deserialize)]
struct TagsResponse {
    #[serde(default)]
    models: Vec<TagModel>,
}

#[derive(Deserialize)]
struct TagModel {
    name: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    details: Option<TagDetails>,
    #[serde(default)]
    expires_at: Option<String>,
}

#[derive(Deserialize, Default)]
struct TagDetails {
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    parameter_size: Option<String>,
    #[serde(default)]
    quantization_level: Option<String>,
}

fn transport(e: ureq::Error) -> OllamaError {
    OllamaError::Transport(e.to_string())
}

impl Ollama {
    pub fn new(base: &str, retry_base: Duration, retry_max: Duration) -> Ollama {
        let agent = http::agent(Duration::from_secs(3));
        Ollama {
            base: base.trim_end_matches('/').to_string(),
            agent,
            retry_base,
            retry_max,
        }
    }

    /// The same Ollama on an HTTP client of its own, and that client: shutting it down
    /// interrupts a request blocked on Ollama (see `abort.rs`).
    pub fn own_client(&self) -> (Ollama, ureq::Agent) {
        let agent = http::agent(Duration::from_secs(3));
        let own = Ollama {
            agent: agent.clone(),
            ..self.clone()
        };
        (own, agent)
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn get_json(&self, path: &str) -> Result<Value, OllamaError> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .config()
            .timeout_global(Some(META_TIMEOUT))
            .build()
            .call()
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| OllamaError::Decode(e.to_string()))?;
        if status != 200 {
            return Err(OllamaError::Status {
                status,
                message: error_message(&body),
            });
        }
        serde_json::from_str(&body).map_err(|e| OllamaError::Decode(format!("{path}: {e}")))
    }

    /// Models pulled on this node, with their details.
    pub fn tags(&self) -> Result<Vec<ModelInfo>, OllamaError> {
        let v = self.get_json("/api/tags")?;
        let tags: TagsResponse = serde_json::from_value(v)
            .map_err(|e| OllamaError::Decode(format!("/api/tags: {e}")))?;
        let mut models: Vec<ModelInfo> = tags
            .models
            .into_iter()
            .map(|m| {
                let d = m.details.unwrap_or_default();
                ModelInfo {
                    name: m.name,
                    size_bytes: m.size,
                    family: d.family,
                    parameter_size: d.parameter_size,
                    quantization: d.quantization_level,
                }
            })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// Models loaded in memory now.
    pub fn ps(&self) -> Result<Vec<LoadedModel>, OllamaError> {
        let v = self.get_json("/api/ps")?;
        let ps: TagsResponse =
            serde_json::from_value(v).map_err(|e| OllamaError::Decode(format!("/api/ps: {e}")))?;
        Ok(ps
            .models
            .into_iter()
            .map(|m| LoadedModel {
                name: m.name,
                size_bytes: m.size,
                expires_at: m.expires_at,
            })
            .collect())
    }

    /// `POST /api/chat`, streamed and read to its end. `body` is the request without `stream`.
    pub fn chat(&self, body: Value, limits: Limits) -> Result<Generation, OllamaError> {
        self.stream(Kind::Chat, body, limits)?.to_end()
    }

    /// `POST /api/generate`, streamed and read to its end.
    pub fn generate(&self, body: Value, limits: Limits) -> Result<Generation, OllamaError> {
        self.stream(Kind::Generate, body, limits)?.to_end()
    }

    /// Starts a streamed generation: returns once Ollama has answered 200 (it sends its
    /// head with the first token), for the caller to read line by line.
    pub fn stream(
        &self,
        kind: Kind,
        mut body: Value,
        limits: Limits,
    ) -> Result<Streaming, OllamaError> {
        body["stream"] = Value::Bool(true);
        let start = Instant::now();
        let (resp, busy_retries) = self.open(kind.path(), &body, limits, start)?;
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(Streaming::new(
            resp.into_body().into_reader(),
            kind,
            model,
            limits,
            start,
            busy_retries,
        ))
    }

    /// A non-streaming `POST` (`/api/embed`, `/api/show`): Ollama's JSON answer.
    pub fn post(&self, path: &str, body: &Value, limits: Limits) -> Result<Value, OllamaError> {
        let (mut resp, _) = self.open(path, body, limits, Instant::now())?;
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| OllamaError::Stream(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| OllamaError::Decode(format!("{path}: {e}")))
    }

    /// Sends `body` and waits for a 200 head within the first-token bound, retrying 503
    /// "server busy" with backoff; the answer and how many 503s were retried.
    fn open(
        &self,
        path: &str,
        body: &Value,
        limits: Limits,
        start: Instant,
    ) -> Result<(ureq::http::Response<ureq::Body>, u32), OllamaError> {
        let mut busy_retries = 0;
        let mut backoff = self.retry_base;
        loop {
            let remaining = limits.total.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Err(OllamaError::TotalTimeout(limits.total));
            }
            let first = limits.first_token.min(remaining);
            let result = self
                .agent
                .post(format!("{}{path}", self.base))
                .config()
                .timeout_global(Some(remaining))
                .timeout_recv_response(Some(first))
                .timeout_per_read(Some(first))
                .build()
                .send_json(body);
            let mut resp = match result {
                Ok(r) => r,
                Err(ureq::Error::Timeout(t)) => {
                    return Err(if matches!(t, ureq::Timeout::Global) {
                        OllamaError::TotalTimeout(limits.total)
                    } else {
                        OllamaError::FirstTokenTimeout(limits.first_token)
                    })
                }
                Err(e) => return Err(transport(e)),
            };
            let status = resp.status().as_u16();
            if status == 200 {
                return Ok((resp, busy_retries));
            }
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            let message = error_message(&text);
            match status {
                404 => return Err(OllamaError::ModelNotFound(message)),
                503 => {
                    busy_retries += 1;
                    let left = limits.total.saturating_sub(start.elapsed());
                    if busy_retries >= BUSY_ATTEMPTS || left <= backoff {
                        return Err(OllamaError::Busy {
                            attempts: busy_retries,
                            message,
                        });
                    }
                    log::info!("ollama busy (503), retrying in {backoff:?}");
                    std::thread::sleep(crate::retry::jitter(backoff));
                    backoff = (backoff * 2).min(self.retry_max);
                }
                _ => return Err(OllamaError::Status { status, message }),
            }
        }
    }
}
