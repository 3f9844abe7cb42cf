use super::*;
use pifleet_protocol::{Capabilities, LoadedModel, NodeMetrics};
use serde_json::json;

const GIB: u64 = 1 << 30;

fn req(task_type: &str, data: serde_json::Value) -> Arc<Requirements> {
    Arc::new(Requirements::of(task_type, &data))
}

fn facts<'a>(caps: &'a Capabilities, metrics: Option<&'a NodeMetrics>) -> NodeFacts<'a> {
    NodeFacts {
        caps,
        metrics,
        running: 0,
        draining: false,
        alive: true,
    }
}

fn index(lanes: &[Arc<Requirements>]) -> LaneIndex {
    let mut ix = LaneIndex::default();
    for l in lanes {
        ix.insert(l);
    }
    ix.check().unwrap();
    ix
}

fn reached(ix: &LaneIndex, reach: &Reach, only: Option<&str>) -> HashSet<Arc<Requirements>> {
    let mut out = HashSet::new();
    ix.reachable(reach, only, &mut out);
    out
}

fn agent(types: &[&str], models: &[&str], memory: Option<u64>) -> Capabilities {
    Capabilities {
        task_types: types.iter().map(|s| s.to_string()).collect(),
        models: models.iter().map(|s| s.to_string()).collect(),
        memory_total_bytes: memory,
        ..Default::default()
    }
}

#[test]
fn a_node_reaches_only_its_types_models_and_memory() {
    let t = Thermal::default();
    let mine = req("agent_action", json!({"model": "llama3.2:1b"}));
    let plain = req("evolution_mutation", json!({}));
    let other_model = req("agent_action", json!({"model": "qwen2.5:0.5b"}));
    let other_type = req("unique-type-17", json!({}));
    let too_big = req("evolution_mutation", json!({"min_memory_bytes": 16 * GIB}));
    let fits = req("evolution_mutation", json!({"min_memory_bytes": 4 * GIB}));
    let ix = index(&[
        mine.clone(),
        plain.clone(),
        other_model,
        other_type,
        too_big,
        fits.clone(),
    ]);
    let caps = agent(
        &["agent_action", "evolution_mutation"],
        &["llama3.2:1b"],
        Some(8 * GIB),
    );
    let reach = Reach::of(&facts(&caps, None), &t).unwrap();
    assert_eq!(
        reached(&ix, &reach, None),
        HashSet::from([mine, plain, fits])
    );
}

#[test]
fn a_seed_worker_reaches_every_lane_but_the_gateways() {
    let t = Thermal::default();
    let lanes = [
        req("agent_action", json!({"model": "llama3.2:1b"})),
        req("custom", json!({"min_memory_bytes": 1})),
        req("ollama_api", json!({"model": "llama3.2:1b"})),
    ];
    let ix = index(&lanes);
    let seed = Capabilities::default();
    let reach = Reach::of(&facts(&seed, None), &t).unwrap();
    assert_eq!(reach.types, None);
    assert_eq!(reach.models, None);
    assert_eq!(
        reached(&ix, &reach, None),
        HashSet::from([lanes[0].clone(), lanes[1].clone()])
    );
    // Only a node that declares the gateway's type reaches its lanes.
    let gateway = agent(&["ollama_api"], &["llama3.2:1b"], None);
    let reach = Reach::of(&facts(&gateway, None), &t).unwrap();
    assert_eq!(
        reached(&ix, &reach, None),
        HashSet::from([lanes[2].clone()])
    );
}

