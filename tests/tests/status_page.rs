//! The status page in a real headless browser (Debian's Chromium through chromedriver):
//! it loads, shows a registered node, and updates live when the node's temperature
//! changes; on a healthy fleet at work it shows running tasks with their node, a pending
//! task's reason, completed tasks' duration and tokens/s, and each node's speed.
//! Screenshots are kept in `target/test-artifacts/`; `status-page.png` is the README's
//! (copy it to `docs/`).

use std::path::PathBuf;
use std::time::Duration;

use pifleet_protocol::{Capabilities, LoadedModel};
use pifleet_system_tests::orch::Orch;
use pifleet_system_tests::sim::{pi_metrics, SimAgent};
use pifleet_system_tests::webdriver::Browser;
use serde_json::json;

fn artifacts() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("test-artifacts")
}

fn pi(orch: &Orch, id: &str, model: &str) -> SimAgent {
    let a = SimAgent::new(&orch.base, id, None);
    a.register(Capabilities {
        models: vec!["llama3.2:1b".into(), "qwen2.5:0.5b".into()],
        slots: Some(1),
        cores: Some(4),
        arch: Some("aarch64".into()),
        pi_model: Some(model.into()),
        memory_total_bytes: Some(8 << 30),
        ..Default::default()
    });
    a
}

#[test]
fn status_page_shows_a_node_and_updates_live() {
    let orch = Orch::start(&[]);
    let kitchen = pi(&orch, "pi-kitchen", "Raspberry Pi 5 Model B Rev 1.0");
    // A little history so the sparklines have a shape.
    for (i, t) in [52.0f32, 54.5, 57.0, 59.5, 61.0, 60.0, 58.5]
        .iter()
        .enumerate()
    {
        let mut m = pi_metrics(*t);
        m.cpu_percent = Some(20.0 + 9.0 * i as f32);
        m.models_loaded = Some(vec![LoadedModel {
            name: "llama3.2:1b".into(),
            ..Default::default()
        }]);
        kitchen.heartbeat(m);
    }
    let attic = pi(&orch, "pi-attic", "Raspberry Pi 4 Model B Rev 1.4");
    for t in [70.0f32, 74.0, 79.0, 82.5] {
        let mut m = pi_metrics(t);
        m.cpu_percent = Some(95.0);
        m.throttled = Some(0x4);
        attic.heartbeat(m);
    }
    orch.post("/api/nodes/pi-attic/drain", json!({}));
    for p in [9u8, 5, 5, 5, 1] {
        orch.submit("evolution_mutation", p);
    }

    let browser = Browser::start(1280, 860);
    browser.goto(&format!("{}/", orch.base));
    let card = r#"article.node[data-id="pi-kitchen"]"#;
    let temp = format!("{card} .v.temp");
    // Server-rendered: the node is there at once.
    assert_eq!(
        browser.text(&format!("{card} h2")).as_deref(),
        Some("pi-kitchen")
    );
    assert_eq!(browser.text(&temp).as_deref(), Some("58.5°C"));
    assert_eq!(
        browser
            .text(r#"article.node[data-id="pi-attic"] .badge"#)
            .as_deref(),
        Some("draining")
    );
    // The live connection comes up...
    browser.wait_text("#live", Duration::from_secs(15), |t| t == "live");
    // ...and a new heartbeat changes the card without a reload.
    browser.eval("window.__not_reloaded = true; return null;", vec![]);
    let mut hot = pi_metrics(83.5);
    hot.cpu_percent = Some(88.0);
    kitchen.heartbeat(hot);
    browser.wait_text(&temp, Duration::from_secs(15), |t| t == "83.5°C");
    assert_eq!(
        browser.eval("return window.__not_reloaded === true;", vec![]),
        json!(true),
        "the page updated in place"
    );
    browser.wait_text(&format!("{card} .v.cpu"), Duration::from_secs(5), |t| {
        t == "88%"
    });
    assert_eq!(
        browser.eval(
            "return document.querySelector(arguments[0]).className;",
            vec![json!(temp)]
        ),
        json!("v temp warm")
    );
    // A node that registers later appears by itself; it fails one task for good and
    // starts another: the failure and the busy node show up live too.
    let desk = pi(&orch, "pi-desk", "Raspberry Pi 5 Model B Rev 1.0");
    for t in [44.0f32, 45.5, 47.0] {
        desk.heartbeat(pi_metrics(t));
    }
    let desk_card = r#"article.node[data-id="pi-desk"]"#;
    browser.wait_text(
        &format!("{desk_card} .v.temp"),
        Duration::from_secs(15),
        |t| t == "47.0°C",
    );
    let doomed = desk.poll(5).expect("pi-desk gets the priority-9 task");
    let error = "ollama: model \"llama3.2:1b\" failed to load: out of memory";
    assert_eq!(
        desk.result(
            &doomed,
            json!({"success": false, "error": error, "retryable": false})
        ),
        200
    );
    let running = desk.poll(5).expect("pi-desk gets a priority-5 task");
    browser.wait_text("#failures .err", Duration::from_secs(15), |t| {
        t.contains("out of memory")
    });
    browser.wait_text(
        &format!("{desk_card} .badge"),
        Duration::from_secs(15),
        |t| t == "busy",
    );
    let shown_task = browser.eval(
        "return document.querySelector(arguments[0]).getAttribute('title');",
        vec![json!(format!("{desk_card} .tasks code"))],
    );
    assert_eq!(shown_task, json!(running.task_id));
    browser.wait_text(
        r#"#queue tr[data-priority="9"] td.n"#,
        Duration::from_secs(5),
        |t| t == "0",
    );
    browser.screenshot(&artifacts().join("status-page-live-updates.png"));

    // On a phone-sized screen, the cards stack in one column.
    let phone = Browser::start_phone(390, 844);
    phone.goto(&format!("{}/", orch.base));
    let widths = phone.eval(
        "return Array.from(document.querySelectorAll('article.node')).map(e => e.getBoundingClientRect().width);",
        vec![],
    );
    let widths: Vec<f64> = widths
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_f64().unwrap())
        .collect();
    assert_eq!(widths.len(), 3);
    assert!(
        widths.iter().all(|w| *w > 300.0 && *w <= 390.0),
        "{widths:?}"
    );
    let overflow = phone.eval(
        "return document.documentElement.scrollWidth <= window.innerWidth;",
        vec![],
    );
    assert_eq!(overflow, json!(true), "no horizontal scrolling on a phone");
    phone.screenshot(&artifacts().join("status-page-phone.png"));
}

