//! Every `pifleet` command run as the real binary against a real orchestrator process with
//! simulated agents: tables, JSON, submit (file, stdin, --wait), drain, watch, and the
//! errors that tell the operator what to do.

use std::io::Write;
use std::process::Stdio;

use pifleet_protocol::{NodeDetail, NodesResponse};
use pifleet_system_tests::cli::{command, ok, pifleet, pifleet_env, stderr, stdout};
use pifleet_system_tests::fleet;
use pifleet_system_tests::orch::Orch;
use pifleet_system_tests::sim::{pi_metrics, SimAgent};
use serde_json::{json, Value};

const TYPE: &str = "evolution_mutation";

#[test]
fn cli_nodes_table_and_json() {
    let orch = Orch::start(&[]);
    SimAgent::up(&orch.base, "pi-a", 52.5);
    SimAgent::up(&orch.base, "pi-b", 81.0);
    let table = ok(&pifleet(&orch.base, &["nodes"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    for col in [
        "STATUS",
        "TEMP",
        "CPU",
        "MEM FREE",
        "MODELS",
        "TASK",
        "LAST SEEN",
    ] {
        assert!(lines[0].contains(col), "{table}");
    }
    assert!(
        lines[1].starts_with("pi-a") && lines[1].contains("52.5°C"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("pi-b") && lines[2].contains("81.0°C"),
        "{table}"
    );
    assert!(
        lines[1].contains("online") && lines[1].contains("6.0G/8.0G"),
        "{table}"
    );
    assert!(
        !table.contains('\x1b'),
        "no colours when stdout is not a terminal"
    );

    let json_out = ok(&pifleet(&orch.base, &["nodes", "--json"]));
    let nodes: NodesResponse = serde_json::from_str(&json_out).expect("--json is the API's JSON");
    assert_eq!(nodes.total, 2);
}

#[test]
fn cli_node_detail_and_drain_undrain() {
    let orch = Orch::start(&[]);
    let a = SimAgent::up(&orch.base, "pi-a", 50.0);
    a.heartbeat(pi_metrics(58.0));
    let text = ok(&pifleet(&orch.base, &["node", "pi-a"]));
    assert!(text.starts_with("pi-a\n"), "{text}");
    assert!(text.contains("Raspberry Pi 5 Model B Rev 1.0"), "{text}");
    assert!(text.contains("temp history"), "{text}");
    assert!(text.contains("(50.0°C .. 58.0°C)"), "{text}");
    let detail: NodeDetail =
        serde_json::from_str(&ok(&pifleet(&orch.base, &["node", "pi-a", "--json"]))).unwrap();
    assert_eq!(detail.history.len(), 2);

    let out = ok(&pifleet(&orch.base, &["drain", "pi-a"]));
    assert!(out.contains("pi-a is draining"), "{out}");
    let table = ok(&pifleet(&orch.base, &["nodes"]));
    assert!(
        table.lines().nth(1).unwrap().contains("draining"),
        "{table}"
    );
    let out = ok(&pifleet(&orch.base, &["undrain", "pi-a"]));
    assert!(out.contains("pi-a takes work again"), "{out}");
    let (_, v) = orch.get("/api/nodes/pi-a");
    assert_eq!(v["draining"], json!(false));

    let missing = pifleet(&orch.base, &["node", "pi-none"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("pi-none"), "{}", stderr(&missing));
}

#[test]
fn cli_submit_task_and_wait() {
    let orch = Orch::start(&[]);
    let a = SimAgent::up(&orch.base, "pi-a", 50.0);

    // Data from a file, priority, plain submit: prints the id.
    let tmp = fleet::tempdir("cli-submit");
    let data = tmp.path().join("data.json");
    std::fs::write(&data, r#"{"genome": {"x": 1.0}, "mutation_rate": 0.1}"#).unwrap();
    let id = ok(&pifleet(
        &orch.base,
        &[
            "submit",
            TYPE,
            "--data",
            data.to_str().unwrap(),
            "--priority",
            "7",
        ],
    ))
    .trim()
    .to_string();
    let (_, st) = orch.get(&format!("/api/tasks/status/{id}"));
    assert_eq!(st["priority"], json!(7), "{st}");
    let text = ok(&pifleet(&orch.base, &["task", &id]));
    assert!(
        text.contains(&format!("task {id}")) && text.contains("pending"),
        "{text}"
    );
    let task = a.poll(5).expect("the agent gets it");
    assert_eq!(
        a.result(&task, json!({"success": true, "genome": {"x": 1.1}})),
        200
    );
    let status: Value =
        serde_json::from_str(&ok(&pifleet(&orch.base, &["task", &id, "--json"]))).unwrap();
    assert_eq!(status["status"], json!("completed"));

    // Data from stdin, --wait: the agent settles it while the CLI waits.
    let worker = std::thread::spawn(move || {
        let task = a.poll(20).expect("the agent gets the waited task");
        assert_eq!(
            a.result(&task, json!({"success": true, "output": "done"})),
            200
        );
    });
    let mut child = command(&orch.base)
        .args(["submit", TYPE, "--data", "-", "--wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"genome": {"x": 2.0}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    worker.join().unwrap();
    let text = ok(&out);
    assert!(text.contains("completed"), "{text}");
    assert!(text.contains("\"output\": \"done\""), "{text}");
    assert!(
        stderr(&out).contains("completed"),
        "progress on stderr: {}",
        stderr(&out)
    );

    // Bad data is refused before anything is sent.
    std::fs::write(&data, "{not json").unwrap();
    let bad = pifleet(
        &orch.base,
        &["submit", TYPE, "--data", data.to_str().unwrap()],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("not valid JSON"), "{}", stderr(&bad));
}

#[test]
fn cli_wait_reports_a_failed_task() {
    let orch = Orch::start(&[]);
    let a = SimAgent::up(&orch.base, "pi-a", 50.0);
    let worker = std::thread::spawn(move || {
        let task = a.poll(20).expect("task");
        a.result(&task, json!({"success": false, "error": "model exploded"}));
    });
    let out = pifleet(&orch.base, &["submit", TYPE, "--wait"]);
    worker.join().unwrap();
    assert!(!out.status.success(), "a failed task fails the command");
    assert!(stdout(&out).contains("failed"), "{}", stdout(&out));
    assert!(stderr(&out).contains("failed"), "{}", stderr(&out));
}

#[test]
fn cli_watch_refreshes() {
    let orch = Orch::start(&[]);
    SimAgent::up(&orch.base, "pi-a", 50.0);
    let out = ok(&pifleet(
        &orch.base,
        &["watch", "--interval", "0.1", "--count", "3"],
    ));
    assert_eq!(out.matches("NAME").count(), 3, "{out}");
    assert_eq!(out.matches("1 node: 1 online").count(), 3, "{out}");
}

#[test]
fn cli_errors_say_what_to_do() {
    // Nothing listens on a port we just freed, on a loopback address the tests never bind
    // (they all use 127.0.0.1), so a parallel test cannot take it in between.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.2:{port}");
    let out = pifleet(&url, &["nodes"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&url) && err.contains("pifleet-orchestrator serve"),
        "{err}"
    );

    let orch = Orch::start(&[
        ("PIFLEET_CLIENT_TOKEN", "s3cret-client-token-abcdef"),
        ("PIFLEET_WORKER_TOKEN", "worker-token-0123456789"),
    ]);
    let out = pifleet(&orch.base, &["nodes"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--token"), "{}", stderr(&out));
    ok(&pifleet(
        &orch.base,
        &["--token", "s3cret-client-token-abcdef", "nodes"],
    ));
    ok(&pifleet_env(
        &orch.base,
        &["nodes"],
        &[("PIFLEET_TOKEN", "s3cret-client-token-abcdef")],
    ));
}
