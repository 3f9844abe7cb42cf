//! The node API (client token): `GET /api/nodes`, `GET /api/nodes/{id}`, and drain /
//! undrain. Both views carry the configured temperature thresholds.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use pifleet_protocol::paths::{self, routes};
use pifleet_protocol::{NodeDetail, NodeView, NodesResponse};

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
