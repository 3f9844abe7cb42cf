//! The gateway through the real router: a test worker that speaks the stream contract
//! (poll, `POST /api/tasks/{id}/stream` with a chunked NDJSON body, result) stands in for
//! the agent, so each relay rule is checked chunk by chunk.

#[path = "../util/mod.rs"]
mod util;

mod requests;
mod streams;

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
