//! `pifleet-orchestrator simulate` as a user runs it: the real binary, a config file.

use std::process::Command;

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pifleet-orchestrator"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("run pifleet-orchestrator")
}

/// The built-in fleet cut to a few dozen boards and twenty simulated minutes.
fn small_config(dir: &tempfile::TempDir) -> String {
    let out = simulate(&["--print-config"]);
    assert!(out.status.success());
    let mut text = String::from_utf8(out.stdout).unwrap();
    for (from, to) in [
        ("count = 350", "count = 12"),
        ("count = 150", "count = 5"),
        ("count = 300", "count = 10"),
        ("count = 200", "count = 7"),
        ("duration_s = 3600", "duration_s = 1200"),
        ("warmup_s = 300", "warmup_s = 200"),
    ] {
        assert!(text.contains(from), "the default has {from}");
        text = text.replace(from, to);
    }
    let path = dir.path().join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn json_reports_one_object_per_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(&dir);
    let out = simulate(&["--config", &cfg, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let policies: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(
        policies,
        ["pifleet", "least-loaded", "round-robin", "random"]
    );
    for r in &rows {
        for k in [
            "completed",
            "mean_s",
            "p50_s",
            "p99_s",
            "throttled_node_s",
            "wall_s",
        ] {
            assert!(r[k].is_number(), "{k} in {r}");
        }
        assert!(r["completed"].as_u64().unwrap() > 100, "{r}");
    }
}

#[test]
fn one_policy_and_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(&dir);
    let out = simulate(&["--config", &cfg, "--policy", "round-robin", "--load", "0.5"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("load 50 %"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("round-robin")), "{text}");
    assert!(!text.contains("pifleet "), "{text}");
}

#[test]
fn a_bad_config_is_named_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let cfg = small_config(&dir);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("tau_s = 90.0", "tau_s = 0.0");
    std::fs::write(&path, text).unwrap();
    let out = simulate(&["--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml") && err.contains("tau_s"), "{err}");
    let out = simulate(&["--config", "/nonexistent/fleet.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("/nonexistent/fleet.toml"));
}
