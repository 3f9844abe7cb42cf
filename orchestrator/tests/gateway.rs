//! The gateway through the real router: a test worker that speaks the stream contract
//! (poll, `POST /api/tasks/{id}/stream` with a chunked NDJSON body, result) stands in for
//! the agent, so each relay rule is checked chunk by chunk.

mod util;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::ServiceExt;
use util::Harness;

const MODEL: &str = "llama3.2:1b";

fn gateway_harness(f: impl FnOnce(&mut pifleet_orchestrator::config::RawConfig)) -> Harness {
    Harness::with(|raw| {
        raw.gateway_queue_timeout_s = Some(30.0);
        f(raw);
    })
}

async fn serving_node(h: &Harness, id: &str) {
    h.register(
        id,
        json!({"models": [MODEL], "task_types": ["ollama_api"], "slots": 1}),
    )
    .await;
}

/// A request running in the background; its response head is awaited by `head`.
struct Call {
    handle: tokio::task::JoinHandle<axum::response::Response>,
}

impl Call {
    fn start(h: &Harness, path: &str, body: Value, headers: &[(&str, &str)]) -> Call {
        let mut req = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let app = h.app.clone();
        Call {
            handle: tokio::spawn(async move { app.oneshot(req).await.unwrap() }),
        }
    }

    async fn head(self) -> axum::response::Response {
        tokio::time::timeout(Duration::from_secs(10), self.handle)
            .await
            .expect("response head in time")
            .unwrap()
    }
}

async fn json_of(resp: axum::response::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// The next piece of a streamed body, as text.
async fn next_text(body: &mut Body) -> Option<String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame in time")?
            .ok()?;
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8(data.to_vec()).unwrap());
        }
    }
}

async fn rest_text(body: &mut Body) -> String {
    let mut all = String::new();
    while let Some(t) = next_text(body).await {
        all.push_str(&t);
    }
    all
}

/// Polls until the worker gets a task.
async fn take(h: &Harness, worker: &str) -> Value {
    for _ in 0..500 {
        let t = h.poll(worker).await;
        if !t.is_null() {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{worker} got no task");
}

/// An agent's stream upload in progress.
struct Upload {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    response: tokio::task::JoinHandle<(StatusCode, Value)>,
}

impl Upload {
    fn open(h: &Harness, task: &Value, worker: &str) -> Upload {
        let id = task["task_id"].as_str().unwrap();
        let attempt = task["attempt"].as_u64().unwrap();
        let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let req = Request::builder()
            .method("POST")
            .uri(format!(
                "/api/tasks/{id}/stream?worker_id={worker}&attempt={attempt}"
            ))
            .header("content-type", "application/x-ndjson")
            .body(Body::from_stream(body))
            .unwrap();
        let app = h.app.clone();
        let response = tokio::spawn(async move { json_of(app.oneshot(req).await.unwrap()).await });
        Upload { tx, response }
    }

    async fn line(&self, v: Value) {
        let mut s = v.to_string();
        s.push('\n');
        let _ = self.tx.send(Ok(Bytes::from(s))).await;
    }

    async fn finish(self) -> (StatusCode, Value) {
        drop(self.tx);
        tokio::time::timeout(Duration::from_secs(10), self.response)
            .await
            .expect("stream answered")
            .unwrap()
    }

    /// The agent's connection dies mid-body.
    async fn die(self) {
        let _ = self
            .tx
            .send(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "agent killed",
            )))
            .await;
        drop(self.tx);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.response).await;
    }
}

fn chat_chunk(text: &str) -> Value {
    json!({"model": MODEL, "created_at": "2026-01-01T00:00:00Z",
           "message": {"role": "assistant", "content": text}, "done": false})
}

fn chat_done() -> Value {
    json!({"model": MODEL, "created_at": "2026-01-01T00:00:00Z",
           "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop",
           "total_duration": 5_000_000u64, "load_duration": 1_000_000u64,
           "prompt_eval_count": 4, "prompt_eval_duration": 1_000_000u64,
           "eval_count": 3, "eval_duration": 3_000_000u64})
}

