//! A blocking client for the local Ollama (`docs/api.md` of Ollama): `/api/tags`,
//! `/api/ps`, and the streaming `/api/chat` and `/api/generate`.
//!
//! Ollama writes no response head until the first token exists (a cold model load on a Pi
//! is a long silence), so the first-token timeout is the wait for the head plus the wait
//! for the first content line, and the same bound applies to each later read so a stream
//! that stalls mid-way is caught too. The total timeout bounds everything.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use pifleet_protocol::{LoadedModel, ModelInfo};
use serde::Deserialize;
use serde_json::Value;

use crate::error::OllamaError;

/// How many times a 503 "server busy" is retried before giving up on this node.
const BUSY_ATTEMPTS: u32 = 6;
/// Bound for the small metadata calls; a local Ollama answers these in milliseconds.
const META_TIMEOUT: Duration = Duration::from_secs(5);

/// Timeouts for one generation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub first_token: Duration,
    pub total: Duration,
}

/// What a finished generation produced, with Ollama's own statistics when it sent them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Generation {
    pub model: String,
    pub text: String,
    pub prompt_eval_count: Option<u64>,
    pub eval_count: Option<u64>,
    pub total_duration_ns: Option<u64>,
    pub load_duration_ns: Option<u64>,
    pub eval_duration_ns: Option<u64>,
    /// Wall time measured here, for when Ollama sends no statistics.
    pub wall: Duration,
    /// How many 503 answers were retried.
    pub busy_retries: u32,
}

impl Generation {
    pub fn tokens_per_s(&self) -> Option<f64> {
        let (n, ns) = (self.eval_count?, self.eval_duration_ns?);
        (ns > 0).then(|| n as f64 / (ns as f64 / 1e9))
    }
}

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

fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| body.trim().chars().take(300).collect())
}

impl Ollama {
    pub fn new(base: &str, retry_base: Duration, retry_max: Duration) -> Ollama {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(3)))
            .user_agent(concat!("pifleet-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ollama {
            base: base.trim_end_matches('/').to_string(),
            agent,
            retry_base,
            retry_max,
        }
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

    /// `POST /api/chat`, streamed. `body` is the request without `stream`.
    pub fn chat(&self, body: Value, limits: Limits) -> Result<Generation, OllamaError> {
        self.stream("/api/chat", body, limits, true)
    }

    /// `POST /api/generate`, streamed.
    pub fn generate(&self, body: Value, limits: Limits) -> Result<Generation, OllamaError> {
        self.stream("/api/generate", body, limits, false)
    }

    fn stream(
        &self,
        path: &str,
        mut body: Value,
        limits: Limits,
        chat: bool,
    ) -> Result<Generation, OllamaError> {
        body["stream"] = Value::Bool(true);
        let start = Instant::now();
        let mut busy_retries = 0;
        let mut backoff = self.retry_base;
        let resp = loop {
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
                .send_json(&body);
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
                break resp;
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
        };

        let mut gen = Generation {
            model: body
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            busy_retries,
            ..Generation::default()
        };
        let mut reader = BufReader::new(resp.into_body().into_reader());
        let mut line = String::new();
        let mut got_token = false;
        loop {
            line.clear();
            let n = match reader.read_line(&mut line) {
                Ok(n) => n,
                Err(e) => {
                    let elapsed = start.elapsed();
                    return Err(if elapsed >= limits.total {
                        OllamaError::TotalTimeout(limits.total)
                    } else if e.kind() == std::io::ErrorKind::TimedOut && !got_token {
                        OllamaError::FirstTokenTimeout(limits.first_token)
                    } else if e.kind() == std::io::ErrorKind::TimedOut {
                        OllamaError::Stream(format!(
                            "no data for {:?} after the first token",
                            limits.first_token
                        ))
                    } else {
                        OllamaError::Stream(e.to_string())
                    });
                }
            };
            if n == 0 {
                return Err(OllamaError::Stream(
                    "stream ended before the final `done` object".to_string(),
                ));
            }
            let trimmed = line.trim();
            if trimmed.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(trimmed)
                .map_err(|e| OllamaError::Decode(format!("{path} line: {e}")))?;
            if let Some(err) = v.get("error") {
                let msg = err
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| err.to_string());
                return Err(OllamaError::Stream(msg));
            }
            let piece = if chat {
                v.pointer("/message/content").and_then(Value::as_str)
            } else {
                v.get("response").and_then(Value::as_str)
            };
            if let Some(p) = piece.filter(|p| !p.is_empty()) {
                if !got_token && start.elapsed() > limits.first_token {
                    // Headers came early but the first real token did not.
                    return Err(OllamaError::FirstTokenTimeout(limits.first_token));
                }
                got_token = true;
                gen.text.push_str(p);
            }
            if v.get("done").and_then(Value::as_bool) == Some(true) {
                let num = |k: &str| v.get(k).and_then(Value::as_u64);
                gen.prompt_eval_count = num("prompt_eval_count");
                gen.eval_count = num("eval_count");
                gen.total_duration_ns = num("total_duration");
                gen.load_duration_ns = num("load_duration");
                gen.eval_duration_ns = num("eval_duration");
                if let Some(m) = v.get("model").and_then(Value::as_str) {
                    gen.model = m.to_string();
                }
                gen.wall = start.elapsed();
                return Ok(gen);
            }
        }
    }
}
