//! The seed protocol's endpoints: their answer shapes, re-registration of unknown workers,
//! a poll that hangs up, and a status request that waits for the result.

use super::*;

#[tokio::test]
async fn seed_endpoints_answer_with_the_seed_shapes() {
    let h = Harness::new();
    let (s, v) = h.call("GET", "/health", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["workers_online"], 0);
    assert_eq!(v["tasks_pending"], 0);

    let (s, v) = h
        .call(
            "POST",
            "/api/workers/register",
            Some(json!({
                "worker_id": "groq-worker-1",
                "worker_type": "groq",
                "capabilities": {"max_tokens": 2000, "models": ["llama-3.3-70b"]}
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "registered");
    assert_eq!(v["worker_id"], "groq-worker-1");

    // The seed's heartbeat has no body.
    let (s, v) = h
        .raw("POST", "/api/workers/groq-worker-1/heartbeat", "")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");

    let (s, v) = h
        .call("GET", "/api/workers/groq-worker-1/tasks", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"task": null}));

    let (s, v) = h
        .call(
            "POST",
            "/api/tasks/submit",
            Some(json!({
                "type": "evolution_crossover",
                "data": {"genome1": {"param1": 0.8}, "genome2": {"param1": 0.6}},
                "priority": 7
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["status"], "submitted");
    let id = v["task_id"].as_str().unwrap().to_string();

    let (s, v) = h.call("GET", "/api/tasks/queue", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total_pending"], 1);
    assert_eq!(v["pending"][0]["task_id"], id);
    assert_eq!(v["by_priority"]["7"], 1);

    let task = h.poll("groq-worker-1").await;
    assert_eq!(task["task_id"], id);
    assert_eq!(task["type"], "evolution_crossover");
    assert_eq!(task["data"]["genome1"]["param1"], 0.8);
    assert_eq!(task["attempt"], 1);

    let st = h.status(&id).await;
    assert_eq!(st["status"], "assigned");
    assert_eq!(st["assigned_to"], "groq-worker-1");

    let (s, v) = h
        .result(
            &id,
            "groq-worker-1",
            json!({"success": true, "output": "child", "tokens_used": 500}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, json!({"status": "received"}));

    let st = h.status(&id).await;
    assert_eq!(st["task_id"], id);
    assert_eq!(st["status"], "completed");
    assert_eq!(st["assigned_to"], "groq-worker-1");
    assert_eq!(st["result"]["output"], "child");

    let (s, v) = h.call("GET", "/api/workers/list", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["total"], 1);
    assert_eq!(v["workers"][0]["worker_id"], "groq-worker-1");
    assert_eq!(v["workers"][0]["worker_type"], "groq");
    assert_eq!(v["workers"][0]["status"], "online");
    assert_eq!(v["workers"][0]["tasks_completed"], 1);

    let (s, v) = h.call("GET", "/api/stats", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["workers"]["online"], 1);
    assert_eq!(v["tasks"]["completed"], 1);
    assert_eq!(v["success_rate"], 1.0);
    assert_eq!(v["per_worker"]["groq-worker-1"]["tasks_completed"], 1);

    let (s, v) = h
        .call("POST", "/api/workers/groq-worker-1/unregister", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "unregistered");
    let (_, v) = h.call("GET", "/api/workers/list", None).await;
    assert_eq!(v["total"], 0);
}

#[tokio::test]
async fn unknown_workers_are_told_to_register_again() {
    let h = Harness::new();
    for (method, path) in [
        ("POST", "/api/workers/ghost/heartbeat"),
        ("GET", "/api/workers/ghost/tasks"),
        ("GET", "/api/workers/ghost/tasks?wait=1"),
        ("POST", "/api/workers/ghost/unregister"),
    ] {
        let (s, v) = h.raw(method, path, "").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(
            v["error"].as_str().unwrap().contains("register again"),
            "{path}: {v}"
        );
    }
}

#[tokio::test]
async fn a_poll_that_hangs_up_gives_its_task_back() {
    let (store, gate) = GatedStore::new();
    let h = Harness::with_store(|_| {}, Box::new(store));
    h.register("flaky", json!({})).await;
    let poll = h.wait_poll("flaky", 5.0).await;
    // Held back, the assignment's commit keeps the poll from answering: the task is
    // assigned to "flaky", which has not been told yet.
    gate.close();
    let (id, _commit) = h.fleet.submit(NewTask {
        task_type: "t".into(),
        data: json!({}),
        priority: 5,
        timeout_s: None,
        max_attempts: None,
        expires_s: None,
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let st = h.fleet.status(&id).unwrap().unwrap();
    assert_eq!(st.status, TaskState::Assigned);
    assert_eq!(st.assigned_to.as_deref(), Some("flaky"));
    assert!(!poll.is_finished(), "the poll answered before its commit");
    // The worker hangs up between the assignment and the answer.
    poll.abort();
    assert!(poll.await.unwrap_err().is_cancelled());
    let st = h.fleet.status(&id).unwrap().unwrap();
    assert_eq!(st.status, TaskState::Pending, "{st:?}");
    assert_eq!(st.assigned_to, None);
    gate.open();
    h.register("steady", json!({})).await;
    let t = h.poll("steady").await;
    assert_eq!(t["task_id"], id.as_str());
    assert_eq!(
        t["attempt"], 2,
        "a fresh attempt fences the one never delivered"
    );
}

#[tokio::test]
async fn a_status_request_can_wait_for_the_result() {
    // A wait far longer than the test: only the settle can answer it in time.
    let h = Harness::with(|c| c.max_wait_s = Some(600.0));
    h.register("w", json!({})).await;
    let id = h.submit(json!({"type": "t"})).await;
    let app = h.app.clone();
    let path = format!("/api/tasks/status/{id}?wait=600");
    let waiter = tokio::spawn(get_json(app, path));
    for _ in 0..500 {
        if h.fleet.is_watched(&id) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    assert!(h.fleet.is_watched(&id), "the request never started waiting");
    assert!(!waiter.is_finished(), "answered before the task settled");
    h.poll("w").await;
    h.result(&id, "w", json!({"success": true, "output": "done"}))
        .await;
    let st = tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
        .await
        .expect("the result did not wake the waiting request")
        .unwrap();
    assert_eq!(st["status"], "completed");
    assert_eq!(st["result"]["output"], "done");
    // A settled task answers at once; a bad wait is refused.
    let (s, v) = h
        .call("GET", &format!("/api/tasks/status/{id}?wait=5"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "completed");
    let (s, _) = h
        .call("GET", &format!("/api/tasks/status/{id}?wait=x"), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
