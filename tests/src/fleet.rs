//! Real processes on loopback for the whole-system tests: agents with their own state dirs
//! (the orchestrator is [`crate::orch::Orch`]), temporary directories, and a tiny blocking
//! HTTP client. Every child is killed when its handle drops, so a failing test leaves
//! nothing behind.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::binary;
pub use crate::free_port;
pub use crate::orch::Orch;

/// A fresh empty directory, removed when the handle drops (a failing test's directory
/// goes too; set `PIFLEET_KEEP_TEST_DIRS=1` to keep them for a look at the logs).
pub fn tempdir(name: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("pifleet-{name}-"))
        .tempdir()
        .expect("a temporary directory");
    if std::env::var_os("PIFLEET_KEEP_TEST_DIRS").is_some() {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    dir
}

/// Polls `f` every 25 ms until it returns Some, or panics after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: a crash, a power cut.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit code (None if it did not exit within `limit`).
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        crate::terminate(&mut self.child, limit)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    std::fs::File::create(dir.join(format!("{name}.log")))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// `pifleet-agent` with fast test intervals; `env` adds or overrides `PIFLEET_*` keys.
pub fn start_agent(
    dir: &Path,
    id: &str,
    orchestrator: &str,
    ollama: &str,
    env: &[(&str, &str)],
) -> Proc {
    let state = dir.join(format!("agent-{id}"));
    let mut cmd = Command::new(binary("pifleet-agent"));
    cmd.args([
        "--orchestrator",
        orchestrator,
        "--ollama",
        ollama,
        "--id",
        id,
    ])
    .arg("--state-dir")
    .arg(&state)
    .env_remove("PIFLEET_AGENT_CONFIG")
    .env("PIFLEET_HEARTBEAT_INTERVAL_S", "0.2")
    .env("PIFLEET_POLL_WAIT_S", "2")
    .env("PIFLEET_POLL_INTERVAL_S", "0.2")
    .env("PIFLEET_RETRY_BASE_MS", "50")
    .env("PIFLEET_RETRY_MAX_S", "0.4")
    .env("PIFLEET_STOP_GRACE_S", "10")
    .env("PIFLEET_LOG_LEVEL", "debug")
    .env_remove("NOTIFY_SOCKET")
    .env_remove("WATCHDOG_USEC")
    .stdin(Stdio::null())
    .stdout(log_file(dir, &format!("agent-{id}.out")))
    .stderr(log_file(dir, &format!("agent-{id}-{}", now_ms())));
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc {
        child: cmd.spawn().expect("spawn pifleet-agent"),
        name: format!("agent {id}"),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// The status and JSON body of a GET.
pub fn get_status(base: &str, path: &str) -> Result<(u16, Value), String> {
    let mut resp = agent()
        .get(format!("{base}{path}"))
        .call()
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A GET that must answer 2xx.
pub fn get(base: &str, path: &str) -> Result<Value, String> {
    match get_status(base, path)? {
        (s, v) if (200..300).contains(&s) => Ok(v),
        (s, v) => Err(format!("GET {path}: {s} {v}")),
    }
}

/// A POST that must answer 2xx.
pub fn post(base: &str, path: &str, body: &Value) -> Result<Value, String> {
    let mut resp = agent()
        .post(format!("{base}{path}"))
        .send_json(body)
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        Ok(v)
    } else {
        Err(format!("POST {path}: {status} {v}"))
    }
}

/// Submits a task and returns its id.
pub fn submit(base: &str, body: &Value) -> String {
    let v = post(base, "/api/tasks/submit", body).expect("submit");
    v["task_id"].as_str().expect("task_id").to_string()
}

/// The task's status body once `status` is one of `states`.
pub fn wait_task(base: &str, task_id: &str, states: &[&str], limit: Duration) -> Value {
    wait_for(
        &format!("task {task_id} to be {}", states.join(" or ")),
        limit,
        || {
            let v = get(base, &format!("/api/tasks/status/{task_id}")).ok()?;
            states
                .contains(&v["status"].as_str().unwrap_or(""))
                .then_some(v)
        },
    )
}

/// The worker's entry in `/api/workers/list`, once it is there.
pub fn worker(base: &str, id: &str) -> Option<Value> {
    let v = get(base, "/api/workers/list").ok()?;
    v["workers"]
        .as_array()?
        .iter()
        .find(|w| w["worker_id"] == id)
        .cloned()
}

/// Files in an agent's spool.
pub fn spooled(state_dir: &Path) -> usize {
    std::fs::read_dir(state_dir.join("spool"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}
