//! A streaming answer in progress: chunks relayed as the node sends them, a stream that
//! broke before its first chunk retried on another node, one that broke after it
//! continued from the partial reply (chat) or ended with an explicit error.

use std::time::Instant;

use axum::body::Bytes;
use pifleet_protocol::{task_type, TaskState};
use serde_json::{json, Value};

use super::{settled_error, submit, Job, Running};
use crate::fleet::stream::StreamEvent;
use crate::fleet::NewTask;
use crate::gateway::error::GatewayError;
use crate::gateway::Gateway;

/// Continuations of one answer after streams that broke mid-way; then an error.
const MAX_CONTINUATIONS: u32 = 2;

/// What one step of a stream produced.
pub enum Piece {
    /// A streamed Ollama object (not the final one), and its line as the node sent it.
    Chunk(Value, Option<Bytes>),
    /// The final Ollama object, with the statistics (and its line, when streamed).
    Done(Value, Option<Bytes>),
    /// The answer cannot be completed.
    Failed(GatewayError),
}

/// A streaming request in progress.
pub struct Stream {
    gw: Gateway,
    job: Job,
    running: Running,
    deadline: Instant,
    /// Some attempt opened its stream (the request left the queue).
    opened: bool,
    /// The attempt streaming now; a break of an older one is old news.
    attempt: u32,
    /// Chunks relayed to the client so far, and their text (for a continuation).
    pub relayed: u64,
    partial: String,
    continuations: u32,
    ended: bool,
    settled_rx: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The task settled; what is still queued is relayed before its outcome.
    settled_fired: bool,
    pub started: Instant,
    pub first_chunk: Option<Instant>,
}

enum Wake {
    Event(Option<StreamEvent>),
    Settled,
    Deadline,
}

impl Stream {
    pub async fn start(gw: &Gateway, job: Job) -> Result<Stream, GatewayError> {
        let running = submit(gw, &job).await?;
        let settled_rx = gw.fleet.watch_settled(&running.id);
        Ok(Stream {
            settled_fired: settled_rx.is_none(),
            settled_rx,
            gw: gw.clone(),
            deadline: Instant::now() + gw.cfg.queue_timeout,
            job,
            running,
            opened: false,
            attempt: 0,
            relayed: 0,
            partial: String::new(),
            continuations: 0,
            ended: false,
            started: Instant::now(),
            first_chunk: None,
        })
    }

    pub fn task_id(&self) -> &str {
        &self.running.id
    }

