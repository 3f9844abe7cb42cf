//! The HTTP API, driven through `app().oneshot()` with a manual clock.

mod util;

use axum::http::StatusCode;
use pifleet_orchestrator::fleet::NewTask;
use pifleet_protocol::TaskState;
use serde_json::{json, Value};
use util::{GatedStore, Harness};

fn mib(n: u64) -> u64 {
    n * 1024 * 1024
}

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
async fn higher_priority_first_and_fifo_within_a_priority() {
    let h = Harness::new();
    h.register("w", json!({})).await;
    let low = h.submit(json!({"type": "t", "priority": 1})).await;
    let mid_a = h.submit(json!({"type": "t", "priority": 5})).await;
    let high = h.submit(json!({"type": "t", "priority": 10})).await;
    let mid_b = h.submit(json!({"type": "t"})).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let t = h.poll("w").await;
        let id = t["task_id"].as_str().unwrap().to_string();
        h.result(&id, "w", json!({"success": true})).await;
        order.push(id);
    }
    assert_eq!(order, vec![high, mid_a, mid_b, low]);
}

#[tokio::test]
async fn a_low_priority_task_ages_past_new_high_priority_ones() {
    let h = Harness::with(|c| {
        c.aging_s = Some(10.0);
        c.heartbeat_interval_s = Some(1000.0);
    });
    h.register("w", json!({})).await;
    let old_low = h.submit(json!({"type": "t", "priority": 1})).await;
    // Nine levels of difference are worth 90 s of waiting.
    h.advance(95.0);
    h.heartbeat("w", json!({})).await;
    let _new_high = h.submit(json!({"type": "t", "priority": 10})).await;
    assert_eq!(h.poll("w").await["task_id"], old_low);
}

#[tokio::test]
async fn tasks_go_only_to_nodes_with_the_type_model_and_memory() {
    let h = Harness::new();
    h.register("mutator", json!({"task_types": ["evolution_mutation"]}))
        .await;
    h.register(
        "small",
        json!({
            "task_types": ["agent_action"],
            "models": ["llama3.2:1b", "big:7b"],
            "model_details": [{"name": "big:7b", "size_bytes": mib(4000)}]
        }),
    )
    .await;
    h.heartbeat(
        "small",
        json!({"memory_total_bytes": mib(2048), "memory_available_bytes": mib(1500)}),
    )
    .await;
    h.register(
        "large",
        json!({
            "task_types": ["agent_action"],
            "models": ["big:7b"],
            "model_details": [{"name": "big:7b", "size_bytes": mib(4000)}]
        }),
    )
    .await;
    h.heartbeat(
        "large",
        json!({"memory_total_bytes": mib(8192), "memory_available_bytes": mib(7000)}),
    )
    .await;

    let chat = h
        .submit(json!({"type": "agent_action", "data": {"model": "llama3.2:1b"}}))
        .await;
    let big = h
        .submit(json!({"type": "agent_action", "data": {"model": "big:7b"}}))
        .await;
    let nobody = h
        .submit(json!({"type": "agent_action", "data": {"model": "qwen:72b"}}))
        .await;
    let mutation = h
        .submit(json!({"type": "evolution_mutation", "data": {"genome": {}}}))
        .await;
    let roomy = h
        .submit(json!({"type": "agent_action", "data": {"model": "big:7b", "min_memory_bytes": mib(4096)}}))
        .await;

    // The mutator cannot run chats; it gets its own type.
    assert_eq!(h.poll("mutator").await["task_id"], mutation);
    assert!(h.poll("mutator").await.is_null());
    // "small" lacks the memory for big:7b, so it only gets the 1b chat.
    assert_eq!(h.poll("small").await["task_id"], chat);
    h.result(&chat, "small", json!({"success": true})).await;
    assert!(h.poll("small").await.is_null());
    assert_eq!(h.poll("large").await["task_id"], big);
    h.result(&big, "large", json!({"success": true})).await;
    assert_eq!(h.poll("large").await["task_id"], roomy);

    let st = h.status(&nobody).await;
    assert_eq!(st["status"], "pending");
    assert_eq!(
        st["pending_reason"],
        "no node offers model \"qwen:72b\": model staging is off (model_staging = \"pull\" lets a node pull it)"
    );
}

