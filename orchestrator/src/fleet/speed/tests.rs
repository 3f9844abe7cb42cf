use super::*;
use serde_json::json;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b
}

fn fed(xs: &[f64]) -> Smoothed {
    let mut s = Smoothed::default();
    for x in xs {
        s.add(*x);
    }
    s
}

#[test]
fn slow_first_request_is_not_the_nodes_speed() {
    // A cold first generation at 2 tok/s, then the node's real 10 tok/s.
    let s = fed(&[2.0, 10.0, 10.2]);
    assert!(close(s.value().unwrap(), 10.0, 0.05), "{:?}", s.value());
}

#[test]
fn one_stalled_request_moves_the_figure_a_little() {
    let mut s = fed(&[10.0; 8]);
    s.add(1.0);
    let v = s.value().unwrap();
    assert!(v > 9.0 && v < 10.0, "{v}");
    // And a run of normal ones brings it back.
    for _ in 0..10 {
        s.add(10.0);
    }
    assert!(close(s.value().unwrap(), 10.0, 0.02));
}

#[test]
fn a_node_that_got_slower_is_believed_after_three_tasks() {
    let mut s = fed(&[10.0; 10]);
    for _ in 0..3 {
        s.add(4.0);
    }
    assert!(close(s.value().unwrap(), 4.0, 0.01), "{:?}", s.value());
}

#[test]
fn small_drifts_are_followed_smoothly() {
    let mut s = fed(&[10.0; 5]);
    for _ in 0..30 {
        s.add(12.0);
    }
    assert!(close(s.value().unwrap(), 12.0, 0.01));
    let mut s = fed(&[10.0; 5]);
    s.add(12.0);
    assert!(s.value().unwrap() > 10.0 && s.value().unwrap() < 10.5);
}

#[test]
fn nonsense_samples_are_ignored() {
    let s = fed(&[f64::NAN, 0.0, -3.0, f64::INFINITY]);
    assert_eq!(s.value(), None);
}

#[test]
fn sample_reads_outcome_fields_and_raw_ollama_statistics() {
    let s = Sample::from_result(&json!({
        "success": true, "model": "llama3.2:1b", "prompt_tokens": 100,
        "prompt_eval_ms": 2000, "completion_tokens": 50, "eval_ms": 5000,
        "load_duration_ms": 3
    }))
    .unwrap();
    assert_eq!(s.prompt_tps(), Some(50.0));
    assert_eq!(s.gen_tps(), Some(10.0));
    assert_eq!(s.cold_load_s(), None, "3 ms is a warm model");
    let s = Sample::from_result(&json!({
        "success": true, "response": {"model": "qwen2.5:0.5b:latest",
        "prompt_eval_count": 40, "prompt_eval_duration": 400_000_000u64,
        "eval_count": 20, "eval_duration": 1_000_000_000u64,
        "load_duration": 7_000_000_000u64}
    }))
    .unwrap();
    assert_eq!(s.model, "qwen2.5:0.5b");
    assert_eq!(s.prompt_tps(), Some(100.0));
    assert_eq!(s.gen_tps(), Some(20.0));
    assert_eq!(s.cold_load_s(), Some(7.0));
    // An older agent: only tokens_per_s.
    let s = Sample::from_result(&json!({
        "model": "m", "completion_tokens": 30, "tokens_per_s": 6.0
    }))
    .unwrap();
    assert_eq!(s.gen_tps(), Some(6.0));
    // Prompt served from Ollama's cache: too few tokens to time.
    let s = Sample::from_result(&json!({
        "model": "m", "prompt_tokens": 3, "prompt_eval_ms": 25,
    }));
    assert_eq!(s, None);
    assert_eq!(Sample::from_result(&json!({"success": true})), None);
}

fn sample(model: &str, gen_tps: f64) -> Sample {
    Sample {
        model: model.into(),
        prompt_tokens: Some(100),
        prompt_ms: Some((100.0 / (gen_tps * 3.0) * 1000.0) as u64),
        completion_tokens: Some(100),
        eval_ms: Some((100.0 / gen_tps * 1000.0) as u64),
        load_ms: Some(12_000),
    }
}

