use super::*;
use pifleet_protocol::{Capabilities, LoadedModel, ModelSpeed, NodeMetrics};

fn node(id: &str, status: WorkerState) -> NodeView {
    NodeView {
        worker_id: id.into(),
        worker_type: "pifleet-agent".into(),
        status,
        draining: false,
        registered_at: 1000.0,
        last_seen: 1095.0,
        capabilities: Capabilities {
            models: vec!["llama3.2:1b".into()],
            ..Default::default()
        },
        metrics: Some(NodeMetrics {
            cpu_percent: Some(12.4),
            temperature_c: Some(51.2),
            memory_total_bytes: Some(8 << 30),
            memory_available_bytes: Some(6 << 30),
            models_present: Some(vec!["llama3.2:1b".into(), "qwen2.5:0.5b".into()]),
            models_loaded: Some(vec![LoadedModel {
                name: "llama3.2:1b".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        current_tasks: vec![],
        tasks_completed: 3,
        tasks_failed: 0,
        streaming: vec![],
        staging: vec![],
    }
}

#[test]
fn temperatures_are_marked_at_the_orchestrators_thresholds() {
    let th = Thresholds {
        soft_temp_c: 60.0,
        hard_temp_c: 70.0,
    };
    assert_eq!(temp_style(59.9, &th), Style::Green);
    assert_eq!(temp_style(65.0, &th), Style::Yellow);
    assert_eq!(temp_style(70.0, &th), Style::Red);
    // An orchestrator that sends none: its defaults, 80 and 85.
    assert_eq!(temp_style(75.0, &Thresholds::default()), Style::Green);
    assert_eq!(temp_style(82.0, &Thresholds::default()), Style::Yellow);
}

#[test]
fn table_lists_every_column_without_colour() {
    let mut busy = node("pi-b", WorkerState::Busy);
    busy.current_tasks = vec!["0123456789abcdef".into(), "x".into()];
    let mut hot = node("pi-a", WorkerState::Online);
    hot.metrics.as_mut().unwrap().temperature_c = Some(83.0);
    hot.metrics.as_mut().unwrap().throttled = Some(0x4);
    let resp = NodesResponse {
        total: 2,
        nodes: vec![busy, hot],
        thresholds: None,
    };
    let table = nodes_table(&resp, 1100.0, false);
    let expected = "\
NAME  STATUS  TEMP        CPU  MEM FREE   MODELS                     TASK        LAST SEEN
pi-a  online  83.0°C THR  12%  6.0G/8.0G  llama3.2:1b*,qwen2.5:0.5b  -           5s ago
pi-b  busy    51.2°C      12%  6.0G/8.0G  llama3.2:1b*,qwen2.5:0.5b  01234567+1  5s ago
";
    assert_eq!(table, expected);
    assert!(!table.contains('\x1b'));
}

#[test]
fn colour_codes_only_when_asked_and_columns_stay_aligned() {
    let resp = NodesResponse {
        total: 1,
        nodes: vec![node("pi-a", WorkerState::Online)],
        thresholds: None,
    };
    let coloured = nodes_table(&resp, 1100.0, true);
    assert!(coloured.contains("\x1b[32monline"));
    let stripped: String = strip_ansi(&coloured);
    assert_eq!(stripped, nodes_table(&resp, 1100.0, false));
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn draining_node_shows_as_draining_until_dead() {
    let mut n = node("pi-a", WorkerState::Busy);
    n.draining = true;
    assert_eq!(n.shown_status(), WorkerState::Draining);
    n.status = WorkerState::Dead;
    assert_eq!(n.shown_status(), WorkerState::Dead);
}

#[test]
fn empty_fleet_says_so() {
    let resp = NodesResponse {
        total: 0,
        nodes: vec![],
        thresholds: None,
    };
    assert!(nodes_table(&resp, 0.0, false).contains("no nodes registered"));
    assert_eq!(nodes_summary(&resp), "0 nodes");
}

#[test]
fn node_without_metrics_shows_dashes() {
    let mut n = node("seed-worker", WorkerState::Online);
    n.metrics = None;
    let resp = NodesResponse {
        total: 1,
        nodes: vec![n],
        thresholds: None,
    };
    let table = nodes_table(&resp, 1100.0, false);
    assert!(table.contains("seed-worker  online  -     -    -         llama3.2:1b"));
}

#[test]
fn units_and_ages_read_naturally() {
    assert_eq!(bytes(512), "512B");
    assert_eq!(bytes(1536 << 20), "1.5G");
    assert_eq!(bytes(900 << 20), "900M");
    assert_eq!(ago(10.0, 13.5), "3s ago");
    assert_eq!(ago(0.0, 7200.0), "2h ago");
    assert_eq!(ago(100.0, 50.0), "0s ago");
}

#[test]
fn sparkline_spans_low_to_high() {
    assert_eq!(sparkline(&[1.0, 2.0, 3.0]), "▁▅█");
    assert_eq!(sparkline(&[5.0, 5.0]), "▄▄");
    assert_eq!(sparkline(&[]), "");
}

#[test]
fn detail_shows_measured_and_borrowed_speeds() {
    let mut detail: NodeDetail = node("pi-a", WorkerState::Online).into();
    let speed = |model: &str, source: &str, results| ModelSpeed {
        model: model.into(),
        prompt_tps: 40.0,
        gen_tps: 9.5,
        cold_load_s: 12.0,
        source: source.into(),
        results,
    };
    detail.speeds = vec![
        speed("llama3.2:1b", "measured", 7),
        speed("qwen2.5:0.5b", "pi_model", 0),
    ];
    let text = node_detail(&detail, 0.0, false);
    assert!(
        text.contains("speed llama3.2:1b   9.5 tok/s generation, 40.0 tok/s prompt, 12.0s cold load (measured, 7 results)\n"),
        "{text}"
    );
    assert!(text.contains("(borrowed: pi_model)\n"), "{text}");
}

#[test]
fn detail_shows_history_and_drain() {
    let mut n = node("pi-a", WorkerState::Online);
    n.draining = true;
    let detail = NodeDetail {
        node: n,
        history: vec![
            MetricSample {
                at: 1000.0,
                temperature_c: Some(50.0),
                ..Default::default()
            },
            MetricSample {
                at: 1010.0,
                temperature_c: Some(60.0),
                ..Default::default()
            },
        ],
        thresholds: None,
        speeds: Vec::new(),
    };
    let text = node_detail(&detail, 1100.0, false);
    assert!(text.contains("  status        draining\n"), "{text}");
    assert!(
        text.contains("  temp history  ▁█  (50.0°C .. 60.0°C)\n"),
        "{text}"
    );
    assert!(text.contains("  samples       2 over 10s\n"), "{text}");
}

#[test]
fn a_pending_task_shows_its_place_and_expected_start() {
    let mut t: pifleet_protocol::TaskStatusResponse = serde_json::from_value(serde_json::json!({
        "task_id": "t-1", "status": "pending", "assigned_to": null, "result": null,
        "pending_reason": "every node that can run it is busy",
        "queue_position": 3, "expected_start_s": 95.4
    }))
    .unwrap();
    let text = task_status(&t, 1000.0);
    assert!(
        text.contains("  in line     #3, starts in ~1m35s\n"),
        "{text}"
    );
    t.expected_start_s = None;
    t.queue_position = Some(pifleet_protocol::QUEUE_POSITION_COUNTED + 1);
    assert_eq!(
        standing(&t).as_deref(),
        Some("behind more than 10000 tasks")
    );
    t.queue_position = None;
    assert!(!task_status(&t, 1000.0).contains("in line"));
}
