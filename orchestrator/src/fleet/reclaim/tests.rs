//! The lost-answer rule on a fleet with a manual clock and a memory store.

use pifleet_protocol::{Capabilities, HeartbeatRequest, TaskState};
use serde_json::json;

use crate::clock::ManualClock;
use crate::fleet::testing::{memory_fleet, new_task, registered, submitted};
use crate::fleet::{committed, Fleet, FleetError, Limits, ResultReport};
use crate::store::Snapshot;

fn fleet_from(snapshot: Snapshot, clock: &ManualClock) -> Fleet {
    let limits = Limits {
        retry_backoff_s: 0.0,
        ..Limits::default()
    };
    memory_fleet(limits, snapshot, clock)
}

async fn register(f: &Fleet, id: &str) {
    registered(f, id, "test", Capabilities::default()).await;
}

async fn submit(f: &Fleet) -> String {
    submitted(
        f,
        new_task("evolution_mutation", json!({"genome": {"x": 1.0}})),
    )
    .await
}

/// A poll answered at once, the answer handed over (`finish`): what the HTTP layer does.
async fn poll(f: &Fleet, worker: &str) -> Option<(String, u32)> {
    let mut ticket = f.poll_start(worker).expect("poll");
    let a = ticket.wait(0.0).await.expect("poll answer");
    ticket.finish();
    a.map(|a| (a.task_id, a.attempt.unwrap_or(0)))
}

