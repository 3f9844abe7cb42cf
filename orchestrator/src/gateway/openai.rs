//! OpenAI's API on top of Ollama's: requests become the Ollama request a node runs, and
//! Ollama's answers (whole, or chunk by chunk) become OpenAI's objects.

use serde_json::{json, Map, Value};

use super::error::{Api, GatewayError};

fn bad(msg: String) -> GatewayError {
    GatewayError::bad_request(Api::OpenAi, msg)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// The request body as an object with a non-empty `model`.
pub fn model_of(body: &Value, api: Api) -> Result<String, GatewayError> {
    let obj = body.as_object().ok_or_else(|| {
        GatewayError::bad_request(
            api,
            format!("body: expected a JSON object, got {}", kind(body)),
        )
    })?;
    match field(obj, "model") {
        Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.trim().to_string()),
        Some(other) => Err(GatewayError::bad_request(
            api,
            format!("model: expected a model name, got {}", kind(other)),
        )),
        None => Err(GatewayError::bad_request(api, "model: missing")),
    }
}

fn number(obj: &Map<String, Value>, key: &str) -> Result<Option<Value>, GatewayError> {
    match field(obj, key) {
        None => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
        Some(other) => Err(bad(format!(
            "{key}: expected a number, got {}",
            kind(other)
        ))),
    }
}

fn whole(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, GatewayError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(other) => Err(bad(format!(
            "{key}: expected a whole number, got {}",
            kind(other)
        ))),
    }
}

/// `temperature`, `top_p`, `seed`, `stop`, `max_tokens` / `max_completion_tokens`,
/// `frequency_penalty`, `presence_penalty` as Ollama `options`.
fn options(obj: &Map<String, Value>) -> Result<Map<String, Value>, GatewayError> {
    let mut o = Map::new();
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ] {
        if let Some(v) = number(obj, from)? {
            o.insert(to.into(), v);
        }
    }
    if let Some(seed) = whole(obj, "seed")? {
        o.insert("seed".into(), seed.into());
    }
    let max = match whole(obj, "max_completion_tokens")? {
        Some(m) => Some(m),
        None => whole(obj, "max_tokens")?,
    };
    if let Some(m) = max {
        if m < 1 {
            return Err(bad(format!("max_tokens: must be at least 1, got {m}")));
        }
        o.insert("num_predict".into(), m.into());
    }
    match field(obj, "stop") {
        None => {}
        Some(Value::String(s)) => {
            o.insert("stop".into(), json!([s]));
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            o.insert("stop".into(), Value::Array(a.clone()));
        }
        Some(other) => {
            return Err(bad(format!(
                "stop: expected a string or an array of strings, got {}",
                kind(other)
            )))
        }
    }
    Ok(o)
}

/// `stream` and `stream_options.include_usage`.
pub fn stream_flags(body: &Value) -> Result<(bool, bool), GatewayError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let stream = match field(&obj, "stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(bad(format!(
                "stream: expected true or false, got {}",
                kind(other)
            )))
        }
    };
    let usage = field(&obj, "stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((stream, usage))
}

/// One message's `content`: a string, or parts of which text is joined and images go to
/// Ollama's `images` (base64, from `data:` URLs).
fn content(i: usize, v: Option<&Value>) -> Result<(String, Vec<Value>), GatewayError> {
    match v {
        None | Some(Value::Null) => Ok((String::new(), vec![])),
        Some(Value::String(s)) => Ok((s.clone(), vec![])),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            let mut images = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(p.get("text").and_then(Value::as_str).unwrap_or(""))
                    }
                    Some("image_url") => {
                        let url = p
                            .get("image_url")
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        match url.split_once(";base64,") {
                            Some((_, data)) if url.starts_with("data:") => images.push(json!(data)),
                            _ => {
                                return Err(bad(format!(
                                    "messages[{i}].content[{j}].image_url: only data: URLs with base64 images are supported"
                                )))
                            }
                        }
                    }
                    _ => {
                        return Err(bad(format!(
                            "messages[{i}].content[{j}].type: expected \"text\" or \"image_url\""
                        )))
                    }
                }
            }
            Ok((text, images))
        }
        Some(other) => Err(bad(format!(
            "messages[{i}].content: expected a string or an array of parts, got {}",
            kind(other)
        ))),
    }
}

/// `POST /v1/chat/completions` body -> Ollama `/api/chat` body.
pub fn chat_request(body: &Value, model: &str, stream: bool) -> Result<Value, GatewayError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let msgs = match field(&obj, "messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(bad("messages: must not be empty".into())),
        Some(other) => {
            return Err(bad(format!(
                "messages: expected an array, got {}",
                kind(other)
            )))
        }
        None => return Err(bad("messages: missing".into())),
    };
    let mut out_msgs = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let Some(mo) = m.as_object() else {
            return Err(bad(format!("messages[{i}]: expected an object")));
        };
        let role = match mo.get("role") {
            Some(Value::String(r)) => r.clone(),
            _ => return Err(bad(format!("messages[{i}].role: missing"))),
        };
        let role = if role == "developer" {
            "system".into()
        } else {
            role
        };
        let (text, images) = content(i, mo.get("content"))?;
        let mut om = Map::new();
        om.insert("role".into(), role.into());
        om.insert("content".into(), text.into());
        if !images.is_empty() {
            om.insert("images".into(), images.into());
        }
        for k in ["tool_calls", "name", "tool_call_id"] {
            if let Some(v) = field(mo, k) {
                om.insert(k.into(), v.clone());
            }
        }
        out_msgs.push(Value::Object(om));
    }
    let mut req = json!({
        "model": model,
        "messages": out_msgs,
        "stream": stream,
        "options": options(&obj)?,
    });
    if let Some(t) = field(&obj, "tools") {
        req["tools"] = t.clone();
    }
    if let Some(f) = response_format(&obj)? {
        req["format"] = f;
    }
    Ok(req)
}

