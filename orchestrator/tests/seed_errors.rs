//! The seed's error answers, one test per case: 400 `{"error": ...}` naming the field for a
//! missing required field or a body that is not a JSON object; 422 for a value of the
//! wrong type or out of range. And what a heartbeat or a register may claim.

mod util;

use axum::http::StatusCode;
use serde_json::{json, Value};
use util::Harness;

/// Sends `body` (raw text) and checks the status and that the error names `field`.
async fn answers(method: &str, path: &str, body: &str, want: u16, field: &str) -> Harness {
    let h = Harness::new();
    h.register("w", json!({})).await;
    let (s, v) = h.raw(method, path, body.to_string()).await;
    assert_eq!(s.as_u16(), want, "{method} {path} {body}: {v}");
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {v}"));
    assert!(msg.starts_with(field), "{msg:?} does not name {field:?}");
    h
}

macro_rules! case {
    ($name:ident, $method:expr, $path:expr, $body:expr, $want:expr, $field:expr) => {
        #[tokio::test]
        async fn $name() {
            answers($method, $path, $body, $want, $field).await;
        }
    };
}

const REG: &str = "/api/workers/register";
const SUBMIT: &str = "/api/tasks/submit";
const RESULT: &str = "/api/tasks/some-task/result";

case!(
    register_without_worker_id,
    "POST",
    REG,
    r#"{"worker_type": "groq", "capabilities": {}}"#,
    400,
    "worker_id: missing"
);
case!(
    register_without_worker_type,
    "POST",
    REG,
    r#"{"worker_id": "g1", "capabilities": {}}"#,
    400,
    "worker_type: missing"
);
case!(
    register_without_capabilities,
    "POST",
    REG,
    r#"{"worker_id": "g1", "worker_type": "groq"}"#,
    400,
    "capabilities: missing"
);
case!(register_with_a_null_body, "POST", REG, "null", 400, "body:");
case!(
    register_with_an_array_body,
    "POST",
    REG,
    "[1]",
    400,
    "body:"
);
case!(
    register_with_a_number_for_worker_id,
    "POST",
    REG,
    r#"{"worker_id": 5, "worker_type": "groq", "capabilities": {}}"#,
    422,
    "worker_id"
);
case!(
    register_with_capabilities_not_an_object,
    "POST",
    REG,
    r#"{"worker_id": "g1", "worker_type": "groq", "capabilities": [1]}"#,
    422,
    "capabilities"
);

case!(
    submit_without_type,
    "POST",
    SUBMIT,
    r#"{"data": {}}"#,
    400,
    "type: missing"
);
case!(
    submit_without_data,
    "POST",
    SUBMIT,
    r#"{"type": "agent_action"}"#,
    400,
    "data: missing"
);
case!(
    submit_with_a_null_body,
    "POST",
    SUBMIT,
    "null",
    400,
    "body:"
);
case!(
    submit_with_a_string_body,
    "POST",
    SUBMIT,
    r#""agent_action""#,
    400,
    "body:"
);
case!(
    submit_with_data_not_an_object,
    "POST",
    SUBMIT,
    r#"{"type": "agent_action", "data": "hi"}"#,
    422,
    "data:"
);
case!(
    submit_with_priority_out_of_range,
    "POST",
    SUBMIT,
    r#"{"type": "agent_action", "data": {}, "priority": 11}"#,
    422,
    "priority:"
);

case!(
    result_without_worker_id,
    "POST",
    RESULT,
    r#"{"result": {"success": true}}"#,
    400,
    "worker_id: missing"
);
case!(
    result_without_result,
    "POST",
    RESULT,
    r#"{"worker_id": "w"}"#,
    400,
    "result: missing"
);
case!(
    result_with_a_null_body,
    "POST",
    RESULT,
    "null",
    400,
    "body:"
);
case!(
    result_with_result_not_an_object,
    "POST",
    RESULT,
    r#"{"worker_id": "w", "result": "done"}"#,
    422,
    "result:"
);

