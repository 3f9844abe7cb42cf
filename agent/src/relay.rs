//! Streaming a generation to the orchestrator as Ollama produces it: [`Relay`] is the
//! body of one chunked `POST /api/tasks/{id}/stream`, a `Read` that hands out one
//! Ollama line per read (so each line leaves as its own chunk, at once) while the
//! [`Streaming`] under it folds the lines into the final answer.
//!
//! When Ollama fails mid-way the relay writes one `{"error": ...}` line, Ollama's own
//! mid-stream error shape, ends the body, and the task reports a failure. When the
//! orchestrator answers 409 or the upload breaks, the relay is dropped at once, which
//! closes the connection to Ollama so it stops generating, and nothing is reported.

use std::io::Read;
use std::time::Duration;

use pifleet_protocol::TaskAssignment;
use serde_json::json;

use crate::abort::Aborts;
use crate::client::Client;
use crate::error::{ClientError, OllamaError};
use crate::ollama::{Limits, Streaming};
use crate::outcome::{failed, failure, with_response, Ran};

/// Bound for the orchestrator's answer once the body has ended.
const ANSWER: Duration = Duration::from_secs(10);

/// Where a streaming task's chunks go: the orchestrator, as this worker.
pub struct StreamTo<'a> {
    pub client: &'a Client,
    pub worker_id: &'a str,
    /// Where a request still waiting for Ollama can be stopped from the heartbeat.
    pub aborts: &'a Aborts,
}

enum End {
    Running,
    Done,
    Failed(OllamaError),
}

pub struct Relay {
    streaming: Option<Streaming>,
    line: String,
    pending: Vec<u8>,
    pos: usize,
    end: End,
    /// Lines handed to the upload so far.
    pub lines: u64,
}

impl Relay {
    pub fn new(streaming: Streaming) -> Relay {
        Relay {
            streaming: Some(streaming),
            line: String::new(),
            pending: Vec::new(),
            pos: 0,
            end: End::Running,
            lines: 0,
        }
    }

    fn refill(&mut self) {
        self.pending.clear();
        self.pos = 0;
        let Some(streaming) = self.streaming.as_mut() else {
            return;
        };
        match streaming.advance(&mut self.line) {
            Ok(done) => {
                self.pending.extend_from_slice(self.line.as_bytes());
                if !self.line.ends_with('\n') {
                    self.pending.push(b'\n');
                }
                if done {
                    self.end = End::Done;
                }
            }
            Err(e) => {
                // An error line from Ollama goes on with its own words.
                let message = match &e {
                    OllamaError::Stream(m) => m.clone(),
                    other => other.to_string(),
                };
                let mut line = json!({ "error": message }).to_string();
                line.push('\n');
                self.pending.extend_from_slice(line.as_bytes());
                // Nothing more will be read from this Ollama request: let it go now.
                self.streaming = None;
                self.end = End::Failed(e);
            }
        }
        self.lines += 1;
    }
}

impl Read for Relay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.pending.len() {
            if !matches!(self.end, End::Running) {
                return Ok(0);
            }
            self.refill();
        }
        let n = buf.len().min(self.pending.len() - self.pos);
        buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Streams `streaming` to the orchestrator for `task`'s attempt and says what to report.
pub fn relay(streaming: Streaming, to: &StreamTo, task: &TaskAssignment, limits: Limits) -> Ran {
    let attempt = task.attempt.unwrap_or(1);
    let mut relay = Relay::new(streaming);
    let sent = to.client.stream(
        &task.task_id,
        to.worker_id,
        attempt,
        &mut relay,
        limits.total + ANSWER,
    );
    match sent {
        Ok(()) => match (
            std::mem::replace(&mut relay.end, End::Running),
            relay.streaming.take(),
        ) {
            (End::Done, Some(streaming)) => Ran::Done(with_response(Ok(streaming.finish()))),
            (End::Failed(e), _) => Ran::Done(failed(&e)),
            _ => Ran::Done(failure(
                "the orchestrator ended the stream before Ollama finished".into(),
                true,
            )),
        },
        Err(ClientError::Status {
            status: 409,
            message,
        }) => Ran::Abandoned(format!(
            "the orchestrator no longer wants attempt {attempt} (409: {message})"
        )),
        Err(ClientError::Transport(e)) => Ran::Abandoned(format!(
            "the stream to the orchestrator broke after {} line(s): {e}",
            relay.lines
        )),
        Err(e) => Ran::Done(failure(format!("cannot stream the answer: {e}"), true)),
    }
}
