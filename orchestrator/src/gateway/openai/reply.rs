//! Ollama's answers, whole or chunk by chunk, as OpenAI's objects and server-sent events.

use serde_json::{json, Value};

use crate::gateway::error::GatewayError;

fn finish_reason(v: &Value) -> &'static str {
    let has_tools = v
        .pointer("/message/tool_calls")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_tools {
        return "tool_calls";
    }
    match v.get("done_reason").and_then(Value::as_str) {
        Some("length") => "length",
        _ => "stop",
    }
}

/// OpenAI's usage object from Ollama's counts.
pub fn usage(v: &Value) -> Value {
    let p = v
        .get("prompt_eval_count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let c = v.get("eval_count").and_then(Value::as_u64).unwrap_or(0);
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

/// What identifies one answer across its chunks.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

impl Meta {
    pub fn new(prefix: &str, task_id: &str, created: f64, model: &str) -> Self {
        Meta {
            id: format!("{prefix}-{}", task_id.replace('-', "")),
            created: created as u64,
            model: model.to_string(),
        }
    }
}

fn tool_calls(v: &Value) -> Option<Value> {
    let calls = v.pointer("/message/tool_calls")?.as_array()?;
    Some(Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let f = c.get("function").cloned().unwrap_or(Value::Null);
                let args = f.get("arguments").map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                json!({
                    "index": i,
                    "id": format!("call_{i}"),
                    "type": "function",
                    "function": {"name": f.get("name"), "arguments": args.unwrap_or_default()},
                })
            })
            .collect(),
    ))
}

/// A whole Ollama `/api/chat` answer as a `chat.completion`.
pub fn chat_response(meta: &Meta, v: &Value) -> Value {
    let text = v
        .pointer("/message/content")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut message = json!({"role": "assistant", "content": text});
    if let Some(tc) = tool_calls(v) {
        message["tool_calls"] = tc;
    }
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": "fp_pifleet",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(v)}],
        "usage": usage(v),
    })
}

/// A whole Ollama `/api/generate` answer as a `text_completion`.
pub fn completion_response(meta: &Meta, v: &Value) -> Value {
    let text = v.get("response").and_then(Value::as_str).unwrap_or("");
    json!({
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": "fp_pifleet",
        "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason(v)}],
        "usage": usage(v),
    })
}

/// Ollama `/api/embed` answer as OpenAI's embedding list.
pub fn embeddings_response(model: &str, v: &Value, base64: bool) -> Value {
    let data: Vec<Value> = v
        .get("embeddings")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .enumerate()
                .map(|(i, e)| {
                    let embedding = if base64 {
                        json!(floats_base64(e))
                    } else {
                        e.clone()
                    };
                    json!({"object": "embedding", "embedding": embedding, "index": i})
                })
                .collect()
        })
        .unwrap_or_default();
    let p = v
        .get("prompt_eval_count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": p, "total_tokens": p},
    })
}

/// Little-endian float32s in standard base64, as OpenAI sends `encoding_format: base64`.
pub(super) fn floats_base64(e: &Value) -> String {
    let bytes: Vec<u8> = e
        .as_array()
        .map(|a| {
            a.iter()
                .flat_map(|x| (x.as_f64().unwrap_or(0.0) as f32).to_le_bytes())
                .collect()
        })
        .unwrap_or_default();
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (k, shift) in [18u32, 12, 6, 0].iter().enumerate() {
            if k <= c.len() {
                out.push(T[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Turns Ollama's streamed objects into OpenAI's server-sent events.
#[derive(Debug)]
pub struct SseShaper {
    pub meta: Meta,
    /// `chat.completion.chunk` (chat) or `text_completion` (completions).
    chat: bool,
    include_usage: bool,
    role_sent: bool,
}

fn sse(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    // Writing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    out
}

impl SseShaper {
    pub fn new(meta: Meta, chat: bool, include_usage: bool) -> Self {
        SseShaper {
            meta,
            chat,
            include_usage,
            role_sent: false,
        }
    }

    fn envelope(&self, choice: Value) -> Value {
        let mut v = json!({
            "id": self.meta.id,
            "object": if self.chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.meta.created,
            "model": self.meta.model,
            "system_fingerprint": "fp_pifleet",
            "choices": [choice],
        });
        if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// One streamed Ollama object (not `done`) as zero or one event.
    pub fn chunk(&mut self, v: &Value) -> Option<Vec<u8>> {
        if self.chat {
            let text = v
                .pointer("/message/content")
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut delta = json!({"content": text});
            if !self.role_sent {
                delta["role"] = json!("assistant");
                self.role_sent = true;
            }
            if let Some(tc) = tool_calls(v) {
                delta["tool_calls"] = tc;
            } else if text.is_empty() {
                return None;
            }
            Some(sse(&self.envelope(
                json!({"index": 0, "delta": delta, "finish_reason": null}),
            )))
        } else {
            let text = v.get("response").and_then(Value::as_str).unwrap_or("");
            if text.is_empty() {
                return None;
            }
            Some(sse(&self.envelope(
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null}),
            )))
        }
    }

    /// The final Ollama object: its text (if any), the finish reason, usage, `[DONE]`.
    pub fn done(&mut self, v: &Value) -> Vec<u8> {
        let mut out = self.chunk(v).unwrap_or_default();
        let fr = finish_reason(v);
        let last = if self.chat {
            let delta = if self.role_sent {
                json!({})
            } else {
                json!({"role": "assistant", "content": ""})
            };
            json!({"index": 0, "delta": delta, "finish_reason": fr})
        } else {
            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": fr})
        };
        out.extend(sse(&self.envelope(last)));
        if self.include_usage {
            let mut u = self.envelope(Value::Null);
            u["choices"] = json!([]);
            u["usage"] = usage(v);
            out.extend(sse(&u));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }

    /// An error after the stream began: an `error` event, then `[DONE]`, so no client
    /// takes the text so far for a complete answer.
    pub fn error(&self, e: &GatewayError) -> Vec<u8> {
        let mut out = sse(&e.body());
        out.extend_from_slice(b"data: [DONE]\n\n");
        out
    }
}
