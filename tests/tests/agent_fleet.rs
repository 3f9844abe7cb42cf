//! The agent against the real orchestrator, both as processes on loopback, with the
//! Ollama double in this process: registration, heartbeats, long-poll, results, and the
//! promises about results (nothing lost, nothing doubled) across crashes of either side.

use std::path::Path;
use std::time::Duration;

use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
use pifleet_system_tests::fleet::{
    get, spooled, start_agent, submit, tempdir, wait_for, wait_task, worker, Orch,
};
use serde_json::json;

const MODEL: &str = "llama3.2:1b";
const LIMIT: Duration = Duration::from_secs(30);

fn chat_task() -> serde_json::Value {
    json!({
        "type": "agent_action",
        "data": {
            "messages": [{"role": "user", "content": "Why is the sky blue?"}],
            "model": MODEL,
            "temperature": 0.2
        },
        "priority": 7
    })
}

fn write_fake_pi(root: &Path) {
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0");
    w(
        "proc/stat",
        "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 0 0 1\ncpu1 1 0 0 1\ncpu2 1 0 0 1\ncpu3 1 0 0 1\n",
    );
    w(
        "proc/meminfo",
        "MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    );
    w("proc/loadavg", "0.50 0.40 0.30 1/200 999\n");
    w("proc/uptime", "1234.5 100.0\n");
    w("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
    w("sys/class/thermal/thermal_zone0/temp", "61250\n");
    w(
        "sys/devices/platform/soc/soc:firmware/get_throttled",
        "0x0\n",
    );
}

#[test]
fn agent_registers_heartbeats_and_runs_every_task_type() {
    let tmp = tempdir("agent-e2e");
    let dir = tmp.path();
    let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    fake.set_reply("Because of Rayleigh scattering.");
    let orch = Orch::start_in(dir, &[]);
    let base = orch.base.clone();
    write_fake_pi(&dir.join("pi"));
    let proc_root = dir.join("pi/proc").display().to_string();
    let sys_root = dir.join("pi/sys").display().to_string();
    let _agent = start_agent(
        dir,
        "pi-e2e",
        &base,
        &fake.url(),
        &[
            ("PIFLEET_PROC_ROOT", &proc_root),
            ("PIFLEET_SYS_ROOT", &sys_root),
        ],
    );

    let w = wait_for("pi-e2e in the worker list", LIMIT, || {
        worker(&base, "pi-e2e")
    });
    let caps = &w["capabilities"];
    assert_eq!(caps["models"], json!([MODEL]), "{w}");
    assert_eq!(caps["pi_model"], json!("Raspberry Pi 5 Model B Rev 1.0"));
    assert_eq!(caps["cores"], json!(4));
    assert_eq!(caps["model_details"][0]["quantization"], json!("Q4_K_M"));
    let types = caps["task_types"].as_array().unwrap();
    assert_eq!(types.len(), 5, "{types:?}");
    assert!(
        types.contains(&json!("ollama_api")),
        "Ollama answers: gateway work offered"
    );

    // Heartbeats carry the fake Pi's live metrics, where the orchestrator shows them.
    if get(&base, "/api/nodes").is_ok() {
        let node = wait_for("a heartbeat with metrics", LIMIT, || {
            let n = get(&base, "/api/nodes/pi-e2e").ok()?;
            n["metrics"]["temperature_c"].is_number().then_some(n)
        });
        let m = &node["metrics"];
        assert_eq!(m["temperature_c"], json!(61.25));
        assert_eq!(m["throttled"], json!(0));
        assert_eq!(m["ollama_reachable"], json!(true));
        assert_eq!(m["memory_available_bytes"], json!(6_000_000u64 * 1024));
    }

    let chat = submit(&base, &chat_task());
    let code = submit(
        &base,
        &json!({"type": "code_generation", "data": {"prompt": "add two numbers", "language": "rust", "model": MODEL}}),
    );
    let cross = submit(
        &base,
        &json!({"type": "evolution_crossover", "data": {"genome1": {"param1": 0.8, "param2": 100}, "genome2": {"param1": 0.6, "param2": 150}}, "priority": 9}),
    );
    let mutate = submit(
        &base,
        &json!({"type": "evolution_mutation", "data": {"genome": {"param1": 0.7, "param2": 120}, "mutation_rate": 0.5}}),
    );
    let unknown = submit(
        &base,
        &json!({"type": "translate", "data": {"text": "hola"}}),
    );

    let r = wait_task(&base, &chat, &["completed", "failed"], LIMIT);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["assigned_to"], "pi-e2e");
    assert_eq!(r["result"]["output"], "Because of Rayleigh scattering.");
    assert!(r["result"]["tokens_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["result"]["completion_tokens"], json!(4));

    let r = wait_task(&base, &code, &["completed", "failed"], LIMIT);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["result"]["language"], "rust");

    let r = wait_task(&base, &cross, &["completed", "failed"], LIMIT);
    assert_eq!(r["status"], "completed", "{r}");
    assert!(
        r["result"]["genome"]["param2"] == json!(100)
            || r["result"]["genome"]["param2"] == json!(150)
    );

    let r = wait_task(&base, &mutate, &["completed", "failed"], LIMIT);
    assert_eq!(r["status"], "completed", "{r}");
    assert!(r["result"]["genome"].is_object());

    // An agent-only orchestrator may never offer a type no node declares; if it does,
    // the agent's answer names what it supports.
    let v = get(&base, &format!("/api/tasks/status/{unknown}")).unwrap();
    if v["status"] == "failed" {
        assert!(v["result"]["error"]
            .as_str()
            .unwrap()
            .contains("evolution_crossover"));
    } else {
        assert_eq!(v["status"], "pending", "{v}");
    }
}

#[test]
fn result_held_across_an_orchestrator_crash_arrives_exactly_once() {
    let tmp = tempdir("agent-orch-crash");
    let dir = tmp.path();
    let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    // Slow enough that the orchestrator can be killed while the task runs.
    fake.token_delay(Duration::from_millis(250));
    fake.set_reply("one two three four five six seven eight");
    let mut orch = Orch::start_in(dir, &[]);
    let base = orch.base.clone();
    let state = dir.join("agent-pi-1");
    let _agent = start_agent(dir, "pi-1", &base, &fake.url(), &[]);
    wait_for("pi-1 registered", LIMIT, || worker(&base, "pi-1"));

    let task = submit(&base, &chat_task());
    wait_task(&base, &task, &["assigned"], LIMIT);
    orch.kill();
    // The task finishes while nobody listens: the result waits in the spool.
    wait_for("the result in the spool", LIMIT, || {
        (spooled(&state) == 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        spooled(&state),
        1,
        "held, not dropped, while the orchestrator is down"
    );

    orch.restart();
    let r = wait_task(&base, &task, &["completed", "failed"], LIMIT);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(
        r["result"]["output"],
        "one two three four five six seven eight"
    );
    wait_for("the spool to empty", LIMIT, || {
        (spooled(&state) == 0).then_some(())
    });
    let w = wait_for("pi-1 back", LIMIT, || worker(&base, "pi-1"));
    assert_eq!(w["tasks_completed"], json!(1), "counted once: {w}");
    assert_eq!(fake.generations().len(), 1, "the task ran once");
    let stats = get(&base, "/api/stats").unwrap();
    assert_eq!(stats["tasks"]["completed"], json!(1), "{stats}");
}

#[test]
fn agent_restarted_mid_spool_loses_nothing_and_doubles_nothing() {
    let tmp = tempdir("agent-restart-spool");
    let dir = tmp.path();
    let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    fake.token_delay(Duration::from_millis(150));
    fake.set_reply("alpha beta gamma delta epsilon zeta");
    let mut orch = Orch::start_in(dir, &[]);
    let base = orch.base.clone();
    let state = dir.join("agent-pi-2");
    let mut agent = start_agent(dir, "pi-2", &base, &fake.url(), &[]);
    wait_for("pi-2 registered", LIMIT, || worker(&base, "pi-2"));

    let a = submit(&base, &chat_task());
    wait_task(&base, &a, &["assigned"], LIMIT);
    orch.kill();
    wait_for("a spooled result", LIMIT, || {
        (spooled(&state) == 1).then_some(())
    });
    // The agent dies with the result undelivered (a crash, not a clean stop).
    agent.kill();
    assert_eq!(spooled(&state), 1);

    orch.restart();
    let _agent = start_agent(dir, "pi-2", &base, &fake.url(), &[]);
    let r = wait_task(&base, &a, &["completed", "failed"], LIMIT);
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["result"]["output"], "alpha beta gamma delta epsilon zeta");
    wait_for("the spool to empty", LIMIT, || {
        (spooled(&state) == 0).then_some(())
    });

    // The restarted agent takes new work as usual.
    let b = submit(
        &base,
        &json!({"type": "evolution_mutation", "data": {"genome": {"x": 1.0}, "mutation_rate": 1.0}}),
    );
    let r = wait_task(&base, &b, &["completed", "failed"], LIMIT);
    assert_eq!(r["status"], "completed", "{r}");
    let w = worker(&base, "pi-2").unwrap();
    assert_eq!(w["tasks_completed"], json!(2), "{w}");
    assert_eq!(fake.generations().len(), 1, "the LLM task ran once");
}

#[test]
fn sigterm_notifies_systemd_unregisters_and_exits_zero() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempdir("agent-sigterm");
    let dir = tmp.path();
    let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    let orch = Orch::start_in(dir, &[]);
    let base = orch.base.clone();
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sock_str = sock_path.display().to_string();
    let mut agent = start_agent(
        dir,
        "pi-3",
        &base,
        &fake.url(),
        &[("NOTIFY_SOCKET", &sock_str), ("WATCHDOG_USEC", "400000")],
    );
    let mut seen: Vec<String> = Vec::new();
    let read = |seen: &mut Vec<String>| {
        let mut buf = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            // sd_notify ends each assignment with a newline.
            seen.extend(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_string),
            );
        }
    };
    wait_for("READY=1 and two WATCHDOG=1", LIMIT, || {
        read(&mut seen);
        let ready = seen.iter().position(|m| m == "READY=1")?;
        (seen[ready..].iter().filter(|m| *m == "WATCHDOG=1").count() >= 2).then_some(())
    });
    assert!(seen.iter().any(|m| m.starts_with("STATUS=")), "{seen:?}");
    wait_for("pi-3 registered", LIMIT, || worker(&base, "pi-3"));

    assert_eq!(agent.terminate(LIMIT), Some(0), "SIGTERM is a clean exit");
    for _ in 0..5 {
        read(&mut seen);
    }
    assert!(seen.iter().any(|m| m == "STOPPING=1"), "{seen:?}");
    let w = worker(&base, "pi-3");
    assert!(
        w.is_none() || w.as_ref().unwrap()["status"] != "online",
        "unregistered: {w:?}"
    );
}

