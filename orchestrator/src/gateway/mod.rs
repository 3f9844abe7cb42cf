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
//! Auth: a client key of role `submit` or more, or the client token
//! (`Authorization: Bearer`). Priority: `X-Pifleet-Priority: 1-10` (at most the key's
//! maximum), else the key's default priority, else `gateway_priority`.

pub mod catalog;
pub mod error;
mod handlers;
pub mod metrics;
pub mod openai;
pub mod relay;
mod streaming;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};

use crate::fleet::Fleet;
use crate::http::AppState;
use crate::keys::{Auth, Caller, Denied};
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
    /// The client key of this request (set per request by the auth layer): its priority
    /// default and cap, and whom its tasks' tokens are charged to.
    pub key: Option<KeyCharge>,
}

/// A request's client key and where to count its tasks.
#[derive(Clone)]
pub struct KeyCharge {
    pub auth: Arc<Auth>,
    pub caller: Caller,
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

/// A client key (or the client token, an admin key) opens the gateway, within the key's
/// role (`submit`) and quotas; refusals come in the called API's error shape. The
/// worker token is a different secret, so it never opens the gateway.
async fn require_key(
    State(s): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, GatewayError> {
    if req.method() != Method::OPTIONS {
        let api = api_of(req.uri().path());
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string());
        match s.auth.client(req.headers(), req.method(), &route) {
            Ok(Some(caller)) => {
                if let Some(gw) = req.extensions().get::<Gateway>().cloned() {
                    req.extensions_mut().insert(Gateway {
                        key: Some(KeyCharge {
                            auth: s.auth.clone(),
                            caller,
                        }),
                        ..gw
                    });
                }
            }
            Ok(None) => {}
            Err(Denied::Unauthenticated(m)) => return Err(GatewayError::unauthorized(api, m)),
            Err(Denied::Forbidden(m)) => {
                return Err(GatewayError::new(api, StatusCode::FORBIDDEN, m))
            }
            Err(Denied::Quota {
                message,
                retry_after_s,
            }) => {
                return Err(GatewayError {
                    retry_after_s: Some(retry_after_s),
                    code: Some("rate_limit_exceeded"),
                    ..GatewayError::new(api, StatusCode::TOO_MANY_REQUESTS, message)
                })
            }
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
            key: None,
        }
    }
}
