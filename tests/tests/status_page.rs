//! The status page in a real headless browser (Debian's Chromium through chromedriver):
//! it loads, shows a registered node, and updates live when the node's temperature
//! changes. Screenshots are kept in `target/test-artifacts/`.

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
    browser.screenshot(&artifacts().join("status-page.png"));

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
