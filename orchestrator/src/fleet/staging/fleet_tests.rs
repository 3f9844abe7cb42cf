//! The staging pass on a fleet with a manual clock and a memory store: pulling when the
//! nodes that have a model are busy for longer than a pull would take (and not when
//! waiting is quicker), the order's round trip through heartbeats, and the pre-load of a
//! model whose queue keeps growing.

use pifleet_protocol::{
    Capabilities, HeartbeatRequest, LoadedModel, ModelInfo, NodeMetrics, StageAction, StageOrder,
    StageProgress, StageState,
};
use serde_json::json;

use crate::clock::ManualClock;
use crate::fleet::testing::{memory_fleet, new_task, registered, submitted};
use crate::fleet::{Fleet, Limits, Staging, StagingMode};
use crate::store::Snapshot;

const MODEL: &str = "qwen2.5:0.5b";

fn fleet(staging: Staging, clock: &ManualClock) -> Fleet {
    let limits = Limits {
        staging,
        ..Limits::default()
    };
    memory_fleet(limits, Snapshot::default(), clock)
}

fn staging(mode: StagingMode, bytes_per_s: f64) -> Staging {
    Staging {
        mode,
        models: vec!["*".into()],
        pull_bytes_per_s: bytes_per_s,
        ..Staging::default()
    }
}

async fn register(f: &Fleet, id: &str, has_model: bool) {
    let models: Vec<String> = if has_model {
        vec![MODEL.into()]
    } else {
        vec![]
    };
    let caps = Capabilities {
        model_details: models
            .iter()
            .map(|m| ModelInfo {
                name: m.clone(),
                size_bytes: Some(400_000_000),
                ..Default::default()
            })
            .collect(),
        models,
        task_types: vec!["agent_action".into()],
        model_pull: Some(true),
        ..Default::default()
    };
    registered(f, id, "pifleet-agent", caps).await;
}

fn metrics(loaded: bool) -> NodeMetrics {
    NodeMetrics {
        disk_free_bytes: Some(50_000_000_000),
        memory_total_bytes: Some(8_000_000_000),
        memory_available_bytes: Some(6_000_000_000),
        temperature_c: Some(50.0),
        models_loaded: loaded.then(|| {
            vec![LoadedModel {
                name: MODEL.into(),
                ..Default::default()
            }]
        }),
        ..Default::default()
    }
}

fn beat(f: &Fleet, id: &str, loaded: bool, staging: Vec<StageProgress>) -> Vec<StageOrder> {
    let hb = HeartbeatRequest {
        metrics: Some(metrics(loaded)),
        staging,
        ..Default::default()
    };
    f.heartbeat(id, hb).expect("heartbeat").0.stage
}

async fn submit(f: &Fleet) -> String {
    submit_for(f, MODEL).await
}

async fn submit_for(f: &Fleet, model: &str) -> String {
    let data = json!({"model": model, "prompt": "hello"});
    submitted(f, new_task("agent_action", data)).await
}

/// "has" runs a task (placed by expected finish, so its end is known) and `queued` more
/// wait for it; "spare" lacks the model and may pull.
async fn busy_holder(f: &Fleet, queued: usize) {
    register(f, "has", true).await;
    register(f, "spare", false).await;
    beat(f, "has", true, vec![]);
    beat(f, "spare", false, vec![]);
    let mut ticket = f.poll_start("has").expect("poll");
    submit(f).await;
    let got = ticket.wait(0.0).await.expect("poll answer");
    ticket.finish();
    assert!(got.is_some(), "the holder takes the first task");
    for _ in 0..queued {
        submit(f).await;
    }
}

