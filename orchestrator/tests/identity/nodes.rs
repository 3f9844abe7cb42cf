//! Node identity: stolen-credential impersonations refused, seed-protocol workers on the
//! shared token, forgotten nodes, credentials kept across a restart.

use super::*;

#[tokio::test]
async fn the_four_impersonations_are_refused_and_the_real_nodes_are_unaffected() {
    let s = start();
    let a = s.join("w-a").await;
    let b = s.join("w-b").await;
    let t1 = s
        .submit(CLIENT, json!({"type": "code_generation", "data": {}}))
        .await;
    assert_eq!(s.poll("w-a", &a).await["task_id"], t1);
    let t2 = s
        .submit(CLIENT, json!({"type": "code_generation", "data": {}}))
        .await;
    assert_eq!(s.poll("w-b", &b).await["task_id"], t2);

    // 1. w-b heartbeats as w-a: with its own credential, or with the join token.
    for token in [&b, JOIN] {
        let r = s
            .call("POST", "/api/workers/w-a/heartbeat", Some(token), None)
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    // 2. w-b re-registers the id w-a with other capabilities.
    for token in [&b, JOIN] {
        let r = s
            .call(
                "POST",
                "/api/workers/register",
                Some(token),
                Some(json!({"worker_id": "w-a", "worker_type": "x", "capabilities": {"models": ["evil"]}})),
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    // 3. w-b posts a forged result for w-a's task: 403 in w-a's name, 409 in its own.
    let forged = json!({"output": "forged by w-b", "success": true});
    for token in [&b, JOIN] {
        let r = s
            .call(
                "POST",
                &format!("/api/tasks/{t1}/result"),
                Some(token),
                Some(json!({"worker_id": "w-a", "result": forged})),
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
    }
    let r = s
        .call(
            "POST",
            &format!("/api/tasks/{t1}/result"),
            Some(&b),
            Some(json!({"worker_id": "w-b", "result": forged})),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    // 4. w-a unregisters w-b while w-b holds a task.
    for token in [&a, JOIN] {
        let r = s
            .call("POST", "/api/workers/w-b/unregister", Some(token), None)
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(error_of(&r).contains("w-b"), "{}", r.body);
    }

    // The real nodes: both still hold their tasks and report them.
    for (id, cred, task) in [("w-a", &a, &t1), ("w-b", &b, &t2)] {
        let r = s
            .call(
                "POST",
                &format!("/api/workers/{id}/heartbeat"),
                Some(cred),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = s
            .call(
                "POST",
                &format!("/api/tasks/{task}/result"),
                Some(cred),
                Some(json!({"worker_id": id, "result": {"output": format!("by {id}"), "success": true}})),
            )
            .await;
        assert_eq!(
            (r.status, r.body["status"].as_str()),
            (200, Some("received"))
        );
        let st = s
            .call(
                "GET",
                &format!("/api/tasks/status/{task}"),
                Some(CLIENT),
                None,
            )
            .await;
        assert_eq!(st.body["status"], "completed");
        assert_eq!(st.body["result"]["output"], format!("by {id}"));
    }
    let nodes = s.call("GET", "/api/workers/list", Some(CLIENT), None).await;
    assert!(nodes.body.to_string().contains("w-b"), "{}", nodes.body);
    // A node's own credential re-registers it, and gets no second one.
    let r = s
        .call(
            "POST",
            "/api/workers/register",
            Some(&a),
            Some(json!({"worker_id": "w-a", "worker_type": "pifleet-agent", "capabilities": {}, "want_credential": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("credential").is_none(), "{}", r.body);
    // A credential survives a restart? It lives in the database: see the forget test.
    let log = s.log();
    for secret in [a.as_str(), b.as_str(), JOIN, CLIENT] {
        assert!(!log.contains(secret), "a secret is in the log");
    }
}

#[tokio::test]
async fn a_seed_protocol_worker_keeps_working_with_the_shared_token() {
    let s = start();
    // The seed's worker: no want_credential, the shared token, any case of "Bearer".
    let r = s
        .call(
            "POST",
            "/api/workers/register",
            Some(JOIN),
            Some(json!({"worker_id": "seed-1", "worker_type": "llm", "capabilities": {"models": ["llama3.2:1b"]}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("credential").is_none(), "{}", r.body);
    let task = s
        .submit(CLIENT, json!({"type": "evolution_crossover", "data": {}}))
        .await;
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            hyper::Request::post("/api/workers/seed-1/heartbeat")
                .header("host", s.addr.to_string())
                .header("authorization", format!("bearer {JOIN}"))
                .body(http_body_util::Full::new(hyper::body::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "lower-case bearer scheme");
    assert_eq!(s.poll("seed-1", JOIN).await["task_id"], task);
    let r = s
        .call(
            "POST",
            &format!("/api/tasks/{task}/result"),
            Some(JOIN),
            Some(json!({"worker_id": "seed-1", "result": {"output": "child", "success": true}})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("received"))
    );
    let r = s
        .call("POST", "/api/workers/seed-1/unregister", Some(JOIN), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The join token is still only the worker token.
    let r = s.call("GET", "/api/stats", Some(JOIN), None).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = s
        .call("POST", "/api/workers/seed-1/heartbeat", Some("nope"), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn a_forgotten_node_is_refused_at_once_and_may_join_again_with_the_join_token() {
    let s = start();
    let a = s.join("w-a").await;
    let task = s
        .submit(CLIENT, json!({"type": "code_generation", "data": {}}))
        .await;
    assert_eq!(s.poll("w-a", &a).await["task_id"], task);

    // Forgotten from the command line, beside the running server.
    let (code, out, err) = s.cli(&["nodes", "forget", "w-a"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dropped its credential"), "{out}");
    let r = s
        .call("POST", "/api/workers/w-a/heartbeat", Some(&a), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(error_of(&r).contains("forgotten"), "{}", r.body);
    assert!(error_of(&r).contains("join token"), "{}", r.body);
    // Its task went back to the queue.
    let st = s
        .call(
            "GET",
            &format!("/api/tasks/status/{task}"),
            Some(CLIENT),
            None,
        )
        .await;
    assert_eq!(st.body["status"], "pending", "{}", st.body);
    let (code, _, err) = s.cli(&["nodes", "forget", "no-such-node"]);
    assert_eq!(code, 1);
    assert!(err.contains("no node \"no-such-node\""), "{err}");

    // Re-joining needs the join token, and gives a new credential.
    let a2 = s.join("w-a").await;
    assert_ne!(a, a2);
    assert_eq!(s.poll("w-a", &a2).await["task_id"], task);

    // The admin API forgets too; a read key may not.
    let reader = s.add_key("viewer", &["--role", "read"]);
    let r = s
        .call("POST", "/api/nodes/w-a/forget", Some(&reader), None)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = s
        .call("POST", "/api/nodes/w-a/forget", Some(CLIENT), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["had_credential"], true);
    assert_eq!(r.body["requeued"], json!([task]));
    let r = s
        .call("POST", "/api/nodes/w-a/forget", Some(CLIENT), None)
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = s
        .call("GET", "/api/workers/w-a/tasks", Some(&a2), None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn credentials_survive_a_restart_of_the_orchestrator() {
    let mut s = start();
    let a = s.join("w-a").await;
    let _ = s.child.kill();
    let _ = s.child.wait();
    // Same database, new process.
    let db = s.db();
    let mut cmd = bin();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("PIFLEET_LOG", "info")
        .env("PIFLEET_WORKER_TOKEN", JOIN)
        .env("PIFLEET_CLIENT_TOKEN", CLIENT)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("addr=").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let addr: SocketAddr = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .parse()
        .unwrap();
    s.child = child;
    s.addr = addr;
    let r = s
        .call("POST", "/api/workers/w-a/heartbeat", Some(&a), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .call(
            "POST",
            "/api/workers/register",
            Some(JOIN),
            Some(json!({"worker_id": "w-a", "worker_type": "llm", "capabilities": {}})),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}
