//! The gateway end to end with real processes: a client speaks Ollama's `/api/chat` to
//! the orchestrator, the real agent runs it on the Ollama double (in this process, so the
//! test can ask it whether it is still generating) and streams the tokens back through
//! the orchestrator. A client that hangs up stops the double's generation.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
use pifleet_system_tests::fleet::{
    get, start_agent, submit, tempdir, wait_for, wait_task, worker, Proc,
};
use pifleet_system_tests::orch::Orch;
use serde_json::{json, Value};

const MODEL: &str = "llama3.2:1b";
const LIMIT: Duration = Duration::from_secs(30);

fn chat(stream: bool) -> Value {
    json!({"model": MODEL, "stream": stream,
           "messages": [{"role": "user", "content": "count for me"}]})
}

fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(LIMIT))
        .build()
        .new_agent()
}

/// An orchestrator, one agent on the double, the agent offering gateway work.
fn fleet(name: &str) -> (tempfile::TempDir, Orch, FakeOllama, Proc) {
    fleet_with(name, &[])
}

/// [`fleet`], with `env` set for both the orchestrator and the agent.
fn fleet_with(name: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Orch, FakeOllama, Proc) {
    let dir = tempdir(name);
    let fake = FakeOllama::start(vec![FakeModel::small(MODEL)]).unwrap();
    let orch = Orch::start_in(dir.path(), env);
    let agent = start_agent(dir.path(), "pi-gw", &orch.base, &fake.url(), env);
    wait_for("the agent offering ollama_api", LIMIT, || {
        let w = worker(&orch.base, "pi-gw")?;
        w["capabilities"]["task_types"]
            .as_array()?
            .contains(&json!("ollama_api"))
            .then_some(())
    });
    (dir, orch, fake, agent)
}

/// A streaming `/api/chat` through the gateway: the answer and the task it became.
fn open_chat(orch: &Orch) -> (ureq::http::Response<ureq::Body>, String) {
    let resp = client()
        .post(format!("{}/api/chat", orch.base))
        .send_json(chat(true))
        .unwrap();
    assert_eq!(resp.status(), 200);
    let task = resp.headers()["x-pifleet-task"]
        .to_str()
        .unwrap()
        .to_string();
    (resp, task)
}

#[test]
fn tokens_reach_the_client_while_the_node_is_still_generating() {
    let (_dir, orch, fake, _agent) = fleet("gw-stream");
    fake.set_tokens(30);
    fake.token_delay(Duration::from_millis(40));
    let (mut resp, task) = open_chat(&orch);
    let mut lines = BufReader::new(resp.body_mut().as_reader());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(
        (fake.active(), fake.completed()),
        (1, 0),
        "the first chunk arrived while the double was generating: {first}"
    );
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["message"]["content"], "tok1 ");
    let rest: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(rest.len(), 30, "29 more tokens and the final object");
    let last = rest.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["eval_count"], 30);

    let done = wait_task(&orch.base, &task, &["completed"], LIMIT);
    let result = &done["result"];
    let text: Vec<String> = (1..=30).map(|i| format!("tok{i}")).collect();
    assert_eq!(
        result["response"]["message"]["content"],
        json!(text.join(" "))
    );
    assert!(result["eval_ms"].is_u64(), "{result}");
    assert_eq!(fake.aborted(), 0);
}

#[test]
fn a_client_that_hangs_up_stops_the_generation_and_frees_the_node() {
    let (_dir, orch, fake, _agent) = fleet("gw-hangup");
    fake.set_tokens(2000);
    fake.token_delay(Duration::from_millis(20));
    let (mut resp, task) = open_chat(&orch);
    let mut first = String::new();
    BufReader::new(resp.body_mut().as_reader())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("tok1"), "{first}");
    drop(resp);
    wait_for("the double to see its request closed", LIMIT, || {
        (fake.aborted() == 1).then_some(())
    });
    assert_eq!(fake.completed(), 0);
    wait_task(&orch.base, &task, &["cancelled"], LIMIT);
    // The node is free: the next task runs on it.
    let next = submit(
        &orch.base,
        &json!({"type": "evolution_mutation", "data": {"genome": {"a": 1.0}, "seed": 3}}),
    );
    let t = wait_task(&orch.base, &next, &["completed"], LIMIT);
    assert_eq!(t["result"]["success"], true, "{t}");
}

