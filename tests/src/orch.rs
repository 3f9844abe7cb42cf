//! A real `pifleet-orchestrator` process on a free loopback port, with its own database
//! in a fresh directory; killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{binary, free_port};

pub struct Orch {
    pub base: String,
    pub dir: PathBuf,
    child: Child,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Orch {
    /// Starts the orchestrator with its defaults plus the given `PIFLEET_*` environment.
    pub fn start(env: &[(&str, &str)]) -> Orch {
        let dir = std::env::temp_dir().join(format!(
            "pifleet-test-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("test dir");
        Orch::start_in(dir, env)
    }

    /// Kills this orchestrator (SIGKILL: nothing flushed on the way out) and starts a new
    /// one on the same database.
    pub fn crash_and_restart(mut self, env: &[(&str, &str)]) -> Orch {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the directory: the old handle's drop then has nothing to remove.
        let dir = std::mem::take(&mut self.dir);
        drop(self);
        Orch::start_in(dir, env)
    }

    fn start_in(dir: PathBuf, env: &[(&str, &str)]) -> Orch {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(binary("pifleet-orchestrator"));
            cmd.arg("serve")
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--db")
                .arg(dir.join("pifleet.db"))
                .env_remove("PIFLEET_CLIENT_TOKEN")
                .env_remove("PIFLEET_WORKER_TOKEN")
                .env("PIFLEET_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("start pifleet-orchestrator");
            let token = env
                .iter()
                .find(|(k, _)| *k == "PIFLEET_CLIENT_TOKEN")
                .map(|(_, v)| v.to_string());
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into();
            let mut orch = Orch {
                base: format!("http://127.0.0.1:{port}"),
                dir: dir.clone(),
                child,
                agent,
                token,
            };
            match orch.wait_ready() {
                Ok(()) => return orch,
                Err(e) => last_err = e,
            }
        }
        panic!("orchestrator did not start: {last_err}");
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}"));
            }
            if let Ok(resp) = self.agent.get(format!("{}/health", self.base)).call() {
                if resp.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("no answer on /health".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET with the client token (when configured); returns status and body text.
    pub fn get_text(&self, path: &str) -> (u16, String) {
        let mut req = self.agent.get(format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().expect("orchestrator reachable");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get_text(path);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let mut req = self.agent.post(format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.send_json(body).expect("orchestrator reachable");
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Submits a task; returns its id.
    pub fn submit(&self, task_type: &str, priority: u8) -> String {
        let (status, v) = self.post(
            pifleet_protocol::paths::SUBMIT,
            serde_json::json!({"type": task_type, "data": {}, "priority": priority}),
        );
        assert_eq!(status, 201, "submit: {v}");
        v["task_id"].as_str().expect("task_id").to_string()
    }
}

impl Orch {
    /// SIGTERM, then the exit code (None if it did not exit within `limit`).
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        crate::terminate(&mut self.child, limit)
    }
}

impl Drop for Orch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
