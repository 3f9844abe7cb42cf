//! Expected finish time: how long until a task would be done on a candidate node, and the
//! choice between running it now on an idle node or waiting a bounded time for a busy
//! one that would still finish it sooner.
//!
//! For an LLM task on a node: time until the node is free + cold load if the model is not
//! loaded + prompt tokens / prompt speed + expected output tokens / generation speed. A
//! node already at the soft temperature limit, or warming fast enough to reach it during
//! the task, is charged its throttled speed from the moment it would get there.
//!
//! The hard rules (dead, draining, hot, under-voltage, model, memory, slots) are not
//! here: callers rank only the nodes that pass them.

use serde_json::Value;

use super::speed::Figures;

/// Tuning of the ranking, from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// The soft temperature limit, where a Pi's firmware starts to cut the clock.
    pub soft_temp_c: f32,
    /// The fraction of its speed a node keeps while throttled.
    pub throttled_speed: f64,
    /// A task waits for a busy node at most this long in all (bounded waiting).
    pub max_hold_s: f64,
    /// A busy node must beat the best idle one by this fraction to be waited for:
    /// estimates are noisy, and an idle node in hand is worth something.
    pub hold_margin: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            soft_temp_c: 80.0,
            throttled_speed: 0.6,
            max_hold_s: 60.0,
            hold_margin: 0.15,
        }
    }
}

/// The size of a task, in tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    pub prompt_tokens: f64,
    pub output_tokens: f64,
}

/// Output tokens assumed when the task names no limit and no result named the model.
pub const DEFAULT_OUTPUT_TOKENS: f64 = 200.0;

/// Roughly four characters of English per token for the models we run.
const CHARS_PER_TOKEN: f64 = 4.0;

fn text_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(text_len).sum(),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "content" | "prompt" | "system" | "messages"))
            .map(|(_, v)| text_len(v))
            .sum(),
        _ => 0,
    }
}

impl Job {
    /// Estimates a task's size from its data: the prompt's length, and the output limit
    /// it sets (`max_tokens`, or `num_predict` in Ollama options), else `mean_output`.
    pub fn of(data: &Value, mean_output: Option<f64>) -> Job {
        let request = data.get("request").unwrap_or(data);
        let chars = ["prompt", "messages", "system"]
            .iter()
            .filter_map(|k| request.get(k))
            .map(text_len)
            .sum::<usize>();
        let limit = data
            .get("max_tokens")
            .or_else(|| data.get("options").and_then(|o| o.get("num_predict")))
            .or_else(|| request.get("options").and_then(|o| o.get("num_predict")))
            .and_then(Value::as_f64)
            .filter(|n| *n > 0.0);
        let mean = mean_output.unwrap_or(DEFAULT_OUTPUT_TOKENS);
        Job {
            prompt_tokens: (chars as f64 / CHARS_PER_TOKEN).max(1.0),
            // A limit bounds the output; a mean below it is the better guess.
            output_tokens: limit.map_or(mean, |l| l.min(mean.max(1.0))),
        }
    }
}

/// One node as the ranking sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Seconds until the node has a free slot (0 when it has one now).
    pub free_in_s: f64,
    pub model_loaded: bool,
    pub speed: Figures,
    pub temp_c: Option<f32>,
    /// Degrees per second, from the recent heartbeats (see [`temp_trend`]).
    pub temp_trend: Option<f32>,
    /// The firmware reports throttling or soft-capping now.
    pub throttling: bool,
}

/// The parts of an expected finish, in seconds from now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub wait_s: f64,
    pub load_s: f64,
    pub prompt_s: f64,
    pub gen_s: f64,
    /// Run time, including the throttled stretch.
    pub run_s: f64,
    pub finish_s: f64,
    pub throttled: bool,
}

/// The expected finish of `job` on `c`.
pub fn expected_finish(job: &Job, c: &Candidate, r: &Rules) -> Estimate {
    let wait_s = c.free_in_s.max(0.0);
    let load_s = if c.model_loaded { 0.0 } else { c.speed.load_s };
    let prompt_s = job.prompt_tokens / c.speed.prompt_tps.max(1e-3);
    let gen_s = job.output_tokens / c.speed.gen_tps.max(1e-3);
    let cool_run = load_s + prompt_s + gen_s;
    let f = r.throttled_speed.clamp(0.05, 1.0);
    // Seconds from the task's start until the node reaches the soft limit.
    let hot_at = match (c.temp_c, c.temp_trend) {
        _ if c.throttling => Some(0.0),
        (Some(t), _) if t >= r.soft_temp_c => Some(0.0),
        (Some(t), Some(rate)) if rate > 0.0 => {
            Some((f64::from(r.soft_temp_c - t) / f64::from(rate) - wait_s).max(0.0))
        }
        _ => None,
    };
    let (run_s, throttled) = match hot_at {
        Some(h) if h < cool_run => (h + (cool_run - h) / f, true),
        _ => (cool_run, false),
    };
    Estimate {
        wait_s,
        load_s,
        prompt_s,
        gen_s,
        run_s,
        finish_s: wait_s + run_s,
        throttled,
    }
}

