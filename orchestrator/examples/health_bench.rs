//! Prints what the node-health views cost at fleet scale: snapshot, page, live updates
//! and `/metrics` for N nodes with full metric histories.
//!
//! `cargo run --release -p pifleet-orchestrator --example health_bench [NODES]`

use std::sync::Arc;
use std::time::Instant;

use pifleet_orchestrator::clock::SystemClock;
use pifleet_orchestrator::config::Config;
use pifleet_orchestrator::fleet::NewTask;
use pifleet_orchestrator::health::{events, metrics, page};
use pifleet_orchestrator::store::MemoryStore;
use pifleet_orchestrator::Orchestrator;
use pifleet_protocol::{Capabilities, HeartbeatRequest, LoadedModel, NodeMetrics, RegisterRequest};

fn metrics_for(i: usize, beat: usize) -> NodeMetrics {
    NodeMetrics {
        cpu_percent: Some(((i * 7 + beat * 13) % 100) as f32),
        load_avg: Some([0.5, 0.4, 0.3]),
        memory_total_bytes: Some(8 << 30),
        memory_available_bytes: Some((4 << 30) + ((beat % 10) as u64) * (100 << 20)),
        temperature_c: Some(45.0 + ((i + beat) % 30) as f32),
        throttled: Some(0),
        models_present: Some(vec!["llama3.2:1b".into(), "qwen2.5:0.5b".into()]),
        models_loaded: Some(vec![LoadedModel {
            name: "llama3.2:1b".into(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn time<T>(runs: u32, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut out = f();
    let start = Instant::now();
    for _ in 0..runs {
        out = f();
    }
    (
        start.elapsed().as_secs_f64() * 1000.0 / f64::from(runs),
        out,
    )
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let config = Config::default();
    let history = config.limits.history_len;
    let orch = Orchestrator::open(&config, Box::new(MemoryStore::new()), Arc::new(SystemClock))
        .expect("open");
    let fleet = orch.fleet().clone();
    for i in 0..n {
        let id = format!("pi-{i:04}");
        let _ = fleet.register(RegisterRequest {
            worker_id: id.clone(),
            worker_type: Some("pifleet-agent".into()),
            capabilities: Capabilities {
                models: vec!["llama3.2:1b".into(), "qwen2.5:0.5b".into()],
                pi_model: Some("Raspberry Pi 5 Model B Rev 1.0".into()),
                ..Default::default()
            },
            want_credential: false,
        });
        for beat in 0..history {
            fleet
                .heartbeat(
                    &id,
                    HeartbeatRequest {
                        metrics: Some(metrics_for(i, beat)),
                        running_tasks: None,
                        spooled_results: None,
                        staging: Vec::new(),
                    },
                )
                .expect("heartbeat");
        }
    }
    println!("{n} nodes, {history} samples of history each");
    let (ms, snap) = time(20, || fleet.snapshot(true, 10, 10));
    println!("  snapshot (nodes + histories + queue + failures): {ms:.2} ms");
    let (ms, html) = time(20, || page::page(&snap));
    println!(
        "  status page render: {ms:.2} ms, {} KiB",
        html.len() / 1024
    );
    let mut shown = events::Shown::default();
    let (ms, first) = time(5, || events::Shown::default().update(&snap));
    let first = serde_json::to_string(&first).unwrap();
    println!("  first live event: {ms:.2} ms, {} KiB", first.len() / 1024);
    shown.update(&snap);
    // One node heartbeats: the next event carries one card.
    fleet
        .heartbeat(
            "pi-0000",
            HeartbeatRequest {
                metrics: Some(metrics_for(0, history + 1)),
                running_tasks: None,
                spooled_results: None,
                staging: Vec::new(),
            },
        )
        .unwrap();
    let snap2 = fleet.snapshot(true, 10, 10);
    let start = Instant::now();
    let delta = shown.update(&snap2);
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let delta = serde_json::to_string(&delta).unwrap();
    println!(
        "  live event after one heartbeat: {ms:.2} ms to diff, {} KiB",
        delta.len() / 1024
    );
    let (ms, text) = time(20, || {
        metrics::render(&fleet.snapshot(false, 0, 0), fleet.histograms(), None)
    });
    println!(
        "  /metrics (snapshot + encode): {ms:.2} ms, {} KiB, {} samples",
        text.len() / 1024,
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
    // A big task table: queue depth and failures must not cost more with it.
    let tasks = 200_000;
    for _ in 0..tasks {
        let _ = fleet.submit(NewTask {
            task_type: "evolution_mutation".into(),
            data: serde_json::json!({}),
            priority: 5,
            timeout_s: None,
            max_attempts: None,
            expires_s: None,
        });
    }
    // Let the store thread finish writing them before timing anything.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (ms, _) = time(20, || fleet.recent_failures(10));
    println!("  recent failures with {tasks} tasks in memory: {ms:.2} ms");
    let (ms, _) = time(20, || fleet.pending_by_priority());
    println!("  pending by priority with {tasks} pending: {ms:.2} ms");
    let (ms, _) = time(20, || {
        metrics::render(&fleet.snapshot(false, 0, 0), fleet.histograms(), None)
    });
    println!("  /metrics with {tasks} tasks queued: {ms:.2} ms");
}
