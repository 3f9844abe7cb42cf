//! `POST /api/tasks/{id}/stream?worker_id=W&attempt=N`: an agent streams the chunks of a
//! gateway task (chunked NDJSON, one Ollama object per line) and each line goes on to
//! the waiting client at once. 200 when the body ends; 409, possibly before the body
//! ends, once the attempt is no longer current (the client hung up, or it was revoked):
//! the agent then drops its Ollama request, so the node stops generating.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::json;

use super::auth::WorkerAuth;
use super::extract::{Id, QueryMap};
use super::AppState;
use crate::error::AppError;
use crate::fleet::stream::{Feed, FeedClosed};

pub fn worker_router() -> Router<AppState> {
    Router::new().route("/api/tasks/{id}/stream", post(stream))
}

fn closed(why: FeedClosed, task: &str) -> Response {
    let msg = match why {
        FeedClosed::ClientGone => format!(
            "the client of task \"{task}\" hung up: the task is cancelled; drop the Ollama request"
        ),
        FeedClosed::Stopped => {
            format!("this attempt of task \"{task}\" is no longer current; drop the Ollama request")
        }
    };
    AppError::Conflict(msg).into_response()
}

async fn stream(
    State(s): State<AppState>,
    who: WorkerAuth,
    Id(id): Id,
    q: QueryMap,
    body: Body,
) -> Response {
    let Some(worker) = q.0.get("worker_id").cloned() else {
        return AppError::BadRequest("worker_id: missing from the query".into()).into_response();
    };
    // Only the node itself may stream its answer.
    if let Err(e) = who.may_act_as(&s, &worker) {
        return e.into_response();
    }
    let attempt = match q.0.get("attempt").map(|a| a.trim().parse::<u32>()) {
        Some(Ok(a)) if a >= 1 => a,
        _ => {
            return AppError::BadRequest(
                "attempt: expected the assignment's attempt number in the query".into(),
            )
            .into_response()
        }
    };
    if let Err(e) = s.fleet.check_holder(&id, &worker, attempt) {
        return AppError::from(e).into_response();
    }
    let Some(feed) = s.fleet.streams().attach(&id, &worker, attempt) else {
        return closed(FeedClosed::ClientGone, &id);
    };
    // Revoked between the check and the attach: the stop missed this feed.
    if s.fleet.check_holder(&id, &worker, attempt).is_err() {
        return closed(FeedClosed::Stopped, &id);
    }
    if let Err(why) = feed.open(&worker).await {
        return closed(why, &id);
    }
    relay(feed, body, &id).await
}

/// Splits the body into lines and relays each one as soon as it is complete.
async fn relay(feed: Feed, mut body: Body, task: &str) -> Response {
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            why = feed.closed() => {
                if why == FeedClosed::Stopped {
                    feed.broken("the attempt was revoked".into()).await;
                }
                return closed(why, task);
            }
        };
        let data: Bytes = match frame {
            None => break,
            Some(Err(e)) => {
                feed.broken(format!("the agent's upload broke off: {e}"))
                    .await;
                return AppError::BadRequest(format!("body: broke off: {e}")).into_response();
            }
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        let mut start = 0;
        while let Some(pos) = data[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            let line = if partial.is_empty() {
                data.slice(start..end)
            } else {
                partial.extend_from_slice(&data[start..end]);
                Bytes::from(std::mem::take(&mut partial))
            };
            start = end + 1;
            if line.trim_ascii().is_empty() {
                continue;
            }
            if let Err(why) = feed.line(line).await {
                if why == FeedClosed::Stopped {
                    feed.broken("the attempt was revoked".into()).await;
                }
                return closed(why, task);
            }
        }
        partial.extend_from_slice(&data[start..]);
    }
    if !partial.trim_ascii().is_empty() {
        if let Err(why) = feed.line(Bytes::from(partial)).await {
            return closed(why, task);
        }
    }
    feed.end().await;
    (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
}
