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

use super::auth::WorkerAuth;
use super::extract::{typed, Id, JsonBody, OptionalTyped, QueryMap};
pub use super::validate::check_worker_id;
use super::validate::{check_capabilities_size, check_metrics, require};
use super::AppState;
use crate::error::AppError;
use crate::fleet::committed;
use crate::keys::{IssueError, Worker};
use crate::store::keys::AuthDbError;

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

async fn register(
    State(s): State<AppState>,
    who: WorkerAuth,
    JsonBody(body): JsonBody,
) -> Result<Json<RegisterResponse>, AppError> {
    require(&body, &["worker_id", "worker_type", "capabilities"])?;
    if let Some(caps) = body.get("capabilities") {
        check_capabilities_size(caps)?;
    }
    let req: RegisterRequest = typed(body)?;
    check_worker_id("worker_id", &req.worker_id)?;
    who.may_act_as(&s, &req.worker_id)?;
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
    let id = req.worker_id.clone();
    let issue = req.want_credential && who.0 == Worker::Join;
    let (mut resp, commit) = s.fleet.register(req);
    committed(commit).await?;
    // Registered first: if issuing fails the node is in with the join token and asks
    // again next time, rather than holding a credential it never received.
    if issue {
        let auth = s.auth.clone();
        resp.credential = tokio::task::spawn_blocking(move || auth.issue_credential(&id))
            .await
            .map_err(|e| AppError::Internal(format!("issuing a credential: {e}")))?
            .map_err(|e| match e {
                IssueError::Db(AuthDbError::CredentialExists(id)) => AppError::Conflict(format!(
                    "node \"{id}\" was given a credential by another registration just now; \
                     register with that credential, or `pifleet-orchestrator nodes forget {id}`"
                )),
                other => AppError::Unavailable(format!("issuing a credential: {other}")),
            })?;
        if resp.credential.is_some() {
            tracing::info!(worker = %resp.worker_id, "node credential issued");
        }
    }
    Ok(Json(resp))
}

async fn heartbeat(
    State(s): State<AppState>,
    who: WorkerAuth,
    Id(id): Id,
    OptionalTyped(body): OptionalTyped<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, AppError> {
    who.may_act_as(&s, &id)?;
    let hb = body.unwrap_or_default();
    if let Some(m) = &hb.metrics {
        check_metrics(m)?;
    }
    let (resp, commit) = s.fleet.heartbeat(&id, hb)?;
    if let Some(commit) = commit {
        committed(commit).await?;
    }
    Ok(Json(resp))
}

async fn poll(
    State(s): State<AppState>,
    who: WorkerAuth,
    Id(id): Id,
    query: QueryMap,
) -> Result<Json<PollResponse>, AppError> {
    who.may_act_as(&s, &id)?;
    let max = s.fleet.limits().max_wait_s;
    let wait = query.seconds("wait")?.unwrap_or(0.0).min(max);
    let mut ticket = s.fleet.poll_start(&id)?;
    let task = ticket.wait(wait).await?;
    ticket.finish();
    Ok(Json(PollResponse { task }))
}

async fn unregister(
    State(s): State<AppState>,
    who: WorkerAuth,
    Id(id): Id,
) -> Result<Json<UnregisterResponse>, AppError> {
    who.may_act_as(&s, &id)?;
    let (resp, commit) = s.fleet.unregister(&id)?;
    committed(commit).await?;
    Ok(Json(resp))
}

async fn list(State(s): State<AppState>) -> Json<WorkersListResponse> {
    Json(s.fleet.workers_list())
}
