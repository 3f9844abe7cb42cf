//! Model staging with real processes: agents with their own Ollama doubles, none of which
//! has the model a task asks for. With staging on, a node that allows pulls is asked to
//! pull it (its progress shows on the node), and the task runs there; a node that opted
//! out is never asked; with staging off the task waits and says why; a failing pull is
//! reported with Ollama's message (node, task, CLI, status page) and not retried in a loop.

use std::time::Duration;

use pifleet_system_tests::cli::{pifleet, stdout};
use pifleet_system_tests::fake_ollama::FakeOllama;
use pifleet_system_tests::fleet::{get, start_agent, submit, tempdir, wait_for, wait_task, Orch};
use serde_json::{json, Value};

const MODEL: &str = "qwen2.5:0.5b";
const LIMIT: Duration = Duration::from_secs(30);
const STAGING_ON: &[(&str, &str)] = &[
    ("PIFLEET_MODEL_STAGING", "pull"),
    ("PIFLEET_STAGING_MODELS", "*"),
];

fn chat() -> Value {
    json!({
        "type": "agent_action",
        "data": {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
    })
}

fn wait_registered(base: &str, id: &str) {
    wait_for(&format!("{id} heartbeating"), LIMIT, || {
        let n = get(base, &format!("/api/nodes/{id}")).ok()?;
        n["metrics"]["ollama_reachable"].as_bool()?.then_some(())
    });
}

/// The node's staging entry for MODEL, once it has one.
fn staging_of(base: &str, id: &str) -> Option<Value> {
    let n = get(base, &format!("/api/nodes/{id}")).ok()?;
    n["staging"]
        .as_array()?
        .iter()
        .find(|s| s["model"] == MODEL)
        .cloned()
}

/// Lets the node heartbeat `n` more times (the history grows by one per beat, up to its
/// bound), so "nothing happened" is judged over many chances for it to happen.
fn let_it_beat(base: &str, id: &str, n: usize) {
    let len = |base: &str| {
        get(base, &format!("/api/nodes/{id}"))
            .ok()
            .and_then(|v| v["history"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    let start = len(base);
    wait_for(&format!("{n} more heartbeats of {id}"), LIMIT, || {
        (len(base) >= start + n).then_some(())
    });
}

#[test]
fn a_task_for_a_model_no_node_has_is_pulled_by_a_node_that_allows_it_and_runs_there() {
    let tmp = tempdir("staging-pull");
    let dir = tmp.path();
    let orch = Orch::start_in(dir, STAGING_ON);
    let base = orch.base.clone();
    // pi-a would win every tie (the name decides last), but it opted out.
    let ollama_a = FakeOllama::start(vec![]).unwrap();
    let ollama_b = FakeOllama::start(vec![]).unwrap();
    ollama_b.pull_step(Duration::from_millis(400));
    let _a = start_agent(
        dir,
        "pi-a",
        &base,
        &ollama_a.url(),
        &[("PIFLEET_ALLOW_MODEL_PULL", "false")],
    );
    let _b = start_agent(dir, "pi-b", &base, &ollama_b.url(), &[]);
    wait_registered(&base, "pi-a");
    wait_registered(&base, "pi-b");

    let id = submit(&base, &chat());
    // The pull's progress shows on the node while it runs.
    let running = wait_for("pi-b to report pull progress", LIMIT, || {
        let s = staging_of(&base, "pi-b")?;
        let (c, t) = (s["completed_bytes"].as_u64()?, s["total_bytes"].as_u64()?);
        (s["state"] == "running" && s["action"] == "pull" && c > 0 && c < t).then_some(s)
    });
    assert!(
        running["status"]
            .as_str()
            .unwrap_or("")
            .starts_with("pulling "),
        "{running}"
    );
    let status = get(&base, &format!("/api/tasks/status/{id}")).unwrap();
    if status["status"] == "pending" {
        let reason = status["pending_reason"].as_str().unwrap_or("");
        assert!(reason.contains("\"pi-b\""), "{reason}");
    }

    let done = wait_task(&base, &id, &["completed", "failed"], LIMIT);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["assigned_to"], "pi-b", "{done}");
    let s = staging_of(&base, "pi-b").expect("pi-b's staging entry");
    assert_eq!(s["state"], "done", "{s}");
    assert_eq!(ollama_b.pulls().len(), 1);
    assert_eq!(ollama_b.pulls()[0].body["model"], MODEL);

    // `pifleet node` shows it too.
    let out = stdout(&pifleet(&base, &["node", "pi-b"]));
    assert!(out.contains(&format!("pull {MODEL}: done")), "{out}");

    // The node that opted out said so at registration, and was never asked.
    let a = get(&base, "/api/nodes/pi-a").unwrap();
    assert_eq!(a["capabilities"]["model_pull"], false, "{a}");
    assert!(a.get("staging").is_none(), "{a}");
    assert!(ollama_a.pulls().is_empty(), "{:?}", ollama_a.pulls());
}

#[test]
fn with_staging_off_the_task_waits_and_says_why() {
    let tmp = tempdir("staging-off");
    let dir = tmp.path();
    let orch = Orch::start_in(dir, &[]);
    let base = orch.base.clone();
    let ollama = FakeOllama::start(vec![]).unwrap();
    let _a = start_agent(dir, "pi-a", &base, &ollama.url(), &[]);
    wait_registered(&base, "pi-a");

    let id = submit(&base, &chat());
    let_it_beat(&base, "pi-a", 10);
    let status = get(&base, &format!("/api/tasks/status/{id}")).unwrap();
    assert_eq!(status["status"], "pending", "{status}");
    let reason = status["pending_reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!("no node offers model \"{MODEL}\"")),
        "{reason}"
    );
    assert!(reason.contains("model staging is off"), "{reason}");
    assert!(ollama.pulls().is_empty(), "{:?}", ollama.pulls());
}

#[test]
fn a_failing_pull_is_reported_with_ollamas_message_and_not_retried_in_a_loop() {
    let tmp = tempdir("staging-fail");
    let dir = tmp.path();
    let orch = Orch::start_in(dir, STAGING_ON);
    let base = orch.base.clone();
    let ollama = FakeOllama::start(vec![]).unwrap();
    let message = "pull model manifest: file does not exist";
    ollama.fail_pulls(Some(message));
    let _a = start_agent(dir, "pi-a", &base, &ollama.url(), &[]);
    wait_registered(&base, "pi-a");

    let id = submit(&base, &chat());
    let failed = wait_for("pi-a to report the failed pull", LIMIT, || {
        let s = staging_of(&base, "pi-a")?;
        (s["state"] == "failed").then_some(s)
    });
    assert_eq!(failed["error"], message, "{failed}");
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(
        failed["retry_in_s"].as_f64().is_some_and(|r| r > 0.0),
        "{failed}"
    );

    // Many heartbeats and ticks later, still one attempt, and the task says why it waits.
    let_it_beat(&base, "pi-a", 15);
    assert_eq!(ollama.pulls().len(), 1, "{:?}", ollama.pulls());
    let status = get(&base, &format!("/api/tasks/status/{id}")).unwrap();
    assert_eq!(status["status"], "pending", "{status}");
    let reason = status["pending_reason"].as_str().unwrap_or("");
    assert!(reason.contains(message), "{reason}");
    assert!(reason.contains("\"pi-a\""), "{reason}");
    let out = stdout(&pifleet(&base, &["node", "pi-a"]));
    assert!(out.contains(message), "{out}");
    // And on the status page's card for the node.
    let (code, page) = orch.get_text("/");
    assert_eq!(code, 200);
    assert!(
        page.contains(&format!("pull {MODEL}: failed: {message}")),
        "{page}"
    );
}
