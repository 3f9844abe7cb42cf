//! Bearer-token checks: the worker token for worker routes, the client token for client
//! routes, and the status page's client token by header or `?token=` (a browser cannot
//! set headers on `EventSource`). A group without a configured token is open (allowed
//! only on loopback or with `--insecure`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

use super::extract::QueryMap;
use super::AppState;
use crate::error::AppError;

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

pub(super) async fn require_worker_token(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    check_bearer(req.headers(), s.tokens.worker.as_deref(), "worker")?;
    Ok(next.run(req).await)
}

pub(super) async fn require_client_token(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    check_bearer(req.headers(), s.tokens.client.as_deref(), "client")?;
    Ok(next.run(req).await)
}

/// The page and its event stream: the client token by header or `?token=`.
pub(super) async fn require_page_token(
    State(s): State<AppState>,
    QueryMap(q): QueryMap,
    req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let by_query = match (q.get("token"), s.tokens.client.as_deref()) {
        (Some(got), Some(want)) => same_secret(got.as_bytes(), want.as_bytes()),
        _ => false,
    };
    if !by_query && check_bearer(req.headers(), s.tokens.client.as_deref(), "client").is_err() {
        return Err(AppError::Unauthorized(
            "the status page needs the client token: open /?token=<client token> \
             (or send \"Authorization: Bearer <client token>\")"
                .into(),
        ));
    }
    Ok(next.run(req).await)
}
