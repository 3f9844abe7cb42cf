//! Random traffic against the bookkeeping.

use super::*;

/// Random traffic (submits, polls, results good and bad, heartbeats, deaths, timeouts,
/// drains, unregisters) must never break the bookkeeping, and every task must end settled.
#[tokio::test]
async fn random_traffic_keeps_the_books_straight() {
    let h = Harness::with(|c| {
        c.heartbeat_interval_s = Some(5.0);
        c.default_timeout_s = Some(12.0);
        c.max_attempts = Some(4);
        c.retry_backoff_s = Some(1.0);
        c.retry_backoff_max_s = Some(4.0);
    });
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let workers = ["a", "b", "c", "d"];
    let models = ["m1", "m2"];
    // Capabilities that split the lanes: some workers declare their task types and
    // memory, so the lane index has types, models and memory needs to tell apart.
    let caps = |i: u64, model: &str| match i % 3 {
        0 => json!({"models": [model], "slots": 1 + i % 2}),
        1 => json!({"models": [model], "slots": 1 + i % 2,
                    "task_types": ["agent_action", "custom-1"], "memory_total_bytes": 2u64 << 30}),
        _ => json!({"models": [model], "memory_total_bytes": 4u64 << 30}),
    };
    for (i, w) in workers.iter().enumerate() {
        h.register(w, caps(i as u64, models[i % 2])).await;
    }
    let mut held: Vec<(String, String, u64)> = Vec::new();
    let mut tasks = Vec::new();
    let mut polls: Vec<(String, tokio::task::JoinHandle<Value>)> = Vec::new();
    let mut long_polled = 0;
    for step in 0..3000 {
        let w = workers[next(4) as usize];
        // Collect long polls that ended.
        let mut i = 0;
        while i < polls.len() {
            if polls[i].1.is_finished() {
                let (who, handle) = polls.swap_remove(i);
                if let Ok(t) = handle.await {
                    if !t.is_null() {
                        long_polled += 1;
                        held.push((
                            t["task_id"].as_str().unwrap().into(),
                            who,
                            t["attempt"].as_u64().unwrap(),
                        ));
                    }
                }
            } else {
                i += 1;
            }
        }
        match next(14) {
            12 if polls.len() < 6 => {
                let app = h.app.clone();
                let path = format!("/api/workers/{w}/tasks?wait=0.0{}", 1 + next(5));
                let handle = tokio::spawn(async move { get_json(app, path).await["task"].clone() });
                polls.push((w.to_string(), handle));
                tokio::task::yield_now().await;
            }
            13 if !polls.is_empty() && next(4) == 0 => {
                // A worker that hangs up mid-poll.
                let (_, handle) = polls.swap_remove(next(polls.len() as u64) as usize);
                handle.abort();
                let _ = handle.await;
            }
            0 | 1 => {
                let model = models[next(2) as usize];
                let priority = 1 + next(10);
                let task = match next(4) {
                    0 => json!({"type": format!("custom-{}", next(3)), "priority": priority,
                                "data": {"min_memory_bytes": next(4) << 30}}),
                    1 => json!({"type": "agent_action", "priority": priority,
                                "data": {"model": model, "min_memory_bytes": (1 + next(4)) << 30}}),
                    _ => json!({"type": "agent_action", "priority": priority,
                                "data": {"model": model}}),
                };
                tasks.push(h.submit(task).await);
            }
            2..=4 => {
                let (s, v) = h
                    .call("GET", &format!("/api/workers/{w}/tasks"), None)
                    .await;
                if s == StatusCode::NOT_FOUND {
                    let model = models[next(2) as usize];
                    h.register(w, caps(next(3), model)).await;
                } else if !v["task"].is_null() {
                    let t = &v["task"];
                    held.push((
                        t["task_id"].as_str().unwrap().into(),
                        w.into(),
                        t["attempt"].as_u64().unwrap(),
                    ));
                }
            }
            5..=7 if !held.is_empty() => {
                let (id, holder, attempt) = held.swap_remove(next(held.len() as u64) as usize);
                // Sometimes the wrong worker, sometimes a duplicate.
                let who = if next(8) == 0 { w.to_string() } else { holder };
                let result = match next(4) {
                    0 => json!({"success": false, "retryable": true, "error": "busy"}),
                    1 => json!({"success": false, "error": "bad"}),
                    _ => json!({"success": true}),
                };
                let body = json!({"worker_id": who, "attempt": attempt, "result": result});
                let (s, _) = h
                    .call(
                        "POST",
                        &format!("/api/tasks/{id}/result"),
                        Some(body.clone()),
                    )
                    .await;
                assert!([200, 404, 409].contains(&s.as_u16()), "{s}");
                if next(5) == 0 {
                    h.call("POST", &format!("/api/tasks/{id}/result"), Some(body))
                        .await;
                }
            }
            8 => {
                let m = json!({"temperature_c": 40 + next(50), "models_loaded": [{"name": models[next(2) as usize]}]});
                h.call(
                    "POST",
                    &format!("/api/workers/{w}/heartbeat"),
                    Some(json!({"metrics": m})),
                )
                .await;
            }
            9 => h.advance(1.0 + next(4) as f64),
            10 if next(10) == 0 => {
                h.call("POST", &format!("/api/workers/{w}/unregister"), None)
                    .await;
            }
            11 if next(10) == 0 => {
                let _ = h.fleet.set_draining(w, next(2) == 0).await;
            }
            _ => {}
        }
        if let Err(e) = h.fleet.check_invariants() {
            panic!("step {step}: {e}");
        }
    }
    assert!(long_polled > 10, "long polls got only {long_polled} tasks");
    for (who, handle) in polls {
        if let Ok(t) = handle.await {
            if !t.is_null() {
                let id = t["task_id"].as_str().unwrap();
                h.result(id, &who, json!({"success": true})).await;
            }
        }
    }
    h.fleet.check_invariants().unwrap();
    // Let everything settle: cool, undrained, registered workers keep polling and succeeding.
    for w in workers {
        h.register(w, json!({"models": models, "slots": 2})).await;
        let _ = h.fleet.set_draining(w, false).await;
        h.heartbeat(w, json!({"temperature_c": 40.0})).await;
    }
    for _ in 0..2000 {
        let mut idle = true;
        for w in workers {
            let t = h.poll(w).await;
            if !t.is_null() {
                idle = false;
                let id = t["task_id"].as_str().unwrap();
                h.result(id, w, json!({"success": true})).await;
            }
        }
        if idle {
            let (_, stats) = h.call("GET", "/api/stats", None).await;
            if stats["tasks"]["pending"] == 0 && stats["tasks"]["assigned"] == 0 {
                break;
            }
            h.advance(13.0);
            for w in workers {
                h.heartbeat(w, json!({"temperature_c": 40.0})).await;
            }
        }
        h.fleet.check_invariants().unwrap();
    }
    for id in &tasks {
        let st = h.status(id).await;
        assert!(
            ["completed", "failed"].contains(&st["status"].as_str().unwrap()),
            "{st}"
        );
    }
}
