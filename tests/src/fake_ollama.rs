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
//! watches its connection: when the client closes it early the double stops generating
//! and counts an aborted generation, as the real server cancels its request. Test-only
//! routes, for tests that run the double as a process: `GET /test/stats`
//! (`{"active","completed","aborted"}`) and `POST /test/config` (`{"token_delay_ms",
//! "tokens", "reply", "first_token_delay_ms"}`, each optional).
//!
//! A plain `std::net` server with a thread per connection: test-only, no dependencies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

mod pull;

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

impl Drop for FakeOllama {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn numbered_tokens(n: usize) -> String {
    (1..=n)
        .map(|i| format!("tok{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn now_rfc3339() -> String {
    // Ollama prints local time with nanoseconds; a fixed UTC shape is as parseable.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000000000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil, so the double needs no date crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(conn: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    Ok(Some(Request { method, path, body }))
}

fn respond(conn: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let text = body.to_string();
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    conn.flush()
}

fn chunk(conn: &mut TcpStream, line: &Value) -> std::io::Result<()> {
    let mut text = line.to_string();
    text.push('\n');
    // One write per chunk, as a real server's buffered writer sends it: a client that
    // closes on reading the line must not find the chunk's own CRLF still unsent.
    conn.write_all(format!("{:x}\r\n{text}\r\n", text.len()).as_bytes())?;
    conn.flush()
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
        ("GET", "/api/tags") => {
            let models: Vec<Value> = lock()
                .models
                .iter()
                .map(|m| {
                    json!({
                        "name": m.name, "model": m.name,
                        "modified_at": "2025-01-12T10:21:49.123456789Z",
                        "size": m.size,
                        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                        "details": {
                            "parent_model": "", "format": "gguf", "family": m.family,
                            "families": [m.family], "parameter_size": m.parameter_size,
                            "quantization_level": m.quantization_level
                        }
                    })
                })
                .collect();
            respond(&mut conn, 200, &json!({ "models": models }))
        }
        ("GET", "/api/ps") => {
            let st = lock();
            let models: Vec<Value> = st
                .loaded
                .iter()
                .filter_map(|name| st.models.iter().find(|m| &m.name == name))
                .map(|m| {
                    json!({
                        "name": m.name, "model": m.name, "size": m.size + 400_000_000,
                        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                        "details": {"parent_model": "", "format": "gguf", "family": m.family,
                            "families": [m.family], "parameter_size": m.parameter_size,
                            "quantization_level": m.quantization_level},
                        "expires_at": "2099-01-01T00:05:00.000000000Z",
                        "size_vram": 0
                    })
                })
                .collect();
            drop(st);
            respond(&mut conn, 200, &json!({ "models": models }))
        }
        ("POST", "/api/chat") | ("POST", "/api/generate") => {
            generate(&mut conn, state, &req.path, &body)
        }
        ("POST", "/api/pull") => pull::pull(&mut conn, state, &body),
        ("POST", "/api/embed") => embed(&mut conn, state, &body),
        ("POST", "/api/show") => show(&mut conn, state, &body),
        ("GET", "/test/stats") => {
            let st = lock();
            let stats =
                json!({"active": st.active, "completed": st.completed, "aborted": st.aborted});
            drop(st);
            respond(&mut conn, 200, &stats)
        }
        ("POST", "/test/config") => {
            let mut st = lock();
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
            respond(&mut conn, 200, &json!({"status": "ok"}))
        }
        _ => respond(&mut conn, 404, &json!({"error": "404 page not found"})),
    }
}

fn generate(
    conn: &mut TcpStream,
    state: &Mutex<State>,
    path: &str,
    body: &Value,
) -> std::io::Result<()> {
    let chat = path == "/api/chat";
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if model.is_empty() {
        return respond(conn, 400, &json!({"error": "model is required"}));
    }
    let (reply, fail, first_delay, token_delay, speed) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.models.iter().any(|m| m.name == model) {
            drop(st);
            let msg = format!("model \"{model}\" not found, try pulling it first");
            return respond(conn, 404, &json!({ "error": msg }));
        }
        if st.busy_next > 0 {
            st.busy_next -= 1;
            drop(st);
            return respond(
                conn,
                503,
                &json!({"error": "server busy, please try again.  maximum pending requests exceeded"}),
            );
        }
        if !st.loaded.iter().any(|m| m == model) {
            st.loaded.push(model.to_string());
        }
        (
            st.reply.clone(),
            st.fail_mid_stream.clone(),
            st.first_token_delay,
            st.token_delay,
            st.speed,
        )
    };
    let prompt_words = if chat {
        body.get("messages")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .filter_map(|m| m.get("content").and_then(Value::as_str))
                    .map(|c| c.split_whitespace().count())
                    .sum::<usize>()
            })
            .unwrap_or(0)
    } else {
        body.get("prompt")
            .and_then(Value::as_str)
            .map(|p| p.split_whitespace().count())
            .unwrap_or(0)
    };
    thread::sleep(first_delay);
    let tokens: Vec<String> = reply.split_inclusive(' ').map(str::to_string).collect();
    let eval_count = tokens.len() as u64;
    let piece = |text: &str, done: bool| -> Value {
        let mut v = json!({"model": model, "created_at": now_rfc3339()});
        if chat {
            v["message"] = json!({"role": "assistant", "content": text});
        } else {
            v["response"] = json!(text);
        }
        v["done"] = json!(done);
        v
    };
    let mut final_obj = piece("", true);
    final_obj["done_reason"] = json!("stop");
    if !chat {
        final_obj["context"] = json!([1, 2, 3]);
    }
    let eval_duration = (50_000_000.0 * eval_count.max(1) as f64 / speed) as u64;
    let prompt_eval_duration = (70_000_000.0 / speed) as u64;
    final_obj["total_duration"] = json!(eval_duration + prompt_eval_duration + 80_000_000);
    final_obj["load_duration"] = json!(80_000_000u64);
    final_obj["prompt_eval_count"] = json!(prompt_words as u64 + 8);
    final_obj["prompt_eval_duration"] = json!(prompt_eval_duration);
    final_obj["eval_count"] = json!(eval_count);
    final_obj["eval_duration"] = json!(eval_duration);

    if body.get("stream") == Some(&Value::Bool(false)) {
        if let Some(msg) = fail {
            return respond(conn, 500, &json!({ "error": msg }));
        }
        let all = piece(&reply, true);
        let mut merged = final_obj;
        if chat {
            merged["message"] = all["message"].clone();
        } else {
            merged["response"] = all["response"].clone();
        }
        return respond(conn, 200, &merged);
    }
    let count = |f: fn(&mut State)| f(&mut state.lock().unwrap_or_else(|e| e.into_inner()));
    count(|st| st.active += 1);
    let streamed = stream_tokens(conn, &tokens, token_delay, &fail, &piece, &final_obj);
    match streamed {
        Ok(true) => count(|st| {
            st.active -= 1;
            st.completed += 1
        }),
        Ok(false) => count(|st| st.active -= 1),
        Err(_) => count(|st| {
            st.active -= 1;
            st.aborted += 1
        }),
    }
    streamed.map(|_| ())
}

