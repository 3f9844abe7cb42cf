//! The one error type handlers return, its single mapping to HTTP, and the mapping of
//! the fleet's domain errors onto it (with how the client recovers).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pifleet_protocol::{paths, ErrorResponse};

use crate::fleet::FleetError;
use crate::keys::Denied;

/// Everything a request can fail with. Messages are shown to the client as
/// `{"error": "..."}`, so they name the field or the id at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    /// The request cannot be read at all: not JSON, bad query, bad path.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed JSON with a missing field, a wrong type or a value out of range.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Known caller, not allowed: another node's id, a role too low, a priority too high.
    #[error("{0}")]
    Forbidden(String),
    /// A key's quota is used up; `Retry-After` says when to come back.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_s: u64 },
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but loses a race: a revoked attempt, a settled task.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The store could not commit: nothing was acknowledged.
    #[error("{0}")]
    Unavailable(String),
    /// A bug. The detail is logged; the client sees a generic message.
    #[error("{0}")]
    Internal(String),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<FleetError> for AppError {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::NotRegistered(_) | FleetError::Dead(_) => {
                AppError::NotFound(format!("{e}: register again (POST {})", paths::REGISTER))
            }
            FleetError::TaskNotFound(_) | FleetError::NodeNotFound(_) => {
                AppError::NotFound(e.to_string())
            }
            FleetError::AlreadySettled { .. }
            | FleetError::StaleAttempt { .. }
            | FleetError::NotHolder { .. } => AppError::Conflict(e.to_string()),
            FleetError::StoreUnavailable(detail) | FleetError::StoreRead(detail) => {
                AppError::Unavailable(detail)
            }
        }
    }
}

impl From<Denied> for AppError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated(m) => AppError::Unauthorized(m),
            Denied::Forbidden(m) => AppError::Forbidden(m),
            Denied::Quota {
                message,
                retry_after_s,
            } => AppError::TooManyRequests {
                message,
                retry_after_s,
            },
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            AppError::TooManyRequests { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        };
        let error = match self {
            AppError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error".to_string()
            }
            AppError::Unavailable(detail) => {
                tracing::error!(%detail, "store unavailable");
                format!("store unavailable, nothing was changed: {detail}")
            }
            other => other.to_string(),
        };
        let mut resp = (status, Json(ErrorResponse { error })).into_response();
        if let Some(s) = retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, s.into());
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
