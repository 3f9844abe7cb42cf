//! What a test can switch on in a running double: the reply, the models, failures,
//! delays and speed, and what it can read back (counts, recorded requests); the same over
//! HTTP on the test-only routes `/test/stats` and `/test/config`.

use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::respond;
use super::{FakeModel, FakeOllama, Recorded, State};

impl FakeOllama {
    /// The text every generation streams, one word per chunk.
    pub fn set_reply(&self, text: &str) {
        self.state().reply = text.to_string();
    }

    /// Replaces the pulled models (as `ollama pull` / `ollama rm` would).
    pub fn set_models(&self, models: Vec<FakeModel>) {
        self.state().models = models;
    }

    /// Every `/api/pull` fails with this message (as Ollama says it), or pulls again (None).
    pub fn fail_pulls(&self, message: Option<&str>) {
        self.state().pull_error = message.map(str::to_string);
    }

    /// The pause between a pull's progress lines (a slower or faster download).
    pub fn pull_step(&self, step: Duration) {
        self.state().pull_step = step;
    }

    /// Pulls that finished with `success`.
    pub fn pulls_completed(&self) -> u64 {
        self.state().pulls_completed
    }

    /// `/api/pull` requests received so far.
    pub fn pulls(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/api/pull")
            .collect()
    }

    /// The next `n` generation requests answer 503 "server busy".
    pub fn busy_next(&self, n: u32) {
        self.state().busy_next = n;
    }

    /// Every generation sends this `{"error": ...}` line after its first token.
    pub fn fail_mid_stream(&self, message: Option<&str>) {
        self.state().fail_mid_stream = message.map(str::to_string);
    }

    /// Stall before the response head, as a cold model load does.
    pub fn delay_first_token(&self, delay: Duration) {
        self.state().first_token_delay = delay;
    }

    /// Pause between streamed tokens.
    pub fn token_delay(&self, delay: Duration) {
        self.state().token_delay = delay;
    }

    /// Reports prompt and generation durations as a board `factor` times faster would.
    pub fn set_speed(&self, factor: f64) {
        self.state().speed = factor;
    }

    /// Every generation streams `n` tokens (`tok1 tok2 …`), replacing the reply text.
    pub fn set_tokens(&self, n: usize) {
        self.state().reply = numbered_tokens(n);
    }

    /// Streamed generations running right now.
    pub fn active(&self) -> u64 {
        self.state().active
    }

    /// Streamed generations that sent their final object.
    pub fn completed(&self) -> u64 {
        self.state().completed
    }

    /// Streamed generations stopped because the client closed the connection early.
    pub fn aborted(&self) -> u64 {
        self.state().aborted
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Generation requests (`/api/chat`, `/api/generate`) received so far.
    pub fn generations(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/api/chat" || r.path == "/api/generate")
            .collect()
    }
}

pub(super) fn numbered_tokens(n: usize) -> String {
    (1..=n)
        .map(|i| format!("tok{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `GET /test/stats`.
pub(super) fn stats(conn: &mut TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    let stats = json!({"active": st.active, "completed": st.completed, "aborted": st.aborted});
    drop(st);
    respond(conn, 200, &stats)
}

/// `POST /test/config`.
pub(super) fn configure(
    conn: &mut TcpStream,
    state: &Mutex<State>,
    body: &Value,
) -> std::io::Result<()> {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let ms = |k: &str| {
        body.get(k)
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
    };
    if let Some(d) = ms("token_delay_ms") {
        st.token_delay = d;
    }
    if let Some(d) = ms("first_token_delay_ms") {
        st.first_token_delay = d;
    }
    if let Some(n) = body.get("tokens").and_then(Value::as_u64) {
        st.reply = numbered_tokens(n as usize);
    }
    if let Some(r) = body.get("reply").and_then(Value::as_str) {
        st.reply = r.to_string();
    }
    drop(st);
    respond(conn, 200, &json!({"status": "ok"}))
}
