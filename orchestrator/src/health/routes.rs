//! The health endpoints, merged into [`crate::http::app`]:
//!
//! | route | auth (when a client token is configured) |
//! |---|---|
//! | `GET /api/nodes`, `GET /api/nodes/{id}` | client bearer token |
//! | `POST /api/nodes/{id}/drain`, `POST /api/nodes/{id}/undrain` | client bearer token |
//! | `GET /metrics` | client bearer token (Prometheus: `authorization` in the scrape config) |
//! | `GET /`, `GET /api/events` | client bearer token or `?token=` (a browser cannot set headers on `EventSource`) |
//! | `GET /static/pifleet.css`, `GET /static/pifleet.js` | none: the page's own code, no data |

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pifleet_protocol::{paths, NodeDetail, NodeView, NodesResponse};

use super::{events, metrics, page, FleetSnapshot};
use crate::error::AppError;
use crate::fleet::Fleet;
use crate::http::extract::{Id, QueryMap};
use crate::http::{check_bearer, same_secret, AppState};

/// Live updates: at most one event per this gap per connection, and one at least this often.
const EVENTS_MIN_GAP: Duration = Duration::from_millis(250);
const EVENTS_REFRESH: Duration = Duration::from_secs(5);
/// Failures listed on the page.
const RECENT_FAILURES: usize = 10;

/// Everything the health views show, from the orchestrator's state at one instant.
pub fn snapshot(fleet: &Fleet) -> FleetSnapshot {
    FleetSnapshot {
        at: fleet.now(),
        nodes: fleet.node_details(),
        pending_by_priority: fleet.pending_by_priority(),
        tasks: fleet.stats().tasks,
        recent_failures: fleet.recent_failures(RECENT_FAILURES),
    }
}

/// What `/metrics` needs: no histories, no failure list.
pub fn metrics_snapshot(fleet: &Fleet) -> FleetSnapshot {
    FleetSnapshot {
        at: fleet.now(),
        nodes: fleet
            .nodes()
            .into_iter()
            .map(|node| NodeDetail {
                node,
                history: Vec::new(),
            })
            .collect(),
        pending_by_priority: fleet.pending_by_priority(),
        tasks: fleet.stats().tasks,
        recent_failures: Vec::new(),
    }
}

/// Routes behind the client token (the caller adds the token layer).
pub fn client_router() -> Router<AppState> {
    Router::new()
        .route(paths::NODES, get(list_nodes))
        .route("/api/nodes/{id}", get(show_node))
        .route("/api/nodes/{id}/drain", post(drain))
        .route("/api/nodes/{id}/undrain", post(undrain))
        .route(paths::METRICS, get(prometheus))
}

/// The page and its live updates: client token by header or `?token=`; assets are open.
pub fn page_router(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/", get(status_page))
        .route(paths::EVENTS, get(event_stream))
        .route_layer(middleware::from_fn_with_state(state, require_page_token));
    Router::new()
        .route(page::CSS_PATH, get(css))
        .route(page::JS_PATH, get(js))
        .merge(guarded)
}

async fn list_nodes(State(s): State<AppState>) -> Json<NodesResponse> {
    let nodes = s.fleet.nodes();
    Json(NodesResponse {
        total: nodes.len() as u64,
        nodes,
    })
}

async fn show_node(State(s): State<AppState>, Id(id): Id) -> Result<Json<NodeDetail>, AppError> {
    s.fleet
        .node(&id)
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("node \"{id}\" not found")))
}

async fn drain(State(s): State<AppState>, Id(id): Id) -> Result<Json<NodeView>, AppError> {
    Ok(Json(s.fleet.set_draining(&id, true).await?))
}

async fn undrain(State(s): State<AppState>, Id(id): Id) -> Result<Json<NodeView>, AppError> {
    Ok(Json(s.fleet.set_draining(&id, false).await?))
}

async fn prometheus(State(s): State<AppState>) -> Response {
    let text = metrics::render(&metrics_snapshot(&s.fleet), s.fleet.histograms());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        )],
        text,
    )
        .into_response()
}

/// The page loads nothing but its own script and stylesheet and talks only to this
/// server; inline styles are the queue bars' widths.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

async fn status_page(State(s): State<AppState>) -> Response {
    (
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        Html(page::page(&snapshot(&s.fleet))),
    )
        .into_response()
}

async fn event_stream(State(s): State<AppState>) -> Response {
    let fleet = s.fleet.clone();
    let sse = events::stream(
        move || {
            let fleet = fleet.clone();
            async move { snapshot(&fleet) }
        },
        s.fleet.subscribe(),
        {
            let fleet = s.fleet.clone();
            move || fleet.is_shutting_down()
        },
        EVENTS_MIN_GAP,
        EVENTS_REFRESH,
    );
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        sse,
    )
        .into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", page::CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", page::JS)
}

async fn require_page_token(
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