fn chat_result(text: &str) -> Value {
    let mut response = chat_done();
    response["message"]["content"] = json!(text);
    json!({"success": true, "output": text, "response": response,
           "prompt_tokens": 4, "completion_tokens": 3})
}

fn user_chat(stream: bool) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": "Why is the sky blue?"}],
           "stream": stream, "max_tokens": 20, "temperature": 0.2, "seed": 7,
           "stream_options": {"include_usage": true}})
}

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
async fn chunks_reach_the_client_one_by_one_and_end_with_done() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/v1/chat/completions", user_chat(true), &[]);
    let task = take(&h, "pi-1").await;
    assert_eq!(task["data"]["stream"], true);
    let up = Upload::open(&h, &task, "pi-1");
    up.line(chat_chunk("The")).await;
    let resp = call.head().await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    let mut body = resp.into_body();
    // The first chunk is at the client while the node has sent nothing more.
    let first = next_text(&mut body).await.unwrap();
    assert!(first.contains("\"content\":\"The\""), "{first}");
    assert!(h.fleet.streams().streaming_on("pi-1").len() == 1);
    up.line(chat_chunk(" sky")).await;
    let second = next_text(&mut body).await.unwrap();
    assert!(second.contains("\"content\":\" sky\""), "{second}");
    up.line(chat_done()).await;
    let rest = rest_text(&mut body).await;
    assert!(rest.contains("\"finish_reason\":\"stop\""), "{rest}");
    assert!(rest.contains("\"total_tokens\":7"), "{rest}");
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    let (s, v) = up.finish().await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id = task["task_id"].as_str().unwrap();
    let (s, _) = h.result(id, "pi-1", chat_result("The sky")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.status(id).await["status"], "completed");
    let resp = h
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let text = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "pifleet_gateway_requests_total{api=\"openai\",endpoint=\"chat\",outcome=\"ok\"} 1",
        "pifleet_gateway_time_to_first_token_seconds_count{model=\"llama3.2:1b\"} 1",
        "pifleet_gateway_tokens_per_second_count{model=\"llama3.2:1b\"} 1",
        "pifleet_gateway_relayed_chunks_total 3",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
    }
}

#[tokio::test]
async fn ollama_generate_streams_ndjson_byte_for_byte() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(
        &h,
        "/api/generate",
        json!({"model": MODEL, "prompt": "Hi"}),
        &[],
    );
    let task = take(&h, "pi-1").await;
    assert_eq!(task["data"]["endpoint"], "generate");
    assert_eq!(
        task["data"]["request"]["stream"], true,
        "Ollama streams by default"
    );
    let up = Upload::open(&h, &task, "pi-1");
    let line = json!({"model": MODEL, "created_at": "t", "response": "Hello", "done": false});
    up.line(line.clone()).await;
    let resp = call.head().await;
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let mut body = resp.into_body();
    assert_eq!(next_text(&mut body).await.unwrap(), format!("{line}\n"));
    let done = json!({"model": MODEL, "created_at": "t", "response": "", "done": true,
                      "done_reason": "stop", "eval_count": 1, "eval_duration": 1000});
    up.line(done.clone()).await;
    assert_eq!(rest_text(&mut body).await, format!("{done}\n"));
    up.finish().await;
}

#[tokio::test]
async fn a_client_that_hangs_up_cancels_the_task_and_frees_the_node() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/api/chat", user_chat(true), &[]);
    let task = take(&h, "pi-1").await;
    let id = task["task_id"].as_str().unwrap().to_string();
    let up = Upload::open(&h, &task, "pi-1");
    up.line(chat_chunk("The")).await;
    let resp = call.head().await;
    let mut body = resp.into_body();
    next_text(&mut body).await.unwrap();
    drop(body);
    // The agent's upload is refused at once, before its body ends.
    let (s, v) = tokio::time::timeout(Duration::from_secs(5), up.response)
        .await
        .expect("409 before the body ends")
        .unwrap();
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let st = h.status(&id).await;
    assert_eq!(st["status"], "cancelled", "{st}");
    // Its late result is refused, and the node takes the next task.
    let (s, _) = h.result(&id, "pi-1", chat_result("The")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let next = h.submit(json!({"type": "ollama_api", "data": {"model": MODEL, "endpoint": "generate", "request": {"model": MODEL}}})).await;
    assert_eq!(take(&h, "pi-1").await["task_id"], next.as_str());
}

