//! The native task types, no LLM involved: `evolution_crossover` (uniform) and
//! `evolution_mutation` (Gaussian), on genomes that are maps of named numeric parameters;
//! `data.seed` makes a result reproducible.

use pifleet_protocol::{TaskAssignment, TaskOutcome};
use serde_json::{json, Map, Value};

use crate::rng::{fresh_seed, SplitMix64};

fn genome<'a>(task: &'a TaskAssignment, key: &str) -> Result<&'a Map<String, Value>, String> {
    match task.data.get(key) {
        Some(Value::Object(g)) => Ok(g),
        Some(_) => Err(format!("data.{key} must be an object of named numbers")),
        None => Err(format!("data.{key} is missing")),
    }
}

fn seed_of(task: &TaskAssignment) -> Result<u64, String> {
    match task.data.get("seed") {
        None | Some(Value::Null) => Ok(fresh_seed(&task.task_id)),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| "data.seed must be a non-negative integer".into()),
    }
}

fn native(genome: Map<String, Value>, seed: u64) -> TaskOutcome {
    let mut o = TaskOutcome {
        success: true,
        genome: Some(Value::Object(genome)),
        tokens_used: Some(0),
        ..TaskOutcome::default()
    };
    o.extra.insert("seed".into(), json!(seed));
    o
}

/// Uniform crossover: each parameter comes from either parent with equal chance; a
/// parameter only one parent has is inherited from it.
pub fn crossover(task: &TaskAssignment) -> Result<TaskOutcome, String> {
    let a = genome(task, "genome1")?;
    let b = genome(task, "genome2")?;
    let seed = seed_of(task)?;
    let mut rng = SplitMix64::new(seed);
    let mut child = Map::new();
    for (k, va) in a {
        let v = match b.get(k) {
            Some(vb) if rng.next_f64() >= 0.5 => vb.clone(),
            _ => va.clone(),
        };
        child.insert(k.clone(), v);
    }
    for (k, vb) in b {
        if !a.contains_key(k) {
            child.insert(k.clone(), vb.clone());
        }
    }
    Ok(native(child, seed))
}

/// Each numeric parameter mutates with probability `mutation_rate`, by Gaussian noise of
/// `mutation_strength` (default 0.1) times its magnitude; integers stay integers.
pub fn mutation(task: &TaskAssignment) -> Result<TaskOutcome, String> {
    let g = genome(task, "genome")?;
    let num = |key: &str, default: f64| -> Result<f64, String> {
        match task.data.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("data.{key} must be a number in 0..=1")),
        }
    };
    let rate = num("mutation_rate", 0.1)?;
    let strength = num("mutation_strength", 0.1)?;
    let seed = seed_of(task)?;
    let mut rng = SplitMix64::new(seed);
    let mut out = Map::new();
    let mut mutated = 0u64;
    for (k, v) in g {
        // Draw for every key, numeric or not, so a seed maps to one result.
        let roll = rng.next_f64();
        let noise = rng.next_gaussian();
        let nv = match v {
            Value::Number(n) if roll < rate => {
                mutated += 1;
                let x = n.as_f64().unwrap_or(0.0);
                let scale = if x == 0.0 { 1.0 } else { x.abs() };
                let y = x + noise * strength * scale;
                if n.is_f64() {
                    json!(y)
                } else {
                    json!(y.round() as i64)
                }
            }
            other => other.clone(),
        };
        out.insert(k.clone(), nv);
    }
    let mut o = native(out, seed);
    o.extra.insert("mutated".into(), json!(mutated));
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(kind: &str, data: Value) -> TaskAssignment {
        TaskAssignment {
            task_id: "t1".into(),
            task_type: kind.into(),
            data,
            priority: None,
            attempt: Some(1),
            timeout_s: None,
        }
    }

    #[test]
    fn crossover_takes_each_gene_from_a_parent() {
        let t = task(
            "evolution_crossover",
            json!({"genome1": {"a": 1.0, "b": 10, "only1": 5}, "genome2": {"a": 2.0, "b": 20, "only2": 7}, "seed": 7}),
        );
        let o = crossover(&t).unwrap();
        assert!(o.success);
        let g = o.genome.unwrap();
        assert!(g["a"] == json!(1.0) || g["a"] == json!(2.0));
        assert!(g["b"] == json!(10) || g["b"] == json!(20));
        assert_eq!(g["only1"], json!(5));
        assert_eq!(g["only2"], json!(7));
        assert_eq!(
            crossover(&t).unwrap().genome.unwrap(),
            g,
            "same seed, same child"
        );
    }

    #[test]
    fn crossover_mixes_over_many_genes() {
        let g1: Map<String, Value> = (0..64).map(|i| (format!("p{i}"), json!(0))).collect();
        let g2: Map<String, Value> = (0..64).map(|i| (format!("p{i}"), json!(1))).collect();
        let t = task(
            "evolution_crossover",
            json!({"genome1": g1, "genome2": g2, "seed": 1}),
        );
        let child = crossover(&t).unwrap().genome.unwrap();
        let ones = child
            .as_object()
            .unwrap()
            .values()
            .filter(|v| **v == json!(1))
            .count();
        assert!(
            (10..54).contains(&ones),
            "uniform crossover took {ones}/64 from parent 2"
        );
    }

    #[test]
    fn mutation_rate_zero_and_one() {
        let g = json!({"lr": 0.5, "layers": 4, "name": "x"});
        let none = mutation(&task(
            "evolution_mutation",
            json!({"genome": g, "mutation_rate": 0.0, "seed": 3}),
        ))
        .unwrap();
        assert_eq!(none.genome.unwrap(), g);
        let all = mutation(&task(
            "evolution_mutation",
            json!({"genome": g, "mutation_rate": 1.0, "mutation_strength": 1.0, "seed": 3}),
        ))
        .unwrap();
        let m = all.genome.unwrap();
        assert_ne!(m["lr"], g["lr"]);
        assert!(m["layers"].is_i64(), "integers stay integers: {m}");
        assert_eq!(m["name"], json!("x"));
        assert_eq!(all.extra["mutated"], json!(2));
    }

    #[test]
    fn bad_genomes_fail_cleanly() {
        let e = mutation(&task("evolution_mutation", json!({"genome": [1, 2]}))).unwrap_err();
        assert!(e.contains("data.genome"), "{e}");
        let e = mutation(&task(
            "evolution_mutation",
            json!({"genome": {}, "mutation_rate": 3}),
        ))
        .unwrap_err();
        assert!(e.contains("mutation_rate"), "{e}");
        let e = crossover(&task("evolution_crossover", json!({"genome1": {}}))).unwrap_err();
        assert!(e.contains("genome2"), "{e}");
    }
}
