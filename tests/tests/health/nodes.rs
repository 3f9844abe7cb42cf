//! The node API and drain, a silent node shown dead, a real agent's reports, and node
//! counts that agree everywhere and survive a restart.

use super::*;

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
