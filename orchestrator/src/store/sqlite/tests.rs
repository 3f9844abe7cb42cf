use super::*;
use crate::store::{TaskRow, WorkerRow};
use pifleet_protocol::TaskState;
use serde_json::json;
use std::sync::Arc;

fn task(id: &str, state: TaskState) -> TaskRow {
    TaskRow {
        id: id.into(),
        task_type: "agent_action".into(),
        data: Arc::new(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
        priority: 7,
        state,
        assigned_to: None,
        attempt: 0,
        failures: 0,
        max_attempts: 3,
        timeout_s: 600.0,
        result: None,
        error: None,
        created_at: 1.5,
        updated_at: 1.5,
        assigned_at: None,
        not_before: None,
        seq: 1,
        settled_by: None,
        settled_attempt: None,
        expires_at: None,
        summary: None,
    }
}

#[test]
fn what_is_applied_is_loaded_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut a = task("a", TaskState::Pending);
    let mut b = task("b", TaskState::Pending);
    b.seq = 2;
    let worker = WorkerRow {
        id: "pi".into(),
        worker_type: "pi".into(),
        capabilities: json!({"models": ["m"]}),
        registered_at: 1.0,
        last_seen: 2.0,
        draining: true,
        dead: false,
        tasks_completed: 0,
        tasks_failed: 0,
        metrics: Some(json!({"temperature_c": 50.0})),
    };
    {
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        s.apply(&[
            Mutation::PutTask(a.clone()),
            Mutation::PutTask(b.clone()),
            Mutation::PutWorker(worker.clone()),
            Mutation::Counter("retried".into(), 4),
        ])
        .unwrap();
        a.state = TaskState::Completed;
        a.attempt = 1;
        a.assigned_to = Some("pi".into());
        a.result = Some(Arc::new(json!({"success": true})));
        a.settled_by = Some("pi".into());
        a.settled_attempt = Some(1);
        s.apply(&[
            Mutation::UpdateTask(a.clone()),
            Mutation::WorkerCounts {
                id: "pi".into(),
                completed: 1,
                failed: 0,
            },
            Mutation::DeleteTask("b".into()),
        ])
        .unwrap();
    }
    let mut s = SqliteStore::open(&path, Durability::Full).unwrap();
    let snap = s.load().unwrap();
    // Settled: only the summary comes back in the snapshot, the bodies are read on demand.
    let mut slim = a.clone();
    slim.summary = Some(Box::new(crate::store::Summary::of(
        &a.data,
        a.result.as_deref(),
    )));
    slim.data = crate::store::bodies::no_data();
    slim.result = None;
    assert_eq!(snap.tasks, vec![slim]);
    let bodies = s.body_reader().unwrap().read("a").unwrap().unwrap();
    assert_eq!(bodies.result.as_ref(), a.result.as_deref());
    assert_eq!(bodies.error, a.error);
    assert!(s.body_reader().unwrap().read("b").unwrap().is_none());
    assert_eq!(snap.workers[0].tasks_completed, 1);
    assert!(snap.workers[0].draining);
    assert_eq!(snap.workers[0].metrics, worker.metrics);
    assert_eq!(snap.counters, vec![("retried".to_string(), 4)]);
}

#[test]
fn a_failed_batch_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(&dir.path().join("t.db"), Durability::Normal).unwrap();
    let err = s.apply(&[
        Mutation::PutTask(task("a", TaskState::Pending)),
        Mutation::UpdateTask(task("never-stored", TaskState::Assigned)),
    ]);
    assert!(err.is_err());
    assert!(s.load().unwrap().tasks.is_empty());
}

#[test]
fn a_row_that_does_not_parse_is_quarantined_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut b = task("b", TaskState::Pending);
    b.seq = 2;
    {
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        s.apply(&[
            Mutation::PutTask(task("a", TaskState::Pending)),
            Mutation::PutTask(b.clone()),
        ])
        .unwrap();
        s.conn
            .execute("UPDATE tasks SET data = '{not json' WHERE id = 'a'", [])
            .unwrap();
        s.conn
            .execute(
                "INSERT INTO workers VALUES ('pi', 'pi', 'oops', 1.0, 2.0, 0, 0, 0, 0, NULL)",
                [],
            )
            .unwrap();
    }
    let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
    let snap = s.load().expect("one bad row does not stop the load");
    assert_eq!(snap.tasks, vec![b.clone()]);
    assert!(snap.workers.is_empty());
    let (id, data, reason): (String, String, String) = s
        .conn
        .query_row("SELECT id, data, reason FROM quarantined_tasks", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((id.as_str(), data.as_str()), ("a", "{not json"));
    assert!(reason.starts_with("data: invalid JSON"), "{reason}");
    let reason: String = s
        .conn
        .query_row("SELECT reason FROM quarantined_workers", [], |r| r.get(0))
        .unwrap();
    assert!(reason.starts_with("capabilities:"), "{reason}");
    // Set aside once: the next start loads the good rows and quarantines nothing new.
    drop(s);
    let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
    assert_eq!(s.load().unwrap().tasks, vec![b]);
    let n: i64 = s
        .conn
        .query_row("SELECT count(*) FROM quarantined_tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn a_task_in_an_unknown_state_is_quarantined_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        s.apply(&[Mutation::PutTask(task("a", TaskState::Assigned))])
            .unwrap();
        s.conn
            .execute("UPDATE tasks SET state = 'finished' WHERE id = 'a'", [])
            .unwrap();
    }
    let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
    assert!(s.load().unwrap().tasks.is_empty());
    let reason: String = s
        .conn
        .query_row("SELECT reason FROM quarantined_tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(reason, r#"state: unknown "finished""#);
}

#[test]
fn a_version_2_file_gains_the_expiry_column_and_keeps_its_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let v2 = SCHEMA.replace(",\n    expires_at REAL", "").replace(
        "settled_attempt, expires_at, reason",
        "settled_attempt, reason",
    );
    assert!(!v2.contains("expires_at"));
    let old = Connection::open(&path).unwrap();
    old.execute_batch(&v2).unwrap();
    old.execute_batch(
        "INSERT INTO tasks (id, type, data, priority, state, attempt, failures, max_attempts,
            timeout_s, created_at, updated_at, seq)
         VALUES ('old', 't', '{}', 5, 'pending', 0, 0, 3, 600, 1, 1, 1);
         PRAGMA user_version = 2;",
    )
    .unwrap();
    drop(old);
    let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
    let snap = s.load().unwrap();
    assert_eq!(snap.tasks.len(), 1);
    assert_eq!(snap.tasks[0].expires_at, None);
    let mut t = task("new", TaskState::Pending);
    t.expires_at = Some(99.5);
    s.apply(&[Mutation::PutTask(t)]).unwrap();
    drop(s);
    let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
    let snap = s.load().unwrap();
    let new = snap.tasks.iter().find(|t| t.id == "new").unwrap();
    assert_eq!(new.expires_at, Some(99.5));
}

#[test]
fn a_newer_schema_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 7;")
        .unwrap();
    let err = SqliteStore::open(&path, Durability::Normal)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("schema version 7"), "{err}");
    assert!(!err.contains("corrupt"), "{err}");
}
