//! An attempt's end: timeouts, retries and their backoff, retryable failures, only the
//! current holder settles, late results of revoked attempts.

use super::*;

#[tokio::test]
async fn timeout_then_retry_then_failure_after_max_attempts() {
    let h = Harness::new();
    h.register("slow", json!({})).await;
    let id = h
        .submit(json!({"type": "t", "timeout_s": 20, "max_attempts": 2}))
        .await;
    for attempt in 1..=2 {
        let t = h.poll("slow").await;
        assert_eq!(t["task_id"], id);
        assert_eq!(t["attempt"], attempt);
        h.advance(21.0);
        h.heartbeat("slow", json!({})).await;
    }
    let st = h.status(&id).await;
    assert_eq!(st["status"], "failed");
    assert!(st["error"].as_str().unwrap().contains("timed out"), "{st}");
    assert!(
        st["error"].as_str().unwrap().contains("gave up after 2"),
        "{st}"
    );
    assert!(h.poll("slow").await.is_null());
    // The attempt that timed out cannot settle the task any more.
    let (s, _) = h.result(&id, "slow", json!({"success": true})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(h.status(&id).await["status"], "failed");
}

#[tokio::test]
async fn retry_backoff_delays_the_next_attempt() {
    let h = Harness::with(|c| {
        c.retry_backoff_s = Some(5.0);
        c.retry_backoff_max_s = Some(60.0);
    });
    h.register("w", json!({})).await;
    let id = h.submit(json!({"type": "t"})).await;
    h.poll("w").await;
    h.result(
        &id,
        "w",
        json!({"success": false, "retryable": true, "error": "ollama busy"}),
    )
    .await;
    assert!(h.poll("w").await.is_null());
    let st = h.status(&id).await;
    assert!(
        st["pending_reason"]
            .as_str()
            .unwrap()
            .starts_with("retry backoff"),
        "{st}"
    );
    h.advance(6.0);
    assert_eq!(h.poll("w").await["attempt"], 2);
}

#[tokio::test]
async fn failures_fail_unless_retryable() {
    let h = Harness::new();
    h.register("w", json!({})).await;
    let plain = h.submit(json!({"type": "t"})).await;
    h.poll("w").await;
    let (s, _) = h
        .result(
            &plain,
            "w",
            json!({"success": false, "error": "bad prompt"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let st = h.status(&plain).await;
    assert_eq!(st["status"], "failed");
    assert!(st["error"].as_str().unwrap().contains("bad prompt"));

    let retry = h.submit(json!({"type": "t", "max_attempts": 2})).await;
    for attempt in 1..=2 {
        let t = h.poll("w").await;
        assert_eq!(t["attempt"], attempt);
        let (s, _) = h
            .result(
                &retry,
                "w",
                json!({"success": false, "retryable": true, "error": "ollama 503"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let st = h.status(&retry).await;
    assert_eq!(st["status"], "failed");
    assert!(st["error"].as_str().unwrap().contains("ollama 503"), "{st}");
    let (_, w) = h.call("GET", "/api/workers/list", None).await;
    assert_eq!(w["workers"][0]["tasks_failed"], 3);
}

#[tokio::test]
async fn only_the_current_holder_settles_and_duplicates_are_idempotent() {
    let h = Harness::new();
    h.register("holder", json!({})).await;
    h.register("intruder", json!({})).await;
    let id = h.submit(json!({"type": "t"})).await;
    let t = h.poll("holder").await;
    assert_eq!(t["task_id"], id);

    let (s, v) = h
        .result(&id, "intruder", json!({"success": true, "output": "fake"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("does not hold"),
        "{v}"
    );
    assert_eq!(h.status(&id).await["status"], "assigned");

    // A wrong attempt number from the holder is refused too.
    let (s, _) = h
        .call(
            "POST",
            &format!("/api/tasks/{id}/result"),
            Some(json!({"worker_id": "holder", "attempt": 7, "result": {"success": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    let (s, v) = h
        .call("POST", &format!("/api/tasks/{id}/result"),
              Some(json!({"worker_id": "holder", "attempt": 1, "result": {"success": true, "output": "real"}})))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "received");
    let (s, v) = h
        .result(&id, "holder", json!({"success": true, "output": "again"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "duplicate");
    let (s, _) = h.result(&id, "intruder", json!({"success": true})).await;
    assert_eq!(s, StatusCode::CONFLICT);

    let st = h.status(&id).await;
    assert_eq!(st["result"]["output"], "real");
    let (_, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(stats["per_worker"]["holder"]["tasks_completed"], 1);
    assert_eq!(stats["tasks"]["completed"], 1);

    let (s, _) = h
        .result("no-such-task", "holder", json!({"success": true}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_late_result_for_a_revoked_attempt_is_refused() {
    let h = Harness::new();
    h.register("first", json!({})).await;
    let id = h.submit(json!({"type": "t", "timeout_s": 10})).await;
    assert_eq!(h.poll("first").await["attempt"], 1);
    h.advance(11.0);
    h.heartbeat("first", json!({})).await;
    h.register("second", json!({})).await;
    // "first" is idle again; make it ineligible so attempt 2 goes to "second".
    h.heartbeat("first", json!({"temperature_c": 99.0})).await;
    assert_eq!(h.poll("second").await["attempt"], 2);
    let (s, v) = h
        .call(
            "POST",
            &format!("/api/tasks/{id}/result"),
            Some(json!({"worker_id": "first", "attempt": 1, "result": {"success": true}})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        v["error"].as_str().unwrap().contains("no longer current"),
        "{v}"
    );
    let st = h.status(&id).await;
    assert_eq!(st["status"], "assigned");
    assert_eq!(st["assigned_to"], "second");
}