#[tokio::test]
async fn a_seed_worker_without_declared_capabilities_runs_every_type() {
    let h = Harness::new();
    h.register("seed", json!({})).await;
    let id = h
        .submit(json!({"type": "code_generation", "data": {"prompt": "x", "model": "any:1b"}}))
        .await;
    assert_eq!(h.poll("seed").await["task_id"], id);
}

#[tokio::test]
async fn hot_node_gets_no_work_while_a_cool_one_waits() {
    let h = Harness::new();
    h.register("cool", json!({})).await;
    h.register("warm", json!({})).await;
    h.register("hot", json!({})).await;
    h.heartbeat("cool", json!({"temperature_c": 48.0})).await;
    h.heartbeat("warm", json!({"temperature_c": 82.0})).await;
    h.heartbeat("hot", json!({"temperature_c": 86.0})).await;

    // The warm node waits first; the cool one after it: the cool one still wins.
    let warm = h.wait_poll("warm", 5.0).await;
    let cool = h.wait_poll("cool", 5.0).await;
    let id = h.submit(json!({"type": "t"})).await;
    assert_eq!(cool.await.unwrap()["task_id"], id);

    // The warm node is still waiting and takes the next one: warm only deprioritises.
    let second = h.submit(json!({"type": "t"})).await;
    assert_eq!(warm.await.unwrap()["task_id"], second);
    // Past the hard limit a node gets nothing, even when nobody else waits.
    let third = h.submit(json!({"type": "t"})).await;
    assert!(h.poll("hot").await.is_null());
    let st = h.status(&third).await;
    assert_eq!(st["status"], "pending");
    // The warm and cool nodes each hold a task; the hot one is excluded.
    h.result(&second, "warm", json!({"success": true})).await;
    h.heartbeat("warm", json!({"temperature_c": 90.0})).await;
    h.heartbeat("cool", json!({"temperature_c": 90.0})).await;
    let st = h.status(&third).await;
    assert!(
        st["pending_reason"]
            .as_str()
            .unwrap()
            .contains("85 °C hard limit"),
        "{st}"
    );

    // Under-voltage excludes too.
    h.register("sagging", json!({})).await;
    h.heartbeat("sagging", json!({"temperature_c": 40.0, "throttled": 1}))
        .await;
    assert!(h.poll("sagging").await.is_null());
    // Once it cools, the hot node is eligible again.
    h.heartbeat("hot", json!({"temperature_c": 60.0})).await;
    assert_eq!(h.poll("hot").await["task_id"], third);
}

#[tokio::test]
async fn a_node_with_the_model_loaded_is_preferred() {
    let h = Harness::new();
    for id in ["cold", "loaded"] {
        h.register(id, json!({"models": ["llama3.2:1b"]})).await;
    }
    h.heartbeat("cold", json!({"temperature_c": 40.0, "models_loaded": []}))
        .await;
    h.heartbeat(
        "loaded",
        json!({"temperature_c": 60.0, "models_loaded": [{"name": "llama3.2:1b"}]}),
    )
    .await;
    let cold = h.wait_poll("cold", 5.0).await;
    let loaded = h.wait_poll("loaded", 5.0).await;
    let id = h
        .submit(json!({"type": "agent_action", "data": {"model": "llama3.2:1b"}}))
        .await;
    assert_eq!(loaded.await.unwrap()["task_id"], id);
    let other = h
        .submit(json!({"type": "agent_action", "data": {"model": "llama3.2:1b"}}))
        .await;
    assert_eq!(cold.await.unwrap()["task_id"], other);
}