#[tokio::test]
async fn a_stream_that_breaks_before_its_first_chunk_runs_on_another_node() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/v1/chat/completions", user_chat(true), &[]);
    let task = take(&h, "pi-1").await;
    Upload::open(&h, &task, "pi-1").die().await;
    serving_node(&h, "pi-2").await;
    let again = take(&h, "pi-2").await;
    assert_eq!(again["task_id"], task["task_id"]);
    assert_eq!(again["attempt"], 2);
    let up = Upload::open(&h, &again, "pi-2");
    up.line(chat_chunk("Blue")).await;
    up.line(chat_done()).await;
    let all = rest_text(&mut call.head().await.into_body()).await;
    assert!(
        all.contains("\"content\":\"Blue\"") && all.ends_with("data: [DONE]\n\n"),
        "{all}"
    );
    up.finish().await;
}

#[tokio::test]
async fn a_chat_that_breaks_mid_stream_is_continued_from_the_partial_reply() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(&h, "/api/chat", user_chat(true), &[]);
    let task = take(&h, "pi-1").await;
    let (first, other) = ("pi-1", "pi-2");
    let up = Upload::open(&h, &task, first);
    up.line(chat_chunk("Rayleigh")).await;
    let mut body = call.head().await.into_body();
    assert!(next_text(&mut body).await.unwrap().contains("Rayleigh"));
    // The client keeps reading, as clients do; that is what drives the relay.
    let reader = tokio::spawn(async move { rest_text(&mut body).await });
    up.die().await;
    serving_node(&h, other).await;
    let cont = take(&h, other).await;
    assert_ne!(
        cont["task_id"], task["task_id"],
        "a new task continues the answer"
    );
    let msgs = cont["data"]["request"]["messages"].as_array().unwrap();
    assert_eq!(
        msgs.last().unwrap(),
        &json!({"role": "assistant", "content": "Rayleigh"})
    );
    let up2 = Upload::open(&h, &cont, other);
    up2.line(chat_chunk(" scattering")).await;
    up2.line(chat_done()).await;
    let rest = reader.await.unwrap();
    assert!(
        rest.contains(" scattering") && rest.contains("\"done\":true"),
        "{rest}"
    );
    up2.finish().await;
    let old = h.status(task["task_id"].as_str().unwrap()).await;
    assert_eq!(old["status"], "cancelled");
    assert!(
        old["error"].as_str().unwrap().contains("continued as task"),
        "{old}"
    );
}

#[tokio::test]
async fn a_generate_that_breaks_mid_stream_ends_with_an_explicit_error() {
    let h = gateway_harness(|_| {});
    serving_node(&h, "pi-1").await;
    let call = Call::start(
        &h,
        "/v1/completions",
        json!({"model": MODEL, "prompt": "Hi", "stream": true}),
        &[],
    );
    let task = take(&h, "pi-1").await;
    let up = Upload::open(&h, &task, "pi-1");
    up.line(json!({"model": MODEL, "response": "Hel", "done": false}))
        .await;
    let mut body = call.head().await.into_body();
    assert!(next_text(&mut body).await.unwrap().contains("Hel"));
    up.die().await;
    let rest = rest_text(&mut body).await;
    assert!(
        rest.contains("\"error\"") && rest.contains("incomplete"),
        "{rest}"
    );
    assert!(rest.ends_with("data: [DONE]\n\n"));
    assert!(
        !rest.contains("finish_reason\":\"stop"),
        "never looks complete: {rest}"
    );
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
