//! Model staging on the wire: the orchestrator asks a node (in its heartbeat answer) to
//! pull a model through its Ollama's `/api/pull`, or to pre-load one it has; the node
//! reports how that goes in its next heartbeats. Every field is optional on the wire, so
//! seed workers, which never declare `model_pull`, are never asked and never report.

use serde::{Deserialize, Serialize};

/// What a node is asked to do with a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageAction {
    /// Download it: Ollama's `POST /api/pull`.
    Pull,
    /// Load a model the node has into memory: an empty `POST /api/generate` with
    /// `keep_alive`.
    Preload,
}

impl StageAction {
    pub fn as_str(self) -> &'static str {
        match self {
            StageAction::Pull => "pull",
            StageAction::Preload => "preload",
        }
    }
}

/// One order in a heartbeat answer. The orchestrator repeats it in every answer until
/// the node reports on it; `id` tells a repeated order from a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageOrder {
    pub id: u64,
    pub action: StageAction,
    pub model: String,
}

/// How a staging order is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageState {
    /// Asked, not yet reported on by the node.
    Asked,
    Running,
    Done,
    Failed,
}

impl StageState {
    pub fn as_str(self) -> &'static str {
        match self {
            StageState::Asked => "asked",
            StageState::Running => "running",
            StageState::Done => "done",
            StageState::Failed => "failed",
        }
    }
}

/// A node's report on one order (in its heartbeat), and the orchestrator's view of it
/// (in the node's view, with `attempts` and `retry_in_s` added).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageProgress {
    /// The order reported on.
    pub id: u64,
    pub action: StageAction,
    pub model: String,
    pub state: StageState,
    /// Ollama's latest status line, e.g. `pulling 74701a8c35f6` or `verifying sha256 digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Bytes downloaded and to download of the layer being pulled, as Ollama reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// Why it failed: Ollama's own message when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Failed attempts of this node and model so far (views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Seconds until the orchestrator may ask this node for this model again; absent
    /// after a failure means it will not ask again (views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_s: Option<f64>,
}

impl StageProgress {
    /// A report with nothing known yet but the order and its state.
    pub fn new(id: u64, action: StageAction, model: String, state: StageState) -> StageProgress {
        StageProgress {
            id,
            action,
            model,
            state,
            status: None,
            completed_bytes: None,
            total_bytes: None,
            error: None,
            attempts: None,
            retry_in_s: None,
        }
    }

    /// Percent of the current layer downloaded, when Ollama said.
    pub fn percent(&self) -> Option<f64> {
        match (self.completed_bytes, self.total_bytes) {
            (Some(c), Some(t)) if t > 0 => Some((c as f64 * 100.0 / t as f64).min(100.0)),
            _ => None,
        }
    }

    /// One line for people: `pull llama3.2:1b: running, pulling 74701a8c35f6 45%`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} {}: {}",
            self.action.as_str(),
            self.model,
            self.state.as_str()
        );
        if let Some(st) = self
            .status
            .as_deref()
            .filter(|_| self.state == StageState::Running)
        {
            s.push_str(&format!(", {st}"));
        }
        if let (Some(p), StageState::Running) = (self.percent(), self.state) {
            s.push_str(&format!(" {p:.0}%"));
        }
        if let Some(e) = &self.error {
            s.push_str(&format!(": {e}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::*;

    #[test]
    fn staging_is_left_out_of_the_wire_when_empty_and_read_when_present() {
        let resp = HeartbeatResponse {
            status: "ok".into(),
            draining: None,
            stage: Vec::new(),
            stop_tasks: None,
        };
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"status": "ok"})
        );
        let seed: HeartbeatResponse = serde_json::from_str(r#"{"status":"ok"}"#).unwrap();
        assert!(seed.stage.is_empty());
        let resp: HeartbeatResponse = serde_json::from_value(json!({
            "status": "ok",
            "stage": [{"id": 7, "action": "pull", "model": "qwen2.5:0.5b"}]
        }))
        .unwrap();
        assert_eq!(resp.stage[0].action, StageAction::Pull);
        assert!(Capabilities::default().model_pull.is_none());
    }

    #[test]
    fn progress_reads_as_a_line() {
        let p: StageProgress = serde_json::from_value(json!({
            "id": 1, "action": "pull", "model": "m", "state": "running",
            "status": "pulling abc", "completed_bytes": 50, "total_bytes": 200
        }))
        .unwrap();
        assert_eq!(p.percent(), Some(25.0));
        assert_eq!(p.describe(), "pull m: running, pulling abc 25%");
        let failed = StageProgress {
            state: StageState::Failed,
            error: Some("pull model manifest: file does not exist".into()),
            ..p
        };
        assert_eq!(
            failed.describe(),
            "pull m: failed: pull model manifest: file does not exist"
        );
    }
}
