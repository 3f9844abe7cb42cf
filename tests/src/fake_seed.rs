//! An orchestrator that behaves like the seed's Python one: it answers every poll at once
//! (no long poll: `?wait=` is ignored), answers 404 for a worker it does not know, and
//! records every request so a test can see what an agent sent.

use std::collections::{HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// One request received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Default)]
struct State {
    workers: HashSet<String>,
    queue: VecDeque<Value>,
    seen: Vec<Seen>,
    draining: bool,
}

pub struct SeedOrchestrator {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl SeedOrchestrator {
    pub fn start() -> std::io::Result<SeedOrchestrator> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        Ok(SeedOrchestrator { addr, state, stop })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a task (`{"task_id", "type", "data"}`) for the next poll.
    pub fn push_task(&self, task: Value) {
        self.state().queue.push_back(task);
    }

    /// Forgets a worker, as a restarted seed orchestrator would.
    pub fn forget(&self, worker_id: &str) {
        self.state().workers.remove(worker_id);
    }

    /// Heartbeat answers say `draining: true` (a pifleet extension) while set.
    pub fn set_draining(&self, on: bool) {
        self.state().draining = on;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state().seen.clone()
    }

    /// Requests whose path starts with `prefix` and ends with `suffix`.
    pub fn seen_matching(&self, method: &str, prefix: &str, suffix: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| {
                let path = s.path.split('?').next().unwrap_or("");
                s.method == method && path.starts_with(prefix) && path.ends_with(suffix)
            })
            .collect()
    }
}

impl Drop for SeedOrchestrator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.seen.push(Seen {
        at: Instant::now(),
        method: method.clone(),
        path: path.clone(),
        body: body.clone(),
    });
    let bare = path.split('?').next().unwrap_or("").to_string();
    let segs: Vec<&str> = bare.trim_matches('/').split('/').collect();
    let (status, reply) = match (method.as_str(), segs.as_slice()) {
        ("GET", ["health"]) => (
            200,
            json!({"status": "healthy", "workers_online": st.workers.len(), "tasks_pending": st.queue.len()}),
        ),
        ("POST", ["api", "workers", "register"]) => {
            let id = body["worker_id"].as_str().unwrap_or("").to_string();
            st.workers.insert(id.clone());
            (200, json!({"status": "registered", "worker_id": id}))
        }
        ("POST", ["api", "workers", id, "heartbeat"]) if st.workers.contains(*id) => {
            (200, json!({"status": "ok", "draining": st.draining}))
        }
        ("GET", ["api", "workers", id, "tasks"]) if st.workers.contains(*id) => {
            (200, json!({"task": st.queue.pop_front()}))
        }
        ("POST", ["api", "workers", id, "unregister"]) => {
            st.workers.remove(*id);
            (200, json!({"status": "unregistered"}))
        }
        ("POST", ["api", "tasks", _, "result"]) => (200, json!({"status": "received"})),
        ("POST" | "GET", ["api", "workers", id, _]) => {
            (404, json!({"error": format!("Worker {id} not found")}))
        }
        _ => (404, json!({"error": "not found"})),
    };
    drop(st);
    let text = reply.to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}
