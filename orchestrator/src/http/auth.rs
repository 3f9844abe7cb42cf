//! Who may call. Worker routes: the join token (`worker_token`) or a node's own
//! credential, and then only for that node's id (the handlers check the id with
//! [`WorkerAuth`]). Client routes: the client token (an admin key) or a named key whose
//! role the route needs ([`crate::keys::role::ROUTES`]), within the key's quotas. The
//! status page takes the same by header or `?token=` (a browser cannot set headers on
//! `EventSource`). A group with nothing configured is open (allowed only on loopback or
//! with `--insecure`). The decisions are in [`crate::keys`]; this maps them onto axum.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::extract::QueryMap;
use super::AppState;
use crate::error::AppError;
use crate::keys::{Caller, Denied, Worker};

/// Who sent a worker request. Without a worker layer (nothing configured), the join
/// role: it still may not act for a node that has a credential.
pub struct WorkerAuth(pub Worker);

impl<S: Send + Sync> FromRequestParts<S> for WorkerAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(WorkerAuth(
            parts
                .extensions
                .get::<Worker>()
                .cloned()
                .unwrap_or(Worker::Join),
        ))
    }
}

/// The client key of a request; `None` when client routes are open.
pub struct ClientAuth(pub Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAuth(parts.extensions.get::<Caller>().cloned()))
    }
}

impl WorkerAuth {
    /// Refuses (403) acting for node `id` unless this caller may.
    pub fn may_act_as(&self, s: &AppState, id: &str) -> Result<(), AppError> {
        Ok(s.auth.may_act_as(&self.0, id)?)
    }
}

pub(super) async fn require_worker(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let who = s.auth.worker(req.headers())?;
    req.extensions_mut().insert(who);
    Ok(next.run(req).await)
}

fn route_of(req: &Request) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string())
}

/// Any client route: the role the route needs, the key's quotas. Public to the crate so
/// other route groups (the gateway) can layer it or call [`crate::keys::Auth::client`].
pub(crate) async fn require_client(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    let route = route_of(&req);
    if let Some(caller) = s.auth.client(req.headers(), req.method(), &route)? {
        req.extensions_mut().insert(caller);
    }
    Ok(next.run(req).await)
}

/// The page and its event stream: a key (or the client token) by header or `?token=`.
pub(super) async fn require_page_token(
    State(s): State<AppState>,
    QueryMap(q): QueryMap,
    mut req: Request,
    next: Next,
) -> Result<Response, AppError> {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        if let Some(v) = q
            .get("token")
            .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
        {
            req.headers_mut().insert(header::AUTHORIZATION, v);
        }
    }
    let route = route_of(&req);
    match s.auth.client(req.headers(), req.method(), &route) {
        Ok(caller) => {
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            Ok(next.run(req).await)
        }
        Err(Denied::Unauthenticated(_)) => Err(AppError::Unauthorized(
            "the status page needs a client key (or the client token): open \
             /?token=<key> (or send \"Authorization: Bearer <key>\")"
                .into(),
        )),
        Err(other) => Err(other.into()),
    }
}