#[tokio::test]
async fn a_busy_holder_makes_a_spare_node_pull_only_when_the_queue_outlasts_the_pull() {
    // A slow link: 400 MB at 1 kB/s takes days; waiting for "has" is quicker.
    let clock = ManualClock::default();
    let f = fleet(staging(StagingMode::Pull, 1_000.0), &clock);
    busy_holder(&f, 3).await;
    f.tick();
    assert!(beat(&f, "spare", false, vec![]).is_empty());

    // A fast link: the pull (40 s + a cold load) beats the queue behind "has".
    let clock = ManualClock::default();
    let f = fleet(staging(StagingMode::Pull, 10_000_000.0), &clock);
    busy_holder(&f, 3).await;
    f.tick();
    assert!(
        beat(&f, "has", true, vec![]).is_empty(),
        "the holder is not asked"
    );
    let orders = beat(&f, "spare", false, vec![]);
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0].action, StageAction::Pull);
    assert_eq!(orders[0].model, MODEL);
    // Repeated until the node reports; then its progress shows; done ends it.
    let report = |state: StageState, done: u64| StageProgress {
        id: orders[0].id,
        action: StageAction::Pull,
        model: MODEL.into(),
        state,
        status: Some("pulling dde5aa3fc5ff".into()),
        completed_bytes: Some(done),
        total_bytes: Some(400),
        error: None,
        attempts: None,
        retry_in_s: None,
    };
    f.tick();
    assert_eq!(
        beat(&f, "spare", false, vec![report(StageState::Running, 100)]),
        orders
    );
    let view = f.node("spare").unwrap().node.staging;
    assert_eq!(view[0].state, StageState::Running);
    assert_eq!(view[0].percent(), Some(25.0));
    f.tick();
    assert!(beat(&f, "spare", false, vec![report(StageState::Done, 400)]).is_empty());
    assert_eq!(
        f.node("spare").unwrap().node.staging[0].state,
        StageState::Done
    );
}

#[tokio::test]
async fn a_growing_queue_preloads_the_model_on_a_second_node_that_has_it() {
    for mode in [StagingMode::Pull, StagingMode::PullAndPreload] {
        let clock = ManualClock::default();
        let f = fleet(staging(mode, 1_000.0), &clock);
        register(&f, "hot", true).await;
        register(&f, "cold", true).await;
        // Neither polls, so the queue grows; only "hot" has the model loaded.
        let mut asked = Vec::new();
        for _ in 0..5 {
            submit(&f).await;
            submit(&f).await;
            beat(&f, "hot", true, vec![]);
            asked.extend(beat(&f, "cold", false, vec![]));
            f.tick();
            clock.advance(f.limits().heartbeat_interval_s);
        }
        asked.extend(beat(&f, "cold", false, vec![]));
        if mode == StagingMode::Pull {
            assert!(asked.is_empty(), "{asked:?}");
        } else {
            // One order, repeated in every answer until the node reports on it.
            asked.dedup();
            assert_eq!(asked.len(), 1, "{asked:?}");
            assert_eq!(asked[0].action, StageAction::Preload);
            assert!(beat(&f, "hot", true, vec![]).is_empty());
        }
    }
}

#[tokio::test]
async fn a_link_measured_slow_stops_pulls_that_a_fast_configured_one_would_order() {
    // Configured fast (a 400 MB pull in 40 s would beat the queue behind "has"), but the
    // spare node's first pull, of a model nobody has, shows its link does 1 kB/s.
    let clock = ManualClock::default();
    let f = fleet(staging(StagingMode::Pull, 10_000_000.0), &clock);
    register(&f, "spare", false).await;
    beat(&f, "spare", false, vec![]);
    let other = submit_for(&f, "other:1b").await;
    f.tick();
    let orders = beat(&f, "spare", false, vec![]);
    assert_eq!(orders.len(), 1, "{orders:?}");
    let report = |done: u64, state: StageState| StageProgress {
        status: Some("pulling 74701a8c35f6".into()),
        completed_bytes: Some(done),
        total_bytes: Some(400_000_000),
        ..StageProgress::new(orders[0].id, StageAction::Pull, "other:1b".into(), state)
    };
    beat(&f, "spare", false, vec![report(0, StageState::Running)]);
    clock.advance(100.0);
    beat(
        &f,
        "spare",
        false,
        vec![report(100_000, StageState::Running)],
    );
    assert_eq!(f.lock().nodes["spare"].pull_rate, Some(1_000.0));
    // That pull ends and its task is withdrawn: the spare node is free to pull again.
    beat(
        &f,
        "spare",
        false,
        vec![report(400_000_000, StageState::Done)],
    );
    f.cancel(&other, "not needed any more");

    // Now the same queue behind a busy "has" as in the fast case above: no pull.
    register(&f, "has", true).await;
    beat(&f, "has", true, vec![]);
    let mut ticket = f.poll_start("has").expect("poll");
    submit(&f).await;
    assert!(ticket.wait(0.0).await.expect("poll answer").is_some());
    ticket.finish();
    for _ in 0..3 {
        submit(&f).await;
    }
    f.tick();
    let asked = beat(&f, "spare", false, vec![]);
    assert!(
        asked.iter().all(|o| o.model != MODEL),
        "a pull at 1 kB/s would take days: {asked:?}"
    );
}
