//! Placement that learns, with real processes: two agents, each with its own Ollama
//! double, one board ten times faster than the other, and the orchestrator between them.

use std::path::Path;
use std::time::Duration;

use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
use pifleet_system_tests::fleet::{get, start_agent, submit, tempdir, wait_for, wait_task, Orch};
use serde_json::{json, Value};

const MODEL: &str = "llama3.2:1b";
const LIMIT: Duration = Duration::from_secs(30);

fn fake_pi(root: &Path, temp_millic: u32) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0");
    w(
        "proc/stat",
        "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 0 0 1\n",
    );
    w(
        "proc/meminfo",
        "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    );
    w("proc/loadavg", "0.10 0.10 0.10 1/200 999\n");
    w("proc/uptime", "1234.5 100.0\n");
    w("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
    w(
        "sys/class/thermal/thermal_zone0/temp",
        &format!("{temp_millic}\n"),
    );
    w(
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        "0x0\n",
    );
}

fn chat() -> Value {
    json!({
        "type": "agent_action",
        "data": {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me in a few sentences why the sky over the sea looks blue at noon."}]
        }
    })
}

/// A reply long enough that generation, not overhead, decides where a task finishes.
const REPLY: &str = "Sunlight is scattered by the molecules of the air, and short blue \
    wavelengths scatter far more than long red ones, so blue light reaches the eye from \
    every part of the sky while the sea mirrors it back and deepens the colour further \
    through its own absorption of the red end of the spectrum at noon.";

#[test]
fn tasks_one_at_a_time_go_to_the_faster_node_once_it_is_measured() {
    let tmp = tempdir("placement-speed");
    let dir = tmp.path();
    let mut orch = Orch::start_in(dir, &[]);
    let base = orch.base.clone();

    let slow = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    let fast = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    slow.set_reply(REPLY);
    fast.set_reply(REPLY);
    fast.set_speed(10.0);
    // The fast board runs warmer, still well below the 80 °C soft limit.
    fake_pi(&dir.join("slow"), 40_000);
    fake_pi(&dir.join("fast"), 65_000);
    let roots = |name: &str| {
        [
            dir.join(name).join("proc").display().to_string(),
            dir.join(name).join("sys").display().to_string(),
        ]
    };
    let [sp, ss] = roots("slow");
    let [fp, fs] = roots("fast");
    let _a = start_agent(
        dir,
        "pi-slow",
        &base,
        &slow.url(),
        &[("PIFLEET_PROC_ROOT", &sp), ("PIFLEET_SYS_ROOT", &ss)],
    );
    let _b = start_agent(
        dir,
        "pi-fast",
        &base,
        &fast.url(),
        &[("PIFLEET_PROC_ROOT", &fp), ("PIFLEET_SYS_ROOT", &fs)],
    );
    for id in ["pi-slow", "pi-fast"] {
        wait_for(&format!("{id} reporting its temperature"), LIMIT, || {
            let n = get(&base, &format!("/api/nodes/{id}")).ok()?;
            n["metrics"]["temperature_c"].is_number().then_some(())
        });
    }

    let mut placed = Vec::new();
    for _ in 0..8 {
        let id = submit(&base, &chat());
        let r = wait_task(&base, &id, &["completed", "failed"], LIMIT);
        assert_eq!(r["status"], "completed", "{r}");
        placed.push(r["assigned_to"].as_str().unwrap().to_string());
    }
    // Unmeasured, the cooler node goes first; the other is tried once; then the
    // measured speeds decide.
    assert!(
        placed[3..].iter().all(|n| n == "pi-fast"),
        "placements: {placed:?}"
    );
    assert!(placed.iter().any(|n| n == "pi-slow"), "{placed:?}");

    // The node view shows what placement learned.
    let node = get(&base, "/api/nodes/pi-fast").unwrap();
    let speed = node["speeds"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["model"] == MODEL))
        .unwrap_or_else(|| panic!("no speeds for {MODEL}: {node}"))
        .clone();
    assert_eq!(speed["source"], "measured", "{speed}");
    let slow_node = get(&base, "/api/nodes/pi-slow").unwrap();
    let slow_gen = slow_node["speeds"][0]["gen_tps"].as_f64().unwrap();
    let fast_gen = speed["gen_tps"].as_f64().unwrap();
    assert!(
        fast_gen > 5.0 * slow_gen,
        "fast {fast_gen} vs slow {slow_gen}"
    );
    // What was learnt survives a restart of the orchestrator.
    orch.restart();
    let node = get(&base, "/api/nodes/pi-fast").unwrap();
    let again = node["speeds"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["model"] == MODEL))
        .unwrap_or_else(|| panic!("no speeds after a restart: {node}"))
        .clone();
    assert_eq!(again["source"], "measured", "{again}");
    assert_eq!(again["gen_tps"], speed["gen_tps"], "{again}");
}