case!(
    heartbeat_with_an_array_body,
    "POST",
    "/api/workers/w/heartbeat",
    "[]",
    400,
    "body:"
);

#[tokio::test]
async fn a_submit_that_was_refused_leaves_nothing_behind() {
    let h = answers("POST", SUBMIT, r#"{"type": "agent_action"}"#, 400, "data:").await;
    let (_, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(stats["tasks"]["total"], 0);
}

async fn heartbeat(h: &Harness, metrics: Value) -> (StatusCode, Value) {
    h.call(
        "POST",
        "/api/workers/w/heartbeat",
        Some(json!({ "metrics": metrics })),
    )
    .await
}

#[tokio::test]
async fn an_impossible_temperature_is_refused_and_not_believed() {
    let h = Harness::new();
    h.register("w", json!({})).await;
    h.heartbeat("w", json!({"temperature_c": 51.5})).await;
    for bad in [json!(-1e39), json!(1e39), json!(-300), json!(1000)] {
        let (s, v) = heartbeat(&h, json!({ "temperature_c": bad })).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("metrics.temperature_c:"),
            "{v}"
        );
    }
    // The last believable reading stands.
    let (s, node) = h.call("GET", "/api/nodes/w", None).await;
    assert_eq!(s, StatusCode::OK, "{node}");
    assert_eq!(node["metrics"]["temperature_c"], json!(51.5), "{node}");
    assert_eq!(node["history"].as_array().map(Vec::len), Some(1), "{node}");
}

#[tokio::test]
async fn impossible_load_cpu_and_memory_are_refused_naming_the_field() {
    let h = Harness::new();
    h.register("w", json!({})).await;
    let cases = [
        (json!({"cpu_percent": 250}), "metrics.cpu_percent:"),
        (json!({"cpu_percent": -1}), "metrics.cpu_percent:"),
        (
            json!({"load_avg": [1.0, 1e39, 1.0]}),
            "metrics.load_avg[1]:",
        ),
        (
            json!({"memory_total_bytes": 1000, "memory_available_bytes": 2000}),
            "metrics.memory_available_bytes:",
        ),
        // Each heartbeat's model list is kept in the node's history: 10,000 names would
        // be half a megabyte per sample.
        (
            json!({"models_present": (0..10_000).map(|i| format!("m{i}:latest")).collect::<Vec<_>>()}),
            "metrics.models_present",
        ),
    ];
    for (metrics, field) in cases {
        let (s, v) = heartbeat(&h, metrics.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{metrics}: {v}");
        assert!(v["error"].as_str().unwrap().starts_with(field), "{v}");
    }
    let (s, _) = heartbeat(
        &h,
        json!({"cpu_percent": 12.5, "load_avg": [0.1, 0.2, 0.3]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn worker_ids_with_invisible_or_direction_characters_are_refused() {
    let h = Harness::new();
    for id in ["pi-a\u{202E}", "pi\u{200B}-a", "\u{FEFF}pi", "pi\u{2066}a"] {
        let (s, v) = h
            .call(
                "POST",
                "/api/workers/register",
                Some(json!({"worker_id": id, "worker_type": "pi", "capabilities": {}})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{id:?}: {v}");
        assert!(
            v["error"].as_str().unwrap().starts_with("worker_id:"),
            "{v}"
        );
    }
    let (_, list) = h.call("GET", "/api/workers/list", None).await;
    assert_eq!(list["total"], 0);
}

#[tokio::test]
async fn oversized_capabilities_are_refused() {
    let h = Harness::new();
    let models: Vec<String> = (0..5000).map(|i| format!("model-{i:05}:latest")).collect();
    let (s, v) = h
        .call(
            "POST",
            "/api/workers/register",
            Some(json!({"worker_id": "big", "worker_type": "pi", "capabilities": {"models": models}})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"].as_str().unwrap().starts_with("capabilities:"),
        "{v}"
    );
}
