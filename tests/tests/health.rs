//! Node health against a real orchestrator process with simulated agents: the node API,
//! drain, `/metrics` through a real Prometheus text parser, the live event stream and the
//! page's token handling. The `pifleet` command line has its own file, `cli.rs`.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use pifleet_protocol::{NodeDetail, NodesResponse, WorkerState};
use pifleet_system_tests::cli::{ok, pifleet};
use pifleet_system_tests::fake_ollama::{FakeModel, FakeOllama};
use pifleet_system_tests::fleet;
use pifleet_system_tests::orch::Orch;
use pifleet_system_tests::sim::{pi_caps, pi_metrics, SimAgent};
use serde_json::{json, Value};

const TYPE: &str = "evolution_mutation";

// ---------------------------------------------------------------------------------------
// API

#[test]
fn nodes_api_shows_metrics_capabilities_and_history() {
    let orch = Orch::start(&[]);
    let a = SimAgent::up(&orch.base, "pi-a", 50.0);
    a.heartbeat(pi_metrics(55.0));
    a.heartbeat(pi_metrics(60.5));
    SimAgent::up(&orch.base, "pi-b", 45.0);

    let (status, v) = orch.get("/api/nodes");
    assert_eq!(status, 200, "{v}");
    let nodes: NodesResponse = serde_json::from_value(v).unwrap();
    assert_eq!(nodes.total, 2);
    let ids: Vec<&str> = nodes.nodes.iter().map(|n| n.worker_id.as_str()).collect();
    assert_eq!(ids, ["pi-a", "pi-b"]);
    let pa = &nodes.nodes[0];
    assert_eq!(pa.status, WorkerState::Online);
    assert!(!pa.draining);
    assert_eq!(pa.metrics.as_ref().unwrap().temperature_c, Some(60.5));
    assert_eq!(
        pa.capabilities.pi_model.as_deref(),
        Some("Raspberry Pi 5 Model B Rev 1.0")
    );
    assert!(pa.last_seen >= pa.registered_at);

    let (status, v) = orch.get("/api/nodes/pi-a");
    assert_eq!(status, 200, "{v}");
    let detail: NodeDetail = serde_json::from_value(v).unwrap();
    let temps: Vec<f32> = detail
        .history
        .iter()
        .filter_map(|s| s.temperature_c)
        .collect();
    assert_eq!(temps, [50.0, 55.0, 60.5]);
    assert!(detail.history.windows(2).all(|w| w[0].at <= w[1].at));

    let (status, v) = orch.get("/api/nodes/pi-zzz");
    assert_eq!(status, 404);
    assert!(v["error"].as_str().unwrap().contains("pi-zzz"), "{v}");
}

#[test]
fn drained_node_finishes_its_task_and_gets_no_new_work() {
    let orch = Orch::start(&[]);
    let a = SimAgent::up(&orch.base, "pi-a", 50.0);
    let b = SimAgent::up(&orch.base, "pi-b", 50.0);

    // pi-a takes the first task; then it is drained.
    let first = orch.submit(TYPE, 5);
    let task = a.poll(5).expect("pi-a gets the first task");
    assert_eq!(task.task_id, first);
    let (status, v) = orch.post("/api/nodes/pi-a/drain", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["draining"], json!(true));
    assert_eq!(v["status"], json!("draining"));
    assert_eq!(a.heartbeat(pi_metrics(50.0)).draining, Some(true));

    // New work goes to pi-b, never to the drained pi-a.
    let second = orch.submit(TYPE, 9);
    assert!(a.poll(1).is_none(), "a draining node got new work");
    assert_eq!(b.poll(5).expect("pi-b gets it").task_id, second);

    // pi-a still finishes what it holds.
    assert_eq!(a.result(&task, json!({"success": true})), 200);
    let (_, st) = orch.get(&format!("/api/tasks/status/{first}"));
    assert_eq!(st["status"], json!("completed"), "{st}");

    // Draining shows everywhere: workers list, stats, nodes.
    let (_, list) = orch.get("/api/workers/list");
    let w = list["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker_id"] == json!("pi-a"))
        .unwrap()
        .clone();
    assert_eq!(w["status"], json!("draining"), "{list}");
    let (_, stats) = orch.get("/api/stats");
    assert_eq!(stats["workers"]["draining"], json!(1), "{stats}");
    let (_, n) = orch.get("/api/nodes/pi-a");
    assert_eq!(n["status"], json!("draining"));

    // Undrained, it takes work again.
    let (status, v) = orch.post("/api/nodes/pi-a/undrain", json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["draining"], json!(false));
    let third = orch.submit(TYPE, 5);
    assert_eq!(a.poll(5).expect("pi-a works again").task_id, third);

    let (status, _) = orch.post("/api/nodes/nope/drain", json!({}));
    assert_eq!(status, 404);
}

