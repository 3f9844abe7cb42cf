//! A pending task's place in the queue (over lanes, capped, absent in backoff), and its
//! expected start on a fleet with a manual clock: behind a busy node whose end is known,
//! and unknown where no node can run it.

use pifleet_protocol::{Capabilities, HeartbeatRequest, NodeMetrics};
use serde_json::{json, Value};

use super::{Standing, POSITION_COUNTED};
use crate::clock::ManualClock;
use crate::fleet::queue::Queue;
use crate::fleet::task::Task;
use crate::fleet::testing::{memory_fleet, new_task, registered, submitted};
use crate::fleet::{Fleet, Limits};
use crate::store::Snapshot;

const AGING_S: f64 = 60.0;
const MODEL: &str = "qwen2.5:0.5b";

fn task(seq: u64, priority: u8, data: Value) -> Task {
    Task::sample(seq, priority, 100.0 + seq as f64, data)
}

fn standing(q: &Queue, t: &Task) -> Option<Standing> {
    q.standing(&t.req, t.rank(AGING_S))
}

#[test]
fn the_place_counts_every_lane_and_the_lane_counts_its_own() {
    let a = json!({"model": "llama3.2:1b"});
    let b = json!({"model": MODEL});
    // Offer order: t3 (priority 9), then t0, t1, t2, t4 by arrival.
    let mut tasks = vec![
        task(0, 5, a.clone()),
        task(1, 5, b.clone()),
        task(2, 5, a.clone()),
        task(3, 9, b.clone()),
        task(4, 5, b),
        task(5, 5, a),
    ];
    tasks[5].not_before = Some(5000.0);
    let mut q = Queue::default();
    for t in &tasks {
        q.enqueue(t, AGING_S);
    }
    let place = |q: &Queue, i: usize| standing(q, &tasks[i]).map(|s| (s.position, s.ahead_in_lane));
    assert_eq!(place(&q, 3), Some((1, 0)));
    assert_eq!(place(&q, 0), Some((2, 0)));
    assert_eq!(place(&q, 1), Some((3, 1)), "behind t3 in lane b");
    assert_eq!(place(&q, 2), Some((4, 1)), "behind t0 in lane a");
    assert_eq!(place(&q, 4), Some((5, 2)));
    assert_eq!(place(&q, 5), None, "in backoff");
    // The next task leaves: everyone moves up one.
    q.remove(&tasks[3], AGING_S);
    assert_eq!(place(&q, 4), Some((4, 1)));
    assert_eq!(place(&q, 3), None, "no longer queued");
}

#[test]
fn the_place_is_counted_up_to_the_cap() {
    let mut q = Queue::default();
    let n = POSITION_COUNTED + 5;
    let tasks: Vec<Task> = (0..n)
        .map(|i| task(i, 5, json!({"model": format!("m{}", i % 7)})))
        .collect();
    for t in &tasks {
        q.enqueue(t, AGING_S);
    }
    let first = standing(&q, &tasks[0]).unwrap();
    assert_eq!(first.position, 1);
    let at_cap = standing(&q, &tasks[POSITION_COUNTED as usize - 1]).unwrap();
    assert_eq!(at_cap.position, POSITION_COUNTED);
    let last = standing(&q, &tasks[n as usize - 1]).unwrap();
    assert_eq!(
        last.position,
        POSITION_COUNTED + 1,
        "further back than counted"
    );
}

fn fleet(clock: &ManualClock) -> Fleet {
    memory_fleet(Limits::default(), Snapshot::default(), clock)
}

async fn register(f: &Fleet, id: &str) {
    let caps = Capabilities {
        models: vec![MODEL.into()],
        task_types: vec!["agent_action".into()],
        ..Default::default()
    };
    registered(f, id, "pifleet-agent", caps).await;
    let hb = HeartbeatRequest {
        metrics: Some(NodeMetrics {
            temperature_c: Some(50.0),
            ..Default::default()
        }),
        ..Default::default()
    };
    f.heartbeat(id, hb).expect("heartbeat");
}

async fn submit(f: &Fleet, model: &str) -> String {
    let data = json!({"model": model, "prompt": "hello"});
    submitted(f, new_task("agent_action", data)).await
}

fn expected(f: &Fleet, id: &str) -> (Option<u64>, Option<f64>) {
    let (s, _) = f.status_in_memory(id).expect("a status");
    (s.queue_position, s.expected_start_s)
}

#[tokio::test]
async fn tasks_behind_a_busy_node_expect_its_end_then_one_run_each() {
    let clock = ManualClock::default();
    let f = fleet(&clock);
    register(&f, "pi-1").await;
    let mut ticket = f.poll_start("pi-1").expect("poll");
    submit(&f, MODEL).await;
    let got = ticket.wait(0.0).await.expect("poll answer");
    ticket.finish();
    assert!(got.is_some(), "pi-1 takes the first task");
    let queued = [
        submit(&f, MODEL).await,
        submit(&f, MODEL).await,
        submit(&f, MODEL).await,
    ];
    let (p1, s1) = expected(&f, &queued[0]);
    let (p2, s2) = expected(&f, &queued[1]);
    let (p3, s3) = expected(&f, &queued[2]);
    assert_eq!((p1, p2, p3), (Some(1), Some(2), Some(3)));
    let (s1, s2, s3) = (s1.unwrap(), s2.unwrap(), s3.unwrap());
    // One node: the first starts when the running task ends, each next one run later.
    assert!(s1 > 0.0, "{s1}");
    let run = s2 - s1;
    assert!(run > 0.0, "{s1} {s2}");
    assert!(((s3 - s2) - run).abs() < 0.2, "{s1} {s2} {s3}");
    // The queue listing says the same, in the same order.
    let listed: Vec<(String, Option<f64>)> = f
        .queue(10)
        .pending
        .into_iter()
        .map(|e| (e.task_id, e.expected_start_s))
        .collect();
    assert_eq!(
        listed,
        vec![
            (queued[0].clone(), Some(s1)),
            (queued[1].clone(), Some(s2)),
            (queued[2].clone(), Some(s3)),
        ]
    );
    // Time passes: the wait shrinks by as much.
    clock.advance(s1 / 2.0);
    let (_, later) = expected(&f, &queued[0]);
    assert!((later.unwrap() - s1 / 2.0).abs() < 0.2, "{later:?} vs {s1}");
}

#[tokio::test]
async fn a_task_no_node_can_run_has_a_place_but_no_expected_start() {
    let clock = ManualClock::default();
    let f = fleet(&clock);
    register(&f, "pi-1").await;
    let id = submit(&f, "llama3.1:405b").await;
    assert_eq!(expected(&f, &id), (Some(1), None));
}
