//! The health views' bookkeeping, in process on a manual clock: the per-priority pending
//! counts kept as tasks move must always match the queue, the recent failures list what
//! failed for good, and `/metrics` and `/api/nodes` agree with the state.

mod util;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;
use util::Harness;

/// The per-priority pending counts from the queue endpoint (ground truth: it walks the queue).
async fn queue_by_priority(h: &Harness) -> BTreeMap<u8, u64> {
    let (_, q) = h.call("GET", "/api/tasks/queue", None).await;
    q["by_priority"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.as_u64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

async fn assert_counts_agree(h: &Harness, when: &str) {
    assert_eq!(
        h.fleet.pending_by_priority(),
        queue_by_priority(h).await,
        "pending by priority disagrees with the queue {when}"
    );
}

#[tokio::test]
async fn pending_counts_follow_submit_assign_requeue_and_failure() {
    let h = Harness::with(|raw| raw.max_attempts = Some(2));
    h.register("a", json!({})).await;
    h.register("b", json!({})).await;
    let mut ids = Vec::new();
    for p in [9, 9, 5, 1] {
        ids.push(h.submit(json!({"type": "t", "priority": p})).await);
    }
    assert_counts_agree(&h, "after submits").await;
    assert_eq!(
        h.fleet.pending_by_priority(),
        [(1, 1), (5, 1), (9, 2)].into()
    );

    let t = h.poll("a").await;
    assert_eq!(t["priority"], 9);
    assert_counts_agree(&h, "after an assignment").await;

    // A retryable failure requeues the task at its priority.
    let (s, _) = h
        .result(
            t["task_id"].as_str().unwrap(),
            "a",
            json!({"success": false, "retryable": true, "error": "busy"}),
        )
        .await;
    assert!(s.is_success());
    assert_counts_agree(&h, "after a retryable failure").await;

    // The node dies holding a task: requeued, then failed for good on its last attempt.
    let again = h.poll("a").await;
    let again_id = again["task_id"].as_str().unwrap().to_string();
    for _ in 0..4 {
        h.advance(8.0);
        h.heartbeat("b", json!({})).await;
    }
    assert_counts_agree(&h, "after the dead node's work failed").await;
    let failures = h.fleet.recent_failures(10);
    let failed_ids: Vec<&str> = failures.iter().map(|f| f.task_id.as_str()).collect();
    let (_, st) = h
        .call("GET", &format!("/api/tasks/status/{again_id}"), None)
        .await;
    assert_eq!(
        st["status"], "failed",
        "its second failed attempt of two: {st}"
    );
    assert_eq!(failed_ids, [again_id.as_str()]);
    assert!(
        failures[0].error.contains("stopped heartbeating"),
        "{failures:?}"
    );

    // A plain failure is listed first.
    let t = h.poll("b").await;
    let id = t["task_id"].as_str().unwrap();
    h.result(
        id,
        "b",
        json!({"success": false, "error": "model exploded"}),
    )
    .await;
    let failures = h.fleet.recent_failures(10);
    assert_eq!(failures[0].task_id, id);
    assert!(failures[0].error.contains("model exploded"));
    assert_eq!(failures[0].worker_id.as_deref(), Some("b"));
    assert_counts_agree(&h, "at the end").await;
}

#[tokio::test]
async fn metrics_and_nodes_agree_on_a_drained_node() {
    let h = Harness::new();
    h.register("pi", json!({})).await;
    h.heartbeat("pi", json!({"temperature_c": 64.5})).await;
    let (s, v) = h.call("POST", "/api/nodes/pi/drain", Some(json!({}))).await;
    assert!(s.is_success(), "{v}");
    let (_, nodes) = h.call("GET", "/api/nodes", None).await;
    assert_eq!(nodes["nodes"][0]["status"], "draining");
    let resp = h
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        text.contains("pifleet_node_draining{node=\"pi\"} 1.0"),
        "{text}"
    );
    assert!(
        text.contains("pifleet_node_temperature_celsius{node=\"pi\"} 64.5"),
        "{text}"
    );
    assert!(
        text.contains("pifleet_nodes{status=\"draining\"} 1.0"),
        "{text}"
    );
}

#[tokio::test]
async fn views_carry_the_configured_thresholds_and_the_page_marks_by_them() {
    let h = Harness::with(|raw| {
        raw.soft_temp_c = Some(60.0);
        raw.hard_temp_c = Some(70.0);
    });
    h.register("pi", json!({})).await;
    // Warm by this configuration, cool by the defaults (80 / 85).
    h.heartbeat("pi", json!({"temperature_c": 65.0})).await;
    let (_, nodes) = h.call("GET", "/api/nodes", None).await;
    assert_eq!(
        nodes["thresholds"],
        json!({"soft_temp_c": 60.0, "hard_temp_c": 70.0})
    );
    let (_, node) = h.call("GET", "/api/nodes/pi", None).await;
    assert_eq!(node["thresholds"]["hard_temp_c"], 70.0);
    let resp = h
        .app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let html = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        html.contains(r#"<span class="v temp warm">65.0°C</span>"#),
        "{html}"
    );
}
