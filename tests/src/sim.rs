//! A simulated agent: registers and heartbeats over HTTP like `pifleet-agent` does, with
//! metrics the test chooses, and polls and settles tasks on demand.

use std::time::Duration;

use pifleet_protocol::{
    paths, worker_path, Capabilities, HeartbeatRequest, HeartbeatResponse, NodeMetrics,
    PollResponse, RegisterRequest, ResultRequest, TaskAssignment,
};
use serde_json::Value;

pub struct SimAgent {
    pub base: String,
    pub id: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Metrics of a healthy Pi 5 at `temp` °C.
pub fn pi_metrics(temp: f32) -> NodeMetrics {
    NodeMetrics {
        cpu_percent: Some(23.0),
        load_avg: Some([0.4, 0.3, 0.2]),
        memory_total_bytes: Some(8 << 30),
        memory_available_bytes: Some(6 << 30),
        temperature_c: Some(temp),
        throttled: Some(0),
        disk_free_bytes: Some(20 << 30),
        uptime_s: Some(3600),
        ollama_reachable: Some(true),
        models_present: Some(vec!["llama3.2:1b".into()]),
        models_loaded: Some(vec![]),
        ..Default::default()
    }
}

/// A Pi 5 with 8 GiB, one slot and llama3.2:1b.
pub fn pi_caps() -> Capabilities {
    Capabilities {
        models: vec!["llama3.2:1b".into()],
        slots: Some(1),
        cores: Some(4),
        arch: Some("aarch64".into()),
        pi_model: Some("Raspberry Pi 5 Model B Rev 1.0".into()),
        memory_total_bytes: Some(8 << 30),
        ..Default::default()
    }
}

impl SimAgent {
    /// Registered with [`pi_caps`] and one heartbeat of [`pi_metrics`] at `temp` °C.
    pub fn up(base: &str, id: &str, temp: f32) -> SimAgent {
        let a = SimAgent::new(base, id, None);
        a.register(pi_caps());
        a.heartbeat(pi_metrics(temp));
        a
    }

    pub fn new(base: &str, id: &str, token: Option<&str>) -> SimAgent {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        SimAgent {
            base: base.trim_end_matches('/').to_string(),
            id: id.to_string(),
            token: token.map(str::to_string),
            agent,
        }
    }

    fn post(&self, path: &str, body: &impl serde::Serialize) -> (u16, Value) {
        let mut req = self.agent.post(format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.send_json(body).expect("orchestrator reachable");
        let status = resp.status().as_u16();
        let v = resp.body_mut().read_json().unwrap_or(Value::Null);
        (status, v)
    }

    pub fn register(&self, caps: Capabilities) {
        let (status, v) = self.post(
            paths::REGISTER,
            &RegisterRequest {
                worker_id: self.id.clone(),
                worker_type: Some("pifleet-agent".into()),
                capabilities: caps,
                want_credential: false,
            },
        );
        assert_eq!(status, 200, "register {}: {v}", self.id);
    }

    pub fn heartbeat(&self, metrics: NodeMetrics) -> HeartbeatResponse {
        let (status, v) = self.post(
            &worker_path(&self.id, "heartbeat"),
            &HeartbeatRequest {
                metrics: Some(metrics),
                running_tasks: None,
                spooled_results: None,
                staging: Vec::new(),
            },
        );
        assert_eq!(status, 200, "heartbeat {}: {v}", self.id);
        serde_json::from_value(v).expect("heartbeat response")
    }

    /// A heartbeat saying what the node runs and which results it holds in its spool
    /// (`None`: the field is left out, as a seed worker does).
    pub fn beat(&self, running: Option<&[&str]>, spooled: Option<&[&str]>) -> HeartbeatResponse {
        let ids = |v: Option<&[&str]>| v.map(|v| v.iter().map(|s| s.to_string()).collect());
        let (status, v) = self.post(
            &worker_path(&self.id, "heartbeat"),
            &HeartbeatRequest {
                metrics: None,
                running_tasks: ids(running),
                spooled_results: ids(spooled),
                staging: Vec::new(),
            },
        );
        assert_eq!(status, 200, "heartbeat {}: {v}", self.id);
        serde_json::from_value(v).expect("heartbeat response")
    }

    /// Polls once, holding up to `wait_s` seconds for a task.
    pub fn poll(&self, wait_s: u64) -> Option<TaskAssignment> {
        let mut req = self.agent.get(format!(
            "{}{}?wait={wait_s}",
            self.base,
            worker_path(&self.id, "tasks")
        ));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.call().expect("orchestrator reachable");
        assert_eq!(resp.status().as_u16(), 200, "poll {}", self.id);
        let poll: PollResponse = resp.body_mut().read_json().expect("poll response");
        poll.task
    }

    /// Settles a task with `result`; returns the HTTP status.
    pub fn result(&self, task: &TaskAssignment, result: Value) -> u16 {
        let (status, _) = self.post(
            &pifleet_protocol::task_path(&task.task_id, "result"),
            &ResultRequest {
                worker_id: self.id.clone(),
                result,
                attempt: task.attempt,
            },
        );
        status
    }
}