#[test]
fn models_count_by_their_canonical_name_from_every_source() {
    let t = Thermal::default();
    let latest = req("agent_action", json!({"model": "llama3:latest"}));
    let present = req("agent_action", json!({"model": "qwen2.5:0.5b"}));
    let ix = index(&[latest.clone(), present.clone()]);
    let caps = agent(&[], &[], None);
    let metrics = NodeMetrics {
        models_present: Some(vec!["qwen2.5:0.5b".into()]),
        models_loaded: Some(vec![LoadedModel {
            name: "llama3".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let reach = Reach::of(&facts(&caps, Some(&metrics)), &t).unwrap();
    assert_eq!(
        reach.models.as_deref(),
        Some(&["llama3".to_string(), "qwen2.5:0.5b".to_string()][..])
    );
    assert_eq!(
        reached(&ix, &reach, None),
        HashSet::from([latest.clone(), present])
    );
    assert_eq!(
        reached(&ix, &reach, Some("llama3")),
        HashSet::from([latest])
    );
    assert!(reached(&ix, &reach, Some("phi3")).is_empty());
}

#[test]
fn a_node_that_refuses_everything_reaches_nothing() {
    let t = Thermal::default();
    let caps = Capabilities::default();
    let hot = NodeMetrics {
        temperature_c: Some(90.0),
        ..Default::default()
    };
    assert_eq!(Reach::of(&facts(&caps, Some(&hot)), &t), None);
    let mut draining = facts(&caps, None);
    draining.draining = true;
    assert_eq!(Reach::of(&draining, &t), None);
    let mut dead = facts(&caps, None);
    dead.alive = false;
    assert_eq!(Reach::of(&dead, &t), None);
}

#[test]
fn forty_thousand_lanes_nobody_can_run_are_not_reached() {
    let t = Thermal::default();
    let mut lanes = Vec::new();
    for i in 0..20_000u64 {
        lanes.push(req(&format!("type-{i}"), json!({})));
        lanes.push(req(
            "agent_action",
            json!({"model": "llama3.2:1b", "min_memory_bytes": 64 * GIB + i}),
        ));
    }
    let runnable = req("agent_action", json!({"model": "llama3.2:1b"}));
    lanes.push(runnable.clone());
    let mut ix = index(&lanes);
    let caps = agent(&["agent_action"], &["llama3.2:1b"], Some(8 * GIB));
    let reach = Reach::of(&facts(&caps, None), &t).unwrap();
    assert_eq!(reached(&ix, &reach, None), HashSet::from([runnable]));
    for l in &lanes {
        ix.remove(l);
    }
    ix.check().unwrap();
    assert!(ix.filed().is_empty());
    assert!(ix.by_type.is_empty() && ix.by_model.is_empty() && ix.by_memory.is_empty());
}

/// A small deterministic generator, so a failure repeats.
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> Vec<&'a str> {
        from.iter().copied().filter(|_| self.next(3) == 0).collect()
    }
}

/// The property the dispatch relies on: whatever a node can run, its reach gets from the
/// index; and the index gives exactly the lanes the reach covers.
#[test]
fn the_reach_covers_everything_a_node_can_run() {
    let t = Thermal::default();
    let types = [
        "agent_action",
        "code_generation",
        "ollama_api",
        "custom",
        "evolution_mutation",
    ];
    let models = ["llama3", "llama3:latest", "qwen2.5:0.5b", "phi3:mini"];
    let mut g = Gen(7);
    let mut lanes = Vec::new();
    for _ in 0..300 {
        let ty = types[g.next(types.len() as u64) as usize];
        let mut data = json!({});
        if g.next(3) > 0 {
            data["model"] = json!(models[g.next(models.len() as u64) as usize]);
        }
        if g.next(2) == 0 {
            data["min_memory_bytes"] = json!(g.next(10) * GIB);
        }
        lanes.push(req(ty, data));
    }
    lanes.sort();
    lanes.dedup();
    let ix = index(&lanes);
    let mut runnable_seen = 0;
    for _ in 0..500 {
        let caps = Capabilities {
            task_types: g.pick(&types).into_iter().map(String::from).collect(),
            models: g.pick(&models).into_iter().map(String::from).collect(),
            memory_total_bytes: (g.next(2) == 0).then(|| g.next(10) * GIB),
            ..Default::default()
        };
        let metrics = NodeMetrics {
            temperature_c: Some(40.0 + g.next(60) as f32),
            memory_total_bytes: (g.next(3) == 0).then(|| g.next(10) * GIB),
            models_present: Some(g.pick(&models).into_iter().map(String::from).collect()),
            models_loaded: Some(
                g.pick(&models)
                    .into_iter()
                    .map(|m| LoadedModel {
                        name: m.into(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let mut f = facts(&caps, (g.next(4) > 0).then_some(&metrics));
        f.draining = g.next(10) == 0;
        f.alive = g.next(10) > 0;
        let reach = Reach::of(&f, &t);
        let got = reach
            .as_ref()
            .map(|r| reached(&ix, r, None))
            .unwrap_or_default();
        let only: Vec<(&str, HashSet<_>)> = match &reach {
            Some(r) => models
                .iter()
                .map(|m| {
                    (
                        canonical_model(m),
                        reached(&ix, r, Some(canonical_model(m))),
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        for lane in &lanes {
            if f.can_run(lane, &t).is_ok() {
                runnable_seen += 1;
                assert!(
                    got.contains(lane),
                    "{lane:?} runs on {caps:?} but is not reached"
                );
            }
            if let Some(r) = &reach {
                assert_eq!(got.contains(lane), r.covers(lane), "{lane:?} for {r:?}");
                for (m, set) in &only {
                    let expect =
                        r.covers(lane) && lane.model.as_deref().map(canonical_model) == Some(*m);
                    assert_eq!(set.contains(lane), expect, "{lane:?} for {r:?} only {m}");
                }
            }
        }
    }
    assert!(
        runnable_seen > 1000,
        "the generator should find work nodes can run"
    );
}
