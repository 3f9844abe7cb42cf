//! What models the fleet offers, in Ollama's and OpenAI's listing shapes: the union of the
//! models on live nodes that run gateway requests.

use std::collections::BTreeMap;

use pifleet_protocol::{task_type, NodeView, WorkerState};
use serde_json::{json, Value};

use crate::fleet::placement::canonical_model;

/// Nodes that can run a gateway request now (alive, and they offer `ollama_api`).
fn serving(nodes: &[NodeView]) -> impl Iterator<Item = &NodeView> {
    nodes.iter().filter(|n| {
        n.status != WorkerState::Dead
            && n.capabilities
                .task_types
                .iter()
                .any(|t| t == task_type::OLLAMA_API)
    })
}

/// Every model name a node has (declared, present on disk, loaded).
fn names(n: &NodeView) -> Vec<&str> {
    let mut out: Vec<&str> = n.capabilities.models.iter().map(String::as_str).collect();
    if let Some(m) = &n.metrics {
        out.extend(m.models_present.iter().flatten().map(String::as_str));
        out.extend(m.models_loaded.iter().flatten().map(|l| l.name.as_str()));
    }
    out
}

/// The full name Ollama shows: `llama3` is `llama3:latest`.
fn full_name(m: &str) -> String {
    if m.contains(':') {
        m.to_string()
    } else {
        format!("{m}:latest")
    }
}

/// Is `model` on some live serving node?
pub fn has_model(nodes: &[NodeView], model: &str) -> bool {
    let want = canonical_model(model);
    serving(nodes).any(|n| names(n).iter().any(|m| canonical_model(m) == want))
}

struct Entry<'a> {
    since: f64,
    node: &'a NodeView,
}

fn union(nodes: &[NodeView]) -> BTreeMap<String, Entry<'_>> {
    let mut out: BTreeMap<String, Entry<'_>> = BTreeMap::new();
    for n in serving(nodes) {
        for m in names(n) {
            let e = out.entry(full_name(m)).or_insert(Entry {
                since: n.registered_at,
                node: n,
            });
            e.since = e.since.min(n.registered_at);
        }
    }
    out
}

fn details(n: &NodeView, name: &str) -> (Option<u64>, Value) {
    let want = canonical_model(name);
    let d = n
        .capabilities
        .model_details
        .iter()
        .find(|d| canonical_model(&d.name) == want);
    let size = d.and_then(|d| d.size_bytes);
    let details = json!({
        "format": "gguf",
        "family": d.and_then(|d| d.family.clone()),
        "families": d.and_then(|d| d.family.clone()).map(|f| vec![f]),
        "parameter_size": d.and_then(|d| d.parameter_size.clone()),
        "quantization_level": d.and_then(|d| d.quantization.clone()),
    });
    (size, details)
}

/// `GET /api/tags`.
pub fn tags(nodes: &[NodeView]) -> Value {
    let models: Vec<Value> = union(nodes)
        .into_iter()
        .map(|(name, e)| {
            let (size, details) = details(e.node, &name);
            json!({
                "name": name,
                "model": name,
                "modified_at": rfc3339(e.since),
                "size": size.unwrap_or(0),
                "details": details,
            })
        })
        .collect();
    json!({ "models": models })
}

/// `GET /api/ps`: every loaded model, once per node that has it loaded.
pub fn ps(nodes: &[NodeView]) -> Value {
    let mut models = Vec::new();
    for n in serving(nodes) {
        let Some(loaded) = n.metrics.as_ref().and_then(|m| m.models_loaded.as_ref()) else {
            continue;
        };
        for l in loaded {
            let name = full_name(&l.name);
            let (size, details) = details(n, &name);
            models.push(json!({
                "name": name,
                "model": name,
                "size": l.size_bytes.or(size).unwrap_or(0),
                "details": details,
                "expires_at": l.expires_at,
                "node": n.worker_id,
            }));
        }
    }
    json!({ "models": models })
}

/// `GET /v1/models`.
pub fn openai_models(nodes: &[NodeView]) -> Value {
    let data: Vec<Value> = union(nodes)
        .into_iter()
        .map(|(name, e)| openai_model(&name, e.since))
        .collect();
    json!({"object": "list", "data": data})
}

/// `GET /v1/models/{model}`.
pub fn openai_model_named(nodes: &[NodeView], model: &str) -> Option<Value> {
    let want = canonical_model(model);
    union(nodes)
        .into_iter()
        .find(|(name, _)| canonical_model(name) == want)
        .map(|(name, e)| openai_model(&name, e.since))
}

fn openai_model(name: &str, since: f64) -> Value {
    json!({"id": name, "object": "model", "created": since as u64, "owned_by": "pifleet"})
}

/// Seconds since the epoch as RFC 3339 UTC, the way Ollama writes times.
pub fn rfc3339(t: f64) -> String {
    let secs = t.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000.0), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn bare_names_are_latest() {
        assert_eq!(full_name("llama3"), "llama3:latest");
        assert_eq!(full_name("llama3.2:1b"), "llama3.2:1b");
    }
}
