//! The gateway: the whole fleet as one Ollama server and one OpenAI endpoint.
//!
//! Every generation, embedding or `show` becomes an `ollama_api` task in the durable
//! queue, placed by the scheduler like any task; streamed answers are relayed chunk by
//! chunk from the agent's `POST /api/tasks/{id}/stream` ([`crate::stream`]).
//!
//! | endpoint | answer |
//! |---|---|
//! | `POST /v1/chat/completions`, `POST /v1/completions` | OpenAI objects, or SSE chunks ending `data: [DONE]` |
//! | `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{model}` | OpenAI objects |
//! | `POST /api/chat`, `POST /api/generate` | Ollama NDJSON (streaming by default) |
//! | `POST /api/embed`, `POST /api/show` | run by a node that has the model |
//! | `GET /api/tags`, `GET /api/ps`, `GET /api/version` | from the fleet's state |
//!
//! Auth: the client token is the API key (`Authorization: Bearer`). Priority:
//! `X-Pifleet-Priority: 1-10`, else `gateway_priority`.

pub mod catalog;
pub mod error;
mod handlers;
pub mod metrics;
pub mod openai;
pub mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};

use crate::fleet::Fleet;
use crate::http::AppState;
use error::{Api, GatewayError};

/// Gateway requests run ahead of batch work submitted at the seed's default 5.
pub const DEFAULT_PRIORITY: u8 = 8;
pub const DEFAULT_QUEUE_TIMEOUT_S: f64 = 300.0;

/// The gateway's settings (`gateway_listen`, `gateway_priority`, `gateway_queue_timeout_s`).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// A second listener serving only the gateway, like Ollama's `:11434`.
    pub listen: Option<SocketAddr>,
    pub priority: u8,
    /// How long a request waits for a node before 503.
    pub queue_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: None,
            priority: DEFAULT_PRIORITY,
            queue_timeout: Duration::from_secs_f64(DEFAULT_QUEUE_TIMEOUT_S),
        }
    }
}

/// What every gateway handler gets. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    pub fleet: Fleet,
    pub cfg: Arc<GatewayConfig>,
    pub metrics: metrics::GatewayMetrics,
}

/// The gateway's routes, to merge into the main router (with the client routes' auth
/// done here, in each API's error shape).
pub fn router(state: &AppState) -> Router<AppState> {
    handlers::routes()
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .layer(Extension(state.gateway.clone()))
}

/// The dedicated listener's app: the gateway only, plus Ollama's `GET /` answer.
pub fn listener_app(state: AppState) -> Router {
    router(&state)
        .route("/", get(ollama_is_running).head(ollama_is_running))
        .fallback(handlers::no_route)
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

async fn ollama_is_running() -> &'static str {
    "Ollama is running"
}

/// OpenAI's API lives under `/v1`; everything else here is Ollama's.
pub fn api_of(path: &str) -> Api {
    if path.starts_with("/v1/") {
        Api::OpenAi
    } else {
        Api::Ollama
    }
}

/// The client token is the API key. The worker token is a different secret, so it never
/// opens the gateway.
async fn require_key(
    State(s): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, GatewayError> {
    if req.method() != Method::OPTIONS {
        if let Err(e) =
            crate::http::check_bearer(req.headers(), s.tokens.client.as_deref(), "client")
        {
            let api = api_of(req.uri().path());
            return Err(GatewayError::unauthorized(
                api,
                format!("{e}: the gateway's API key is the orchestrator's client token"),
            ));
        }
    }
    Ok(next.run(req).await)
}

impl Gateway {
    pub fn new(fleet: Fleet, cfg: GatewayConfig) -> Self {
        Gateway {
            fleet,
            cfg: Arc::new(cfg),
            metrics: metrics::GatewayMetrics::default(),
        }
    }
}
