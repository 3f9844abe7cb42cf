//! `/metrics` read through a real Prometheus text parser.

use super::*;

#[test]
fn metrics_parse_as_prometheus_text() {
    let orch = Orch::start(&[]);
    let a = SimAgent::up(&orch.base, "pi-a", 61.5);
    SimAgent::up(&orch.base, "pi-b", 48.0);
    orch.post("/api/nodes/pi-b/drain", json!({}));
    let t = orch.submit(TYPE, 5);
    let task = a.poll(5).expect("task");
    assert_eq!(task.task_id, t);
    assert_eq!(a.result(&task, json!({"success": true})), 200);
    orch.submit(TYPE, 8);
    orch.submit(TYPE, 8);
    orch.submit(TYPE, 2);

    let (status, text) = orch.get_text("/metrics");
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    let find = |name: &str, label: Option<(&str, &str)>| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| {
                s.metric == name
                    && match label {
                        None => true,
                        Some((k, v)) => s.labels.get(k) == Some(v),
                    }
            })
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in\n{text}"));
        match s.value {
            prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        }
    };
    assert_eq!(
        find("pifleet_node_temperature_celsius", Some(("node", "pi-a"))),
        61.5
    );
    assert_eq!(find("pifleet_node_up", Some(("node", "pi-a"))), 1.0);
    assert_eq!(find("pifleet_node_draining", Some(("node", "pi-b"))), 1.0);
    assert_eq!(find("pifleet_node_draining", Some(("node", "pi-a"))), 0.0);
    assert_eq!(find("pifleet_node_throttled", Some(("node", "pi-a"))), 0.0);
    assert_eq!(
        find(
            "pifleet_node_memory_available_bytes",
            Some(("node", "pi-a"))
        ),
        (6u64 << 30) as f64
    );
    assert_eq!(find("pifleet_nodes", Some(("status", "draining"))), 1.0);
    // pi-b is draining, pi-a is idle and will take one of the pending tasks at its next poll.
    assert_eq!(find("pifleet_queue_depth", Some(("priority", "8"))), 2.0);
    assert_eq!(find("pifleet_queue_depth", Some(("priority", "2"))), 1.0);
    assert_eq!(find("pifleet_tasks_completed_total", None), 1.0);
    assert_eq!(find("pifleet_tasks_failed_total", None), 0.0);
    let hist = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| match &s.value {
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|c| c.count).fold(0.0, f64::max)
                }
                other => panic!("{name}: not a histogram: {other:?}"),
            })
            .unwrap_or_else(|| panic!("no histogram {name} in\n{text}"))
    };
    assert_eq!(hist("pifleet_scheduling_latency_seconds"), 1.0);
    assert_eq!(hist("pifleet_task_duration_seconds"), 1.0);
}