/// Streams the chunks; Ok(true) when the final object went out, Ok(false) after an error
/// line, Err when the client closed the connection early.
fn stream_tokens(
    conn: &mut TcpStream,
    tokens: &[String],
    token_delay: Duration,
    fail: &Option<String>,
    piece: &dyn Fn(&str, bool) -> Value,
    final_obj: &Value,
) -> std::io::Result<bool> {
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            pause_unless_closed(conn, token_delay)?;
        }
        chunk(conn, &piece(t, false))?;
        if i == 0 {
            if let Some(msg) = fail {
                chunk(conn, &json!({ "error": msg }))?;
                write!(conn, "0\r\n\r\n")?;
                conn.flush()?;
                return Ok(false);
            }
        }
    }
    chunk(conn, final_obj)?;
    // The generation is over once its final object is out: a client that hangs up on
    // reading it, before the chunked terminator, did not abort anything.
    let _ = write!(conn, "0\r\n\r\n").and_then(|()| conn.flush());
    Ok(true)
}

/// Waits `d`, failing as soon as the client has closed its end (a write alone would
/// notice only a token or two later).
fn pause_unless_closed(conn: &TcpStream, d: Duration) -> std::io::Result<()> {
    let until = std::time::Instant::now() + d;
    loop {
        conn.set_nonblocking(true)?;
        let mut byte = [0u8; 1];
        let peeked = conn.peek(&mut byte);
        conn.set_nonblocking(false)?;
        match peeked {
            Ok(0) => return Err(std::io::ErrorKind::ConnectionAborted.into()),
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        let now = std::time::Instant::now();
        if now >= until {
            return Ok(());
        }
        thread::sleep((until - now).min(Duration::from_millis(5)));
    }
}

fn unknown_model(
    conn: &mut TcpStream,
    state: &Mutex<State>,
    model: &str,
) -> Option<std::io::Result<()>> {
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    if st.models.iter().any(|m| m.name == model) {
        return None;
    }
    drop(st);
    let msg = format!("model \"{model}\" not found, try pulling it first");
    Some(respond(conn, 404, &json!({ "error": msg })))
}

/// `POST /api/embed`: one vector per input, the same for the same text.
fn embed(conn: &mut TcpStream, state: &Mutex<State>, body: &Value) -> std::io::Result<()> {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    if model.is_empty() {
        return respond(conn, 400, &json!({"error": "model is required"}));
    }
    if let Some(r) = unknown_model(conn, state, model) {
        return r;
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => return respond(conn, 400, &json!({"error": "invalid input type"})),
    };
    let dims = body.get("dimensions").and_then(Value::as_u64).unwrap_or(8) as usize;
    let embeddings: Vec<Vec<f64>> = inputs.iter().map(|t| vector(t, dims)).collect();
    let words: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    respond(
        conn,
        200,
        &json!({
            "model": model, "embeddings": embeddings,
            "total_duration": 14_143_917u64, "load_duration": 1_019_500u64,
            "prompt_eval_count": words as u64
        }),
    )
}

/// A unit vector from the text's bytes (FNV-1a per dimension).
fn vector(text: &str, dims: usize) -> Vec<f64> {
    let raw: Vec<f64> = (0..dims)
        .map(|d| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ d as u64;
            for b in text.bytes() {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
            (h % 2000) as f64 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
    raw.into_iter().map(|x| x / norm).collect()
}

/// `POST /api/show`: what Ollama tells about a pulled model.
fn show(conn: &mut TcpStream, state: &Mutex<State>, body: &Value) -> std::io::Result<()> {
    let name = body
        .get("model")
        .or_else(|| body.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let st = state.lock().unwrap_or_else(|e| e.into_inner());
    let Some(m) = st.models.iter().find(|m| m.name == name).cloned() else {
        drop(st);
        return respond(
            conn,
            404,
            &json!({"error": format!("model '{name}' not found")}),
        );
    };
    drop(st);
    respond(
        conn,
        200,
        &json!({
            "license": "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT",
            "modelfile": format!("# Modelfile generated by \"ollama show\"\nFROM {}\n", m.name),
            "parameters": "stop                           \"<|eot_id|>\"",
            "template": "{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}",
            "details": {
                "parent_model": "", "format": "gguf", "family": m.family,
                "families": [m.family], "parameter_size": m.parameter_size,
                "quantization_level": m.quantization_level
            },
            "model_info": {
                "general.architecture": m.family,
                "general.parameter_count": 1_235_814_432u64,
                format!("{}.context_length", m.family): 131_072
            },
            "capabilities": ["completion"],
            "modified_at": "2025-01-12T10:21:49.123456789Z"
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_finished_and_aborted_generations_and_takes_config_over_http() {
        let fake = FakeOllama::start(vec![FakeModel::small("m")]).unwrap();
        let url = fake.url();
        let stats = || -> Value {
            ureq::get(format!("{url}/test/stats"))
                .call()
                .unwrap()
                .body_mut()
                .read_json()
                .unwrap()
        };
        assert_eq!(stats(), json!({"active": 0, "completed": 0, "aborted": 0}));
        ureq::post(format!("{url}/test/config"))
            .send_json(json!({"tokens": 3, "token_delay_ms": 1}))
            .unwrap();
        let chat = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let text = ureq::post(format!("{url}/api/chat"))
            .send_json(&chat)
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert_eq!(text.lines().count(), 4, "3 tokens and the final object");
        assert_eq!(stats()["completed"], 1);

        fake.set_tokens(1000);
        fake.token_delay(Duration::from_millis(20));
        let mut resp = ureq::post(format!("{url}/api/chat"))
            .send_json(&chat)
            .unwrap();
        let mut first = String::new();
        BufReader::new(resp.body_mut().as_reader())
            .read_line(&mut first)
            .unwrap();
        assert!(first.contains("tok1"), "{first}");
        assert_eq!(fake.active(), 1);
        drop(resp);
        let start = std::time::Instant::now();
        while fake.aborted() == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "never saw the hang-up"
            );
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!((fake.active(), fake.completed()), (0, 1));
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }
}
