//! `POST /api/embed`.

use std::net::TcpStream;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::generate::unknown_model;
use super::http::respond;
use super::State;

/// `POST /api/embed`: one vector per input, the same for the same text.
pub(super) fn embed(
    conn: &mut TcpStream,
    state: &Mutex<State>,
    body: &Value,
) -> std::io::Result<()> {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if model.is_empty() {
        return respond(conn, 400, &json!({"error": "model is required"}));
    }
    if let Some(r) = unknown_model(conn, state, model) {
        return r;
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return respond(conn, 400, &json!({"error": "invalid input type"})),
    };
    let dims = body.get("dimensions").and_then(Value::as_u64).unwrap_or(8) as usize;
    let embeddings: Vec<Vec<f64>> = inputs.iter().map(|t| vector(t, dims)).collect();
    let words: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    respond(
        conn,
        200,
        &json!({
            "model": model, "embeddings": embeddings,
            "total_duration": 14_143_917u64, "load_duration": 1_019_500u64,
            "prompt_eval_count": words as u64
        }),
    )
}

/// A unit vector from the text's bytes (FNV-1a per dimension).
fn vector(text: &str, dims: usize) -> Vec<f64> {
    let raw: Vec<f64> = (0..dims)
        .map(|d| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ d as u64;
            for b in text.bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
            (h % 2000) as f64 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
    raw.into_iter().map(|x| x / norm).collect()
}
