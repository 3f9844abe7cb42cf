//! The status page's routes: `GET /` and its live updates `GET /api/events` (client
//! token by header or `?token=`), `GET /metrics` (client token, Prometheus), and the
//! page's own stylesheet and script (open: code, no data). Each takes one snapshot of
//! the fleet and hands it to [`crate::health`] to render.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pifleet_protocol::{paths, ErrorResponse};
use tokio::sync::watch;

use super::auth::require_page_token;
use super::AppState;
use crate::fleet::Fleet;
use crate::health::feed::{Feed, FeedConfig, Source};
use crate::health::{metrics, page, FleetSnapshot};

/// Failures listed on the page.
const RECENT_FAILURES: usize = 10;
/// Running, pending and recently settled tasks listed on the page (each).
const WORK_SHOWN: usize = 10;

/// `/metrics`, behind the client token (the caller adds the token layer).
pub fn metrics_router() -> Router<AppState> {
    Router::new().route(paths::METRICS, get(prometheus))
}

/// The page and its live updates: client token by header or `?token=`; assets are open.
pub fn router(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route(paths::PAGE, get(status_page))
        .route(paths::EVENTS, get(event_stream))
        .route_layer(middleware::from_fn_with_state(state, require_page_token));
    Router::new()
        .route(page::CSS_PATH, get(css))
        .route(page::JS_PATH, get(js))
        .merge(guarded)
}

async fn prometheus(State(s): State<AppState>) -> Response {
    let text = metrics::render(
        &s.fleet.snapshot(false, 0, 0),
        s.fleet.histograms(),
        Some(&s.gateway.metrics),
    );
    let text = crate::keys::metrics::splice(text, &crate::keys::metrics::render(&s.auth.usage()));
    let text = crate::keys::metrics::splice(text, &s.events.metrics_text());
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
        Html(page::page(&s.fleet.snapshot(
            true,
            RECENT_FAILURES,
            WORK_SHOWN,
        ))),
    )
        .into_response()
}

/// What the page's live feed reads: the same snapshot as the page itself.
struct FleetSource(Fleet);

impl Source for FleetSource {
    fn snapshot(&self) -> FleetSnapshot {
        self.0.snapshot(true, RECENT_FAILURES, WORK_SHOWN)
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }

    fn stopping(&self) -> bool {
        self.0.is_shutting_down()
    }
}

/// The live feed of `fleet`'s status page, at most `max_streams` streams at once.
pub fn feed(fleet: Fleet, max_streams: usize) -> Feed {
    Feed::new(
        FleetSource(fleet),
        FeedConfig {
            max_streams,
            ..FeedConfig::default()
        },
    )
}

async fn event_stream(State(s): State<AppState>) -> Response {
    match s.events.open() {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            Body::from_stream(body),
        )
            .into_response(),
        Err(refused) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("10"))],
            Json(ErrorResponse {
                error: format!(
                    "/api/events: {} status-page streams are open, the most allowed \
                     (max_event_streams); close a page or try again later",
                    refused.max
                ),
            }),
        )
            .into_response(),
    }
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