/// Tells the orchestrator an LLM task finished, with the figures an agent reports.
fn finish(node: &SimAgent, task: &pifleet_protocol::TaskAssignment, secs: f64, tps: f64) {
    let tokens = (secs * tps).round() as u64;
    let status = node.result(
        task,
        json!({
            "success": true,
            "output": "Small boards, local models: private, cheap, good enough.",
            "model": "llama3.2:1b",
            "prompt_tokens": 24,
            "completion_tokens": tokens,
            "duration_ms": (secs * 1000.0) as u64,
            "tokens_per_s": tps,
        }),
    );
    assert_eq!(status, 200);
}

fn chat(orch: &Orch, model: &str) -> String {
    let (status, v) = orch.post(
        "/api/tasks/submit",
        json!({"type": "agent_action", "priority": 7, "data": {
            "model": model,
            "messages": [{"role": "user", "content": "Why run LLMs on Raspberry Pis?"}]}}),
    );
    assert_eq!(status, 201, "{v}");
    v["task_id"].as_str().unwrap().to_string()
}

#[test]
fn status_page_shows_the_work_of_a_healthy_fleet() {
    let orch = Orch::start(&[]);
    let nodes = [
        ("pi-kitchen", "Raspberry Pi 5 Model B Rev 1.0", 55.0f32),
        ("pi-desk", "Raspberry Pi 5 Model B Rev 1.0", 44.0),
        ("pi-attic", "Raspberry Pi 4 Model B Rev 1.4", 61.0),
    ];
    let agents: Vec<SimAgent> = nodes
        .iter()
        .map(|(id, model, temp)| {
            let a = pi(&orch, id, model);
            for i in 0..8 {
                let mut m = pi_metrics(temp + (i % 4) as f32 * 0.8);
                m.cpu_percent = Some(18.0 + 7.0 * (i % 5) as f32);
                m.models_loaded = Some(vec![LoadedModel {
                    name: "llama3.2:1b".into(),
                    ..Default::default()
                }]);
                a.heartbeat(m);
            }
            a
        })
        .collect();
    let (kitchen, desk, attic) = (&agents[0], &agents[1], &agents[2]);
    // Finished LLM work, each with the agent's own duration and speed.
    let mut done = Vec::new();
    for (node, secs, tps) in [(attic, 9.4, 6.2), (kitchen, 6.8, 11.9), (desk, 4.21, 14.3)] {
        let id = chat(&orch, "llama3.2:1b");
        let task = node.poll(5).expect("the waiting node gets it");
        assert_eq!(task.task_id, id);
        finish(node, &task, secs, tps);
        done.push(id);
    }
    // Running: pi-kitchen holds one. Waiting: one for a model no node offers.
    let running = chat(&orch, "llama3.2:1b");
    let held = kitchen.poll(5).expect("pi-kitchen gets it");
    assert_eq!(held.task_id, running);
    let stuck = chat(&orch, "qwen2.5:7b");

    let browser = Browser::start(1280, 1000);
    browser.goto(&format!("{}/", orch.base));
    let reason = browser
        .text(&format!(
            r#"#work .pending li[data-task="{stuck}"] .reason"#
        ))
        .unwrap_or_default();
    assert!(
        reason.contains(r#"no node offers model "qwen2.5:7b""#),
        "a pending task's reason: {reason:?}"
    );
    let row = format!(r#"#work .recent tr[data-task="{}"]"#, done[2]);
    assert_eq!(
        browser.text(&format!("{row} td.took")).as_deref(),
        Some("4.2s"),
        "a completed task's duration"
    );
    assert_eq!(
        browser.text(&format!("{row} td.tps")).as_deref(),
        Some("14.3")
    );
    assert_eq!(
        browser
            .text(&format!(
                r#"#work .running tr[data-task="{running}"] td.host"#
            ))
            .as_deref(),
        Some("pi-kitchen"),
        "a running task with its node"
    );
    assert_eq!(
        browser
            .text(r#"#work .speeds tr[data-node="pi-attic"] td.tps"#)
            .as_deref(),
        Some("6.2 tok/s"),
        "per-node generation speed"
    );
    // The running task finishes while the page is open: it moves to the recent list live.
    browser.wait_text("#live", Duration::from_secs(15), |t| t == "live");
    finish(kitchen, &held, 5.6, 12.4);
    browser.wait_text(
        &format!(r#"#work .recent tr[data-task="{running}"] td.result"#),
        Duration::from_secs(15),
        |t| t == "done",
    );
    // Something running in the picture, as on a working fleet.
    let next = chat(&orch, "llama3.2:1b");
    let _next = desk.poll(5).expect("pi-desk gets it");
    browser.wait_text(
        &format!(r#"#work .running tr[data-task="{next}"] td.host"#),
        Duration::from_secs(15),
        |t| t == "pi-desk",
    );
    browser.screenshot(&artifacts().join("status-page.png"));
}
