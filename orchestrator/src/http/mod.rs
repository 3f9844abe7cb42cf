//! The HTTP API: the seed's endpoints plus pifleet's extensions.
//!
//! Every route is here. They are grouped by who may call them: worker routes need the
//! worker token, client routes the client token (each only when configured; the checks
//! are in `auth`), the status page takes the client token by header or `?token=`. Each
//! module writes a `router()` that [`app`] merges into the matching group:
//! `workers` (register, heartbeat, poll, unregister, the worker list), `tasks` (submit,
//! result, status, queue, stats), `nodes` (node views, drain), `page` (the status page,
//! its events, `/metrics`). Handlers call the [`crate::fleet`]; its errors become HTTP
//! in `error`.

pub(crate) mod auth;
pub mod error;
pub mod extract;
mod nodes;
pub(crate) mod page;
mod streams;
mod tasks;
pub mod validate;
mod workers;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pifleet_protocol::{paths, ErrorResponse, HealthResponse};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::AppError;
use crate::fleet::Fleet;
use crate::keys::Auth;

/// Bearer tokens. `None` leaves that group open (only allowed on loopback or with
/// `--insecure`).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub worker: Option<String>,
    pub client: Option<String>,
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub fleet: Fleet,
    pub tokens: Arc<Tokens>,
    /// Keys, node credentials and the configured tokens: who may call.
    pub auth: Arc<Auth>,
    pub max_body_bytes: usize,
    /// The OpenAI- and Ollama-compatible gateway's settings and metrics.
    pub gateway: crate::gateway::Gateway,
    /// The status page's live feed, shared by every open event stream.
    pub events: crate::health::feed::Feed,
}

/// The whole API as one router, ready for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    let mut worker = workers::router()
        .merge(tasks::worker_router())
        .merge(streams::worker_router());
    // No layer at all without a token: it costs a boxed future per request.
    if state.tokens.worker.is_some() || state.auth.has_db() {
        worker = worker.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_worker,
        ));
    }
    let mut client = tasks::router()
        .merge(workers::client_router())
        .merge(nodes::router())
        .merge(page::metrics_router());
    // With a database, keys may be added while the server runs.
    if state.tokens.client.is_some() || state.auth.has_db() {
        client = client.route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_client,
        ));
    }
    Router::new()
        .route(paths::HEALTH, get(health))
        .merge(worker)
        .merge(client)
        .merge(crate::gateway::router(&state))
        .merge(page::router(state.clone()))
        .fallback(no_route)
        .layer(middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            AppError::Internal("a handler panicked".into()).into_response()
        }))
        .with_state(state)
}

/// Anyone may ask whether the orchestrator is up; how many nodes and tasks it has is
/// told only to a caller with a valid token (when tokens are configured at all).
async fn health(State(s): State<AppState>, headers: HeaderMap) -> Json<HealthResponse> {
    let mut h = s.fleet.health();
    if s.auth.guarded() && !s.auth.knows(&headers) {
        h.workers_online = None;
        h.tasks_pending = None;
        h.store_error = None;
        h.version = None;
    }
    Json(h)
}

async fn no_route(req: Request) -> AppError {
    AppError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Rewrites error responses made outside our handlers (405 from the router, 413 from a
/// body limit) into `{"error": ...}`, so clients parse one shape.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "body: too large".to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "body: unsupported media type".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let allow: Option<HeaderValue> = resp.headers().get(header::ALLOW).cloned();
    let mut out = (status, Json(ErrorResponse { error })).into_response();
    if let Some(allow) = allow {
        out.headers_mut().insert(header::ALLOW, allow);
    }
    out
}
