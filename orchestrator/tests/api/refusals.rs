//! Bad input is answered with a precise 4xx and the queue keeps serving; the worker and
//! client tokens guard their own endpoints.

use super::*;

#[tokio::test]
async fn bad_input_is_answered_4xx_and_the_queue_keeps_serving() {
    let h = Harness::with(|c| c.max_body_bytes = Some(4096));
    h.register("w", json!({})).await;
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "POST",
            "/api/tasks/submit",
            "{not json".into(),
            400,
            "body: invalid JSON",
        ),
        ("POST", "/api/tasks/submit", "".into(), 400, "body:"),
        ("POST", "/api/tasks/submit", "null".into(), 400, "body:"),
        ("POST", "/api/tasks/submit", "[1,2]".into(), 400, "body:"),
        (
            "POST",
            "/api/tasks/submit",
            r#"{"type": "t", "data": {}, "priority": "high"}"#.into(),
            422,
            "priority:",
        ),
        (
            "POST",
            "/api/tasks/submit",
            r#"{"type": "t", "data": {}, "priority": 11}"#.into(),
            422,
            "priority:",
        ),
        (
            "POST",
            "/api/tasks/submit",
            r#"{"type": "t", "data": {}, "priority": 0}"#.into(),
            422,
            "priority:",
        ),
        (
            "POST",
            "/api/tasks/submit",
            r#"{"data": {}}"#.into(),
            400,
            "type:",
        ),
        (
            "POST",
            "/api/tasks/submit",
            r#"{"type": null}"#.into(),
            400,
            "type:",
        ),
        (
            "POST",
            "/api/tasks/submit",
            r#"{"type": "t", "data": "x"}"#.into(),
            422,
            "data:",
        ),
        (
            "POST",
            "/api/tasks/submit",
            format!(
                r#"{{"type": "t", "data": {{"x": "{}"}}}}"#,
                "a".repeat(5000)
            ),
            413,
            "body:",
        ),
        (
            "POST",
            "/api/workers/register",
            "{}".into(),
            400,
            "worker_id",
        ),
        (
            "POST",
            "/api/workers/register",
            r#"{"worker_id": 5, "worker_type": "pi", "capabilities": {}}"#.into(),
            422,
            "worker_id",
        ),
        (
            "POST",
            "/api/workers/register",
            r#"{"worker_id": "", "worker_type": "pi", "capabilities": {}}"#.into(),
            422,
            "worker_id",
        ),
        (
            "POST",
            "/api/workers/register",
            r#"{"worker_id": "x", "worker_type": "pi", "capabilities": {"slots": "two"}}"#.into(),
            422,
            "capabilities.slots",
        ),
        (
            "POST",
            "/api/workers/w/heartbeat",
            r#"{"metrics": {"temperature_c": "hot"}}"#.into(),
            422,
            "metrics.temperature_c",
        ),
        (
            "POST",
            "/api/workers/w/heartbeat",
            "{bad".into(),
            400,
            "body:",
        ),
        (
            "GET",
            "/api/workers/w/tasks?wait=soon",
            "".into(),
            400,
            "wait:",
        ),
        ("GET", "/api/tasks/queue?limit=-1", "".into(), 400, "limit:"),
        (
            "POST",
            "/api/tasks/x/result",
            "{}".into(),
            400,
            "worker_id:",
        ),
        (
            "POST",
            "/api/tasks/x/result",
            r#"{"worker_id": "w"}"#.into(),
            400,
            "result:",
        ),
        (
            "POST",
            "/api/tasks/x/result",
            r#"{"worker_id": "w", "result": "ok"}"#.into(),
            422,
            "result:",
        ),
        (
            "POST",
            "/api/tasks/x/result",
            r#"{"worker_id": "w", "result": {"success": "yes"}}"#.into(),
            422,
            "result.success:",
        ),
        (
            "POST",
            "/api/tasks/x/result",
            r#"{"worker_id": "w", "attempt": 0, "result": {}}"#.into(),
            422,
            "attempt:",
        ),
        ("GET", "/api/tasks/status/nope", "".into(), 404, "not found"),
        ("GET", "/api/nowhere", "".into(), 404, "no such endpoint"),
        (
            "DELETE",
            "/api/tasks/submit",
            "".into(),
            405,
            "method not allowed",
        ),
        ("GET", "/api/workers/%FF%FE/tasks", "".into(), 400, "path:"),
    ];
    for (method, path, body, want, needle) in cases {
        let (s, v) = h.raw(method, path, body.clone()).await;
        assert_eq!(s.as_u16(), want, "{method} {path} {body:.60}: {v}");
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {v}"));
        assert!(
            msg.contains(needle),
            "{method} {path}: {msg:?} lacks {needle:?}"
        );
    }
    // Still serving, nothing poisoned.
    let id = h.submit(json!({"type": "t"})).await;
    assert_eq!(h.poll("w").await["task_id"], id);
    let (_, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(stats["tasks"]["total"], 1);
}

#[tokio::test]
async fn tokens_guard_workers_and_clients_separately() {
    let worker_token = "w".repeat(24);
    let client_token = "c".repeat(24);
    let (wt, ct) = (worker_token.clone(), client_token.clone());
    let h = Harness::with(move |c| {
        c.worker_token = Some(wt);
        c.client_token = Some(ct);
    });
    let req = |method: &str, path: &str, token: Option<&str>, body: Value| {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(axum::body::Body::from(body.to_string())).unwrap()
    };
    let reg = json!({"worker_id": "w", "worker_type": "pi", "capabilities": {}});
    let (s, v) = h
        .send(req("POST", "/api/workers/register", None, reg.clone()))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["error"].as_str().unwrap().contains("Bearer"));
    let (s, _) = h
        .send(req(
            "POST",
            "/api/workers/register",
            Some(&client_token),
            reg.clone(),
        ))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h
        .send(req(
            "POST",
            "/api/workers/register",
            Some(&worker_token),
            reg,
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let sub = json!({"type": "t", "data": {}});
    let (s, _) = h
        .send(req(
            "POST",
            "/api/tasks/submit",
            Some(&worker_token),
            sub.clone(),
        ))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h
        .send(req("POST", "/api/tasks/submit", Some(&client_token), sub))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = h.send(req("GET", "/api/stats", None, Value::Null)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Health stays open for load balancers and systemd checks.
    let (s, _) = h.send(req("GET", "/health", None, Value::Null)).await;
    assert_eq!(s, StatusCode::OK);
}