#[test]
fn drain_survives_an_orchestrator_crash() {
    let orch = Orch::start(&[]);
    SimAgent::up(&orch.base, "pi-a", 50.0);
    let (status, _) = orch.post("/api/nodes/pi-a/drain", json!({}));
    assert_eq!(status, 200);
    let orch = orch.crash_and_restart(&[]);
    let (status, v) = orch.get("/api/nodes/pi-a");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["draining"], json!(true), "{v}");
    // The node comes back (its agent re-registers) and is still drained.
    let a = SimAgent::new(&orch.base, "pi-a", None);
    a.register(pi_caps());
    assert_eq!(a.heartbeat(pi_metrics(51.0)).draining, Some(true));
    orch.submit(TYPE, 5);
    assert!(
        a.poll(1).is_none(),
        "a drained node got work after a restart"
    );
}

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

/// Reads server-sent events until one's data satisfies `pred`.
/// `GET /api/events`, read with a bound: a stream that never ended fails the test
/// instead of hanging it.
fn event_stream(orch: &Orch) -> ureq::http::Response<ureq::Body> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    agent
        .get(format!("{}/api/events", orch.base))
        .call()
        .expect("event stream")
}

fn read_event_until(
    reader: &mut impl BufRead,
    deadline: Instant,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let mut event = String::new();
    let mut line = String::new();
    loop {
        assert!(Instant::now() < deadline, "no matching event in time");
        line.clear();
        let n = reader.read_line(&mut line).expect("read event stream");
        assert!(n > 0, "event stream ended");
        let l = line.trim_end();
        if let Some(name) = l.strip_prefix("event:") {
            event = name.trim().to_string();
        } else if let Some(data) = l.strip_prefix("data:") {
            assert_eq!(event, "fleet");
            let v: Value = serde_json::from_str(data.trim()).expect("event data is JSON");
            if pred(&v) {
                return v;
            }
        }
    }
}

