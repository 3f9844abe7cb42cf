//! Checks on what a request claims, before the fleet believes it.
//!
//! The seed's answers: **400** for a required field that is missing (or `null`) and for a
//! body that is not a JSON object; **422** for a value of the wrong type or out of range.

use pifleet_protocol::NodeMetrics;
use serde_json::Value;

use crate::error::AppError;

/// The seed answers 400 when a required field is absent; `null` counts as absent.
pub fn require(body: &Value, fields: &[&str]) -> Result<(), AppError> {
    for field in fields {
        if matches!(body.get(field), None | Some(Value::Null)) {
            return Err(AppError::BadRequest(format!(
                "{field}: missing (a required field)"
            )));
        }
    }
    Ok(())
}

/// Characters that print as nothing or reorder text: an id containing one looks like
/// another id (`pi-a` vs `pi-a\u{200B}`) or hides its real end (U+202E) in logs and
/// on the status page.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E0FFF}')
}

const MAX_ID_LEN: usize = 128;

/// Worker ids appear in paths, logs, the database and the status page: printable, visible
/// and short.
pub fn check_worker_id(field: &str, id: &str) -> Result<(), AppError> {
    if id.trim().is_empty() {
        return Err(AppError::Invalid(format!("{field}: must not be empty")));
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(AppError::Invalid(format!(
            "{field}: longer than {MAX_ID_LEN} characters"
        )));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(AppError::Invalid(format!(
            "{field}: must not contain control characters (found U+{:04X})",
            c as u32
        )));
    }
    if let Some(c) = id
        .chars()
        .find(|&c| invisible(c) || (c.is_whitespace() && c != ' '))
    {
        return Err(AppError::Invalid(format!(
            "{field}: must not contain invisible or direction-changing characters (found U+{:04X})",
            c as u32
        )));
    }
    Ok(())
}

/// Largest serialized `capabilities` of one node: a model list of a few hundred names
/// fits many times over; a megabyte per node times a fleet does not.
pub const MAX_CAPABILITIES_BYTES: usize = 64 * 1024;

pub fn check_capabilities_size(caps: &Value) -> Result<(), AppError> {
    let size = caps.to_string().len();
    if size > MAX_CAPABILITIES_BYTES {
        return Err(AppError::Invalid(format!(
            "capabilities: {size} bytes, more than the {MAX_CAPABILITIES_BYTES} a node may declare"
        )));
    }
    Ok(())
}

/// The model lists of one heartbeat, held in each of the node's history samples: the same
/// bound as a node's declared capabilities.
fn check_model_lists(m: &NodeMetrics) -> Result<(), AppError> {
    let present: usize = m.models_present.iter().flatten().map(|n| n.len() + 3).sum();
    let loaded = m
        .models_loaded
        .as_ref()
        .map_or(0, |l| serde_json::to_string(l).map_or(0, |s| s.len()));
    let size = present + loaded;
    if size > MAX_CAPABILITIES_BYTES {
        return Err(AppError::Invalid(format!(
            "metrics.models_present and metrics.models_loaded: {size} bytes together, more \
             than the {MAX_CAPABILITIES_BYTES} a node may report"
        )));
    }
    Ok(())
}

fn in_range(field: &str, v: f32, lo: f32, hi: f32) -> Result<(), AppError> {
    if !v.is_finite() {
        return Err(AppError::Invalid(format!(
            "{field}: must be a finite number (a value beyond ±3.4e38 does not fit)"
        )));
    }
    if v < lo || v > hi {
        return Err(AppError::Invalid(format!(
            "{field}: {v} is out of range {lo} to {hi}"
        )));
    }
    Ok(())
}

/// Metrics placement believes: a node reporting -1e39 °C must not become the coolest.
pub fn check_metrics(m: &NodeMetrics) -> Result<(), AppError> {
    if let Some(t) = m.temperature_c {
        in_range("metrics.temperature_c", t, -60.0, 150.0)?;
    }
    if let Some(c) = m.cpu_percent {
        in_range("metrics.cpu_percent", c, 0.0, 100.0)?;
    }
    if let Some(load) = m.load_avg {
        for (i, l) in load.iter().enumerate() {
            in_range(&format!("metrics.load_avg[{i}]"), *l, 0.0, 100_000.0)?;
        }
    }
    check_model_lists(m)?;
    if let (Some(avail), Some(total)) = (m.memory_available_bytes, m.memory_total_bytes) {
        if avail > total {
            return Err(AppError::Invalid(format!(
                "metrics.memory_available_bytes: {avail} is more than memory_total_bytes {total}"
            )));
        }
    }
    if let (Some(free), Some(total)) = (m.swap_free_bytes, m.swap_total_bytes) {
        if free > total {
            return Err(AppError::Invalid(format!(
                "metrics.swap_free_bytes: {free} is more than swap_total_bytes {total}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_with_invisible_or_control_characters_are_refused() {
        for bad in [
            "pi\u{202E}a",
            "pi-a\u{200B}",
            "pi\u{FEFF}",
            "pi\u{7}",
            "pi\u{00A0}a",
        ] {
            let e = check_worker_id("worker_id", bad).unwrap_err();
            assert_eq!(e.status(), 422, "{bad:?}");
            assert!(e.to_string().starts_with("worker_id:"), "{e}");
        }
        for good in ["pi-kitchen", "Pi 5 (attic)", "raspi-ñandú-1", "ラズパイ"] {
            check_worker_id("worker_id", good).unwrap();
        }
    }

    #[test]
    fn impossible_metrics_name_the_field() {
        let m: NodeMetrics = serde_json::from_value(json!({"temperature_c": -1e39})).unwrap();
        let e = check_metrics(&m).unwrap_err().to_string();
        assert!(
            e.starts_with("metrics.temperature_c: must be a finite"),
            "{e}"
        );
        let m: NodeMetrics = serde_json::from_value(json!({"temperature_c": 900})).unwrap();
        assert!(check_metrics(&m).is_err());
        let m: NodeMetrics = serde_json::from_value(json!({"load_avg": [1, -2, 3]})).unwrap();
        let e = check_metrics(&m).unwrap_err().to_string();
        assert!(e.starts_with("metrics.load_avg[1]"), "{e}");
        let m: NodeMetrics = serde_json::from_value(
            json!({"temperature_c": 51.5, "cpu_percent": 12, "load_avg": [0.5, 0.4, 0.3]}),
        )
        .unwrap();
        check_metrics(&m).unwrap();
    }

    #[test]
    fn a_heartbeat_cannot_report_more_models_than_a_node_may_declare() {
        let names: Vec<String> = (0..4_000).map(|i| format!("model-{i:05}:latest")).collect();
        let m: NodeMetrics = serde_json::from_value(json!({ "models_present": names })).unwrap();
        let e = check_metrics(&m).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.to_string().starts_with("metrics.models_present"), "{e}");
        let loaded: Vec<_> = (0..2_000)
            .map(|i| json!({"name": format!("model-{i:05}:latest"), "size_bytes": 1u64 << 30}))
            .collect();
        let m: NodeMetrics = serde_json::from_value(json!({ "models_loaded": loaded })).unwrap();
        assert!(check_metrics(&m).is_err());
        let few: Vec<String> = (0..300).map(|i| format!("model-{i:05}:latest")).collect();
        let m: NodeMetrics = serde_json::from_value(json!({ "models_present": few })).unwrap();
        check_metrics(&m).unwrap();
    }

    #[test]
    fn a_missing_or_null_required_field_is_a_400() {
        let e = require(&json!({"a": 1, "b": null}), &["a", "b"]).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().starts_with("b: missing"), "{e}");
    }
}
