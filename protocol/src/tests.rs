use super::*;
use serde_json::json;

#[test]
fn task_state_words_round_trip_and_match_the_wire() {
    for s in [
        TaskState::Pending,
        TaskState::Assigned,
        TaskState::Completed,
        TaskState::Failed,
    ] {
        assert_eq!(TaskState::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    assert_eq!(TaskState::parse("Pending"), None);
}

#[test]
fn seed_register_body_parses_and_means_every_type() {
    let req: RegisterRequest = serde_json::from_value(json!({
        "worker_id": "groq-worker-1",
        "worker_type": "groq",
        "capabilities": {"max_tokens": 2000, "models": ["llama-3.3-70b"]}
    }))
    .unwrap();
    assert_eq!(req.worker_id, "groq-worker-1");
    assert_eq!(req.capabilities.models, vec!["llama-3.3-70b"]);
    assert_eq!(req.capabilities.max_tokens, Some(2000));
    assert!(req.capabilities.task_types.is_empty());
}

#[test]
fn unknown_capability_fields_are_kept() {
    let caps: Capabilities = serde_json::from_value(json!({"models": [], "gpu": "none"})).unwrap();
    assert_eq!(caps.extra.get("gpu"), Some(&json!("none")));
    let back = serde_json::to_value(&caps).unwrap();
    assert_eq!(back["gpu"], json!("none"));
}

#[test]
fn empty_heartbeat_body_is_valid() {
    let hb: HeartbeatRequest = serde_json::from_str("{}").unwrap();
    assert_eq!(hb, HeartbeatRequest::default());
}

#[test]
fn spooled_results_are_optional_and_left_out_when_absent() {
    let old: HeartbeatRequest = serde_json::from_str(r#"{"running_tasks": ["a"]}"#).unwrap();
    assert_eq!(old.spooled_results, None);
    let hb = HeartbeatRequest {
        running_tasks: Some(vec!["a".into()]),
        spooled_results: Some(vec!["b".into()]),
        ..Default::default()
    };
    let v = serde_json::to_value(&hb).unwrap();
    assert_eq!(v, json!({"running_tasks": ["a"], "spooled_results": ["b"]}));
    let seed = serde_json::to_value(HeartbeatRequest::default()).unwrap();
    assert_eq!(seed, json!({}));
}

#[test]
fn poll_response_without_task_is_null() {
    let none = serde_json::to_value(PollResponse { task: None }).unwrap();
    assert_eq!(none, json!({"task": null}));
    let seed: PollResponse = serde_json::from_value(json!({
        "task": {"task_id": "uuid-1234", "type": "agent_action", "data": {}}
    }))
    .unwrap();
    let task = seed.task.unwrap();
    assert_eq!(task.task_type, "agent_action");
    assert_eq!(task.attempt, None);
}

#[test]
fn seed_status_shape_round_trips() {
    let seed = json!({
        "task_id": "uuid-1234",
        "status": "completed",
        "assigned_to": "deepseek-raspi-1",
        "result": {"success": true}
    });
    let parsed: TaskStatusResponse = serde_json::from_value(seed.clone()).unwrap();
    assert_eq!(parsed.status, TaskState::Completed);
    assert_eq!(serde_json::to_value(&parsed).unwrap(), seed);
}

#[test]
fn throttle_bits_are_read() {
    let m = NodeMetrics {
        throttled: Some(0x50005),
        ..Default::default()
    };
    assert!(m.under_voltage_now());
    assert!(m.throttled_now());
    assert!(!m.soft_temp_limit_now());
}

#[test]
fn durations_read_at_a_glance() {
    assert_eq!(human::duration(0.85), "850ms");
    assert_eq!(human::duration(3.24), "3.2s");
    assert_eq!(human::duration(48.9), "48s");
    assert_eq!(human::duration(125.0), "2m05s");
    assert_eq!(human::duration(3.0 * 3600.0 + 7.0 * 60.0 + 5.0), "3h07m");
    assert_eq!(human::duration(-1.0), "0ms");
}

#[test]
fn ollama_api_task_reads_the_contract() {
    let t: OllamaApiTask = serde_json::from_value(json!({
        "model": "m", "endpoint": "chat",
        "request": {"model": "m", "messages": []}, "stream": true
    }))
    .unwrap();
    assert!(t.stream && t.endpoint == ollama_endpoint::CHAT);
    assert!(task_type::NEEDS_MODEL.contains(&task_type::OLLAMA_API));
    assert_eq!(
        stream_path("t 1", "pi/1", 2),
        "/api/tasks/t%201/stream?worker_id=pi%2F1&attempt=2"
    );
}

#[test]
fn worker_path_encodes_odd_ids() {
    assert_eq!(
        worker_path("pi 1/a", "tasks"),
        "/api/workers/pi%201%2Fa/tasks"
    );
    assert_eq!(task_path("uuid-1", "result"), "/api/tasks/uuid-1/result");
}

#[test]
fn stop_tasks_is_optional_on_the_heartbeat_answer() {
    let seed: HeartbeatResponse = serde_json::from_str(r#"{"status":"ok"}"#).unwrap();
    assert_eq!(seed.stop_tasks, None);
    let resp: HeartbeatResponse =
        serde_json::from_value(json!({"status": "ok", "stop_tasks": ["t-1"]})).unwrap();
    assert_eq!(resp.stop_tasks, Some(vec!["t-1".to_string()]));
    let v = serde_json::to_value(HeartbeatResponse {
        stop_tasks: None,
        ..resp
    })
    .unwrap();
    assert!(v.get("stop_tasks").is_none(), "{v}");
}
