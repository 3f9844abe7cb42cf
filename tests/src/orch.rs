//! The one launcher of a real `pifleet-orchestrator` process for the whole-system tests.
//!
//! It listens on port 0 (the kernel picks a free port, nobody can take it between "free"
//! and "bound") and the test reads the address from the orchestrator's log. A restart
//! keeps the database, the environment and the port, so real agents pointed at the old URL
//! find the new process. The process is killed and its temporary directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::binary;

/// Where the orchestrator's database and logs live.
enum Dir {
    /// A fresh directory, removed with the handle.
    Owned(tempfile::TempDir),
    /// The test's own directory (agents' state beside it), left to the test.
    Borrowed(PathBuf),
}

pub struct Orch {
    pub base: String,
    pub port: u16,
    dir: Dir,
    env: Vec<(String, String)>,
    child: Option<Child>,
    starts: u32,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Orch {
    /// An orchestrator with its defaults plus the given `PIFLEET_*` environment, on a free
    /// port, with its database in a fresh temporary directory.
    pub fn start(env: &[(&str, &str)]) -> Orch {
        let dir = tempfile::Builder::new()
            .prefix("pifleet-orch-")
            .tempdir()
            .expect("a temporary directory");
        Orch::launch(Dir::Owned(dir), env)
    }

    /// Like [`Orch::start`], with the database and logs in `dir` (kept after the test).
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> Orch {
        Orch::launch(Dir::Borrowed(dir.to_path_buf()), env)
    }

    fn launch(dir: Dir, env: &[(&str, &str)]) -> Orch {
        let token = env
            .iter()
            .find(|(k, _)| *k == "PIFLEET_CLIENT_TOKEN")
            .map(|(_, v)| v.to_string());
        let mut orch = Orch {
            base: String::new(),
            port: 0,
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            starts: 0,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build()
                .into(),
            token,
        };
        orch.spawn();
        orch
    }

    /// The directory holding `pifleet.db` and the `orchestrator-N.log` of each start.
    pub fn dir(&self) -> &Path {
        match &self.dir {
            Dir::Owned(d) => d.path(),
            Dir::Borrowed(p) => p,
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir().join("pifleet.db")
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = self.dir().join(format!("orchestrator-{}.log", self.starts));
        let mut cmd = Command::new(binary("pifleet-orchestrator"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--db")
            .arg(self.db())
            .env_remove("PIFLEET_CONFIG")
            .env_remove("PIFLEET_CLIENT_TOKEN")
            .env_remove("PIFLEET_WORKER_TOKEN")
            // The bound address is read from the log: info level, text format.
            .env("PIFLEET_LOG", "info")
            .env("PIFLEET_LOG_FORMAT", "text")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("orchestrator log file"));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start pifleet-orchestrator"));
        if let Err(e) = self.wait_ready(&log) {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "the orchestrator did not start: {e}\n{}:\n{text}",
                log.display()
            );
        }
    }

    fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("it exited with {status}"));
            }
            if self.port == 0 {
                self.port = bound_port(log).unwrap_or(0);
            }
            if self.port != 0 {
                self.base = format!("http://127.0.0.1:{}", self.port);
                let up = self
                    .agent
                    .get(format!("{}/health", self.base))
                    .call()
                    .is_ok_and(|r| r.status().as_u16() == 200);
                if up {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err("no answer on /health within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash or a power cut; nothing is flushed on the way out.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the orchestrator again (after [`Orch::kill`] or [`Orch::terminate`]): the
    /// same database, environment and port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// [`Orch::kill`] then [`Orch::restart`], with a new environment.
    pub fn crash_and_restart(mut self, env: &[(&str, &str)]) -> Orch {
        self.kill();
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.spawn();
        self
    }

    /// SIGTERM, then the exit code (None if it did not exit within `limit`).
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let code = crate::terminate(child, limit);
        if code.is_some() {
            self.child = None;
        }
        code
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

    /// Submits a task with empty data; returns its id.
    pub fn submit(&self, task_type: &str, priority: u8) -> String {
        let (status, v) = self.post(
            pifleet_protocol::paths::SUBMIT,
            serde_json::json!({"type": task_type, "data": {}, "priority": priority}),
        );
        assert_eq!(status, 201, "submit: {v}");
        v["task_id"].as_str().expect("task_id").to_string()
    }
}

/// The port of `pifleet orchestrator listening addr=127.0.0.1:PORT` in the log.
fn bound_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains("listening"))?;
    let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
    addr.rsplit(':').next()?.parse().ok()
}

impl Drop for Orch {
    fn drop(&mut self) {
        self.kill();
    }
}
