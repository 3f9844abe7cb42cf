//! Gateway requests answered whole: models and tags, errors in each API's shape, which
//! token is the API key, non-streaming chat, 503 when no node takes a request, priority over
//! a batch backlog, and the dedicated listener.

use super::*;

#[tokio::test]
async fn models_tags_and_errors_in_each_api_shape() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    // A seed worker's models are not the gateway's: it cannot run ollama_api.
    h.register("seed", json!({"models": ["seed-only:7b"]}))
        .await;
    let (s, tags) = h.call("GET", "/api/tags", None).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec![MODEL]);
    let (_, models) = h.call("GET", "/v1/models", None).await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL);

    let (s, e) = json_of(
        Call::start(
            &h,
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
            &[],
        )
        .head()
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], "model_not_found", "{e}");
    let (s, e) = json_of(
        Call::start(&h, "/api/chat", json!({"model": "nope"}), &[])
            .head()
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("model \"nope\" not found"),
        "{e}"
    );
    let (s, e) = json_of(
        Call::start(&h, "/v1/chat/completions", json!({"model": MODEL}), &[])
            .head()
            .await,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("messages:"),
        "{e}"
    );
    let (s, _) = h.raw("POST", "/api/generate", "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Nothing was queued for any of them.
    assert_eq!(h.fleet.stats().tasks.total, 0);
}

#[tokio::test]
async fn the_api_key_is_the_client_token_never_the_worker_token() {
    let (wt, ct) = ("w".repeat(24), "c".repeat(24));
    let (w2, c2) = (wt.clone(), ct.clone());
    let h = gateway_harness(move |raw| {
        raw.worker_token = Some(w2);
        raw.client_token = Some(c2);
    });
    let get = |token: &str| {
        Request::builder()
            .uri("/v1/models")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (s, e) = h.send(get(&wt)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(e["error"]["code"], "invalid_api_key", "{e}");
    let (s, _) = h.send(get(&ct)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = h
        .send(
            Request::builder()
                .uri("/api/tags")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(e["error"].is_string(), "Ollama's shape: {e}");
}

#[tokio::test]
async fn non_streaming_chat_maps_options_and_answers_with_usage() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/v1/chat/completions", user_chat(false), &[]);
    let task = take(&h, "pi-1").await;
    assert_eq!(task["type"], "ollama_api");
    assert_eq!(task["priority"], 8, "gateway_priority's default");
    let d = &task["data"];
    assert_eq!(d["endpoint"], "chat");
    assert_eq!(d["stream"], false);
    assert_eq!(d["request"]["options"]["num_predict"], 20);
    assert_eq!(d["request"]["options"]["seed"], 7);
    assert_eq!(
        d["request"]["messages"][0]["content"],
        "Why is the sky blue?"
    );
    let id = task["task_id"].as_str().unwrap();
    let (s, _) = h.result(id, "pi-1", chat_result("Rayleigh.")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = json_of(call.head().await).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "Rayleigh.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 7);
    assert_eq!(h.status(id).await["status"], "completed");
}

#[tokio::test]
async fn a_request_no_node_takes_in_time_gets_503_with_retry_after() {
    let h = gateway_harness(|raw| raw.gateway_queue_timeout_s = Some(0.3));
    serving_node(&h, "pi-1").await;
    // pi-1 is busy with batch work and never polls again.
    h.submit(json!({"type": "ollama_api", "data": {"model": MODEL, "endpoint": "generate", "request": {}}})).await;
    take(&h, "pi-1").await;
    let resp = Call::start(&h, "/v1/chat/completions", user_chat(true), &[])
        .head()
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let (_, e) = json_of(resp).await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no node took"),
        "{e}"
    );
    let q = h.fleet.queue(10);
    assert!(q.pending.is_empty(), "the request left the queue: {q:?}");
}

#[tokio::test]
async fn a_gateway_request_goes_ahead_of_a_batch_backlog() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    for _ in 0..5 {
        h.submit(json!({"type": "ollama_api", "priority": 5, "data": {"model": MODEL, "endpoint": "generate", "request": {}}})).await;
    }
    let busy = take(&h, "pi-1").await;
    let call = Call::start(
        &h,
        "/api/generate",
        json!({"model": MODEL, "prompt": "Hi", "stream": false}),
        &[],
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = busy["task_id"].as_str().unwrap();
    h.result(
        id,
        "pi-1",
        json!({"success": true, "response": {"response": "x", "done": true}}),
    )
    .await;
    let next = take(&h, "pi-1").await;
    assert_eq!(next["priority"], 8);
    assert_eq!(next["data"]["request"]["prompt"], "Hi");
    let nid = next["task_id"].as_str().unwrap();
    h.result(
        nid,
        "pi-1",
        json!({"success": true, "response": {"model": MODEL, "response": "Hello", "done": true}}),
    )
    .await;
    let (s, v) = json_of(call.head().await).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["response"], "Hello");
    // And the header can ask for less.
    let call = Call::start(
        &h,
        "/api/generate",
        json!({"model": MODEL, "prompt": "Lo", "stream": false}),
        &[("x-pifleet-priority", "2")],
    );
    let t = take(&h, "pi-1").await;
    assert_eq!(t["priority"], 5, "the batch backlog first");
    drop(call);
}

#[tokio::test]
async fn the_dedicated_listener_answers_like_ollama() {
    let config = pifleet_orchestrator::config::Config::from_raw(util::test_raw(), None).unwrap();
    let orch = pifleet_orchestrator::Orchestrator::open(
        &config,
        Box::new(pifleet_orchestrator::store::MemoryStore::new()),
        std::sync::Arc::new(pifleet_orchestrator::clock::ManualClock::default()),
    )
    .unwrap();
    let app = pifleet_orchestrator::gateway::listener_app(orch.state.clone());
    let get = |uri: &str, method: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap()
    };
    let resp = app.clone().oneshot(get("/", "GET")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&b[..], b"Ollama is running");
    let resp = app.clone().oneshot(get("/", "HEAD")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (s, tags) = json_of(app.clone().oneshot(get("/api/tags", "GET")).await.unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(tags, json!({"models": []}), "no node yet");
    // Only the gateway: the pifleet API is not on this port.
    let resp = app.oneshot(get("/api/stats", "GET")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
