//! Many distinct requirements: tasks no waiting node can run (each its own type or
//! memory need) must not slow or stop the work that can run, and the lane index must
//! leave out nothing a node could take.

mod util;

use axum::http::StatusCode;
use serde_json::json;
use util::Harness;

const GIB: u64 = 1 << 30;

fn agent_caps() -> serde_json::Value {
    json!({"task_types": ["agent_action"], "models": ["llama3.2:1b"],
           "memory_total_bytes": 8 * GIB})
}

#[tokio::test]
async fn forty_thousand_distinct_unrunnable_lanes_leave_submit_and_assign_working() {
    let h = Harness::with(|c| c.max_wait_s = Some(300.0));
    h.register("pi", agent_caps()).await;
    // The node waits all along, so every submit below runs a scheduling pass.
    let poll = h.wait_poll("pi", 300.0).await;
    let mut unrunnable = Vec::new();
    for i in 0..20_000u64 {
        unrunnable.push(h.submit(json!({"type": format!("job-{i}")})).await);
        let big = json!({"model": "llama3.2:1b", "min_memory_bytes": 16 * GIB + i});
        unrunnable.push(h.submit(json!({"type": "agent_action", "data": big})).await);
    }
    assert_eq!(
        h.fleet.lanes_in_pass(),
        (40_000, 0),
        "a pass tries none of the lanes nobody can run"
    );
    assert!(h.fleet.is_waiting("pi"), "nothing was given to the node");

    // Work it can run still goes to it at once, best priority first.
    let run = json!({"model": "llama3.2:1b"});
    let first = h
        .submit(json!({"type": "agent_action", "data": run, "priority": 3}))
        .await;
    assert_eq!(poll.await.unwrap()["task_id"], first.as_str());
    let low = h
        .submit(json!({"type": "agent_action", "data": run, "priority": 2}))
        .await;
    let high = h
        .submit(json!({"type": "agent_action", "data": run, "priority": 9}))
        .await;
    assert_eq!(h.fleet.lanes_in_pass(), (40_001, 0), "the node is busy");
    h.result(&first, "pi", json!({"success": true})).await;
    h.heartbeat(
        "pi",
        json!({"temperature_c": 45.0, "memory_total_bytes": 8 * GIB}),
    )
    .await;
    for want in [&high, &low] {
        let task = h.poll("pi").await;
        assert_eq!(task["task_id"], want.as_str());
        let (s, v) = h.result(want, "pi", json!({"success": true})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    assert_eq!(h.status(&high).await["status"], "completed");

    // The others stay queued, each saying why.
    assert_eq!(
        h.status(&unrunnable[14]).await["pending_reason"],
        "no node runs task type \"job-7\""
    );
    assert_eq!(
        h.status(&unrunnable[15]).await["pending_reason"],
        "no node with model \"llama3.2:1b\" has the memory it needs free"
    );
    h.fleet.check_invariants().unwrap();

    // A node that can run one of them gets it.
    h.register("other", json!({"task_types": ["job-7"]})).await;
    assert_eq!(h.poll("other").await["task_id"], unrunnable[14].as_str());
    assert_eq!(h.fleet.lanes_in_pass(), (39_999, 0));
    h.fleet.check_invariants().unwrap();
}

#[tokio::test]
async fn a_node_undrained_while_it_waits_gets_the_task_at_once() {
    let h = Harness::new();
    h.register("d", agent_caps()).await;
    h.fleet.set_draining("d", true).await.unwrap();
    let poll = h.wait_poll("d", 30.0).await;
    let id = h
        .submit(json!({"type": "agent_action", "data": {"model": "llama3.2:1b"}}))
        .await;
    assert_eq!(
        h.fleet.lanes_in_pass(),
        (1, 0),
        "a draining node reaches nothing"
    );
    h.fleet.check_invariants().unwrap();
    h.fleet.set_draining("d", false).await.unwrap();
    assert_eq!(poll.await.unwrap()["task_id"], id.as_str());
    h.fleet.check_invariants().unwrap();
}

/// A result with the Ollama figures placement learns a node's speed from.
fn measured(model: &str) -> serde_json::Value {
    json!({"success": true, "model": model, "prompt_tokens": 200, "prompt_eval_ms": 400,
           "completion_tokens": 100, "eval_ms": 2000})
}

#[tokio::test]
async fn a_task_only_a_busy_node_measured_fast_can_run_is_held_for_it() {
    let h = Harness::new();
    h.register(
        "fast",
        json!({"task_types": ["agent_action"], "models": ["m2"]}),
    )
    .await;
    h.register(
        "slow",
        json!({"task_types": ["agent_action"], "models": ["m1"]}),
    )
    .await;
    let m2 = json!({"type": "agent_action", "data": {"model": "m2"}});
    for _ in 0..3 {
        let id = h.submit(m2.clone()).await;
        assert_eq!(h.poll("fast").await["task_id"], id.as_str());
        h.result(&id, "fast", measured("m2")).await;
        h.advance(10.0);
    }
    // `fast` is busy with a task placed by expected finish; `slow` waits but lacks m2.
    let busy = h.submit(m2.clone()).await;
    assert_eq!(h.poll("fast").await["task_id"], busy.as_str());
    let poll = h.wait_poll("slow", 1.0).await;
    let held = h.submit(m2).await;
    assert_eq!(
        h.fleet.lanes_in_pass(),
        (1, 1),
        "fast's lane joins the pass"
    );
    let reason = h.status(&held).await["pending_reason"].clone();
    assert!(
        reason
            .as_str()
            .unwrap()
            .starts_with("waiting for node \"fast\""),
        "{reason}"
    );
    assert!(poll.await.unwrap().is_null());
    h.fleet.check_invariants().unwrap();
}
