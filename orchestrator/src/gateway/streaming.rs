//! A streamed gateway answer: the relay's pieces written to the client as they come,
//! in Ollama's NDJSON or OpenAI's server-sent events, with no buffering on the way.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use serde_json::Value;

use super::error::GatewayError;
use super::handlers::finish;
use super::openai::SseShaper;
use super::relay::{Job, Piece, Stream};
use super::Gateway;

pub(super) enum Shape {
    /// Ollama's own lines, relayed byte for byte.
    Ndjson,
    Sse(SseShaper),
}

impl Shape {
    fn content_type(&self) -> &'static str {
        match self {
            Shape::Ndjson => "application/x-ndjson",
            Shape::Sse(_) => "text/event-stream",
        }
    }
}

/// The response body's state. Dropped when the client hangs up, which drops the
/// [`Stream`] and so cancels the task.
struct Relay {
    gw: Gateway,
    stream: Stream,
    shape: Shape,
    first: Option<Piece>,
    over: bool,
    recorded: bool,
}

impl Relay {
    fn record(&mut self, outcome: &str) {
        if !self.recorded {
            self.recorded = true;
            let api = self.stream_api();
            self.gw
                .metrics
                .request(api, self.stream_endpoint(), outcome);
        }
    }

    fn stream_api(&self) -> &'static str {
        match self.shape {
            Shape::Ndjson => "ollama",
            Shape::Sse(_) => "openai",
        }
    }

    fn stream_endpoint(&self) -> &'static str {
        self.stream.endpoint()
    }

    /// Statistics once the answer is complete.
    fn observe_done(&self, v: &Value) {
        let model = self.stream.model();
        if let Some(first) = self.stream.first_chunk {
            self.gw
                .metrics
                .first_token(model, (first - self.stream.started).as_secs_f64());
        }
        let count = v.get("eval_count").and_then(Value::as_f64);
        let ns = v.get("eval_duration").and_then(Value::as_f64);
        if let (Some(c), Some(ns)) = (count, ns) {
            if ns > 0.0 {
                self.gw.metrics.tokens_per_second(model, c / (ns / 1e9));
            }
        }
    }

    async fn next_bytes(&mut self) -> Option<Bytes> {
        loop {
            if self.over {
                return None;
            }
            let piece = match self.first.take() {
                Some(p) => p,
                None => match self.stream.next().await {
                    Some(p) => p,
                    None => {
                        self.over = true;
                        return None;
                    }
                },
            };
            let out: Option<Vec<u8>> = match piece {
                Piece::Chunk(v, raw) => {
                    self.gw.metrics.chunks(1);
                    match &mut self.shape {
                        Shape::Ndjson => Some(line(raw, &v)),
                        Shape::Sse(s) => s.chunk(&v),
                    }
                }
                Piece::Done(v, raw) => {
                    self.over = true;
                    self.gw.metrics.chunks(1);
                    self.observe_done(&v);
                    self.record("ok");
                    Some(match &mut self.shape {
                        Shape::Ndjson => line(raw, &v),
                        Shape::Sse(s) => s.done(&v),
                    })
                }
                Piece::Failed(e) => {
                    self.over = true;
                    self.record("failed");
                    Some(match &self.shape {
                        Shape::Ndjson => {
                            let mut b = serde_json::to_vec(&e.body()).unwrap_or_default();
                            b.push(b'\n');
                            b
                        }
                        Shape::Sse(s) => s.error(&e),
                    })
                }
            };
            if let Some(b) = out {
                return Some(Bytes::from(b));
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.record("cancelled");
    }
}

fn line(raw: Option<Bytes>, v: &Value) -> Vec<u8> {
    let mut b = match raw {
        Some(r) => r.to_vec(),
        None => serde_json::to_vec(v).unwrap_or_default(),
    };
    b.push(b'\n');
    b
}

/// Waits for the first chunk (so queue time-outs and failures before it still get their
/// own status code), then streams the rest as it comes.
pub(super) async fn stream_response(
    gw: Gateway,
    job: Job,
    shape: impl FnOnce(&str, f64) -> Shape,
) -> Response {
    let api = job.api;
    let endpoint = job.endpoint;
    let mut stream = match Stream::start(&gw, job).await {
        Ok(s) => s,
        Err(e) => return finish(&gw, api, endpoint, Err(e)),
    };
    let first = match stream.next().await {
        Some(Piece::Failed(e)) => return finish(&gw, api, endpoint, Err(e)),
        None => {
            let e = GatewayError::upstream(api, "the stream ended before it began");
            return finish(&gw, api, endpoint, Err(e));
        }
        Some(p) => p,
    };
    let shape = shape(stream.task_id(), stream.created());
    let content_type = shape.content_type();
    let task = stream.task_id().to_string();
    let relay = Relay {
        gw,
        stream,
        shape,
        first: Some(first),
        over: false,
        recorded: false,
    };
    let body = futures_util::stream::unfold(relay, |mut r| async move {
        r.next_bytes().await.map(|b| (Ok::<_, Infallible>(b), r))
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Ok(v) = HeaderValue::from_str(&task) {
        h.insert("x-pifleet-task", v);
    }
    resp
}