fn response_format(obj: &Map<String, Value>) -> Result<Option<Value>, GatewayError> {
    let Some(rf) = field(obj, "response_format") else {
        return Ok(None);
    };
    match rf.get("type").and_then(Value::as_str) {
        Some("json_object") => Ok(Some(json!("json"))),
        Some("json_schema") => Ok(rf.get("json_schema").and_then(|s| s.get("schema")).cloned()),
        Some("text") | None => Ok(None),
        Some(other) => Err(bad(format!(
            "response_format.type: expected text, json_object or json_schema, got \"{other}\""
        ))),
    }
}

/// `POST /v1/completions` body -> Ollama `/api/generate` body.
pub fn completion_request(body: &Value, model: &str, stream: bool) -> Result<Value, GatewayError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let prompt = match field(&obj, "prompt") {
        Some(Value::String(p)) => p.clone(),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or("").to_string()
        }
        Some(Value::Array(_)) => {
            return Err(bad(
                "prompt: only one prompt per request is supported (a string)".into(),
            ))
        }
        Some(other) => {
            return Err(bad(format!(
                "prompt: expected a string, got {}",
                kind(other)
            )))
        }
        None => return Err(bad("prompt: missing".into())),
    };
    let mut req = json!({
        "model": model,
        "prompt": prompt,
        "stream": stream,
        "options": options(&obj)?,
    });
    if let Some(Value::String(s)) = field(&obj, "suffix") {
        req["suffix"] = json!(s);
    }
    Ok(req)
}

/// `POST /v1/embeddings` body -> Ollama `/api/embed` body, and whether the client wants
/// base64 (the `openai` Python package asks for it by default).
pub fn embeddings_request(body: &Value, model: &str) -> Result<(Value, bool), GatewayError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let input = match field(&obj, "input") {
        Some(v @ Value::String(_)) => v.clone(),
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            Value::Array(a.clone())
        }
        Some(Value::Array(_)) => {
            return Err(bad(
                "input: expected a string or a non-empty array of strings (token arrays are not supported)".into(),
            ))
        }
        Some(other) => return Err(bad(format!("input: expected a string, got {}", kind(other)))),
        None => return Err(bad("input: missing".into())),
    };
    let base64 = match field(&obj, "encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(bad(format!(
                "encoding_format: expected \"float\" or \"base64\", got \"{other}\""
            )))
        }
    };
    let mut req = json!({"model": model, "input": input});
    if let Some(d) = whole(&obj, "dimensions")? {
        req["dimensions"] = d.into();
    }
    Ok((req, base64))
}

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
fn floats_base64(e: &Value) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_options_are_mapped() {
        let body = json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "stop": "x", "seed": 3
        });
        let r = chat_request(&body, "m", true).unwrap();
        assert_eq!(r["options"]["num_predict"], 7);
        assert_eq!(r["options"]["temperature"], 0.5);
        assert_eq!(r["options"]["top_p"], 0.9);
        assert_eq!(r["options"]["stop"], json!(["x"]));
        assert_eq!(r["options"]["seed"], 3);
        assert_eq!(r["stream"], true);
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 7, "max_completion_tokens": 9});
        assert_eq!(
            chat_request(&body, "m", false).unwrap()["options"]["num_predict"],
            9
        );
    }

    #[test]
    fn bad_chat_bodies_name_the_field() {
        let e = chat_request(&json!({"model": "m"}), "m", false).unwrap_err();
        assert!(e.message.starts_with("messages: missing"));
        let e = chat_request(
            &json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
            "m",
            false,
        )
        .unwrap_err();
        assert!(e.message.starts_with("temperature:"), "{}", e.message);
        assert!(model_of(&json!({"messages": []}), Api::OpenAi).is_err());
    }

    #[test]
    fn stream_ends_with_usage_and_done() {
        let mut s = SseShaper::new(Meta::new("chatcmpl", "a-b", 1.0, "m"), true, true);
        let first = String::from_utf8(
            s.chunk(&json!({"message": {"role": "assistant", "content": "Hi"}, "done": false}))
                .unwrap(),
        )
        .unwrap();
        assert!(first.starts_with("data: {") && first.contains("\"role\":\"assistant\""));
        let end = String::from_utf8(s.done(&json!({
            "message": {"content": ""}, "done": true, "done_reason": "stop",
            "prompt_eval_count": 3, "eval_count": 5
        })))
        .unwrap();
        assert!(end.contains("\"finish_reason\":\"stop\""));
        assert!(end.contains("\"total_tokens\":8"));
        assert!(end.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn base64_matches_known_bytes() {
        // 1.0f32 = 00 00 80 3f.
        assert_eq!(floats_base64(&json!([1.0])), "AACAPw==");
    }
}
