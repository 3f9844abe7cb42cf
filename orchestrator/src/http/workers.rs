//! Worker endpoints: register, heartbeat, poll (long poll with `?wait=`), unregister;
//! and the client's worker list.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use pifleet_protocol::paths::{self, routes};
use pifleet_protocol::{
    HeartbeatRequest, HeartbeatResponse, PollResponse, RegisterRequest, RegisterResponse,
    UnregisterResponse, WorkersListResponse,
};

use super::extract::{typed, Id, JsonBody, OptionalTyped, QueryMap};
use super::AppState;
use crate::error::AppError;
use crate::fleet::committed;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::REGISTER, post(register))
        .route(routes::WORKER_HEARTBEAT, post(heartbeat))
        .route(routes::WORKER_TASKS, get(poll))
        .route(routes::WORKER_UNREGISTER, post(unregister))
}

pub fn client_router() -> Router<AppState> {
    Router::new().route(paths::WORKERS_LIST, get(list))
}

const MAX_ID_LEN: usize = 128;

/// Worker ids appear in paths, logs and the database: keep them printable and short.
pub fn check_worker_id(field: &str, id: &str) -> Result<(), AppError> {
    if id.trim().is_empty() {
        return Err(AppError::Invalid(format!("{field}: must not be empty")));
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(AppError::Invalid(format!(
            "{field}: longer than {MAX_ID_LEN} characters"
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(AppError::Invalid(format!(
            "{field}: must not contain control characters"
        )));
    }
    Ok(())
}

async fn register(
    State(s): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<RegisterResponse>, AppError> {
    let req: RegisterRequest = typed(body)?;
    check_worker_id("worker_id", &req.worker_id)?;
    if req.capabilities.slots == Some(0) {
        return Err(AppError::Invalid(
            "capabilities.slots: must be at least 1".into(),
        ));
    }
    if req.capabilities.slots.is_some_and(|n| n > 1024) {
        return Err(AppError::Invalid(
            "capabilities.slots: must be at most 1024".into(),
        ));
    }
    let (resp, commit) = s.fleet.register(req);
    committed(commit).await?;
    Ok(Json(resp))
}

async fn heartbeat(
    State(s): State<AppState>,
    Id(id): Id,
    OptionalTyped(body): OptionalTyped<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, AppError> {
    let hb = body.unwrap_or_default();
    Ok(Json(s.fleet.heartbeat(&id, hb)?))
}

async fn poll(
    State(s): State<AppState>,
    Id(id): Id,
    query: QueryMap,
) -> Result<Json<PollResponse>, AppError> {
    let max = s.fleet.limits().max_wait_s;
    let wait = query.seconds("wait")?.unwrap_or(0.0).min(max);
    let mut ticket = s.fleet.poll_start(&id)?;
    let task = ticket.wait(wait).await?;
    ticket.finish();
    Ok(Json(PollResponse { task }))
}

async fn unregister(
    State(s): State<AppState>,
    Id(id): Id,
) -> Result<Json<UnregisterResponse>, AppError> {
    let (resp, commit) = s.fleet.unregister(&id)?;
    committed(commit).await?;
    Ok(Json(resp))
}

async fn list(State(s): State<AppState>) -> Json<WorkersListResponse> {
    Json(s.fleet.workers_list())
}
