//! One streamed generation, read line by line as Ollama writes it: [`Streaming`] hands
//! each NDJSON line out as written (so it can be forwarded unchanged), applies the
//! first-token and per-read bounds, and folds the objects into the body Ollama would have
//! answered with `stream: false`.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::OllamaError;

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
    pub prompt_eval_duration_ns: Option<u64>,
    pub eval_duration_ns: Option<u64>,
    /// What Ollama would have answered with `stream: false`: the final object with the
    /// whole text in it.
    pub response: Value,
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

/// Which streaming endpoint, for where the text of a chunk lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/api/chat`: `message.content` (and `message.thinking`, `message.tool_calls`).
    Chat,
    /// `/api/generate`: `response` (and `thinking`).
    Generate,
}

impl Kind {
    pub fn path(self) -> &'static str {
        match self {
            Kind::Chat => "/api/chat",
            Kind::Generate => "/api/generate",
        }
    }

    fn text(self, v: &Value) -> Option<&str> {
        match self {
            Kind::Chat => v.pointer("/message/content"),
            Kind::Generate => v.get("response"),
        }
        .and_then(Value::as_str)
    }

    fn thinking(self, v: &Value) -> Option<&str> {
        match self {
            Kind::Chat => v.pointer("/message/thinking"),
            Kind::Generate => v.get("thinking"),
        }
        .and_then(Value::as_str)
    }
}

/// A generation in progress. Dropping it closes the connection, which is how Ollama is
/// told to stop generating.
pub struct Streaming {
    reader: BufReader<ureq::BodyReader<'static>>,
    kind: Kind,
    limits: Limits,
    start: Instant,
    busy_retries: u32,
    model: String,
    text: String,
    thinking: String,
    tool_calls: Vec<Value>,
    last: Option<Value>,
}

impl Streaming {
    pub(super) fn new(
        body: ureq::BodyReader<'static>,
        kind: Kind,
        model: &str,
        limits: Limits,
        start: Instant,
        busy_retries: u32,
    ) -> Streaming {
        Streaming {
            reader: BufReader::new(body),
            kind,
            limits,
            start,
            busy_retries,
            model: model.to_string(),
            text: String::new(),
            thinking: String::new(),
            tool_calls: Vec::new(),
            last: None,
        }
    }

    /// Reads the next object into `raw`, exactly as Ollama wrote it (newline included),
    /// and folds it in: Ok(true) once it was the final (`done`) object. An `{"error"}`
    /// line, a stall, or a body that ends early is an error.
    pub fn advance(&mut self, raw: &mut String) -> Result<bool, OllamaError> {
        loop {
            raw.clear();
            let n = self.reader.read_line(raw).map_err(|e| self.read_error(e))?;
            if n == 0 {
                return Err(OllamaError::Stream(
                    "stream ended before the final `done` object".to_string(),
                ));
            }
            if raw.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(raw.trim())
                .map_err(|e| OllamaError::Decode(format!("{} line: {e}", self.kind.path())))?;
            return self.fold(v);
        }
    }

    fn read_error(&self, e: std::io::Error) -> OllamaError {
        let got_token = !self.text.is_empty() || !self.thinking.is_empty();
        if self.start.elapsed() >= self.limits.total {
            OllamaError::TotalTimeout(self.limits.total)
        } else if e.kind() == std::io::ErrorKind::TimedOut && !got_token {
            OllamaError::FirstTokenTimeout(self.limits.first_token)
        } else if e.kind() == std::io::ErrorKind::TimedOut {
            OllamaError::Stream(format!(
                "no data for {:?} after the first token",
                self.limits.first_token
            ))
        } else {
            OllamaError::Stream(e.to_string())
        }
    }

    fn fold(&mut self, v: Value) -> Result<bool, OllamaError> {
        if let Some(err) = v.get("error") {
            let msg = err
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            return Err(OllamaError::Stream(msg));
        }
        let text = self.kind.text(&v).filter(|p| !p.is_empty());
        let thinking = self.kind.thinking(&v).filter(|p| !p.is_empty());
        if text.is_some() || thinking.is_some() {
            let first = self.text.is_empty() && self.thinking.is_empty();
            if first && self.start.elapsed() > self.limits.first_token {
                // Headers came early but the first real token did not.
                return Err(OllamaError::FirstTokenTimeout(self.limits.first_token));
            }
        }
        self.text.push_str(text.unwrap_or_default());
        self.thinking.push_str(thinking.unwrap_or_default());
        if let Some(calls) = v.pointer("/message/tool_calls").and_then(Value::as_array) {
            self.tool_calls.extend(calls.iter().cloned());
        }
        let done = v.get("done").and_then(Value::as_bool) == Some(true);
        self.last = Some(v);
        Ok(done)
    }

    /// Reads to the final object, dropping the lines.
    pub fn to_end(mut self) -> Result<Generation, OllamaError> {
        let mut raw = String::new();
        while !self.advance(&mut raw)? {}
        Ok(self.finish())
    }

    /// The generation so far as a [`Generation`]; complete once [`Streaming::advance`]
    /// returned true.
    pub fn finish(self) -> Generation {
        let last = self.last.unwrap_or_else(|| json!({}));
        let num = |k: &str| last.get(k).and_then(Value::as_u64);
        let mut response = last.clone();
        match self.kind {
            Kind::Chat => {
                let mut message = json!({"role": "assistant", "content": self.text});
                if let Some(role) = last.pointer("/message/role") {
                    message["role"] = role.clone();
                }
                if !self.thinking.is_empty() {
                    message["thinking"] = json!(self.thinking);
                }
                if !self.tool_calls.is_empty() {
                    message["tool_calls"] = Value::Array(self.tool_calls);
                }
                response["message"] = message;
            }
            Kind::Generate => {
                response["response"] = json!(self.text);
                if !self.thinking.is_empty() {
                    response["thinking"] = json!(self.thinking);
                }
            }
        }
        Generation {
            model: last
                .get("model")
                .and_then(Value::as_str)
                .map_or(self.model, str::to_string),
            prompt_eval_count: num("prompt_eval_count"),
            eval_count: num("eval_count"),
            total_duration_ns: num("total_duration"),
            load_duration_ns: num("load_duration"),
            prompt_eval_duration_ns: num("prompt_eval_duration"),
            eval_duration_ns: num("eval_duration"),
            text: self.text,
            response,
            wall: self.start.elapsed(),
            busy_retries: self.busy_retries,
        }
    }
}
