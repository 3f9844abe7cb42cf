//! The real binary over a real loopback socket: crash safety and shutdown.

mod util;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use util::http;
use util::process::start;

#[tokio::test]
async fn kill_9_loses_nothing_that_was_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("fleet.db");
    // No backoff: the retried task's queue position then does not depend on timing.
    let no_backoff = [
        ("PIFLEET_RETRY_BACKOFF_S", "0"),
        ("PIFLEET_RETRY_BACKOFF_MAX_S", "0"),
    ];
    let (mut child, addr) = start(&db, &no_backoff);

    for w in ["pi-a", "pi-b"] {
        let (s, _) = http(addr, "POST", "/api/workers/register",
            Some(json!({"worker_id": w, "worker_type": "pi", "capabilities": {"models": ["m:1b"], "slots": 4}}))).await;
        assert_eq!(s, 200);
    }
    let (s, _) = http(
        addr,
        "POST",
        "/api/workers/pi-a/heartbeat",
        Some(json!({"metrics": {"temperature_c": 51.5}})),
    )
    .await;
    assert_eq!(s, 200);

    let mut ids = Vec::new();
    for i in 0..40 {
        let (s, v) = http(addr, "POST", "/api/tasks/submit",
            Some(json!({"type": "agent_action", "data": {"model": "m:1b", "n": i}, "priority": 1 + i % 10}))).await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["task_id"].as_str().unwrap().to_string());
    }
    // pi-a takes four and settles three (one success, one failure, one retryable);
    // pi-b takes two and keeps them.
    let mut held_a = Vec::new();
    for _ in 0..4 {
        let (_, v) = http(addr, "GET", "/api/workers/pi-a/tasks", None).await;
        held_a.push((
            v["task"]["task_id"].as_str().unwrap().to_string(),
            v["task"]["attempt"].as_u64().unwrap(),
        ));
    }
    let mut held_b = Vec::new();
    for _ in 0..2 {
        let (_, v) = http(addr, "GET", "/api/workers/pi-b/tasks?wait=1", None).await;
        held_b.push(v["task"]["task_id"].as_str().unwrap().to_string());
    }
    let outcomes = [
        json!({"success": true, "output": "done-0"}),
        json!({"success": false, "error": "bad prompt"}),
        json!({"success": false, "retryable": true, "error": "ollama busy"}),
    ];
    for ((id, _), result) in held_a.iter().zip(outcomes.iter()) {
        let (s, v) = http(
            addr,
            "POST",
            &format!("/api/tasks/{id}/result"),
            Some(json!({"worker_id": "pi-a", "result": result})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, before_stats) = http(addr, "GET", "/api/stats", None).await;
    let (_, before_queue) = http(addr, "GET", "/api/tasks/queue", None).await;
    let mut before_status = Vec::new();
    for id in &ids {
        let (_, v) = http(addr, "GET", &format!("/api/tasks/status/{id}"), None).await;
        before_status.push(v);
    }

    child.kill().expect("kill -9");
    child.wait().expect("reap");

    let (mut child, addr) = start(&db, &no_backoff);
    for (id, before) in ids.iter().zip(&before_status) {
        let (s, v) = http(addr, "GET", &format!("/api/tasks/status/{id}"), None).await;
        assert_eq!(s, 200);
        for key in [
            "status",
            "assigned_to",
            "result",
            "attempts",
            "priority",
            "error",
            "type",
        ] {
            assert_eq!(v[key], before[key], "{id}: {key} changed across the crash");
        }
    }
    let (_, after_stats) = http(addr, "GET", "/api/stats", None).await;
    assert_eq!(after_stats["tasks"], before_stats["tasks"]);
    assert_eq!(after_stats["per_worker"], before_stats["per_worker"]);
    let (_, after_queue) = http(addr, "GET", "/api/tasks/queue", None).await;
    assert_eq!(after_queue["total_pending"], before_queue["total_pending"]);
    let order = |q: &serde_json::Value| -> Vec<String> {
        q["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["task_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        order(&after_queue),
        order(&before_queue),
        "queue order changed across the crash"
    );
    let (_, list) = http(addr, "GET", "/api/workers/list", None).await;
    assert_eq!(list["total"], 2);
    let (_, node) = http(addr, "GET", "/api/workers/list", None).await;
    let a = node["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == "pi-a")
        .unwrap()
        .clone();
    assert_eq!(a["capabilities"]["models"], json!(["m:1b"]));

    // The held attempts are still held: their holders can settle them, nobody else.
    let (held_id, held_attempt) = &held_a[3];
    let (s, _) = http(
        addr,
        "POST",
        &format!("/api/tasks/{held_id}/result"),
        Some(json!({"worker_id": "pi-b", "result": {"success": true}})),
    )
    .await;
    assert_eq!(s, 409);
    let (s, v) = http(
        addr,
        "POST",
        &format!("/api/tasks/{held_id}/result"),
        Some(json!({"worker_id": "pi-a", "attempt": held_attempt, "result": {"success": true}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    for id in &held_b {
        let (s, _) = http(
            addr,
            "POST",
            &format!("/api/tasks/{id}/result"),
            Some(json!({"worker_id": "pi-b", "result": {"success": true}})),
        )
        .await;
        assert_eq!(s, 200);
    }
    // The retryable failure runs again as attempt 2: attempt numbers are never reused.
    let retried = &held_a[2].0;
    let mut seen = false;
    for _ in 0..40 {
        let (_, v) = http(addr, "GET", "/api/workers/pi-b/tasks", None).await;
        if v["task"].is_null() {
            break;
        }
        let id = v["task"]["task_id"].as_str().unwrap().to_string();
        if &id == retried {
            assert_eq!(v["task"]["attempt"], 2);
            seen = true;
        }
        http(
            addr,
            "POST",
            &format!("/api/tasks/{id}/result"),
            Some(json!({"worker_id": "pi-b", "result": {"success": true}})),
        )
        .await;
    }
    assert!(seen, "the retried task never came back");
    let (_, stats) = http(addr, "GET", "/api/stats", None).await;
    assert_eq!(stats["tasks"]["pending"], 0);
    assert_eq!(stats["tasks"]["completed"], 39);
    assert_eq!(stats["tasks"]["failed"], 1);

    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn sigterm_answers_waiting_polls_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (child, addr) = start(&dir.path().join("t.db"), &[("PIFLEET_MAX_WAIT_S", "60")]);
    http(
        addr,
        "POST",
        "/api/workers/register",
        Some(json!({"worker_id": "w", "worker_type": "pi", "capabilities": {}})),
    )
    .await;
    let poll =
        tokio::spawn(async move { http(addr, "GET", "/api/workers/w/tasks?wait=60", None).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let (s, v) = poll.await.expect("poll task");
    assert_eq!(s, 200);
    assert!(v["task"].is_null());
    let mut child = child;
    let code = loop {
        if let Some(code) = child.try_wait().expect("wait") {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code}");
}

#[test]
fn a_public_address_without_tokens_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_pifleet-orchestrator"))
        .args(["serve", "--listen", "0.0.0.0:0", "--db", ":memory:"])
        .env_remove("PIFLEET_WORKER_TOKEN")
        .env_remove("PIFLEET_CLIENT_TOKEN")
        .env_remove("PIFLEET_INSECURE")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--insecure") && err.contains("worker_token"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_pifleet-orchestrator"))
        .args(["serve", "--db", ":memory:"])
        .env("PIFLEET_MAX_ATTEMPTS", "lots")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PIFLEET_MAX_ATTEMPTS"), "{err}");
}
