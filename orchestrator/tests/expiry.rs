//! A submit's `expires_s`: a task still pending that long after its submit fails as
//! expired, says why it never ran, and stays so across a restart; bad values are refused.

mod util;

use axum::http::StatusCode;
use pifleet_orchestrator::store::sqlite::Durability;
use pifleet_orchestrator::store::SqliteStore;
use serde_json::json;
use util::Harness;

fn on_disk(db: &std::path::Path) -> Harness {
    let store = SqliteStore::open(db, Durability::Normal).expect("open db");
    Harness::with_store(|_| {}, Box::new(store))
}

#[tokio::test]
async fn a_task_nobody_took_in_time_fails_as_expired_and_stays_so_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fleet.db");
    let h = on_disk(&db);
    h.register("pi", json!({"task_types": ["agent_action"]}))
        .await;
    let stuck = h
        .submit(json!({"type": "nobody-runs-this", "expires_s": 30}))
        .await;
    let running = h
        .submit(json!({"type": "agent_action", "expires_s": 30}))
        .await;
    let later = h
        .submit(json!({"type": "nobody-runs-this-either", "expires_s": 120}))
        .await;
    let forever = h.submit(json!({"type": "nobody-runs-this"})).await;
    assert_eq!(h.poll("pi").await["task_id"], running.as_str());
    let st = h.status(&stuck).await;
    assert_eq!(st["status"], "pending");
    let created = st["created_at"].as_f64().unwrap();
    assert_eq!(st["expires_at"].as_f64(), Some(created + 30.0));

    // The node stays alive, so the reason is about the task, not about the fleet.
    for _ in 0..29 {
        h.advance(1.0);
        h.heartbeat("pi", json!({})).await;
    }
    assert_eq!(h.status(&stuck).await["status"], "pending");
    h.advance(2.0);
    let st = h.status(&stuck).await;
    assert_eq!(st["status"], "failed", "{st}");
    let error = st["error"].as_str().unwrap().to_string();
    assert_eq!(
        error,
        "expired: still pending 31s after submit (expires_s) without a node taking it: \
         no node runs task type \"nobody-runs-this\""
    );
    assert!(st.get("pending_reason").is_none(), "{st}");
    // A task already running is not cut short; the others wait on.
    assert_eq!(h.status(&running).await["status"], "assigned");
    assert_eq!(h.status(&later).await["status"], "pending");
    assert_eq!(h.status(&forever).await["status"], "pending");
    let (_, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(stats["tasks"]["failed"], 1, "{stats}");
    h.fleet.check_invariants().unwrap();
    h.fleet.store_barrier().await.unwrap().unwrap();
    drop(h);

    // The new process reads the expiry and the expired task back from the file.
    let h = on_disk(&db);
    let st = h.status(&stuck).await;
    assert_eq!(
        (st["status"].as_str(), st["error"].as_str()),
        (Some("failed"), Some(&*error))
    );
    assert_eq!(h.status(&later).await["status"], "pending");
    h.advance(121.0);
    let st = h.status(&later).await;
    assert_eq!(st["status"], "failed", "{st}");
    assert!(
        st["error"].as_str().unwrap().starts_with("expired: "),
        "{st}"
    );
    assert_eq!(h.status(&forever).await["status"], "pending");
    h.fleet.check_invariants().unwrap();
}

#[tokio::test]
async fn a_task_back_in_the_queue_after_its_expiry_fails_at_the_next_tick() {
    let h = Harness::new();
    h.register("pi", json!({})).await;
    let id = h.submit(json!({"type": "t", "expires_s": 5})).await;
    assert_eq!(h.poll("pi").await["task_id"], id.as_str());
    h.advance(10.0);
    assert_eq!(h.status(&id).await["status"], "assigned");
    // The node goes away: the attempt comes back to the queue, past its expiry.
    let (s, _) = h.call("POST", "/api/workers/pi/unregister", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.status(&id).await["status"], "pending");
    h.advance(1.0);
    let st = h.status(&id).await;
    assert_eq!(st["status"], "failed", "{st}");
    assert!(
        st["error"].as_str().unwrap().ends_with(": no live node"),
        "{st}"
    );
    h.fleet.check_invariants().unwrap();
}

#[tokio::test]
async fn bad_expiries_are_refused_naming_the_field() {
    let h = Harness::new();
    for (bad, want) in [
        (
            json!("soon"),
            "expires_s: expected a number of seconds after submit, got string",
        ),
        (json!(-5), "expires_s: -5 is out of range"),
        (json!(0), "expires_s: 0 is out of range"),
        (json!(1e12), "expires_s: 1000000000000.0 is out of range"),
        (
            json!([30]),
            "expires_s: expected a number of seconds after submit, got ",
        ),
    ] {
        let body = json!({"type": "t", "data": {}, "expires_s": bad});
        let (s, v) = h.call("POST", "/api/tasks/submit", Some(body)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.starts_with(want), "{bad}: {e}");
    }
    let (_, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(stats["tasks"]["pending"], 0, "nothing refused was queued");
    // Absent or null: no expiry.
    let id = h.submit(json!({"type": "t", "expires_s": null})).await;
    assert!(h.status(&id).await.get("expires_at").is_none());
}
