use pifleet_protocol::{Capabilities, LoadedModel, ModelInfo, NodeMetrics};
use serde_json::json;

use super::*;

const MODEL: &str = "qwen2.5:0.5b";

fn req() -> Requirements {
    Requirements::of("agent_action", &json!({ "model": MODEL }))
}

fn caps(pull: Option<bool>, models: &[&str]) -> Capabilities {
    Capabilities {
        models: models.iter().map(|m| m.to_string()).collect(),
        model_details: models
            .iter()
            .map(|m| ModelInfo {
                name: m.to_string(),
                size_bytes: Some(400_000_000),
                ..Default::default()
            })
            .collect(),
        model_pull: pull,
        memory_total_bytes: Some(8_000_000_000),
        ..Default::default()
    }
}

fn metrics(disk: u64) -> NodeMetrics {
    NodeMetrics {
        disk_free_bytes: Some(disk),
        memory_available_bytes: Some(6_000_000_000),
        temperature_c: Some(50.0),
        ..Default::default()
    }
}

fn cand<'a>(id: &'a str, caps: &'a Capabilities, m: &'a NodeMetrics) -> Candidate<'a> {
    Candidate {
        id,
        facts: NodeFacts {
            caps,
            metrics: Some(m),
            running: 0,
            draining: false,
            alive: true,
        },
        staging: false,
        blocked: false,
        gen_tps: 10.0,
    }
}

const SIZE: Option<u64> = Some(400_000_000);

fn why(c: &Candidate) -> Result<(), NotAsked> {
    can_pull(c, &req(), MODEL, SIZE, &Thermal::default())
}

#[test]
fn only_a_node_that_allows_pulls_and_lacks_the_model_is_asked() {
    let m = metrics(50_000_000_000);
    let yes = caps(Some(true), &[]);
    let opted_out = caps(Some(false), &[]);
    let seed = caps(None, &[]);
    let has = caps(Some(true), &[MODEL]);
    assert_eq!(why(&cand("a", &yes, &m)), Ok(()));
    assert_eq!(why(&cand("a", &opted_out, &m)), Err(NotAsked::OptedOut));
    assert_eq!(why(&cand("a", &seed, &m)), Err(NotAsked::OptedOut));
    assert_eq!(why(&cand("a", &has, &m)), Err(NotAsked::HasModel));
}

#[test]
fn dead_draining_busy_staging_and_backing_off_nodes_are_not_asked() {
    let m = metrics(50_000_000_000);
    let c = caps(Some(true), &[]);
    let mut x = cand("a", &c, &m);
    x.facts.alive = false;
    assert_eq!(why(&x), Err(NotAsked::Dead));
    let mut x = cand("a", &c, &m);
    x.facts.draining = true;
    assert_eq!(why(&x), Err(NotAsked::Draining));
    let mut x = cand("a", &c, &m);
    x.staging = true;
    assert_eq!(why(&x), Err(NotAsked::Staging));
    let mut x = cand("a", &c, &m);
    x.blocked = true;
    assert_eq!(why(&x), Err(NotAsked::Blocked));
    let hot = NodeMetrics {
        temperature_c: Some(90.0),
        ..metrics(50_000_000_000)
    };
    assert_eq!(why(&cand("a", &c, &hot)), Err(NotAsked::Unfit));
}

#[test]
fn the_model_must_fit_on_disk_with_headroom_and_in_memory() {
    let c = caps(Some(true), &[]);
    let tight = metrics(420_000_000);
    assert_eq!(why(&cand("a", &c, &tight)), Err(NotAsked::Disk));
    let roomy = metrics(500_000_000);
    assert_eq!(why(&cand("a", &c, &roomy)), Ok(()));
    let small = Capabilities {
        memory_total_bytes: Some(300_000_000),
        ..caps(Some(true), &[])
    };
    assert_eq!(why(&cand("a", &small, &roomy)), Err(NotAsked::Memory));
    // Unknown size: the default size is assumed, which this disk cannot hold.
    assert_eq!(
        can_pull(
            &cand("a", &c, &roomy),
            &req(),
            MODEL,
            None,
            &Thermal::default()
        ),
        Err(NotAsked::Disk)
    );
}

