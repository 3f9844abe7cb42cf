//! Helpers shared by the API tests: an orchestrator on a manual clock driven through
//! `app().oneshot()`, and a tiny HTTP client for tests that use a real socket.

#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use pifleet_orchestrator::clock::ManualClock;
use pifleet_orchestrator::config::{Config, RawConfig};
use pifleet_orchestrator::store::{BodyReader, MemoryStore, Mutation, Snapshot, Store, StoreError};
use pifleet_orchestrator::{Fleet, Orchestrator};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A memory store whose commits can be held back: while the gate is closed, the store
/// thread waits before applying, so nothing queued meanwhile is acknowledged.
pub struct GatedStore {
    inner: MemoryStore,
    gate: Gate,
}

/// Opens and closes a [`GatedStore`] from the test.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn close(&self) {
        *self.0 .0.lock().unwrap() = true;
    }

    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = false;
        self.0 .1.notify_all();
    }
}

impl GatedStore {
    pub fn new() -> (Self, Gate) {
        let gate = Gate::default();
        let store = GatedStore {
            inner: MemoryStore::new(),
            gate: gate.clone(),
        };
        (store, gate)
    }
}

impl Store for GatedStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }

    fn apply(&mut self, batch: &[Mutation]) -> Result<(), StoreError> {
        let (closed, cv) = &*self.gate.0;
        let mut closed = closed.lock().unwrap();
        while *closed {
            closed = cv.wait(closed).unwrap();
        }
        self.inner.apply(batch)
    }

    fn body_reader(&self) -> Option<Arc<dyn BodyReader>> {
        self.inner.body_reader()
    }
}

/// Settings that make tests fast: no retry backoff, short waits.
pub fn test_raw() -> RawConfig {
    RawConfig {
        retry_backoff_s: Some(0.0),
        retry_backoff_max_s: Some(0.0),
        heartbeat_interval_s: Some(10.0),
        max_wait_s: Some(5.0),
        ..Default::default()
    }
}

pub struct Harness {
    pub app: Router,
    pub fleet: Fleet,
    pub clock: ManualClock,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(f: impl FnOnce(&mut RawConfig)) -> Self {
        Self::with_store(f, Box::new(MemoryStore::new()))
    }

    pub fn with_store(f: impl FnOnce(&mut RawConfig), store: Box<dyn Store>) -> Self {
        let mut raw = test_raw();
        f(&mut raw);
        let config = Config::from_raw(raw, None).expect("test config is valid");
        let clock = ManualClock::default();
        let orch =
            Orchestrator::open(&config, store, Arc::new(clock.clone())).expect("open orchestrator");
        Harness {
            app: orch.router(),
            fleet: orch.fleet().clone(),
            clock,
        }
    }

    /// Moves time and runs the housekeeping the server would run.
    pub fn advance(&self, secs: f64) {
        self.clock.advance(secs);
        self.fleet.tick();
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self
            .app
            .clone()
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            assert!(
                ct.starts_with("application/json"),
                "non-JSON response {status}: {ct}: {bytes:?}"
            );
            serde_json::from_slice(&bytes).expect("response is JSON")
        };
        (status, value)
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(body.into())
            .expect("request");
        self.send(req).await
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.raw(method, path, body).await
    }

    pub async fn register(&self, id: &str, caps: Value) {
        let (s, v) = self
            .call(
                "POST",
                "/api/workers/register",
                Some(json!({"worker_id": id, "worker_type": "test", "capabilities": caps})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    pub async fn heartbeat(&self, id: &str, metrics: Value) {
        let (s, v) = self
            .call(
                "POST",
                &format!("/api/workers/{id}/heartbeat"),
                Some(json!({"metrics": metrics})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }

    /// Submits; a body without `data` gets `{}` (the seed requires the field, tests that
    /// do not care about the input leave it out).
    pub async fn submit(&self, mut body: Value) -> String {
        if let Some(obj) = body.as_object_mut() {
            obj.entry("data").or_insert_with(|| json!({}));
        }
        let (s, v) = self.call("POST", "/api/tasks/submit", Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["task_id"].as_str().expect("task_id").to_string()
    }

    /// A poll without waiting: the seed's poll.
    pub async fn poll(&self, id: &str) -> Value {
        let (s, v) = self
            .call("GET", &format!("/api/workers/{id}/tasks"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["task"].clone()
    }

    /// Starts a long poll in the background and returns once the node is waiting.
    pub async fn wait_poll(&self, id: &str, secs: f64) -> tokio::task::JoinHandle<Value> {
        let app = self.app.clone();
        let path = format!("/api/workers/{id}/tasks?wait={secs}");
        let handle = tokio::spawn(async move { get_json(app, path).await["task"].clone() });
        for _ in 0..500 {
            if self.fleet.is_waiting(id) {
                return handle;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!("{id} never started waiting");
    }

    pub async fn result(&self, task: &str, worker: &str, result: Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/api/tasks/{task}/result"),
            Some(json!({"worker_id": worker, "result": result})),
        )
        .await
    }

    pub async fn status(&self, task: &str) -> Value {
        let (s, v) = self
            .call("GET", &format!("/api/tasks/status/{task}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v
    }
}

/// One HTTP/1.1 request over a fresh loopback connection.
/// `GET path` on the router, its JSON body: for requests spawned to run beside the test
/// (long polls, status waits), which cannot borrow the harness.
pub async fn get_json(app: Router, path: String) -> Value {
    let req = Request::builder()
        .uri(path)
        .body(Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("router");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("json")
}

pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    use hyper_util::rt::TokioIo;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(axum::body::Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json")
    };
    (status, v)
}
