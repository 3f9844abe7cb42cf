//! Settled tasks keep their bodies (data, result, error text) on disk only: memory lets go
//! of them once the store has committed the settled row, and every answer about the task
//! is the same read back from the file, before and after a restart. The queue listing is
//! bounded.

mod util;

use std::path::Path;

use axum::http::StatusCode;
use pifleet_orchestrator::store::sqlite::Durability;
use pifleet_orchestrator::store::SqliteStore;
use serde_json::{json, Value};
use util::Harness;

fn on_file(db: &Path) -> Harness {
    Harness::with_store(
        |_| {},
        Box::new(SqliteStore::open(db, Durability::Normal).expect("open db")),
    )
}

/// Every task's status answer, in submit order.
async fn statuses(h: &Harness, ids: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        out.push(h.status(id).await);
    }
    out
}

#[tokio::test]
async fn settled_bodies_leave_memory_and_are_answered_the_same_from_disk_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    let h = on_file(&db);
    h.register("pi", json!({})).await;
    // 60 failures (more than the 50 the recent lists keep, so the oldest ten lose their
    // error text from memory), then 20 successes with a result worth keeping on disk.
    let mut ids = Vec::new();
    for i in 0..80 {
        let id = h
            .submit(json!({"type": "t", "data": {"n": i, "model": "m", "pad": "d".repeat(500)}}))
            .await;
        let task = h.poll("pi").await;
        assert_eq!(task["task_id"], id.as_str());
        let result = if i < 60 {
            json!({"success": false, "error": format!("boom {i}: {}", "e".repeat(200))})
        } else {
            json!({"success": true, "output": "r".repeat(2000), "duration_ms": 7,
                   "completion_tokens": 12, "tokens_per_s": 3.5, "model": "m2"})
        };
        let (s, v) = h.result(&id, "pi", result).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        h.clock.advance(1.0);
        ids.push(id);
    }
    let first = statuses(&h, &ids).await;
    let (_, recent) = h.call("GET", "/api/tasks/recent", None).await;
    assert_eq!(first[0]["status"], "failed");
    assert!(first[0]["error"].as_str().unwrap().contains("boom 0"));
    assert_eq!(first[79]["result"]["output"], "r".repeat(2000));

    // The housekeeping tick lets go of what the store has committed (every result was
    // acknowledged, so committed).
    h.advance(0.0);
    let f = h.fleet.body_footprint();
    assert_eq!(f.settled, 80);
    assert_eq!(
        f.settled_with_bodies, 0,
        "settled tasks still hold their data or result in memory: {f:?}"
    );
    let listed_errors: usize = first[10..60]
        .iter()
        .map(|s| s["error"].as_str().unwrap().len())
        .sum();
    assert_eq!(
        f.error_bytes, listed_errors,
        "only the failures the recent lists show keep their error text"
    );
    assert_eq!(statuses(&h, &ids).await, first, "read back from disk");
    let (_, again) = h.call("GET", "/api/tasks/recent", None).await;
    assert_eq!(again, recent);

    drop(h);
    let h = on_file(&db);
    let f = h.fleet.body_footprint();
    assert_eq!((f.settled, f.settled_with_bodies), (80, 0), "{f:?}");
    assert_eq!(f.error_bytes, listed_errors);
    assert_eq!(statuses(&h, &ids).await, first, "after a restart");
    let (_, after) = h.call("GET", "/api/tasks/recent", None).await;
    assert_eq!(after, recent);
    // A late duplicate of a settled result is still told apart without the body.
    let (s, v) = h
        .result(&ids[79], "pi", json!({"success": true, "output": "again"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "duplicate");
}

#[tokio::test]
async fn a_result_that_cannot_be_read_back_is_a_503_naming_the_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    let h = on_file(&db);
    h.register("pi", json!({})).await;
    let id = h.submit(json!({"type": "t"})).await;
    h.poll("pi").await;
    let (s, _) = h.result(&id, "pi", json!({"success": true})).await;
    assert_eq!(s, StatusCode::OK);
    h.advance(0.0);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE tasks SET result = '{not json' WHERE id = ?1",
            [id.as_str()],
        )
        .unwrap();
    let (s, v) = h
        .call("GET", &format!("/api/tasks/status/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains(&id) && e.contains("could not be read back"),
        "{e}"
    );
}

#[tokio::test]
async fn the_queue_listing_is_capped_and_says_so() {
    let h = Harness::new();
    for _ in 0..1005 {
        h.submit(json!({"type": "nobody-runs-this"})).await;
    }
    let (_, q) = h.call("GET", "/api/tasks/queue?limit=1000000", None).await;
    assert_eq!(q["pending"].as_array().unwrap().len(), 1000);
    assert_eq!(q["pending_limit"], 1000);
    assert_eq!(q["total_pending"], 1005);
    let (_, q) = h.call("GET", "/api/tasks/queue?limit=3", None).await;
    assert_eq!(q["pending"].as_array().unwrap().len(), 3);
    assert_eq!(q["pending_limit"], 3);
}