#[test]
fn an_idle_node_beats_a_busy_one_then_the_faster_then_more_disk() {
    let c = caps(Some(true), &[]);
    let small_disk = metrics(10_000_000_000);
    let big_disk = metrics(90_000_000_000);
    let t = Thermal::default();
    let pick = |cs: Vec<Candidate>| choose_puller(cs, &req(), MODEL, SIZE, &t).map(str::to_owned);

    let mut busy = cand("busy", &c, &big_disk);
    busy.facts.running = 1;
    busy.gen_tps = 100.0;
    assert_eq!(
        pick(vec![busy, cand("idle", &c, &small_disk)]).as_deref(),
        Some("idle")
    );

    let mut fast = cand("fast", &c, &small_disk);
    fast.gen_tps = 30.0;
    assert_eq!(
        pick(vec![cand("slow", &c, &big_disk), fast]).as_deref(),
        Some("fast")
    );

    assert_eq!(
        pick(vec![cand("a", &c, &small_disk), cand("b", &c, &big_disk)]).as_deref(),
        Some("b")
    );
    let out = caps(Some(false), &[]);
    assert_eq!(pick(vec![cand("a", &out, &big_disk)]), None);
}

#[test]
fn a_preload_goes_to_a_node_that_has_the_model_but_not_loaded() {
    let t = Thermal::default();
    let m = metrics(50_000_000_000);
    let has = caps(Some(true), &[MODEL]);
    let lacks = caps(Some(true), &[]);
    let loaded_m = NodeMetrics {
        models_loaded: Some(vec![LoadedModel {
            name: MODEL.into(),
            ..Default::default()
        }]),
        ..metrics(50_000_000_000)
    };
    let pre = |c: &Candidate| can_preload(c, &req(), MODEL, SIZE, &t);
    assert_eq!(pre(&cand("a", &has, &m)), Ok(()));
    assert_eq!(pre(&cand("a", &lacks, &m)), Err(NotAsked::LacksModel));
    assert_eq!(pre(&cand("a", &has, &loaded_m)), Err(NotAsked::Loaded));
    let got = choose_preloader(
        vec![cand("loaded", &has, &loaded_m), cand("cold", &has, &m)],
        &req(),
        MODEL,
        SIZE,
        &t,
    );
    assert_eq!(got, Some("cold"));
}

#[test]
fn waiting_beats_pulling_only_when_the_queue_outlasts_the_download() {
    // 400 MB at 10 MB/s plus a 20 s load: 60 s.
    let pull = pull_s(SIZE, 10_000_000.0, 20.0);
    assert!((pull - 60.0).abs() < 1e-9);
    // One node free in 10 s, 3 tasks of 10 s each ahead: 40 s < 60 s, wait.
    assert!(wait_s(&[Some(10.0)], 3, 10.0).is_some_and(|w| w < pull));
    // 10 tasks: 110 s > 60 s, pull.
    assert!(wait_s(&[Some(10.0)], 10, 10.0).is_some_and(|w| w > pull));
    // Two nodes halve the queue; the earliest free one counts.
    assert_eq!(wait_s(&[Some(30.0), Some(5.0)], 10, 10.0), Some(55.0));
    // A node whose end is unknown: no estimate, no pull on a guess.
    assert_eq!(wait_s(&[Some(5.0), None], 10, 10.0), None);
    assert_eq!(wait_s(&[], 10, 10.0), None);
}

fn progress(status: &str, completed: u64) -> StageProgress {
    StageProgress {
        status: Some(status.into()),
        completed_bytes: Some(completed),
        total_bytes: Some(400_000_000),
        ..StageProgress::new(
            1,
            pifleet_protocol::StageAction::Pull,
            MODEL.into(),
            pifleet_protocol::StageState::Running,
        )
    }
}

#[test]
fn a_pull_rate_is_measured_within_one_layer_and_blended() {
    let a = progress("pulling dde5aa3fc5ff", 1_000_000);
    let b = progress("pulling dde5aa3fc5ff", 21_000_000);
    assert_eq!(pull_rate_sample(&a, 100.0, &b, 110.0), Some(2_000_000.0));
    // A new layer counts from zero; reports too close together say nothing.
    let next_layer = progress("pulling 966de95ca8a6", 5_000);
    assert_eq!(pull_rate_sample(&b, 110.0, &next_layer, 120.0), None);
    assert_eq!(pull_rate_sample(&a, 100.0, &b, 100.5), None);
    assert_eq!(pull_rate_sample(&b, 100.0, &a, 110.0), None, "went back");
    assert_eq!(blend_rate(None, 2e6), 2e6);
    assert_eq!(blend_rate(Some(1e6), 3e6), 2e6);
    assert_eq!(fleet_pull_rate(vec![], 10e6), 10e6, "the configured rate");
    assert_eq!(
        fleet_pull_rate(vec![5e6, 1e6, 3e6], 10e6),
        3e6,
        "the median"
    );
}
