//! A small pifleet orchestrator double for the agent's gateway tests: register, heartbeat,
//! poll (answered at once from a queue), result, unregister, and the chunked
//! `POST /api/tasks/{id}/stream`, read chunk by chunk so a test sees when each line
//! arrived. It can answer a stream with 409 (closing the connection) or hang up on it
//! after a number of lines, as the real one does when the client has gone.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

/// What the orchestrator does with a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StreamMode {
    /// Read it to its end, answer 200.
    Accept,
    /// After this many lines answer 409 and close the connection.
    ConflictAfter(usize),
    /// After this many lines close the connection without an answer.
    HangUpAfter(usize),
}

/// One line of a stream, with what the test's probe said when it arrived.
#[derive(Debug, Clone)]
pub struct Line {
    pub text: String,
    pub probe: Value,
}

#[derive(Debug, Clone, Default)]
pub struct Stream {
    pub path: String,
    pub content_type: String,
    pub chunked: bool,
    pub authorization: Option<String>,
    pub lines: Vec<Line>,
    /// The body reached its last (zero) chunk.
    pub ended: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Value>,
    results: Vec<(String, Value)>,
    registrations: Vec<Value>,
    streams: Vec<Stream>,
}

type Probe = Arc<dyn Fn() -> Value + Send + Sync>;

pub struct FakeOrch {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    mode: Arc<Mutex<StreamMode>>,
    stop: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeOrch {
    /// `probe` is called as each streamed line arrives (e.g. to ask the Ollama double
    /// whether it is still generating).
    pub fn start(probe: impl Fn() -> Value + Send + Sync + 'static) -> FakeOrch {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let mode = Arc::new(Mutex::new(StreamMode::Accept));
        let stop = Arc::new(AtomicBool::new(false));
        let probe: Probe = Arc::new(probe);
        let (st, md, sp) = (state.clone(), mode.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, md, probe) = (st.clone(), md.clone(), probe.clone());
                std::thread::spawn(move || serve(conn, &st, &md, &probe));
            }
        });
        FakeOrch {
            addr,
            state,
            mode,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push_task(&self, task: Value) {
        lock(&self.state).queue.push_back(task);
    }

    pub fn set_mode(&self, mode: StreamMode) {
        *lock(&self.mode) = mode;
    }

    pub fn results(&self) -> Vec<(String, Value)> {
        lock(&self.state).results.clone()
    }

    pub fn result_for(&self, task_id: &str) -> Option<Value> {
        self.results()
            .into_iter()
            .find(|(id, _)| id == task_id)
            .map(|(_, body)| body)
    }

    pub fn registrations(&self) -> Vec<Value> {
        lock(&self.state).registrations.clone()
    }

    pub fn streams(&self) -> Vec<Stream> {
        lock(&self.state).streams.clone()
    }
}

impl Drop for FakeOrch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_head(reader: &mut impl BufRead) -> Option<Head> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(Head {
        method,
        path,
        headers,
    })
}

/// The next chunk of a chunked body: Some(None) at the last chunk, None when the body
/// broke off.
fn read_chunk(reader: &mut impl BufRead) -> Option<Option<Vec<u8>>> {
    let mut size = String::new();
    if reader.read_line(&mut size).ok()? == 0 {
        return None;
    }
    let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
    let mut data = vec![0; n + 2];
    reader.read_exact(&mut data).ok()?;
    data.truncate(n);
    Some((n > 0).then_some(data))
}

fn respond(conn: &mut TcpStream, status: u16, body: &Value) {
    let text = body.to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = conn.flush();
}

fn serve(mut conn: TcpStream, state: &Mutex<State>, mode: &Mutex<StreamMode>, probe: &Probe) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let Some(head) = read_head(&mut reader) else {
        return;
    };
    let bare = head.path.split('?').next().unwrap_or("").to_string();
    let segs: Vec<&str> = bare.trim_matches('/').split('/').collect();
    if head.method == "POST" && segs.len() == 4 && segs[0] == "api" && segs[3] == "stream" {
        return stream(conn, reader, head, state, *lock(mode), probe);
    }
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut st = lock(state);
    let (status, reply) = match (head.method.as_str(), segs.as_slice()) {
        ("POST", ["api", "workers", "register"]) => {
            st.registrations.push(body.clone());
            (
                200,
                json!({"status": "registered", "worker_id": body["worker_id"]}),
            )
        }
        ("POST", ["api", "workers", _, "heartbeat"]) => (200, json!({"status": "ok"})),
        ("GET", ["api", "workers", _, "tasks"]) => (200, json!({"task": st.queue.pop_front()})),
        ("POST", ["api", "workers", _, "unregister"]) => (200, json!({"status": "unregistered"})),
        ("POST", ["api", "tasks", id, "result"]) => {
            st.results.push((id.to_string(), body));
            (200, json!({"status": "received"}))
        }
        _ => (404, json!({"error": "not found"})),
    };
    drop(st);
    respond(&mut conn, status, &reply);
}

fn stream(
    mut conn: TcpStream,
    mut reader: BufReader<TcpStream>,
    head: Head,
    state: &Mutex<State>,
    mode: StreamMode,
    probe: &Probe,
) {
    let index = {
        let mut st = lock(state);
        st.streams.push(Stream {
            path: head.path.clone(),
            content_type: head.header("content-type").unwrap_or("").to_string(),
            chunked: head
                .header("transfer-encoding")
                .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
            authorization: head.header("authorization").map(str::to_string),
            ..Stream::default()
        });
        st.streams.len() - 1
    };
    let mut partial = Vec::new();
    let mut count = 0;
    loop {
        let stop_after = match mode {
            StreamMode::ConflictAfter(n) | StreamMode::HangUpAfter(n) => Some(n),
            StreamMode::Accept => None,
        };
        if stop_after == Some(count) {
            if let StreamMode::ConflictAfter(_) = mode {
                respond(
                    &mut conn,
                    409,
                    &json!({"error": "attempt 1 is no longer current: the client hung up"}),
                );
            }
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
        let chunk = match read_chunk(&mut reader) {
            Some(Some(chunk)) => chunk,
            Some(None) => {
                lock(state).streams[index].ended = true;
                break;
            }
            None => return,
        };
        partial.extend_from_slice(&chunk);
        while let Some(at) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=at).collect();
            let text = String::from_utf8_lossy(&line).to_string();
            let seen = probe();
            lock(state).streams[index]
                .lines
                .push(Line { text, probe: seen });
            count += 1;
        }
    }
    respond(&mut conn, 200, &json!({"status": "ok"}));
}
