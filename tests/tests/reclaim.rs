//! A lost poll answer costs seconds, not the attempt timeout: a real orchestrator, workers
//! driven over HTTP (one whose assignment answer is swallowed, one like the seed's that
//! says nothing of what it runs, one holding a result in its spool) and real agents on
//! the Ollama double, which must never lose work they still have to the rule.

use std::io::Read;
use std::time::Duration;

use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
use pifleet_system_tests::fleet::{
    spooled, start_agent, submit, tempdir, wait_for, wait_task, worker,
};
use pifleet_system_tests::orch::Orch;
use pifleet_system_tests::sim::{pi_caps, SimAgent};
use serde_json::{json, Value};

const MODEL: &str = "llama3.2:1b";
const LIMIT: Duration = Duration::from_secs(30);

fn mutation() -> Value {
    json!({"type": "evolution_mutation", "data": {"genome": {"x": 1.0, "y": 2.0}, "seed": 7}})
}

fn status(orch: &Orch, task: &str) -> Value {
    let (code, v) = orch.get(&format!("/api/tasks/status/{task}"));
    assert_eq!(code, 200, "{v}");
    v
}

fn metric(orch: &Orch, name: &str) -> Option<f64> {
    let (code, text) = orch.get_text("/metrics");
    assert_eq!(code, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn log_text(orch: &Orch, start: u32) -> String {
    std::fs::read_to_string(orch.dir().join(format!("orchestrator-{start}.log"))).unwrap()
}

fn agent_offers(orch: &Orch, id: &str, task_type: &str) {
    wait_for(&format!("{id} offering {task_type}"), LIMIT, || {
        let w = worker(&orch.base, id)?;
        w["capabilities"]["task_types"]
            .as_array()?
            .contains(&json!(task_type))
            .then_some(())
    });
}

#[test]
fn a_swallowed_assignment_is_reclaimed_within_two_heartbeats_and_run_elsewhere() {
    let dir = tempdir("reclaim-lost");
    let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    let orch = Orch::start_in(dir.path(), &[]);

    let lossy = SimAgent::new(&orch.base, "pi-lossy", None);
    lossy.register(pi_caps());
    let task = submit(
        &orch.base,
        &json!({"type": "agent_action", "data": {"model": MODEL, "prompt": "hi"}}),
    );
    let lost = lossy.poll(0).expect("pi-lossy is given the task");
    assert_eq!(
        (lost.task_id.as_str(), lost.attempt),
        (task.as_str(), Some(1))
    );
    // The answer never reached the node: it runs nothing and holds nothing.
    lossy.beat(Some(&[]), Some(&[]));
    let v = status(&orch, &task);
    assert_eq!(v["status"], "assigned", "one heartbeat is not enough: {v}");
    lossy.beat(Some(&[]), Some(&[]));
    let v = status(&orch, &task);
    assert_eq!(
        v["status"], "pending",
        "the second heartbeat takes it back: {v}"
    );
    let why = v["error"].as_str().unwrap_or("");
    assert!(
        why.contains("attempt 1") && why.contains("pi-lossy") && why.contains("never reached"),
        "{why}"
    );
    assert_eq!(metric(&orch, "pifleet_tasks_reclaimed_total"), Some(1.0));
    assert!(log_text(&orch, 1).contains("attempt reclaimed"));
    let (_, stats) = orch.get("/api/stats");
    assert_eq!(stats["tasks"]["reclaimed"], 1, "{stats}");

    // A real agent runs it, while heartbeating every 0.2 s.
    fake.set_tokens(20);
    fake.token_delay(Duration::from_millis(100));
    let _good = start_agent(dir.path(), "pi-good", &orch.base, &fake.url(), &[]);
    wait_for("pi-good generating", LIMIT, || {
        (fake.active() == 1).then_some(())
    });
    // The lost attempt's result, arriving late after all while attempt 2 runs, is fenced.
    assert_eq!(
        lossy.result(&lost, json!({"success": true, "late": true})),
        409
    );
    let v = status(&orch, &task);
    assert_eq!(
        (v["status"].clone(), v["assigned_to"].clone()),
        (json!("assigned"), json!("pi-good"))
    );
    let done = wait_task(&orch.base, &task, &["completed", "failed"], LIMIT);
    assert_eq!(
        (&done["status"], &done["assigned_to"], &done["attempts"]),
        (&json!("completed"), &json!("pi-good"), &json!(2))
    );
    assert!(done["result"].get("late").is_none(), "{done}");

    // Work the agent has, streamed to a gateway client or not, is never taken back: each
    // of these spans several of its heartbeats.
    agent_offers(&orch, "pi-good", "ollama_api");
    fake.token_delay(Duration::from_millis(40));
    let client: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(LIMIT))
        .build()
        .into();
    for _ in 0..3 {
        let mut resp = client
            .post(format!("{}/api/chat", orch.base))
            .send_json(json!({"model": MODEL, "stream": true,
                              "messages": [{"role": "user", "content": "count"}]}))
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = String::new();
        resp.body_mut()
            .as_reader()
            .read_to_string(&mut body)
            .unwrap();
        assert!(
            body.lines().last().unwrap_or("").contains("\"done\":true"),
            "{body}"
        );
    }
    let tasks: Vec<String> = (0..4)
        .map(|_| {
            submit(
                &orch.base,
                &json!({"type": "agent_action", "data": {"model": MODEL, "prompt": "hi"}}),
            )
        })
        .collect();
    for t in &tasks {
        let v = wait_task(&orch.base, t, &["completed"], LIMIT);
        assert_eq!(v["attempts"], 1, "{v}");
    }
    assert_eq!(metric(&orch, "pifleet_tasks_reclaimed_total"), Some(1.0));
}

#[test]
fn a_worker_that_does_not_say_what_it_holds_keeps_the_timeout_rule() {
    // A seed worker says nothing; an older agent says only what it runs.
    let cases: [(&str, Option<&[&str]>); 2] = [("pi-seed", None), ("pi-older", Some(&[]))];
    for (id, running) in cases {
        let orch = Orch::start(&[]);
        let w = SimAgent::new(&orch.base, id, None);
        w.register(pi_caps());
        let task = submit(
            &orch.base,
            &json!({"type": "evolution_mutation", "data": {"genome": {"x": 1.0}}, "timeout_s": 2}),
        );
        assert_eq!(w.poll(0).map(|t| t.task_id), Some(task.clone()));
        for _ in 0..4 {
            w.beat(running, None);
        }
        let v = status(&orch, &task);
        assert_eq!(v["status"], "assigned", "{id}: {v}");
        let v = wait_task(&orch.base, &task, &["pending"], LIMIT);
        assert!(
            v["error"].as_str().unwrap_or("").contains("timed out"),
            "{id}: {v}"
        );
        assert_eq!(metric(&orch, "pifleet_tasks_reclaimed_total"), Some(0.0));
    }
}

#[test]
fn a_result_held_in_the_spool_is_not_reclaimed() {
    let orch = Orch::start(&[]);
    let w = SimAgent::new(&orch.base, "pi-holding", None);
    w.register(pi_caps());
    let task = submit(&orch.base, &mutation());
    let a = w.poll(0).expect("the task");
    let id = a.task_id.as_str();
    w.beat(Some(&[id]), Some(&[]));
    for _ in 0..5 {
        w.beat(Some(&[]), Some(&[id]));
    }
    assert_eq!(status(&orch, &task)["status"], "assigned");
    assert_eq!(w.result(&a, json!({"success": true})), 200);
    assert_eq!(status(&orch, &task)["status"], "completed");
    assert_eq!(metric(&orch, "pifleet_tasks_reclaimed_total"), Some(0.0));
}

/// The real agent: its result waits in the spool across an orchestrator crash, and the
/// restarted orchestrator (which recovers the attempt as delivered) hears of it in every
/// heartbeat, long before the agent's next delivery attempt, and leaves it alone.
#[test]
fn an_agent_holding_its_result_through_an_orchestrator_crash_keeps_the_attempt() {
    let dir = tempdir("reclaim-spool");
    let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    let mut orch = Orch::start_in(dir.path(), &[]);
    let slow_retry = [
        ("PIFLEET_RETRY_BASE_MS", "4000"),
        ("PIFLEET_RETRY_MAX_S", "4"),
    ];
    let _agent = start_agent(dir.path(), "pi-spool", &orch.base, &fake.url(), &slow_retry);
    agent_offers(&orch, "pi-spool", "agent_action");
    fake.set_tokens(20);
    fake.token_delay(Duration::from_millis(100));
    let task = submit(
        &orch.base,
        &json!({"type": "agent_action", "data": {"model": MODEL, "prompt": "hi"}}),
    );
    wait_for("the agent generating", LIMIT, || {
        (fake.active() == 1).then_some(())
    });
    orch.kill();
    let state = dir.path().join("agent-pi-spool");
    wait_for("the result spooled", LIMIT, || {
        (spooled(&state) == 1).then_some(())
    });
    orch.restart();
    let v = wait_task(
        &orch.base,
        &task,
        &["completed", "pending", "failed"],
        LIMIT,
    );
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(
        (v["assigned_to"].clone(), v["attempts"].clone()),
        (json!("pi-spool"), json!(1))
    );
    assert_eq!(metric(&orch, "pifleet_tasks_reclaimed_total"), Some(0.0));
    assert!(!log_text(&orch, 2).contains("attempt reclaimed"));
}

/// A gateway request is a task like any other: its lost assignment is taken back and the
/// client, still waiting, gets the whole streamed answer from the node that runs it next.
#[test]
fn a_gateway_request_whose_assignment_was_lost_is_answered_by_another_node() {
    let dir = tempdir("reclaim-gateway");
    let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    let orch = Orch::start_in(dir.path(), &[]);
    let lossy = SimAgent::new(&orch.base, "pi-lossy", None);
    let mut caps = pi_caps();
    caps.task_types = vec!["ollama_api".into()];
    lossy.register(caps);
    let url = format!("{}/api/chat", orch.base);
    let client = std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(LIMIT))
            .build()
            .into();
        let mut resp = agent
            .post(url)
            .send_json(json!({"model": MODEL, "stream": true,
                              "messages": [{"role": "user", "content": "count"}]}))
            .unwrap();
        let mut body = String::new();
        resp.body_mut()
            .as_reader()
            .read_to_string(&mut body)
            .unwrap();
        (resp.status().as_u16(), body)
    });
    let lost = wait_for("the gateway task on pi-lossy", LIMIT, || lossy.poll(1));
    assert_eq!(lost.task_type, "ollama_api");
    lossy.beat(Some(&[]), Some(&[]));
    lossy.beat(Some(&[]), Some(&[]));
    assert_eq!(status(&orch, &lost.task_id)["status"], "pending");
    let _good = start_agent(dir.path(), "pi-good", &orch.base, &fake.url(), &[]);
    let (code, body) = client.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let last: Value = serde_json::from_str(body.lines().last().unwrap_or("")).unwrap();
    assert_eq!(last["done"], true, "{body}");
    let v = wait_task(&orch.base, &lost.task_id, &["completed"], LIMIT);
    assert_eq!(
        (&v["assigned_to"], &v["attempts"]),
        (&json!("pi-good"), &json!(2))
    );
    assert_eq!(metric(&orch, "pifleet_tasks_reclaimed_total"), Some(1.0));
}