#[tokio::test]
async fn slots_bound_concurrent_tasks() {
    let h = Harness::new();
    h.register("one", json!({})).await;
    h.register("two", json!({"slots": 2})).await;
    for _ in 0..4 {
        h.submit(json!({"type": "t"})).await;
    }
    assert!(!h.poll("one").await.is_null());
    assert!(h.poll("one").await.is_null());
    assert!(!h.poll("two").await.is_null());
    assert!(!h.poll("two").await.is_null());
    assert!(h.poll("two").await.is_null());
}

#[tokio::test]
async fn dead_node_work_is_requeued_and_completed_elsewhere() {
    let h = Harness::new();
    h.register("doomed", json!({})).await;
    let id = h.submit(json!({"type": "t"})).await;
    assert_eq!(h.poll("doomed").await["task_id"], id);
    h.register("survivor", json!({})).await;

    // Three missed 10 s heartbeats. The survivor keeps beating.
    for _ in 0..4 {
        h.advance(8.0);
        h.heartbeat("survivor", json!({})).await;
    }
    let (_, list) = h.call("GET", "/api/workers/list", None).await;
    let doomed = list["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "doomed")
        .unwrap()
        .clone();
    assert_eq!(doomed["status"], "dead");
    let st = h.status(&id).await;
    assert_eq!(st["status"], "pending");
    assert!(
        st["error"]
            .as_str()
            .unwrap()
            .contains("stopped heartbeating"),
        "{st}"
    );

    let t = h.poll("survivor").await;
    assert_eq!(t["task_id"], id);
    assert_eq!(t["attempt"], 2);
    h.result(&id, "survivor", json!({"success": true})).await;
    assert_eq!(h.status(&id).await["status"], "completed");

    // The dead node learns it must register again.
    let (s, v) = h.raw("POST", "/api/workers/doomed/heartbeat", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        v["error"].as_str().unwrap().contains("register again"),
        "{v}"
    );
    let (s, _) = h.call("GET", "/api/workers/doomed/tasks", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Its late result is refused and changes nothing.
    let (s, _) = h.result(&id, "doomed", json!({"success": false})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(h.status(&id).await["status"], "completed");
    let (_, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(stats["tasks"]["retried"], 1);
    assert_eq!(stats["tasks"]["completed"], 1);
}

#[tokio::test]
async fn a_waiting_worker_counts_as_alive() {
    let h = Harness::new();
    h.register("patient", json!({})).await;
    let poll = h.wait_poll("patient", 5.0).await;
    h.advance(100.0);
    let (_, list) = h.call("GET", "/api/workers/list", None).await;
    assert_eq!(list["workers"][0]["status"], "online");
    let id = h.submit(json!({"type": "t"})).await;
    assert_eq!(poll.await.unwrap()["task_id"], id);
}

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

#[tokio::test]
async fn unregister_requeues_what_the_worker_held() {
    let h = Harness::new();
    h.register("leaving", json!({})).await;
    h.register("staying", json!({})).await;
    let id = h.submit(json!({"type": "t"})).await;
    assert_eq!(h.poll("leaving").await["task_id"], id);
    let (s, v) = h
        .call("POST", "/api/workers/leaving/unregister", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["requeued"], json!([id]));
    assert_eq!(h.status(&id).await["status"], "pending");
    assert_eq!(h.poll("staying").await["task_id"], id);
}

#[tokio::test]
async fn a_draining_node_gets_no_new_work() {
    let h = Harness::new();
    h.register("d", json!({})).await;
    let view = h.fleet.set_draining("d", true).await.unwrap();
    assert!(view.draining);
    let id = h.submit(json!({"type": "t"})).await;
    assert!(h.poll("d").await.is_null());
    let (_, hb) = h.raw("POST", "/api/workers/d/heartbeat", "").await;
    assert_eq!(hb["draining"], true);
    assert_eq!(
        h.status(&id).await["pending_reason"],
        "every node that can run it is draining"
    );
    let nodes = h.fleet.nodes();
    assert_eq!(nodes[0].status, pifleet_protocol::WorkerState::Draining);
    h.fleet.set_draining("d", false).await.unwrap();
    assert_eq!(h.poll("d").await["task_id"], id);
}

#[tokio::test]
async fn node_views_keep_metrics_history_and_notify_changes() {
    let h = Harness::with(|c| c.history_len = Some(3));
    let mut changes = h.fleet.subscribe();
    h.register("n", json!({"cores": 4})).await;
    assert!(changes.has_changed().unwrap());
    changes.borrow_and_update();
    for t in [40.0, 41.0, 42.0, 43.0] {
        h.heartbeat("n", json!({"temperature_c": t, "cpu_percent": 5.0}))
            .await;
    }
    assert!(changes.has_changed().unwrap());
    let detail = h.fleet.node("n").unwrap();
    assert_eq!(detail.history.len(), 3);
    assert_eq!(detail.history[2].temperature_c, Some(43.0));
    assert_eq!(detail.node.metrics.unwrap().temperature_c, Some(43.0));
    assert!(h.fleet.node("missing").is_none());
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
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    let st = h.fleet.status(&id).unwrap();
    assert_eq!(st.status, TaskState::Assigned);
    assert_eq!(st.assigned_to.as_deref(), Some("flaky"));
    assert!(!poll.is_finished(), "the poll answered before its commit");
    // The worker hangs up between the assignment and the answer.
    poll.abort();
    assert!(poll.await.unwrap_err().is_cancelled());
    let st = h.fleet.status(&id).unwrap();
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
async fn settled_tasks_and_dead_nodes_are_forgotten_after_their_retention() {
    let h = Harness::with(|c| {
        c.task_retention_s = Some(3600.0);
        c.dead_node_retention_s = Some(7200.0);
    });
    h.register("w", json!({})).await;
    let id = h.submit(json!({"type": "t"})).await;
    h.poll("w").await;
    h.result(&id, "w", json!({"success": true})).await;
    h.advance(3700.0);
    let (s, _) = h
        .call("GET", &format!("/api/tasks/status/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(
        stats["tasks"]["completed"], 1,
        "totals stay cumulative: {stats}"
    );
    assert_eq!(stats["tasks"]["total"], 1);
    assert_eq!(stats["workers"]["dead"], 1);
    h.advance(7300.0);
    let (_, list) = h.call("GET", "/api/workers/list", None).await;
    assert_eq!(list["total"], 0);
}

/// Random traffic (submits, polls, results good and bad, heartbeats, deaths, timeouts,
/// drains, unregisters) must never break the bookkeeping, and every task must end settled.
#[tokio::test]
async fn random_traffic_keeps_the_books_straight() {
    let h = Harness::with(|c| {
        c.heartbeat_interval_s = Some(5.0);
        c.default_timeout_s = Some(12.0);
        c.max_attempts = Some(4);
        c.retry_backoff_s = Some(1.0);
        c.retry_backoff_max_s = Some(4.0);
    });
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let workers = ["a", "b", "c", "d"];
    let models = ["m1", "m2"];
    // Capabilities that split the lanes: some workers declare their task types and
    // memory, so the lane index has types, models and memory needs to tell apart.
    let caps = |i: u64, model: &str| match i % 3 {
        0 => json!({"models": [model], "slots": 1 + i % 2}),
        1 => json!({"models": [model], "slots": 1 + i % 2,
                    "task_types": ["agent_action", "custom-1"], "memory_total_bytes": 2u64 << 30}),
        _ => json!({"models": [model], "memory_total_bytes": 4u64 << 30}),
    };
    for (i, w) in workers.iter().enumerate() {
        h.register(w, caps(i as u64, models[i % 2])).await;
    }
    let mut held: Vec<(String, String, u64)> = Vec::new();
    let mut tasks = Vec::new();
    let mut polls: Vec<(String, tokio::task::JoinHandle<Value>)> = Vec::new();
    let mut long_polled = 0;
    for step in 0..3000 {
        let w = workers[next(4) as usize];
        // Collect long polls that ended.
        let mut i = 0;
        while i < polls.len() {
            if polls[i].1.is_finished() {
                let (who, handle) = polls.swap_remove(i);
                if let Ok(t) = handle.await {
                    if !t.is_null() {
                        long_polled += 1;
                        held.push((
                            t["task_id"].as_str().unwrap().into(),
                            who,
                            t["attempt"].as_u64().unwrap(),
                        ));
                    }
                }
            } else {
                i += 1;
            }
        }
        match next(14) {
            12 if polls.len() < 6 => {
                let app = h.app.clone();
                let path = format!("/api/workers/{w}/tasks?wait=0.0{}", 1 + next(5));
                let handle = tokio::spawn(async move {
                    let req = axum::http::Request::builder()
                        .uri(path)
                        .body(axum::body::Body::empty())
                        .unwrap();
                    let resp = tower::ServiceExt::oneshot(app, req).await.unwrap();
                    let bytes = http_body_util::BodyExt::collect(resp.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    v["task"].clone()
                });
                polls.push((w.to_string(), handle));
                tokio::task::yield_now().await;
            }
            13 if !polls.is_empty() && next(4) == 0 => {
                // A worker that hangs up mid-poll.
                let (_, handle) = polls.swap_remove(next(polls.len() as u64) as usize);
                handle.abort();
                let _ = handle.await;
            }
            0 | 1 => {
                let model = models[next(2) as usize];
                let priority = 1 + next(10);
                let task = match next(4) {
                    0 => json!({"type": format!("custom-{}", next(3)), "priority": priority,
                                "data": {"min_memory_bytes": next(4) << 30}}),
                    1 => json!({"type": "agent_action", "priority": priority,
                                "data": {"model": model, "min_memory_bytes": (1 + next(4)) << 30}}),
                    _ => json!({"type": "agent_action", "priority": priority,
                                "data": {"model": model}}),
                };
                tasks.push(h.submit(task).await);
            }
            2..=4 => {
                let (s, v) = h
                    .call("GET", &format!("/api/workers/{w}/tasks"), None)
                    .await;
                if s == StatusCode::NOT_FOUND {
                    let model = models[next(2) as usize];
                    h.register(w, caps(next(3), model)).await;
                } else if !v["task"].is_null() {
                    let t = &v["task"];
                    held.push((
                        t["task_id"].as_str().unwrap().into(),
                        w.into(),
                        t["attempt"].as_u64().unwrap(),
                    ));
                }
            }
            5..=7 if !held.is_empty() => {
                let (id, holder, attempt) = held.swap_remove(next(held.len() as u64) as usize);
                // Sometimes the wrong worker, sometimes a duplicate.
                let who = if next(8) == 0 { w.to_string() } else { holder };
                let result = match next(4) {
                    0 => json!({"success": false, "retryable": true, "error": "busy"}),
                    1 => json!({"success": false, "error": "bad"}),
                    _ => json!({"success": true}),
                };
                let body = json!({"worker_id": who, "attempt": attempt, "result": result});
                let (s, _) = h
                    .call(
                        "POST",
                        &format!("/api/tasks/{id}/result"),
                        Some(body.clone()),
                    )
                    .await;
                assert!([200, 404, 409].contains(&s.as_u16()), "{s}");
                if next(5) == 0 {
                    h.call("POST", &format!("/api/tasks/{id}/result"), Some(body))
                        .await;
                }
            }
            8 => {
                let m = json!({"temperature_c": 40 + next(50), "models_loaded": [{"name": models[next(2) as usize]}]});
                h.call(
                    "POST",
                    &format!("/api/workers/{w}/heartbeat"),
                    Some(json!({"metrics": m})),
                )
                .await;
            }
            9 => h.advance(1.0 + next(4) as f64),
            10 if next(10) == 0 => {
                h.call("POST", &format!("/api/workers/{w}/unregister"), None)
                    .await;
            }
            11 if next(10) == 0 => {
                let _ = h.fleet.set_draining(w, next(2) == 0).await;
            }
            _ => {}
        }
        if let Err(e) = h.fleet.check_invariants() {
            panic!("step {step}: {e}");
        }
    }
    assert!(long_polled > 10, "long polls got only {long_polled} tasks");
    for (who, handle) in polls {
        if let Ok(t) = handle.await {
            if !t.is_null() {
                let id = t["task_id"].as_str().unwrap();
                h.result(id, &who, json!({"success": true})).await;
            }
        }
    }
    h.fleet.check_invariants().unwrap();
    // Let everything settle: cool, undrained, registered workers keep polling and succeeding.
    for w in workers {
        h.register(w, json!({"models": models, "slots": 2})).await;
        let _ = h.fleet.set_draining(w, false).await;
        h.heartbeat(w, json!({"temperature_c": 40.0})).await;
    }
    for _ in 0..2000 {
        let mut idle = true;
        for w in workers {
            let t = h.poll(w).await;
            if !t.is_null() {
                idle = false;
                let id = t["task_id"].as_str().unwrap();
                h.result(id, w, json!({"success": true})).await;
            }
        }
        if idle {
            let (_, stats) = h.call("GET", "/api/stats", None).await;
            if stats["tasks"]["pending"] == 0 && stats["tasks"]["assigned"] == 0 {
                break;
            }
            h.advance(13.0);
            for w in workers {
                h.heartbeat(w, json!({"temperature_c": 40.0})).await;
            }
        }
        h.fleet.check_invariants().unwrap();
    }
    for id in &tasks {
        let st = h.status(id).await;
        assert!(
            ["completed", "failed"].contains(&st["status"].as_str().unwrap()),
            "{st}"
        );
    }
}

#[tokio::test]
async fn a_node_that_beats_slower_than_configured_is_judged_by_its_own_pace() {
    let h = Harness::new();
    h.register("seed-pace", json!({})).await;
    h.register("agent-pace", json!({})).await;
    // The seed's workers heartbeat every 30 s; ours are expected every 10 s.
    h.heartbeat("seed-pace", json!({})).await;
    for _ in 0..3 {
        h.advance(10.0);
        h.heartbeat("agent-pace", json!({})).await;
    }
    h.heartbeat("seed-pace", json!({})).await;
    // 40 s of silence: three of our intervals, but not three of its own.
    for _ in 0..4 {
        h.advance(10.0);
        h.heartbeat("agent-pace", json!({})).await;
    }
    let nodes = h.fleet.nodes();
    assert!(
        nodes
            .iter()
            .all(|n| n.status != pifleet_protocol::WorkerState::Dead),
        "{nodes:?}"
    );
    // Three of its own periods and more: dead.
    for _ in 0..6 {
        h.advance(10.0);
        h.heartbeat("agent-pace", json!({})).await;
    }
    let seed = h.fleet.node("seed-pace").unwrap();
    assert_eq!(seed.node.status, pifleet_protocol::WorkerState::Dead);
    // A node that keeps our pace still dies after 30 s of silence.
    h.advance(31.0);
    let agent = h.fleet.node("agent-pace").unwrap();
    assert_eq!(agent.node.status, pifleet_protocol::WorkerState::Dead);
}

#[tokio::test]
async fn a_status_request_can_wait_for_the_result() {
    // A wait far longer than the test: only the settle can answer it in time.
    let h = Harness::with(|c| c.max_wait_s = Some(600.0));
    h.register("w", json!({})).await;
    let id = h.submit(json!({"type": "t"})).await;
    let app = h.app.clone();
    let path = format!("/api/tasks/status/{id}?wait=600");
    let waiter = tokio::spawn(async move {
        let req = axum::http::Request::builder()
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(app, req).await.unwrap();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice::<Value>(&bytes).unwrap()
    });
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
