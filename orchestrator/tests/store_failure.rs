//! A failed commit leaves no trace: a real SQLite store whose commits can be made to fail
//! (as a full disk makes them fail), and the orchestrator working again, without a
//! restart, once they succeed.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use pifleet_orchestrator::clock::ManualClock;
use pifleet_orchestrator::config::Config;
use pifleet_orchestrator::store::sqlite::Durability;
use pifleet_orchestrator::store::{BodyReader, Mutation, Snapshot, SqliteStore, Store, StoreError};
use pifleet_orchestrator::Orchestrator;
use serde_json::json;
use util::Harness;

/// SQLite, except that while `full` is set every commit fails as SQLITE_FULL does:
/// refused whole, nothing written.
struct FullDisk {
    inner: SqliteStore,
    full: Arc<AtomicBool>,
}

impl Store for FullDisk {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }

    fn apply(&mut self, batch: &[Mutation]) -> Result<(), StoreError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StoreError::Sql(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                Some("database or disk is full".into()),
            )));
        }
        self.inner.apply(batch)
    }

    fn body_reader(&self) -> Option<Arc<dyn BodyReader>> {
        self.inner.body_reader()
    }
}

fn harness(db: &std::path::Path, full: Arc<AtomicBool>) -> Harness {
    let config = Config::from_raw(util::test_raw(), None).expect("config");
    let clock = ManualClock::default();
    let store = FullDisk {
        inner: SqliteStore::open(db, Durability::Normal).expect("open db"),
        full,
    };
    let orch = Orchestrator::open(&config, Box::new(store), Arc::new(clock.clone())).expect("open");
    Harness {
        app: orch.router(),
        fleet: orch.fleet().clone(),
        clock,
    }
}

#[tokio::test]
async fn a_refused_commit_leaves_nothing_behind_and_work_resumes_when_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    let full = Arc::new(AtomicBool::new(false));
    let h = harness(&db, full.clone());
    h.register("w", json!({})).await;
    let kept = h.submit(json!({"type": "t", "data": {"n": 1}})).await;

    full.store(true, Ordering::SeqCst);
    let (s, v) = h
        .call(
            "POST",
            "/api/tasks/submit",
            Some(json!({"type": "t", "data": {"n": 2}})),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"].as_str().unwrap().contains("disk is full"), "{v}");
    let (_, stats) = h.call("GET", "/api/stats", None).await;
    assert_eq!(
        stats["tasks"]["total"], 1,
        "the refused task is not in memory: {stats}"
    );
    assert_eq!(stats["tasks"]["pending"], 1);
    let (_, health) = h.call("GET", "/health", None).await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health["store_error"]
        .as_str()
        .unwrap()
        .contains("disk is full"));
    // Handing out work needs a commit too: refused, and the task stays pending.
    let (s, _) = h.call("GET", "/api/workers/w/tasks", None).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.status(&kept).await["status"], "pending");

    full.store(false, Ordering::SeqCst);
    let task = h.poll("w").await;
    assert_eq!(task["task_id"], kept.as_str());
    let (s, v) = h
        .result(&kept, "w", json!({"success": true, "output": "ok"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let later = h.submit(json!({"type": "t", "data": {"n": 3}})).await;
    let (_, health) = h.call("GET", "/health", None).await;
    assert_eq!(health["status"], "healthy", "{health}");
    assert!(health.get("store_error").is_none());

    // The file holds exactly what was acknowledged.
    drop(h);
    let mut reopened = SqliteStore::open(&db, Durability::Normal).expect("reopen");
    let snap = reopened.load().expect("load");
    let mut stored: Vec<(String, String)> = snap
        .tasks
        .iter()
        .map(|t| (t.id.clone(), t.state.as_str().to_string()))
        .collect();
    stored.sort();
    let mut want = vec![
        (kept.clone(), "completed".to_string()),
        (later, "pending".to_string()),
    ];
    want.sort();
    assert_eq!(stored, want);
}
