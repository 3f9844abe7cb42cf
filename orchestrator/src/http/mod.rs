//! The HTTP API: the seed's endpoints plus pifleet's extensions.
//!
//! Routes are grouped by who may call them: worker routes need the worker token, client
//! routes the client token (each only when configured). To add endpoints (node views,
//! metrics, drain), write a `router()` in a new module and merge it into the matching
//! group in [`app`].

pub mod error;
pub mod extract;
mod tasks;
mod workers;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pifleet_protocol::{ErrorResponse, HealthResponse};
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::AppError;
use crate::fleet::Fleet;

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
    pub max_body_bytes: usize,
}

/// The whole API as one router, ready for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    let mut worker = workers::router().merge(tasks::worker_router());
    // No layer at all without a token: it costs a boxed future per request.
    if state.tokens.worker.is_some() {
        worker = worker.route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_worker_token,
        ));
    }
    let mut client = tasks::router()
        .merge(workers::client_router())
        .merge(crate::health::routes::client_router());
    if state.tokens.client.is_some() {
        client = client.route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_client_token,
        ));
    }
    Router::new()
        .route("/health", get(health))
        .merge(worker)
        .merge(client)
        .merge(crate::health::routes::page_router(state.clone()))
        .fallback(no_route)
        .layer(middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            AppError::Internal("a handler panicked".into()).into_response()
        }))
        .with_state(state)
}

async fn health(State(s): State<AppState>) -> Json<HealthResponse> {
    Json(s.fleet.health())
}

async fn no_route(req: Request) -> AppError {
    AppError::NotFound(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn check_bearer(
    headers: &HeaderMap,
    want: Option<&str>,
    who: &str,
) -> Result<(), AppError> {
    let Some(want) = want else { return Ok(()) };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match got {
        Some(t) if same_secret(t.as_bytes(), want.as_bytes()) => Ok(()),
        Some(_) => Err(AppError::Unauthorized(format!(
            "the bearer token is not the {who} token"
        ))),
        None => Err(AppError::Unauthorized(format!(
            "missing \"Authorization: Bearer <{who} token>\""
        ))),
    }
}

async fn require_worker_token(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    check_bearer(req.headers(), s.tokens.worker.as_deref(), "worker")?;
    Ok(next.run(req).await)
}

async fn require_client_token(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    check_bearer(req.headers(), s.tokens.client.as_deref(), "client")?;
    Ok(next.run(req).await)
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