/// What to do with a task.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choice {
    /// Run it now on this idle candidate.
    Run(usize, Estimate),
    /// Leave it queued for this busy candidate, which should finish it sooner.
    Wait(usize, Estimate),
    /// No candidate at all.
    Nowhere,
}

/// Picks among candidates (index, node): the smallest expected finish, waiting for a
/// busy node only while the task's total wait stays within `max_hold_s` and the busy node
/// beats every idle one by `hold_margin`. `waited_s` is how long the task has queued.
/// Ties go to the earlier candidate, so callers pass them in their own preference order.
pub fn choose<I>(job: &Job, candidates: I, r: &Rules, waited_s: f64) -> Choice
where
    I: IntoIterator<Item = (usize, Candidate)>,
{
    let mut best_idle: Option<(usize, Estimate)> = None;
    let mut best_busy: Option<(usize, Estimate)> = None;
    for (i, c) in candidates {
        let e = expected_finish(job, &c, r);
        let slot = if e.wait_s > 0.0 {
            &mut best_busy
        } else {
            &mut best_idle
        };
        if slot.map_or(true, |(_, b)| e.finish_s < b.finish_s) {
            *slot = Some((i, e));
        }
    }
    match (best_idle, best_busy) {
        (None, None) => Choice::Nowhere,
        (Some((i, e)), None) => Choice::Run(i, e),
        (None, Some((i, e))) => Choice::Wait(i, e),
        (Some((i, e)), Some((j, b))) => {
            let worth = b.finish_s < e.finish_s * (1.0 - r.hold_margin);
            if worth && waited_s + b.wait_s <= r.max_hold_s {
                Choice::Wait(j, b)
            } else {
                Choice::Run(i, e)
            }
        }
    }
}