#[test]
fn a_non_streaming_chat_gets_the_whole_answer() {
    let (_dir, orch, fake, _agent) = fleet("gw-plain");
    fake.set_reply("Rayleigh scattering.");
    let mut resp = client()
        .post(format!("{}/api/chat", orch.base))
        .send_json(chat(false))
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.body_mut().read_json().unwrap();
    assert_eq!(v["message"]["content"], "Rayleigh scattering.");
    assert_eq!(v["done"], true);
    assert_eq!(v["eval_count"], 2);
}

/// A streaming `/api/chat` on a bare socket: the orchestrator answers nothing before the
/// first token, so this is how a client waits for a queued or loading answer, and
/// dropping the socket is how it hangs up.
fn send_chat_raw(orch: &Orch) -> TcpStream {
    let addr = orch.base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).unwrap();
    let body = chat(true).to_string();
    write!(
        conn,
        "POST /api/chat HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    conn
}

/// The node is free again: the next task runs on it.
fn node_takes_the_next_task(orch: &Orch) {
    let next = submit(
        &orch.base,
        &json!({"type": "evolution_mutation", "data": {"genome": {"a": 1.0}, "seed": 3}}),
    );
    let t = wait_task(&orch.base, &next, &["completed"], LIMIT);
    assert_eq!(t["assigned_to"], "pi-gw", "{t}");
}

#[test]
fn a_client_that_hangs_up_while_the_model_loads_cancels_the_task_and_frees_the_node() {
    // Heartbeats four times LIMIT apart: the node hears of the hang-up within LIMIT only
    // because a request waiting for its first token makes it beat sooner.
    let slow_beats = [("PIFLEET_HEARTBEAT_INTERVAL_S", "120")];
    let (_dir, orch, fake, _agent) = fleet_with("gw-hangup-loading", &slow_beats);
    // The chat comes after the node's first heartbeat, so its next one is 120 s away.
    wait_for("the node's first heartbeat", LIMIT, || {
        let node = get(&orch.base, "/api/nodes/pi-gw").ok()?;
        (!node["history"].as_array()?.is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    // Longer than any wait below: only the hang-up can end this request in time.
    fake.delay_first_token(LIMIT * 10);
    let conn = send_chat_raw(&orch);
    let task = wait_for("the node to take the chat", LIMIT, || {
        let w = worker(&orch.base, "pi-gw")?;
        w["current_tasks"][0].as_str().map(str::to_string)
    });
    wait_for("the double to be asked", LIMIT, || {
        (fake.generations().len() == 1).then_some(())
    });
    drop(conn);
    let t = wait_task(&orch.base, &task, &["cancelled"], LIMIT);
    assert!(t["error"].as_str().unwrap_or("").contains("hung up"), "{t}");
    wait_for("the double to see its request closed", LIMIT, || {
        (fake.aborted() == 1).then_some(())
    });
    assert_eq!(fake.completed(), 0);
    node_takes_the_next_task(&orch);
}

#[test]
fn a_client_that_hangs_up_while_queued_cancels_the_task_before_it_runs() {
    let (_dir, orch, fake, _agent) = fleet("gw-hangup-queued");
    // The node is busy with a long answer; a second chat waits in the queue behind it.
    fake.set_tokens(5000);
    fake.token_delay(Duration::from_millis(20));
    let (mut busy, _busy_task) = open_chat(&orch);
    let mut first = String::new();
    BufReader::new(busy.body_mut().as_reader())
        .read_line(&mut first)
        .unwrap();
    let conn = send_chat_raw(&orch);
    let task = wait_for("the second chat to be queued", LIMIT, || {
        let q = get(&orch.base, "/api/tasks/queue").ok()?;
        q["pending"][0]["task_id"].as_str().map(str::to_string)
    });
    drop(conn);
    let t = wait_task(&orch.base, &task, &["cancelled"], LIMIT);
    assert!(
        t["error"].as_str().unwrap_or("").contains("while pending"),
        "{t}"
    );
    assert_eq!(
        (fake.generations().len(), fake.active()),
        (1, 1),
        "cancelled in the queue, while the first answer still streams"
    );
    drop(busy);
    wait_for("the double to see the first request closed", LIMIT, || {
        (fake.aborted() == 1).then_some(())
    });
    node_takes_the_next_task(&orch);
}
