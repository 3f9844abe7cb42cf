//! Nodes coming and going: dead nodes' work requeued, waiting workers alive, unregister,
//! drain, node views, retention, nodes that beat at their own pace.

use super::*;

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
