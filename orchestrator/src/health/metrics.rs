//! `GET /metrics`: Prometheus / OpenMetrics text exposition via the `prometheus-client`
//! crate (the Prometheus organisation's Rust client).
//!
//! Gauges and counters are read from a [`FleetSnapshot`] at scrape time, so they always
//! match `/api/nodes` and a node that is gone is gone from the scrape too. The two
//! histograms (scheduling latency and task duration) are fed live by the scheduler
//! through [`crate::telemetry::Histograms`].
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pifleet_node_up` | gauge | `node` |
//! | `pifleet_node_draining` | gauge | `node` |
//! | `pifleet_node_temperature_celsius` | gauge | `node` |
//! | `pifleet_node_cpu_usage_percent` | gauge | `node` |
//! | `pifleet_node_load1` | gauge | `node` |
//! | `pifleet_node_memory_available_bytes`, `pifleet_node_memory_total_bytes` | gauge | `node` |
//! | `pifleet_node_throttled` (1 when throttled or under-voltage now) | gauge | `node` |
//! | `pifleet_node_under_voltage` | gauge | `node` |
//! | `pifleet_node_running_tasks` | gauge | `node` |
//! | `pifleet_node_last_seen_age_seconds` | gauge | `node` |
//! | `pifleet_node_generation_tokens_per_second`, `_prompt_tokens_per_second`, `pifleet_node_cold_load_seconds` (measured on the node) | gauge | `node`, `model` |
//! | `pifleet_nodes` | gauge | `status` |
//! | `pifleet_queue_depth` (pending tasks) | gauge | `priority` |
//! | `pifleet_tasks_running` | gauge | |
//! | `pifleet_tasks_completed_total`, `_failed_total`, `_retried_total`, `_reclaimed_total` | counter | |
//! | `pifleet_scheduling_latency_seconds` (submit → assign) | histogram | |
//! | `pifleet_task_duration_seconds` (assign → result) | histogram | |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::FleetSnapshot;
use crate::gateway::metrics::GatewayMetrics;
use crate::telemetry::Histograms;

/// The content type of the exposition `prometheus-client` writes (OpenMetrics text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;
type FGauge = Gauge<f64, AtomicU64>;

fn node_label(id: &str) -> Labels {
    vec![("node".to_string(), id.to_string())]
}

fn gauge_family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, FGauge> {
    let family = Family::<Labels, FGauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Renders the whole exposition for one scrape.
pub fn render(s: &FleetSnapshot, h: &Histograms, gateway: Option<&GatewayMetrics>) -> String {
    let mut r = Registry::default();
    let up = gauge_family(
        &mut r,
        "pifleet_node_up",
        "1 while the node is alive (heartbeats arriving)",
    );
    let draining = gauge_family(
        &mut r,
        "pifleet_node_draining",
        "1 while the node is drained: it gets no new work",
    );
    let temp = gauge_family(
        &mut r,
        "pifleet_node_temperature_celsius",
        "SoC temperature",
    );
    let cpu = gauge_family(
        &mut r,
        "pifleet_node_cpu_usage_percent",
        "Whole-machine CPU use, 0-100",
    );
    let load1 = gauge_family(&mut r, "pifleet_node_load1", "1-minute load average");
    let mem_avail = gauge_family(
        &mut r,
        "pifleet_node_memory_available_bytes",
        "Memory available",
    );
    let mem_total = gauge_family(
        &mut r,
        "pifleet_node_memory_total_bytes",
        "Memory installed",
    );
    let throttled = gauge_family(
        &mut r,
        "pifleet_node_throttled",
        "1 while the firmware reports throttling, frequency capping or under-voltage",
    );
    let under_voltage = gauge_family(
        &mut r,
        "pifleet_node_under_voltage",
        "1 while the firmware reports under-voltage",
    );
    let running = gauge_family(
        &mut r,
        "pifleet_node_running_tasks",
        "Tasks assigned to the node now",
    );
    let age = gauge_family(
        &mut r,
        "pifleet_node_last_seen_age_seconds",
        "Seconds since the node was last heard from",
    );
    let nodes = gauge_family(
        &mut r,
        "pifleet_nodes",
        "Nodes by status (a draining node counts as draining)",
    );
    let queue = gauge_family(&mut r, "pifleet_queue_depth", "Pending tasks by priority");
    let gen_tps = gauge_family(
        &mut r,
        "pifleet_node_generation_tokens_per_second",
        "Measured generation speed placement ranks the node by, per model",
    );
    let prompt_tps = gauge_family(
        &mut r,
        "pifleet_node_prompt_tokens_per_second",
        "Prompt-processing speed placement ranks the node by, per model",
    );
    let cold_load = gauge_family(
        &mut r,
        "pifleet_node_cold_load_seconds",
        "Model load time placement charges the node when the model is not in memory",
    );

    for d in &s.nodes {
        let n = &d.node;
        let l = node_label(&n.worker_id);
        let status = n.shown_status();
        up.get_or_create(&l)
            .set(bool_f(status != pifleet_protocol::WorkerState::Dead));
        draining.get_or_create(&l).set(bool_f(n.draining));
        // Only what the node measured itself: borrowed figures would read as facts.
        for sp in d.speeds.iter().filter(|sp| sp.source == "measured") {
            let ml = vec![
                ("node".to_string(), n.worker_id.clone()),
                ("model".to_string(), sp.model.clone()),
            ];
            gen_tps.get_or_create(&ml).set(sp.gen_tps);
            prompt_tps.get_or_create(&ml).set(sp.prompt_tps);
            cold_load.get_or_create(&ml).set(sp.cold_load_s);
        }
        running.get_or_create(&l).set(n.current_tasks.len() as f64);
        age.get_or_create(&l).set((s.at - n.last_seen).max(0.0));
        if let Some(m) = &n.metrics {
            if let Some(t) = m.temperature_c {
                temp.get_or_create(&l).set(f64::from(t));
            }
            if let Some(c) = m.cpu_percent {
                cpu.get_or_create(&l).set(f64::from(c));
            }
            if let Some(la) = m.load_avg {
                load1.get_or_create(&l).set(f64::from(la[0]));
            }
            if let Some(a) = m.memory_available_bytes {
                mem_avail.get_or_create(&l).set(a as f64);
            }
            if let Some(t) = m.memory_total_bytes.or(n.capabilities.memory_total_bytes) {
                mem_total.get_or_create(&l).set(t as f64);
            }
            if m.throttled.is_some() {
                throttled
                    .get_or_create(&l)
                    .set(bool_f(m.throttled_now() || m.under_voltage_now()));
                under_voltage
                    .get_or_create(&l)
                    .set(bool_f(m.under_voltage_now()));
            }
        }
    }
    let c = s.status_counts();
    for (status, n) in [
        ("online", c.online),
        ("busy", c.busy),
        ("draining", c.draining),
        ("dead", c.dead),
    ] {
        nodes
            .get_or_create(&vec![("status".to_string(), status.to_string())])
            .set(n as f64);
    }
    for p in pifleet_protocol::PRIORITY_MIN..=pifleet_protocol::PRIORITY_MAX {
        let n = s.pending_by_priority.get(&p).copied().unwrap_or(0);
        queue
            .get_or_create(&vec![("priority".to_string(), p.to_string())])
            .set(n as f64);
    }
    let assigned: FGauge = Gauge::default();
    assigned.set(s.tasks.assigned as f64);
    r.register(
        "pifleet_tasks_running",
        "Tasks assigned to a node now",
        assigned,
    );
    r.register(
        "pifleet_tasks_completed",
        "Tasks completed",
        ConstCounter::new(s.tasks.completed),
    );
    r.register(
        "pifleet_tasks_failed",
        "Tasks failed for good (after their last attempt)",
        ConstCounter::new(s.tasks.failed),
    );
    r.register(
        "pifleet_tasks_retried",
        "Attempts revoked and requeued (dead node, timeout, retryable failure)",
        ConstCounter::new(s.tasks.retried),
    );
    r.register(
        "pifleet_tasks_reclaimed",
        "Attempts taken back because their node neither ran nor held them (lost poll answer); also in retried",
        ConstCounter::new(s.tasks.reclaimed),
    );
    r.register(
        "pifleet_scheduling_latency_seconds",
        "Time from submit (or requeue) to assignment",
        h.scheduling_latency.clone(),
    );
    r.register(
        "pifleet_task_duration_seconds",
        "Time from assignment to the result of an attempt",
        h.task_duration.clone(),
    );
    let mut out = String::new();
    // Writing to a String cannot fail.
    if let Some(g) = gateway {
        g.register(&mut r);
    }
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::test_node;
    use pifleet_protocol::{NodeMetrics, NodeView, TaskCounts, WorkerState};

    #[test]
    fn exposition_has_node_gauges_queue_counters_and_histograms() {
        let s = FleetSnapshot {
            at: 100.0,
            nodes: vec![NodeView {
                status: WorkerState::Busy,
                draining: true,
                metrics: Some(NodeMetrics {
                    temperature_c: Some(61.5),
                    throttled: Some(0x1),
                    ..Default::default()
                }),
                current_tasks: vec!["t1".into()],
                ..test_node("pi-1", 98.0)
            }
            .into()],
            pending_by_priority: [(7u8, 3u64)].into_iter().collect(),
            tasks: TaskCounts {
                completed: 5,
                failed: 1,
                retried: 2,
                reclaimed: 1,
                ..Default::default()
            },
            recent_failures: vec![],
            thresholds: Default::default(),
            work: Default::default(),
        };
        let h = Histograms::default();
        h.observe_scheduling_latency(0.002);
        h.observe_task_duration(1.5);
        let text = render(&s, &h, None);
        for line in [
            r#"pifleet_node_temperature_celsius{node="pi-1"} 61.5"#,
            r#"pifleet_node_draining{node="pi-1"} 1"#,
            r#"pifleet_node_under_voltage{node="pi-1"} 1"#,
            r#"pifleet_node_throttled{node="pi-1"} 1"#,
            r#"pifleet_nodes{status="draining"} 1"#,
            r#"pifleet_queue_depth{priority="7"} 3"#,
            r#"pifleet_queue_depth{priority="1"} 0"#,
            "pifleet_tasks_completed_total 5",
            "pifleet_tasks_retried_total 2",
            "pifleet_tasks_reclaimed_total 1",
            "pifleet_scheduling_latency_seconds_count 1",
            "pifleet_task_duration_seconds_sum 1.5",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(line)),
                "missing {line}:\n{text}"
            );
        }
    }

    #[test]
    fn measured_speeds_are_exported_and_borrowed_ones_are_not() {
        let mut d: pifleet_protocol::NodeDetail = test_node("pi-1", 98.0).into();
        let speed = |model: &str, source: &str| pifleet_protocol::ModelSpeed {
            model: model.into(),
            prompt_tps: 40.0,
            gen_tps: 9.5,
            cold_load_s: 12.25,
            source: source.into(),
            results: 3,
        };
        d.speeds = vec![
            speed("llama3.2:1b", "measured"),
            speed("qwen2.5:0.5b", "fleet"),
        ];
        let s = FleetSnapshot {
            at: 100.0,
            nodes: vec![d],
            ..Default::default()
        };
        let text = render(&s, &Histograms::default(), None);
        for line in [
            r#"pifleet_node_generation_tokens_per_second{node="pi-1",model="llama3.2:1b"} 9.5"#,
            r#"pifleet_node_prompt_tokens_per_second{node="pi-1",model="llama3.2:1b"} 40.0"#,
            r#"pifleet_node_cold_load_seconds{node="pi-1",model="llama3.2:1b"} 12.25"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("qwen2.5:0.5b"), "{text}");
    }
}