#[test]
fn without_ollama_native_tasks_run_and_llm_tasks_wait_with_a_reason() {
    let tmp = tempdir("agent-no-ollama");
    let dir = tmp.path();
    let orch = Orch::start_in(dir, &[]);
    let base = orch.base.clone();
    // Nothing listens on 127.0.0.2 (the tests bind 127.0.0.1), so no test can take it.
    let nothing = "http://127.0.0.2:9";
    let _agent = start_agent(dir, "pi-bare", &base, nothing, &[]);
    let w = wait_for("pi-bare registered", LIMIT, || worker(&base, "pi-bare"));
    assert_eq!(w["capabilities"]["models"], json!([]), "{w}");

    let chat = submit(&base, &chat_task());
    let cross = submit(
        &base,
        &json!({"type": "evolution_crossover", "data": {"genome1": {"a": 1}, "genome2": {"a": 2}}}),
    );
    let r = wait_task(&base, &cross, &["completed", "failed"], LIMIT);
    assert_eq!(r["status"], "completed", "{r}");
    let r = get(&base, &format!("/api/tasks/status/{chat}")).unwrap();
    assert_eq!(r["status"], "pending", "{r}");
    let reason = r["pending_reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(MODEL),
        "a visible reason naming the model: {r}"
    );
}