fn ids(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

/// One heartbeat; true when it took something back (and that is committed).
async fn beat(
    f: &Fleet,
    worker: &str,
    running: Option<Vec<String>>,
    spooled: Option<Vec<String>>,
) -> bool {
    let hb = HeartbeatRequest {
        metrics: None,
        running_tasks: running,
        spooled_results: spooled,
        staging: Vec::new(),
    };
    let (_, commit) = f.heartbeat(worker, hb).expect("heartbeat");
    match commit {
        Some(c) => {
            committed(c).await.expect("reclaim committed");
            true
        }
        None => false,
    }
}

fn state(f: &Fleet, task: &str) -> (TaskState, Option<String>, Option<String>) {
    let inner = f.lock();
    let t = &inner.tasks[task];
    (t.state, t.assigned_to.clone(), t.error.clone())
}

#[tokio::test]
async fn two_heartbeats_without_a_delivered_attempt_requeue_it_for_another_node() {
    let clock = ManualClock::default();
    let f = fleet_from(Snapshot::default(), &clock);
    register(&f, "a").await;
    let task = submit(&f).await;
    let (got, attempt) = poll(&f, "a").await.expect("a gets the task");
    assert_eq!((got.as_str(), attempt), (task.as_str(), 1));

    assert!(
        !beat(&f, "a", ids(&[]), ids(&[])).await,
        "one omission is not enough"
    );
    assert_eq!(state(&f, &task).0, TaskState::Assigned);
    assert!(
        beat(&f, "a", ids(&[]), ids(&[])).await,
        "the second takes it back"
    );
    let (st, holder, why) = state(&f, &task);
    assert_eq!((st, holder), (TaskState::Pending, None));
    let why = why.expect("a reason");
    assert!(
        why.contains("attempt 1") && why.contains("never reached"),
        "{why}"
    );
    let counts = f.stats().tasks;
    assert_eq!((counts.reclaimed, counts.retried), (1, 1));
    assert!(
        f.lock().nodes["a"].current.is_empty(),
        "a's slot is free again"
    );

    // Another node runs it; the late result of the lost attempt is fenced.
    register(&f, "b").await;
    assert_eq!(poll(&f, "b").await, Some((task.clone(), 2)));
    let late = f.settle(
        &task,
        ResultReport {
            worker_id: "a".into(),
            attempt: Some(1),
            result: json!({"success": true}),
            success: true,
            retryable: false,
        },
    );
    assert!(
        matches!(late, Err(FleetError::StaleAttempt { .. })),
        "{late:?}"
    );
    assert_eq!(state(&f, &task).1.as_deref(), Some("b"));
}

#[tokio::test]
async fn an_attempt_whose_answer_has_not_gone_out_is_not_counted() {
    let clock = ManualClock::default();
    let f = fleet_from(Snapshot::default(), &clock);
    register(&f, "a").await;
    let task = submit(&f).await;
    // Placed on the poll, but the answer is still on its way (committing).
    let mut ticket = f.poll_start("a").expect("poll");
    for _ in 0..3 {
        assert!(!beat(&f, "a", ids(&[]), ids(&[])).await);
    }
    assert_eq!(state(&f, &task).0, TaskState::Assigned);
    let a = ticket.wait(0.0).await.expect("answer").expect("task");
    ticket.finish();
    assert_eq!(a.task_id, task);
    // Counting starts when the answer went out.
    assert!(!beat(&f, "a", ids(&[]), ids(&[])).await);
    assert!(beat(&f, "a", ids(&[]), ids(&[])).await);
}

#[tokio::test]
async fn running_or_spooled_resets_the_count_and_keeps_the_attempt() {
    let clock = ManualClock::default();
    let f = fleet_from(Snapshot::default(), &clock);
    register(&f, "a").await;
    let task = submit(&f).await;
    poll(&f, "a").await.expect("task");
    let t = task.as_str();
    // Sampled before the answer arrived, then running, then done and in the spool.
    assert!(!beat(&f, "a", ids(&[]), ids(&[])).await);
    assert!(!beat(&f, "a", ids(&[t]), ids(&[])).await);
    for _ in 0..5 {
        assert!(!beat(&f, "a", ids(&[]), ids(&[t])).await);
    }
    assert_eq!(state(&f, &task).0, TaskState::Assigned);
    // Omitted, then seen again: the run of omissions starts over.
    assert!(!beat(&f, "a", ids(&[]), ids(&[])).await);
    assert!(!beat(&f, "a", ids(&["other"]), ids(&[t, "more"])).await);
    assert!(!beat(&f, "a", ids(&[]), ids(&[])).await);
    assert_eq!(state(&f, &task).0, TaskState::Assigned);
    assert_eq!(f.stats().tasks.reclaimed, 0);
}

#[tokio::test]
async fn a_node_that_does_not_say_both_keeps_the_timeout_rule() {
    let clock = ManualClock::default();
    let f = fleet_from(Snapshot::default(), &clock);
    register(&f, "a").await;
    let task = submit(&f).await;
    poll(&f, "a").await.expect("task");
    for (running, spooled) in [(None, None), (ids(&[]), None), (None, ids(&[]))] {
        for _ in 0..3 {
            assert!(!beat(&f, "a", running.clone(), spooled.clone()).await);
        }
    }
    assert_eq!(state(&f, &task).0, TaskState::Assigned);
    clock.advance(601.0);
    assert!(!beat(&f, "a", None, None).await);
    f.tick();
    let (st, _, why) = state(&f, &task);
    assert_eq!(st, TaskState::Pending);
    assert!(why.unwrap_or_default().contains("timed out"));
    assert_eq!(f.stats().tasks.reclaimed, 0);
}

#[tokio::test]
async fn an_attempt_recovered_from_the_store_counts_as_delivered() {
    // The orchestrator committed the assignment and crashed before answering.
    let clock = ManualClock::default();
    let f = fleet_from(Snapshot::default(), &clock);
    register(&f, "a").await;
    let task = submit(&f).await;
    let mut ticket = f.poll_start("a").expect("poll");
    let _ = ticket.wait(0.0).await.expect("answer");
    let snapshot = {
        let inner = f.lock();
        Snapshot {
            workers: inner.nodes.values().map(|n| n.row()).collect(),
            tasks: inner.tasks.values().map(|t| t.row()).collect(),
            ..Snapshot::default()
        }
    };
    std::mem::forget(ticket);
    let f = fleet_from(snapshot, &clock);
    assert_eq!(state(&f, &task).0, TaskState::Assigned);
    assert!(!beat(&f, "a", ids(&[]), ids(&[])).await);
    assert!(beat(&f, "a", ids(&[]), ids(&[])).await);
    assert_eq!(state(&f, &task).0, TaskState::Pending);
}

#[tokio::test]
async fn a_task_lost_on_every_attempt_fails_after_max_attempts() {
    let clock = ManualClock::default();
    let f = fleet_from(Snapshot::default(), &clock);
    register(&f, "a").await;
    let task = submit(&f).await;
    for attempt in 1..=3 {
        assert_eq!(poll(&f, "a").await, Some((task.clone(), attempt)));
        assert!(!beat(&f, "a", ids(&[]), ids(&[])).await);
        assert!(beat(&f, "a", ids(&[]), ids(&[])).await);
    }
    let (st, _, why) = state(&f, &task);
    assert_eq!(st, TaskState::Failed);
    assert!(why.unwrap_or_default().contains("gave up after 3"));
    assert_eq!(f.stats().tasks.reclaimed, 3);
    assert_eq!(
        f.lock().nodes["a"].failed,
        0,
        "a lost answer is not the node failing"
    );
}
