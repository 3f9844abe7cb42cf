use super::*;
use crate::sim::config::DEFAULT_TOML;

fn small() -> SimConfig {
    let mut c = SimConfig::parse(DEFAULT_TOML, "default").unwrap();
    for b in &mut c.boards {
        b.count /= 20;
    }
    c.duration_s = 1200.0;
    c.warmup_s = 200.0;
    c
}

#[test]
fn every_policy_completes_the_work_of_a_small_fleet() {
    let c = small();
    for p in Policy::ALL {
        let r = simulate(&c, p);
        assert!(r.completed > 100, "{r:?}");
        assert_eq!(r.unfinished, 0, "{r:?}");
        assert!(r.p50_s > 0.0 && r.p50_s <= r.p99_s, "{r:?}");
    }
}

#[test]
fn runs_repeat_exactly_for_a_seed() {
    let c = small();
    let mut a = simulate(&c, Policy::Pifleet);
    let mut b = simulate(&c, Policy::Pifleet);
    a.wall_s = 0.0;
    b.wall_s = 0.0;
    assert_eq!(a, b);
}

#[test]
fn pifleet_beats_least_loaded_on_the_tail() {
    let c = small();
    let ours = simulate(&c, Policy::Pifleet);
    let ll = simulate(&c, Policy::LeastLoaded);
    assert!(ours.p99_s < ll.p99_s, "{ours:?} vs {ll:?}");
    assert!(ours.mean_s <= ll.mean_s, "{ours:?} vs {ll:?}");
}

#[test]
fn json_has_the_documented_keys() {
    let r = simulate(&small(), Policy::Random);
    let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "completed",
            "mean_s",
            "p50_s",
            "p99_s",
            "policy",
            "throttled_node_s",
            "wall_s"
        ]
    );
}