#[test]
fn unmeasured_nodes_borrow_their_pi_models_figure_then_the_fleets() {
    let mut b = SpeedBook::new();
    let pi5 = "Raspberry Pi 5 Model B Rev 1.0";
    let pi4 = "Raspberry Pi 4 Model B Rev 1.4";
    for (node, pi, tps) in [("a", pi5, 10.0), ("b", pi5, 12.0), ("c", pi4, 4.0)] {
        for _ in 0..3 {
            b.record(node, Some(pi), &sample("llama3.2:1b", tps), 0.0);
        }
    }
    b.refresh(0.0, true);
    let mine = b.figures("a", Some(pi5), "llama3.2:1b");
    assert_eq!(mine.source, Source::Measured);
    assert!(close(mine.gen_tps, 10.0, 0.01));
    let new5 = b.figures("new", Some("Raspberry Pi 5 Model B Rev 1.1"), "llama3.2:1b");
    assert_eq!(new5.source, Source::PiModel);
    assert!(close(new5.gen_tps, 11.0, 0.01), "{new5:?}");
    let other = b.figures("new", Some("Orange Pi"), "llama3.2:1b:latest");
    assert_eq!(other.source, Source::Fleet);
    assert!(close(other.gen_tps, 10.0, 0.01), "median of 4, 10, 12");
    assert!(close(other.load_s, 12.0, 0.01));
    let none = b.figures("a", Some(pi5), "llama3.2:3b");
    assert_eq!(none, DEFAULT);
}

#[test]
fn an_untried_node_ranks_as_a_little_faster_than_the_best_until_it_has_run() {
    let mut b = SpeedBook::new();
    b.refresh(0.0, true);
    assert_eq!(
        b.ranking_figures("new", None, "m"),
        DEFAULT,
        "nothing measured yet"
    );
    b.record("slow", None, &sample("m", 10.0), 0.0);
    b.record("fast", None, &sample("m", 20.0), 0.0);
    // A first measurement of a node does not wait for the rate limit.
    assert!(b.refresh(1.0, false));
    let new = b.ranking_figures("new", None, "m");
    assert!(close(new.gen_tps, 22.0, 0.01), "{new:?}");
    assert!(close(new.load_s, 12.0, 0.01), "the shortest cold load seen");
    let slow = b.ranking_figures("slow", None, "m");
    assert_eq!(slow.source, Source::Measured);
    assert!(close(slow.gen_tps, 10.0, 0.01));
}

#[test]
fn medians_are_recomputed_at_most_every_few_seconds() {
    let mut b = SpeedBook::new();
    b.record("a", None, &sample("m", 10.0), 0.0);
    b.refresh(0.0, false);
    assert_eq!(b.figures("x", None, "m").source, Source::Fleet);
    for _ in 0..3 {
        b.record("a", None, &sample("m", 20.0), 1.0);
    }
    b.refresh(1.0, false);
    assert!(close(b.figures("x", None, "m").gen_tps, 10.0, 0.01));
    b.refresh(11.0, false);
    assert!(close(b.figures("x", None, "m").gen_tps, 20.0, 0.01));
}

#[test]
fn node_speeds_survive_a_json_round_trip() {
    let mut b = SpeedBook::new();
    for tps in [3.0, 5.0, 4.0, 4.2, 9.0] {
        b.record("a", Some("Raspberry Pi 4 Model B"), &sample("m", tps), 5.0);
    }
    let saved = serde_json::to_string(b.node("a").unwrap()).unwrap();
    let mut c = SpeedBook::new();
    c.restore("a", serde_json::from_str(&saved).unwrap());
    assert_eq!(c.node("a"), b.node("a"));
    // The restored figure keeps learning where it left off.
    b.record("a", None, &sample("m", 9.0), 6.0);
    c.record("a", None, &sample("m", 9.0), 6.0);
    assert_eq!(c.node("a"), b.node("a"));
}
