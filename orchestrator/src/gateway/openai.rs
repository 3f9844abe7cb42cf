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

mod reply;
pub use reply::*;

#[cfg(test)]
mod tests;