    pub fn endpoint(&self) -> &'static str {
        self.job.endpoint
    }

    pub fn model(&self) -> &str {
        &self.job.model
    }

    pub fn created(&self) -> f64 {
        self.running.created
    }

    /// The next piece of the answer; `None` after `Done` or `Failed`.
    pub async fn next(&mut self) -> Option<Piece> {
        loop {
            if self.settled_fired {
                if let Some(p) = self.settled() {
                    return Some(p);
                }
                // Settled and then requeued cannot happen; watch again rather than spin.
                self.settled_rx = self.gw.fleet.watch_settled(&self.running.id);
                self.settled_fired = self.settled_rx.is_none();
                continue;
            }
            let waiting = !self.opened && self.relayed == 0;
            let wake = {
                let listener = self.running.listener.as_mut()?;
                let settle = async {
                    match self.settled_rx.as_mut() {
                        Some(rx) => {
                            let _ = rx.await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    biased;
                    ev = listener.recv() => Wake::Event(ev),
                    _ = settle => Wake::Settled,
                    _ = tokio::time::sleep_until(self.deadline.into()), if waiting => Wake::Deadline,
                }
            };
            if matches!(wake, Wake::Settled) {
                self.settled_rx = None;
                self.settled_fired = true;
                continue;
            }
            if let Some(p) = self.wake(wake) {
                return Some(p);
            }
        }
    }

    fn fail(&mut self, e: GatewayError) -> Option<Piece> {
        self.close();
        Some(Piece::Failed(e))
    }

    /// Stops listening; the task is no longer ours to cancel.
    fn close(&mut self) {
        self.running.settled();
        self.running.listener = None;
    }

    fn wake(&mut self, wake: Wake) -> Option<Piece> {
        let api = self.job.api;
        match wake {
            Wake::Event(None) => self.fail(GatewayError::upstream(api, "the stream was replaced")),
            Wake::Event(Some(StreamEvent::Opened { attempt, .. })) => {
                self.opened = true;
                self.attempt = attempt;
                None
            }
            Wake::Event(Some(StreamEvent::Line(line))) => self.line(&line),
            Wake::Event(Some(StreamEvent::Ended { .. })) => {
                self.ended = true;
                None
            }
            Wake::Event(Some(StreamEvent::Broken { attempt, reason })) => {
                if attempt < self.attempt {
                    return None;
                }
                self.broken(attempt, reason)
            }
            Wake::Deadline => {
                let st = self.gw.fleet.status(&self.running.id).ok().flatten();
                if st.as_ref().is_some_and(|s| s.status == TaskState::Pending) {
                    let why = st.and_then(|s| s.pending_reason);
                    self.gw.fleet.cancel(
                        &self.running.id,
                        "no node took it within the gateway's queue time",
                    );
                    let waited = self.gw.cfg.queue_timeout.as_secs_f64();
                    return self.fail(GatewayError::queue_timeout(api, waited, why));
                }
                self.opened = true;
                None
            }
            Wake::Settled => {
                self.settled_fired = true;
                None
            }
        }
    }

    fn line(&mut self, line: &Bytes) -> Option<Piece> {
        let api = self.job.api;
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return self.fail(GatewayError::upstream(
                    api,
                    format!("the node sent a chunk that is not JSON: {e}"),
                ))
            }
        };
        if let Some(err) = v.get("error") {
            let msg = err.as_str().map_or_else(|| err.to_string(), str::to_string);
            if self.relayed == 0 {
                // Nothing reached the client: the agent's result decides (a retryable
                // failure runs again, elsewhere; a final one fails the request).
                tracing::info!(task = %self.running.id, error = %msg, "Ollama failed before the first chunk");
                return None;
            }
            // Mid-answer: like a broken stream (continue, or end with the error).
            let attempt = self.attempt;
            return self.broken(attempt, format!("Ollama failed: {msg}"));
        }
        self.opened = true;
        if self.first_chunk.is_none() {
            self.first_chunk = Some(Instant::now());
        }
        self.relayed += 1;
        let text = v
            .pointer("/message/content")
            .or_else(|| v.get("response"))
            .and_then(Value::as_str)
            .unwrap_or("");
        self.partial.push_str(text);
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.running.settled();
            if let Some(l) = self.running.listener.take() {
                l.finish();
            }
            return Some(Piece::Done(v, Some(line.clone())));
        }
        Some(Piece::Chunk(v, Some(line.clone())))
    }

    /// The task settled while we listened: relay what is still queued, then its outcome.
    fn settled(&mut self) -> Option<Piece> {
        while let Some(ev) = self.running.listener.as_mut().and_then(|l| l.try_recv()) {
            if let Some(p) = self.wake(Wake::Event(Some(ev))) {
                return Some(p);
            }
        }
        let api = self.job.api;
        let st = match self.gw.fleet.status(&self.running.id) {
            Ok(Some(st)) => st,
            Ok(None) => return self.fail(GatewayError::upstream(api, "the task vanished")),
            Err(e) => return self.fail(GatewayError::upstream(api, e.to_string())),
        };
        match st.status {
            TaskState::Pending | TaskState::Assigned => None,
            TaskState::Completed => {
                let resp = st.result.as_ref().and_then(|r| r.get("response")).cloned();
                match resp {
                    // The node answered without streaming (or its stream got lost): the
                    // whole answer is in the result.
                    Some(v) if self.relayed == 0 => {
                        self.close();
                        Some(Piece::Done(v, None))
                    }
                    _ => self.fail(GatewayError::upstream(
                        api,
                        "the node finished without sending the end of its stream; the answer is incomplete",
                    )),
                }
            }
            _ => {
                let e = settled_error(api, &st);
                self.fail(e)
            }
        }
    }

    fn broken(&mut self, attempt: u32, reason: String) -> Option<Piece> {
        let api = self.job.api;
        if self.relayed == 0 {
            // Nothing reached the client: another node can start afresh.
            tracing::info!(task = %self.running.id, attempt, %reason, "stream broke before its first chunk; retrying");
            self.gw.fleet.retry_attempt(&self.running.id, attempt);
            self.opened = false;
            self.ended = false;
            self.deadline = Instant::now() + self.gw.cfg.queue_timeout;
            return None;
        }
        if self.job.endpoint != "chat" || self.continuations >= MAX_CONTINUATIONS {
            let e = GatewayError::upstream(
                api,
                format!(
                    "the node streaming this answer failed after {} chunks ({reason}); the answer is incomplete",
                    self.relayed
                ),
            );
            self.gw.fleet.cancel(
                &self.running.id,
                &format!(
                    "its stream broke after {} chunks ({reason}); the client got an error",
                    self.relayed
                ),
            );
            return self.fail(e);
        }
        // Chat: ask another node to continue the partial reply.
        let mut request = self.job.request.clone();
        if let Some(msgs) = request.get_mut("messages").and_then(Value::as_array_mut) {
            msgs.push(json!({"role": "assistant", "content": self.partial}));
        }
        self.continuations += 1;
        let next = Job {
            request,
            ..self.job.clone()
        };
        let old = self.running.id.clone();
        let gw = self.gw.clone();
        // Submitting is synchronous up to the commit; the commit is awaited by the store
        // thread's order anyway, so the new task is durable before its first chunk.
        let (id, _commit) = gw.fleet.submit(NewTask {
            task_type: task_type::OLLAMA_API.into(),
            data: json!({
                "model": next.model, "endpoint": next.endpoint,
                "request": next.request, "stream": true,
                "continues": old,
            }),
            priority: next.priority,
            timeout_s: None,
            max_attempts: None,
            expires_s: None,
        });
        if let Some(charge) = &gw.key {
            charge.auth.task_submitted(&charge.caller, &id);
        }
        let listener = gw.fleet.streams().listen(&id);
        gw.fleet.cancel(
            &old,
            &format!(
                "its stream broke after {} chunks ({reason}); continued as task {id}",
                self.relayed
            ),
        );
        self.running.settled();
        self.running = Running {
            gw: gw.clone(),
            id,
            created: self.running.created,
            listener: Some(listener),
            finished: false,
        };
        self.opened = false;
        self.attempt = 0;
        self.ended = false;
        self.settled_rx = gw.fleet.watch_settled(&self.running.id);
        self.settled_fired = self.settled_rx.is_none();
        self.deadline = Instant::now() + gw.cfg.queue_timeout;
        tracing::info!(old = %old, new = %self.running.id, "stream broke mid-answer; continuing on another node");
        None
    }
}
