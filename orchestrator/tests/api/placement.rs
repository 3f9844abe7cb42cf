//! Which task goes where: priorities and aging, capabilities, model and memory, heat,
//! loaded models, slots.

use super::*;

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
async fn a_pending_task_says_its_place_in_line_and_an_expected_start_only_when_known() {
    let h = Harness::new();
    h.register(
        "pi",
        json!({"models": ["llama3.2:1b"], "task_types": ["agent_action"]}),
    )
    .await;
    let chat = |priority: u64| {
        json!({"type": "agent_action", "priority": priority,
               "data": {"model": "llama3.2:1b", "prompt": "hi"}})
    };
    let first = h.submit(chat(5)).await;
    let second = h.submit(chat(5)).await;
    let urgent = h.submit(chat(9)).await;
    let place = |st: &Value| st["queue_position"].as_u64();
    assert_eq!(
        place(&h.status(&urgent).await),
        Some(1),
        "priority 9 goes first"
    );
    assert_eq!(place(&h.status(&first).await), Some(2));
    assert_eq!(place(&h.status(&second).await), Some(3));
    // A model no node has: a place, but no start anybody can promise.
    let nowhere = h
        .submit(json!({"type": "agent_action", "data": {"model": "qwen:72b"}}))
        .await;
    let st = h.status(&nowhere).await;
    assert_eq!(place(&st), Some(4), "{st}");
    assert!(st.get("expected_start_s").is_none(), "{st}");
    // Once the node takes the first, the others move up; an assigned task has no place.
    assert_eq!(h.poll("pi").await["task_id"], urgent);
    assert_eq!(place(&h.status(&first).await), Some(1));
    assert!(h.status(&urgent).await.get("queue_position").is_none());
}