#[test]
fn event_stream_pushes_node_changes() {
    let orch = Orch::start(&[]);
    let a = SimAgent::up(&orch.base, "pi-a", 50.0);
    let resp = event_stream(&orch);
    assert!(resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream")));
    let mut reader = BufReader::new(resp.into_body().into_reader());
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = read_event_until(&mut reader, deadline, |_| true);
    let card = first["nodes"][0]["html"].as_str().unwrap();
    assert_eq!(first["nodes"][0]["id"], json!("pi-a"));
    assert!(card.contains("50.0°C"), "{card}");

    a.heartbeat(pi_metrics(77.25));
    read_event_until(&mut reader, deadline, |v| {
        v["nodes"][0]["html"]
            .as_str()
            .unwrap_or("")
            .contains("77.2°C")
    });
    SimAgent::up(&orch.base, "pi-b", 40.0);
    read_event_until(&mut reader, deadline, |v| {
        v["order"] == json!(["pi-a", "pi-b"])
            && v["nodes"][0]["id"] == json!("pi-b")
            && v["nodes"].as_array().is_some_and(|n| n.len() == 1)
    });
}

#[test]
fn open_status_page_does_not_hold_up_shutdown() {
    let mut orch = Orch::start(&[]);
    SimAgent::up(&orch.base, "pi-a", 50.0);
    let resp = event_stream(&orch);
    let mut reader = BufReader::new(resp.into_body().into_reader());
    read_event_until(
        &mut reader,
        Instant::now() + Duration::from_secs(20),
        |_| true,
    );
    assert_eq!(
        orch.terminate(Duration::from_secs(20)),
        Some(0),
        "SIGTERM with a browser connected must still stop the orchestrator cleanly"
    );
    // The stream ended rather than being cut: the chunked body reaches its last chunk,
    // which a dropped connection never sends (ureq then reports an error).
    let mut rest = String::new();
    let end = std::io::Read::read_to_string(&mut reader, &mut rest);
    assert!(
        end.is_ok(),
        "the event stream must end cleanly at shutdown, not be cut: {end:?} after {rest:?}"
    );
}

#[test]
fn page_and_metrics_need_the_client_token_when_configured() {
    let orch = Orch::start(&[
        ("PIFLEET_CLIENT_TOKEN", "client-secret-0123456789"),
        ("PIFLEET_WORKER_TOKEN", "worker-secret-0123456789"),
    ]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let status = |path: &str, auth: Option<&str>| {
        let mut req = agent.get(format!("{}{}", orch.base, path));
        if let Some(a) = auth {
            req = req.header("Authorization", format!("Bearer {a}"));
        }
        req.call().unwrap().status().as_u16()
    };
    assert_eq!(status("/", None), 401);
    let hint = agent
        .get(format!("{}/", orch.base))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(hint.contains("/?token="), "{hint}");
    assert_eq!(status("/?token=wrong", None), 401);
    assert_eq!(status("/?token=client-secret-0123456789", None), 200);
    assert_eq!(status("/", Some("client-secret-0123456789")), 200);
    assert_eq!(status("/api/nodes", None), 401);
    assert_eq!(status("/api/nodes", Some("client-secret-0123456789")), 200);
    assert_eq!(status("/metrics", None), 401);
    assert_eq!(status("/metrics", Some("client-secret-0123456789")), 200);
    assert_eq!(status("/metrics", Some("worker-secret-0123456789")), 401);
    assert_eq!(status("/api/events", None), 401);
    assert_eq!(
        status("/api/events?token=client-secret-0123456789", None),
        200
    );
    assert_eq!(status("/static/pifleet.js", None), 200);
    assert_eq!(status("/static/pifleet.css", None), 200);
}

#[test]
fn status_page_is_server_rendered() {
    let orch = Orch::start(&[]);
    SimAgent::up(&orch.base, "pi-kitchen", 66.0);
    let (status, html) = orch.get_text("/");
    assert_eq!(status, 200);
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains(r#"data-id="pi-kitchen""#));
    assert!(html.contains("66.0°C"));
    assert!(html.contains("<svg class=\"spark\""));
    assert!(html.contains(r#"<script src="/static/pifleet.js" defer></script>"#));
    let resp = ureq::get(format!("{}/", orch.base)).call().unwrap();
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
}

#[test]
fn silent_node_shows_as_dead_everywhere() {
    // Heartbeats every 0.2 s: a node silent for 3 intervals is dead within a second.
    let orch = Orch::start(&[("PIFLEET_HEARTBEAT_INTERVAL_S", "0.2")]);
    SimAgent::up(&orch.base, "pi-gone", 50.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = orch.get("/api/nodes/pi-gone");
        if v["status"] == json!("dead") {
            break;
        }
        assert!(Instant::now() < deadline, "never declared dead: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let table = ok(&pifleet(&orch.base, &["nodes"]));
    assert!(table.lines().nth(1).unwrap().contains(" dead "), "{table}");
    let (_, text) = orch.get_text("/metrics");
    assert!(
        text.contains("pifleet_node_up{node=\"pi-gone\"} 0"),
        "{text}"
    );
    assert!(text.contains("pifleet_nodes{status=\"dead\"} 1"), "{text}");
    let (_, html) = orch.get_text("/");
    assert!(html.contains(r#"<article class="node st-dead" data-id="pi-gone">"#));
}

#[test]
fn real_agent_reports_metrics_runs_work_and_respects_drain() {
    let orch = Orch::start(&[]);
    let ollama = FakeOllama::start(vec![FakeModel::small("llama3.2:1b")]).expect("fake ollama");
    let tmp = fleet::tempdir("health-real-agent");
    let _agent = fleet::start_agent(tmp.path(), "pi-real", &orch.base, &ollama.url(), &[]);

    // Real metrics from this machine's /proc, a growing history, the model from Ollama.
    let detail: NodeDetail =
        fleet::wait_for("pi-real with history", Duration::from_secs(20), || {
            let (status, v) = orch.get("/api/nodes/pi-real");
            let d: NodeDetail = serde_json::from_value(v).ok().filter(|_| status == 200)?;
            (d.history.len() >= 2).then_some(d)
        });
    let m = detail.node.metrics.as_ref().expect("metrics");
    assert!(m.memory_available_bytes.is_some_and(|b| b > 0), "{m:?}");
    assert!(m.cpu_percent.is_some(), "{m:?}");
    let table = ok(&pifleet(&orch.base, &["nodes"]));
    let row = table
        .lines()
        .find(|l| l.starts_with("pi-real"))
        .expect(&table);
    assert!(row.contains("llama3.2:1b"), "{table}");

    let chat = json!({
        "type": "agent_action",
        "data": {"messages": [{"role": "user", "content": "hi"}], "model": "llama3.2:1b"}
    });
    let submit = || {
        let (status, v) = orch.post("/api/tasks/submit", chat.clone());
        assert_eq!(status, 201, "{v}");
        v["task_id"].as_str().unwrap().to_string()
    };
    let state = |id: &str| orch.get(&format!("/api/tasks/status/{id}")).1["status"].clone();
    let first = submit();
    fleet::wait_for("first task done", Duration::from_secs(20), || {
        (state(&first) == json!("completed")).then_some(())
    });

    // Drained: the real agent gets nothing new; undrained, it runs the waiting task.
    ok(&pifleet(&orch.base, &["drain", "pi-real"]));
    let second = submit();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state(&second), json!("pending"), "a drained node got work");
    let table = ok(&pifleet(&orch.base, &["nodes"]));
    assert!(table.contains("draining"), "{table}");
    ok(&pifleet(&orch.base, &["undrain", "pi-real"]));
    fleet::wait_for("second task done", Duration::from_secs(20), || {
        (state(&second) == json!("completed")).then_some(())
    });
    let (_, n) = orch.get("/api/nodes/pi-real");
    assert_eq!(n["tasks_completed"], json!(2), "{n}");
}

#[test]
fn node_counts_agree_everywhere_and_per_node_totals_survive_a_restart() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    // Heartbeats every 0.2 s: a node silent for 3 intervals is dead within a second.
    let env = [("PIFLEET_HEARTBEAT_INTERVAL_S", "0.2")];
    let mut orch = Orch::start(&env);
    let ids = ["pi-online", "pi-busy", "pi-drain"];
    let live: Vec<SimAgent> = ids
        .iter()
        .map(|id| SimAgent::up(&orch.base, id, 50.0))
        .collect();
    SimAgent::up(&orch.base, "pi-gone", 50.0);
    // Work first: 2 done on pi-online, 1 done on pi-busy (which then holds one), 1 done
    // and 1 failed on pi-drain (which is then drained).
    let settle = |a: &SimAgent, ok: bool| {
        let id = orch.submit(TYPE, 5);
        let task = a.poll(5).expect("the only waiting node gets it");
        assert_eq!(task.task_id, id);
        let result = if ok {
            json!({"success": true, "genome": {"x": 1.0}})
        } else {
            json!({"success": false, "error": "bad genome"})
        };
        assert_eq!(a.result(&task, result), 200);
    };
    settle(&live[0], true);
    settle(&live[0], true);
    settle(&live[1], true);
    settle(&live[2], true);
    settle(&live[2], false);
    orch.submit(TYPE, 5);
    live[1].poll(5).expect("pi-busy holds a task");
    let (status, _) = orch.post("/api/nodes/pi-drain/drain", json!({}));
    assert_eq!(status, 200);

    // The live nodes keep beating while pi-gone falls silent.
    let beating = Arc::new(AtomicBool::new(true));
    let beat = {
        let beating = beating.clone();
        std::thread::spawn(move || {
            while beating.load(Ordering::Relaxed) {
                for a in &live {
                    a.heartbeat(pi_metrics(50.0));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    fleet::wait_for("pi-gone dead", Duration::from_secs(20), || {
        let (_, v) = orch.get("/api/nodes/pi-gone");
        (v["status"] == json!("dead")).then_some(())
    });

    // One truth: 1 online, 1 busy, 1 draining, 1 dead, in every view.
    let (_, health) = orch.get("/health");
    assert_eq!(
        health["workers_online"],
        json!(2),
        "online + busy: {health}"
    );
    let (_, stats) = orch.get("/api/stats");
    let w = &stats["workers"];
    assert_eq!(
        [
            &w["online"],
            &w["busy"],
            &w["draining"],
            &w["dead"],
            &w["total"]
        ],
        [&json!(1), &json!(1), &json!(1), &json!(1), &json!(4)],
        "{stats}"
    );
    let (_, nodes) = orch.get("/api/nodes");
    let nodes: NodesResponse = serde_json::from_value(nodes).unwrap();
    let shown = |s: WorkerState| nodes.nodes.iter().filter(|n| n.shown_status() == s).count();
    assert_eq!(
        [
            shown(WorkerState::Online),
            shown(WorkerState::Busy),
            shown(WorkerState::Draining),
            shown(WorkerState::Dead)
        ],
        [1, 1, 1, 1]
    );
    let watch = ok(&pifleet(&orch.base, &["watch", "--count", "1"]));
    assert!(
        watch.contains("4 nodes: 1 online, 1 busy, 1 draining, 1 dead"),
        "{watch}"
    );
    let (_, html) = orch.get_text("/");
    for status in ["online", "busy", "draining", "dead"] {
        assert!(
            html.contains(&format!(
                r#"<span class="stat st-{status}"><b>1</b> {status}</span>"#
            )),
            "the page's {status} count: {html}"
        );
    }
    let (_, metrics) = orch.get_text("/metrics");
    for status in ["online", "busy", "draining", "dead"] {
        assert!(
            metrics.contains(&format!("pifleet_nodes{{status=\"{status}\"}} 1")),
            "{metrics}"
        );
    }

    // Per-node totals survive a crash of the orchestrator.
    beating.store(false, Ordering::Relaxed);
    beat.join().unwrap();
    let totals = |orch: &Orch| {
        let (_, stats) = orch.get("/api/stats");
        let (_, nodes) = orch.get("/api/nodes");
        let (_, list) = orch.get("/api/workers/list");
        let find = |v: &Value, id: &str| -> Value {
            v.as_array()
                .and_then(|all| all.iter().find(|n| n["worker_id"] == id))
                .cloned()
                .unwrap_or_else(|| panic!("{id} missing in {v}"))
        };
        ids.map(|id| {
            let node = find(&nodes["nodes"], id);
            let listed = find(&list["workers"], id);
            let per = &stats["per_worker"][id];
            assert_eq!(per["tasks_completed"], node["tasks_completed"], "{id}");
            assert_eq!(per["tasks_completed"], listed["tasks_completed"], "{id}");
            assert_eq!(per["tasks_failed"], node["tasks_failed"], "{id}");
            (
                per["tasks_completed"].as_u64().unwrap(),
                per["tasks_failed"].as_u64().unwrap(),
            )
        })
    };
    assert_eq!(totals(&orch), [(2, 0), (1, 0), (1, 1)]);
    orch = orch.crash_and_restart(&env);
    assert_eq!(totals(&orch), [(2, 0), (1, 0), (1, 1)], "after a restart");
}
