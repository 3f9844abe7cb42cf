//! One gateway request as a task: submitted to the durable queue, placed by the
//! scheduler, and followed until it settles, relaying a streaming answer chunk by chunk.
//!
//! A request that goes away (the client hung up, the handler was dropped) cancels its
//! task. A stream that breaks before its first chunk is retried on another node; one that
//! breaks after chunks were sent is continued from the partial text where the API allows
//! it (chat: the partial reply as a trailing assistant message), or ends with an explicit
//! error: never a truncated answer that looks complete.

mod stream;

use std::time::{Duration, Instant};

use pifleet_protocol::{task_type, TaskState, TaskStatusResponse};
use serde_json::{json, Value};

use super::error::{Api, GatewayError};
use super::Gateway;
use crate::fleet::stream::Listener;
use crate::fleet::{committed, NewTask};
pub use stream::{Piece, Stream};

/// What the gateway asks a node's Ollama to do.
#[derive(Debug, Clone)]
pub struct Job {
    pub api: Api,
    /// `chat`, `generate`, `embed` or `show`.
    pub endpoint: &'static str,
    pub model: String,
    /// The Ollama request body.
    pub request: Value,
    pub stream: bool,
    pub priority: u8,
}

/// A submitted task; dropping it before [`Running::settled`] cancels the task.
pub struct Running {
    gw: Gateway,
    pub id: String,
    pub created: f64,
    listener: Option<Listener>,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            self.gw.fleet.cancel(
                &self.id,
                "the client hung up before the answer was complete",
            );
        }
    }
}

impl Running {
    /// The task settled on its own (or was handed over): nothing to cancel any more.
    pub(super) fn settled(&mut self) {
        self.finished = true;
    }
}

/// Submits the job as an `ollama_api` task.
pub async fn submit(gw: &Gateway, job: &Job) -> Result<Running, GatewayError> {
    let data = json!({
        "model": job.model,
        "endpoint": job.endpoint,
        "request": job.request,
        "stream": job.stream,
    });
    let (id, commit) = gw.fleet.submit(NewTask {
        task_type: task_type::OLLAMA_API.into(),
        data,
        priority: job.priority,
        timeout_s: None,
        max_attempts: None,
        expires_s: None,
    });
    if let Some(charge) = &gw.key {
        charge.auth.task_submitted(&charge.caller, &id);
    }
    // Listening before the commit is awaited: the assignment reaches no agent before its
    // commit, so no chunk can come before the listener exists.
    let listener = job.stream.then(|| gw.fleet.streams().listen(&id));
    let running = Running {
        gw: gw.clone(),
        created: gw.fleet.now(),
        id,
        listener,
        finished: false,
    };
    committed(commit).await.map_err(|e| {
        GatewayError::new(
            job.api,
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable, the request was not queued: {e}"),
        )
    })?;
    Ok(running)
}

pub(super) fn settled_error(api: Api, st: &TaskStatusResponse) -> GatewayError {
    let why = st
        .result
        .as_ref()
        .and_then(|r| r.get("error"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| st.error.clone())
        .unwrap_or_else(|| format!("the task ended {}", st.status.as_str()));
    GatewayError::upstream(api, why)
}

/// Waits for a non-streaming task and returns Ollama's answer body.
pub async fn wait_whole(gw: &Gateway, job: &Job) -> Result<Value, GatewayError> {
    let mut running = submit(gw, job).await?;
    let deadline = Instant::now() + gw.cfg.queue_timeout;
    let mut assigned = false;
    let Some(mut settled) = gw.fleet.watch_settled(&running.id) else {
        return finish_whole(gw, job, &mut running).await;
    };
    loop {
        tokio::select! {
            _ = &mut settled => break,
            _ = tokio::time::sleep_until(deadline.into()), if !assigned => {
                let st = gw.fleet.status(&running.id).ok().flatten();
                if st.as_ref().is_some_and(|s| s.status == TaskState::Pending) {
                    let why = st.and_then(|s| s.pending_reason);
                    gw.fleet.cancel(&running.id, "no node took it within the gateway's queue time");
                    running.settled();
                    return Err(GatewayError::queue_timeout(job.api, gw.cfg.queue_timeout.as_secs_f64(), why));
                }
                assigned = true;
            }
        }
    }
    finish_whole(gw, job, &mut running).await
}

async fn finish_whole(
    gw: &Gateway,
    job: &Job,
    running: &mut Running,
) -> Result<Value, GatewayError> {
    running.settled();
    let st = gw
        .fleet
        .status_async(&running.id)
        .await
        .map_err(|e| GatewayError::upstream(job.api, e.to_string()))?
        .ok_or_else(|| GatewayError::upstream(job.api, "the task vanished"))?;
    if st.status != TaskState::Completed {
        return Err(settled_error(job.api, &st));
    }
    st.result
        .as_ref()
        .and_then(|r| r.get("response"))
        .cloned()
        .ok_or_else(|| {
            GatewayError::upstream(
                job.api,
                "the node's result has no \"response\": is its agent too old for the gateway?",
            )
        })
}

/// How long a request may wait in the queue before the gateway answers 503.
pub fn queue_timeout(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