/// Warming in degrees per second over the samples `(at, temp_c)` of the last
/// `window_s` (in any order), by least squares; None with fewer than three samples or
/// under 10 s.
pub fn temp_trend<I>(samples: I, now: f64, window_s: f64) -> Option<f32>
where
    I: IntoIterator<Item = (f64, f32)>,
{
    let pts: Vec<(f64, f64)> = samples
        .into_iter()
        .filter(|(at, _)| now - at <= window_s)
        .map(|(at, t)| (at, f64::from(t)))
        .collect();
    let first = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let last = pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    if pts.len() < 3 || last - first < 10.0 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    (sxx > 0.0).then(|| (sxy / sxx) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::speed::Source;
    use serde_json::json;

    fn speed(gen_tps: f64) -> Figures {
        Figures {
            prompt_tps: gen_tps * 4.0,
            gen_tps,
            load_s: 20.0,
            source: Source::Measured,
        }
    }

    fn node(gen_tps: f64) -> Candidate {
        Candidate {
            free_in_s: 0.0,
            model_loaded: true,
            speed: speed(gen_tps),
            temp_c: Some(50.0),
            temp_trend: None,
            throttling: false,
        }
    }

    const JOB: Job = Job {
        prompt_tokens: 400.0,
        output_tokens: 100.0,
    };

    #[test]
    fn finish_adds_wait_load_prompt_and_generation() {
        let mut c = node(10.0);
        c.free_in_s = 5.0;
        c.model_loaded = false;
        let e = expected_finish(&JOB, &c, &Rules::default());
        assert_eq!(
            (e.wait_s, e.load_s, e.prompt_s, e.gen_s),
            (5.0, 20.0, 10.0, 10.0)
        );
        assert_eq!(e.finish_s, 45.0);
        assert!(!e.throttled);
    }

    #[test]
    fn the_faster_node_wins_even_when_warmer() {
        let slow = node(1.0);
        let mut fast = node(10.0);
        fast.temp_c = Some(60.0);
        let got = choose(&JOB, [(0, slow), (1, fast)], &Rules::default(), 0.0);
        assert!(matches!(got, Choice::Run(1, _)), "{got:?}");
    }

    #[test]
    fn a_cold_load_can_outweigh_speed() {
        let loaded_slow = node(5.0); // 80 + 20 = 100 s... with the model in memory
        let mut cold_fast = node(6.0);
        cold_fast.model_loaded = false;
        cold_fast.speed.load_s = 60.0;
        let got = choose(
            &JOB,
            [(0, loaded_slow), (1, cold_fast)],
            &Rules::default(),
            0.0,
        );
        assert!(matches!(got, Choice::Run(0, _)), "{got:?}");
    }

    #[test]
    fn warming_to_the_soft_limit_during_the_task_charges_the_throttled_speed() {
        let r = Rules::default();
        let mut c = node(10.0); // 20 s of work
        c.temp_c = Some(75.0);
        c.temp_trend = Some(0.5); // reaches 80 °C after 10 s
        let e = expected_finish(&JOB, &c, &r);
        assert!(e.throttled);
        assert!((e.run_s - (10.0 + 10.0 / 0.6)).abs() < 1e-9, "{e:?}");
        // Cooling, or warming too slowly to get there: full speed.
        c.temp_trend = Some(0.1);
        assert!(!expected_finish(&JOB, &c, &r).throttled);
        c.temp_trend = Some(-1.0);
        assert!(!expected_finish(&JOB, &c, &r).throttled);
        // Already at the limit, or the firmware says so: throttled throughout.
        c.temp_c = Some(80.5);
        assert!((expected_finish(&JOB, &c, &r).run_s - 20.0 / 0.6).abs() < 1e-9);
        c.temp_c = Some(50.0);
        c.throttling = true;
        assert!((expected_finish(&JOB, &c, &r).run_s - 20.0 / 0.6).abs() < 1e-9);
    }

    #[test]
    fn a_hot_fast_node_can_lose_to_a_cool_slower_one() {
        let mut hot_fast = node(10.0);
        hot_fast.temp_c = Some(79.0);
        hot_fast.temp_trend = Some(1.0);
        let cool = node(7.0);
        let r = Rules {
            throttled_speed: 0.5,
            ..Rules::default()
        };
        let got = choose(&JOB, [(0, hot_fast), (1, cool)], &r, 0.0);
        assert!(matches!(got, Choice::Run(1, _)), "{got:?}");
    }

    #[test]
    fn waits_for_a_busy_node_that_finishes_much_sooner_but_not_forever() {
        let r = Rules::default();
        let idle_slow = node(1.0); // 200 s
        let mut busy_fast = node(10.0); // 20 s of work
        busy_fast.free_in_s = 15.0;
        let got = choose(&JOB, [(0, idle_slow), (1, busy_fast)], &r, 0.0);
        assert!(
            matches!(got, Choice::Wait(1, e) if e.finish_s == 35.0),
            "{got:?}"
        );
        // Already queued 50 s: 15 more would pass the 60 s bound.
        let got = choose(&JOB, [(0, idle_slow), (1, busy_fast)], &r, 50.0);
        assert!(matches!(got, Choice::Run(0, _)), "{got:?}");
        // A busy node barely better is not worth the wait.
        let idle_ok = node(6.0); // 40 s
        let got = choose(&JOB, [(0, idle_ok), (1, busy_fast)], &r, 0.0);
        assert!(matches!(got, Choice::Run(0, _)), "{got:?}");
        // No idle node at all: wait for the best busy one.
        let got = choose(&JOB, [(1, busy_fast)], &r, 500.0);
        assert!(matches!(got, Choice::Wait(1, _)));
        assert_eq!(choose(&JOB, [], &r, 0.0), Choice::Nowhere);
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        let got = choose(
            &JOB,
            [(3, node(5.0)), (1, node(5.0))],
            &Rules::default(),
            0.0,
        );
        assert!(matches!(got, Choice::Run(3, _)));
    }

    #[test]
    fn job_size_comes_from_the_prompt_and_the_output_limit() {
        let j = Job::of(
            &json!({"prompt": "x".repeat(400), "max_tokens": 50}),
            Some(120.0),
        );
        assert_eq!((j.prompt_tokens, j.output_tokens), (100.0, 50.0));
        let j = Job::of(
            &json!({"messages": [{"role": "user", "content": "y".repeat(80)}]}),
            Some(120.0),
        );
        assert_eq!((j.prompt_tokens, j.output_tokens), (20.0, 120.0));
        // A gateway task: Ollama's request under `request`, limit in options.num_predict.
        let j = Job::of(
            &json!({"model": "m", "endpoint": "generate",
                    "request": {"prompt": "z".repeat(40), "options": {"num_predict": 500}}}),
            None,
        );
        assert_eq!(
            (j.prompt_tokens, j.output_tokens),
            (10.0, DEFAULT_OUTPUT_TOKENS)
        );
    }

    #[test]
    fn trend_is_the_slope_of_recent_samples() {
        let s = [(0.0, 50.0), (10.0, 55.0), (20.0, 60.0), (30.0, 65.0)];
        assert!((temp_trend(s, 30.0, 60.0).unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(temp_trend(s, 100.0, 60.0), None, "all too old");
        assert_eq!(temp_trend([(0.0, 50.0), (20.0, 60.0)], 20.0, 60.0), None);
        let newest_first = s.iter().rev().copied();
        assert!((temp_trend(newest_first, 30.0, 60.0).unwrap() - 0.5).abs() < 1e-6);
    }
}
