//! A faithful Ollama test double, written from Ollama's documented HTTP API (`docs/api.md`).
//!
//! It serves `GET /`, `GET /api/version`, `GET /api/tags`, `GET /api/ps`, and the streaming
//! `POST /api/chat` and `POST /api/generate`: NDJSON lines (`application/x-ndjson`, chunked)
//! of `{"model","created_at","message"|"response","done":false}` and a final object with
//! `done: true`, `done_reason` and the statistics (`total_duration`, `load_duration`,
//! `prompt_eval_count`, `prompt_eval_duration`, `eval_count`, `eval_duration`, all durations in
//! nanoseconds). `"stream": false` gets one object. Like the real server it writes no
//! headers until the first token exists, so a slow model load is a slow response head.
//!
//! Failure modes a test can switch on: an unknown model answers 404
//! `{"error":"model \"x\" not found, try pulling it first"}`; [`FakeOllama::busy_next`]
//! makes the next requests answer 503 `{"error":"server busy, please try again.  maximum
//! pending requests exceeded"}`; [`FakeOllama::fail_mid_stream`] sends an `{"error": ...}`
//! line after the first token; [`FakeOllama::delay_first_token`] stalls before the head;
//! [`FakeOllama::token_delay`] and [`FakeOllama::set_tokens`] make a generation long
//! enough for a test to see its first chunk arrive while it still runs.
//!
//! `POST /api/pull` streams its progress and then lists the model (see `pull.rs`);
//! [`FakeOllama::fail_pulls`] makes it fail with Ollama's message.
//!
//! It also serves `POST /api/embed` (a deterministic vector per input) and `POST
//! /api/show` (the model's details, `model_info`, `capabilities`). A streamed generation
//! watches its connection, also while it stalls before the head: when the client closes it
//! early the double stops generating and counts an aborted generation, as the real server
//! cancels its request. Test-only
//! routes, for tests that run the double as a process: `GET /test/stats`
//! (`{"active","completed","aborted"}`) and `POST /test/config` (`{"token_delay_ms",
//! "tokens", "reply", "first_token_delay_ms"}`, each optional).
//!
//! A plain `std::net` server with a thread per connection: test-only, no dependencies.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use http::{read_request, respond};

mod embed;
mod generate;
mod http;
mod knobs;
mod models;
mod pull;
#[cfg(test)]
mod tests;

/// A model the double pretends to have pulled.
#[derive(Debug, Clone)]
pub struct FakeModel {
    pub name: String,
    pub size: u64,
    pub family: String,
    pub parameter_size: String,
    pub quantization_level: String,
}

impl FakeModel {
    /// A small llama-family model, the kind a Pi runs.
    pub fn small(name: &str) -> FakeModel {
        FakeModel {
            name: name.to_string(),
            size: 1_321_098_329,
            family: "llama".to_string(),
            parameter_size: "1.2B".to_string(),
            quantization_level: "Q4_K_M".to_string(),
        }
    }
}

/// One request the double received, for assertions.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Debug)]
struct State {
    models: Vec<FakeModel>,
    loaded: Vec<String>,
    reply: String,
    busy_next: u32,
    fail_mid_stream: Option<String>,
    first_token_delay: Duration,
    token_delay: Duration,
    /// Reported durations are divided by this (a faster or slower board).
    speed: f64,
    requests: Vec<Recorded>,
    /// Streamed generations running now, finished, and stopped by a closed connection.
    active: u64,
    completed: u64,
    aborted: u64,
    /// `/api/pull` answers with this `{"error": ...}` instead of pulling.
    pull_error: Option<String>,
    /// Pause between a pull's progress lines.
    pull_step: Duration,
    pulls_completed: u64,
}

/// A running double on a free loopback port; stops when dropped.
pub struct FakeOllama {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeOllama {
    /// Starts on `127.0.0.1:0` with these models pulled.
    pub fn start(models: Vec<FakeModel>) -> std::io::Result<FakeOllama> {
        FakeOllama::start_on("127.0.0.1:0", models)
    }

    pub fn start_on(listen: &str, models: Vec<FakeModel>) -> std::io::Result<FakeOllama> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            models,
            loaded: Vec::new(),
            reply: "The sky is blue because of Rayleigh scattering.".to_string(),
            busy_next: 0,
            fail_mid_stream: None,
            first_token_delay: Duration::ZERO,
            token_delay: Duration::ZERO,
            speed: 1.0,
            requests: Vec::new(),
            active: 0,
            completed: 0,
            aborted: 0,
            pull_error: None,
            pull_step: pull::DEFAULT_STEP,
            pulls_completed: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        Ok(FakeOllama { addr, state, stop })
    }

    /// `http://127.0.0.1:PORT`, what an agent's `ollama_url` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let Some(req) = read_request(&conn)? else {
        return Ok(());
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    lock().requests.push(Recorded {
        method: req.method.clone(),
        path: req.path.clone(),
        body: body.clone(),
    });
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/") | ("HEAD", "/") => {
            let text = "Ollama is running";
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            )
        }
        ("GET", "/api/version") => respond(&mut conn, 200, &json!({"version": "0.5.7"})),
        ("GET", "/api/tags") => models::tags(&mut conn, state),
        ("GET", "/api/ps") => models::ps(&mut conn, state),
        ("POST", "/api/chat") | ("POST", "/api/generate") => {
            generate::generate(&mut conn, state, &req.path, &body)
        }
        ("POST", "/api/pull") => pull::pull(&mut conn, state, &body),
        ("POST", "/api/embed") => embed::embed(&mut conn, state, &body),
        ("POST", "/api/show") => models::show(&mut conn, state, &body),
        ("GET", "/test/stats") => knobs::stats(&mut conn, state),
        ("POST", "/test/config") => knobs::configure(&mut conn, state, &body),
        _ => respond(&mut conn, 404, &json!({"error": "404 page not found"})),
    }
}
