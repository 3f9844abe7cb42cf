//! The orchestrator's HTTP API as the agent uses it: one `ureq::Agent`, built once, shared
//! by clone between the heartbeat thread and the work loops.

use std::io::Read;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pifleet_protocol::{
    paths, stream_path, task_path, worker_path, HeartbeatRequest, HeartbeatResponse, PollResponse,
    RegisterRequest, RegisterResponse, ResultRequest, TaskAssignment, UnregisterResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ClientError;
use crate::http;

/// Bound for the ordinary calls; long polls add their wait to it.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Client {
    base: String,
    bearer: Arc<RwLock<Bearer>>,
    agent: ureq::Agent,
}

/// What the agent authenticates with: the join token until the orchestrator gives the
/// node a credential of its own, that credential from then on.
struct Bearer {
    token: Option<String>,
    own: bool,
    /// The refusal of the credential was explained once already.
    told: bool,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Client {
        let agent = http::agent(Duration::from_secs(5));
        Client {
            base: base.trim_end_matches('/').to_string(),
            bearer: Arc::new(RwLock::new(Bearer {
                token,
                own: false,
                told: false,
            })),
            agent,
        }
    }

    /// From now on every call carries the node's own credential.
    pub fn use_credential(&self, secret: String) {
        let mut b = self.bearer.write().unwrap_or_else(|p| p.into_inner());
        b.token = Some(secret);
        b.own = true;
    }

    pub fn has_credential(&self) -> bool {
        self.bearer.read().unwrap_or_else(|p| p.into_inner()).own
    }

    /// A 401 to a node with its own credential means the orchestrator dropped it
    /// (`nodes forget`, or a new database): say once, plainly, how to join again.
    fn refused(&self, status: u16, message: &str) {
        if status != 401 {
            return;
        }
        let mut b = self.bearer.write().unwrap_or_else(|p| p.into_inner());
        if b.own && !b.told {
            b.told = true;
            log::error!(
                "the orchestrator refuses this node's credential ({message}). The node was \
                 forgotten (`pifleet-orchestrator nodes forget`) or the orchestrator's database \
                 was replaced. To join again: delete the file `credential` in the agent's state \
                 directory and restart the agent; it then registers with the join token \
                 (worker_token) and gets a new credential."
            );
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn finish<T: DeserializeOwned>(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut resp = result.map_err(|e| ClientError::Transport(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if !(200..300).contains(&status) {
            let message = http::error_message(&body);
            self.refused(status, &message);
            return Err(ClientError::Status { status, message });
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// A request with this call's time bound and the worker token.
    fn authed<B>(
        &self,
        req: ureq::RequestBuilder<B>,
        timeout: Duration,
    ) -> ureq::RequestBuilder<B> {
        let req = req.config().timeout_global(Some(timeout)).build();
        let b = self.bearer.read().unwrap_or_else(|p| p.into_inner());
        match &b.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let req = self.agent.post(format!("{}{path}", self.base));
        self.finish(self.authed(req, timeout).send_json(body))
    }

    fn get<T: DeserializeOwned>(&self, path: &str, timeout: Duration) -> Result<T, ClientError> {
        let req = self.agent.get(format!("{}{path}", self.base));
        self.finish(self.authed(req, timeout).call())
    }

    pub fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        self.post(paths::REGISTER, req, CALL_TIMEOUT)
    }

    pub fn heartbeat(
        &self,
        worker_id: &str,
        req: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        self.post(&worker_path(worker_id, "heartbeat"), req, CALL_TIMEOUT)
    }

    /// One poll; with `wait` the orchestrator may hold it open until work arrives.
    pub fn poll(
        &self,
        worker_id: &str,
        wait: Duration,
    ) -> Result<Option<TaskAssignment>, ClientError> {
        let secs = wait.as_secs_f64().ceil() as u64;
        let path = format!("{}?wait={secs}", worker_path(worker_id, "tasks"));
        let resp: PollResponse = self.get(&path, CALL_TIMEOUT + wait)?;
        Ok(resp.task)
    }

    pub fn result(&self, task_id: &str, req: &ResultRequest) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post(&task_path(task_id, "result"), req, CALL_TIMEOUT)?;
        Ok(())
    }

    /// One chunked upload of a streaming task's NDJSON lines, each read from `body` sent
    /// as its own chunk at once.
    pub fn stream(
        &self,
        task_id: &str,
        worker_id: &str,
        attempt: u32,
        body: &mut dyn Read,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let req = self
            .agent
            .post(format!(
                "{}{}",
                self.base,
                stream_path(task_id, worker_id, attempt)
            ))
            .header("Content-Type", "application/x-ndjson");
        let _: serde_json::Value = self.finish(
            self.authed(req, timeout)
                .send(ureq::SendBody::from_reader(body)),
        )?;
        Ok(())
    }

    pub fn unregister(&self, worker_id: &str) -> Result<UnregisterResponse, ClientError> {
        self.post(
            &worker_path(worker_id, "unregister"),
            &serde_json::json!({}),
            CALL_TIMEOUT,
        )
    }
}
