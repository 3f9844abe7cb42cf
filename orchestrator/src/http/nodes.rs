//! The node API (client token): `GET /api/nodes`, `GET /api/nodes/{id}`, and drain /
//! undrain, and forget (drops the node and its credential). Both views carry the
//! configured temperature thresholds.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use pifleet_protocol::paths::{self, routes};
use pifleet_protocol::{NodeDetail, NodeView, NodesResponse};
use serde_json::{json, Value};

use super::extract::Id;
use super::AppState;
use crate::error::AppError;
use crate::fleet::FleetError;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(paths::NODES, get(list_nodes))
        .route(routes::NODE, get(show_node))
        .route(routes::NODE_DRAIN, post(drain))
        .route(routes::NODE_UNDRAIN, post(undrain))
        .route(NODE_FORGET, post(forget))
}

async fn list_nodes(State(s): State<AppState>) -> Json<NodesResponse> {
    Json(s.fleet.nodes_response())
}

async fn show_node(State(s): State<AppState>, Id(id): Id) -> Result<Json<NodeDetail>, AppError> {
    match s.fleet.node(&id) {
        Some(detail) => Ok(Json(detail)),
        None => Err(FleetError::NodeNotFound(id).into()),
    }
}

async fn drain(State(s): State<AppState>, Id(id): Id) -> Result<Json<NodeView>, AppError> {
    Ok(Json(s.fleet.set_draining(&id, true).await?))
}

async fn undrain(State(s): State<AppState>, Id(id): Id) -> Result<Json<NodeView>, AppError> {
    Ok(Json(s.fleet.set_draining(&id, false).await?))
}

/// Admin only (see [`crate::keys::role::ROUTES`]).
pub const NODE_FORGET: &str = "/api/nodes/{id}/forget";

/// Drops a node and its credential (a lost or stolen card); what it held is requeued.
/// It may join again with the join token only.
async fn forget(State(s): State<AppState>, Id(id): Id) -> Result<Json<Value>, AppError> {
    let auth = s.auth.clone();
    let target = id.clone();
    let done = tokio::task::spawn_blocking(move || auth.forget(&target))
        .await
        .map_err(|e| AppError::Internal(format!("forgetting a node: {e}")))?
        .map_err(|e| AppError::Unavailable(format!("forgetting a node: {e}")))?;
    if !done.had_credential && !done.was_registered {
        return Err(FleetError::NodeNotFound(id).into());
    }
    tracing::info!(worker = %id, requeued = done.requeued.len(), "node forgotten");
    Ok(Json(json!({
        "status": "forgotten",
        "worker_id": id,
        "had_credential": done.had_credential,
        "requeued": done.requeued,
    })))
}
