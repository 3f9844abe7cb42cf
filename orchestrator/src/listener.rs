//! The HTTP/1.1 listener: what a slow or hostile client may cost, and how shutdown ends.
//!
//! `axum::serve` has no read timeouts, no connection cap, and its graceful shutdown waits
//! for every connection, including one that sent half a request and went quiet. Here:
//! - the request head must arrive within `header_timeout_s` (this also closes keep-alive
//!   connections idle that long), and each piece of a body within `body_timeout_s`
//!   (a worker's token upload may be silent longer: see `STREAM_UPLOAD_SILENCE`);
//! - at most `max_connections` are open (below the fd limit); past it new ones wait in the
//!   kernel's backlog and a warning says so, instead of `accept` failing in silence;
//! - a `Content-Length` over `max_body_bytes` is answered 413 before the body is read;
//! - hyper's own rejections (bad header, duplicate Content-Length, 414, 431) get a JSON
//!   body like every other error;
//! - on shutdown, a connection with no complete request is closed at once; a request
//!   being answered may finish within `shutdown_grace_s`.

mod body;
mod io;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, Response};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ConfigError;
use crate::error::AppError;

/// What the listener allows; see the module docs. Keys of the same names in the config.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// `None`: derived from the fd limit.
    pub max_connections: Option<usize>,
    pub shutdown_grace: Duration,
    pub max_body_bytes: usize,
}

pub const DEFAULT_HEADER_TIMEOUT_S: f64 = 30.0;
pub const DEFAULT_BODY_TIMEOUT_S: f64 = 30.0;
pub const DEFAULT_SHUTDOWN_GRACE_S: f64 = 5.0;
/// A request head larger than this is answered 431 (ours are well under 4 KiB); above
/// hyper's 64 KiB URI bound, so a long URI is still answered 414.
const MAX_HEADER_BYTES: usize = 96 * 1024;
/// File descriptors kept for the database, its WAL, logs and the store's threads.
const FD_RESERVE: u64 = 64;
const MAX_CONNECTIONS_CEILING: u64 = 16_384;
/// A worker's token upload (`POST /api/tasks/{id}/stream`) is silent while its Pi loads the
/// model and reads the prompt, which takes minutes for a long prompt; the task's attempt
/// timeout, not this, is what ends an upload that has really stalled.
const STREAM_UPLOAD_SILENCE: Duration = Duration::from_secs(600);

/// The longest silence allowed between two pieces of the body of a request for `path`.
fn body_silence(path: &str, limits: &ServerLimits) -> Duration {
    let upload = path.starts_with("/api/tasks/") && path.ends_with("/stream");
    if upload {
        limits.body_timeout.max(STREAM_UPLOAD_SILENCE)
    } else {
        limits.body_timeout
    }
}

impl ServerLimits {
    pub fn from_raw(
        header_timeout_s: Option<f64>,
        body_timeout_s: Option<f64>,
        max_connections: Option<u64>,
        shutdown_grace_s: Option<f64>,
        max_body_bytes: usize,
    ) -> Result<ServerLimits, ConfigError> {
        let secs = |key: &str, v: Option<f64>, d: f64| -> Result<Duration, ConfigError> {
            let v = v.unwrap_or(d);
            if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
                return Err(ConfigError::Invalid {
                    key: key.into(),
                    message: format!("must be more than 0 and at most 3600 seconds, got {v}"),
                });
            }
            Ok(Duration::from_secs_f64(v))
        };
        let max_connections = match max_connections {
            Some(n) if !(8..=1_000_000).contains(&n) => {
                return Err(ConfigError::Invalid {
                    key: "max_connections".into(),
                    message: format!("must be between 8 and 1000000, got {n}"),
                })
            }
            n => n.map(|n| n as usize),
        };
        Ok(ServerLimits {
            header_timeout: secs(
                "header_timeout_s",
                header_timeout_s,
                DEFAULT_HEADER_TIMEOUT_S,
            )?,
            body_timeout: secs("body_timeout_s", body_timeout_s, DEFAULT_BODY_TIMEOUT_S)?,
            max_connections,
            shutdown_grace: secs(
                "shutdown_grace_s",
                shutdown_grace_s,
                DEFAULT_SHUTDOWN_GRACE_S,
            )?,
            max_body_bytes,
        })
    }
}

/// Raises the soft fd limit to the hard one (a server's usual first step) and returns
/// how many connections fit below it.
fn connection_cap(configured: Option<usize>) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            lim = getrlimit(Resource::Nofile);
        }
    }
    let fds = lim.current.unwrap_or(u64::MAX);
    let fit = fds.saturating_sub(FD_RESERVE).max(8);
    let cap = match configured {
        Some(n) if n as u64 > fit => {
            tracing::warn!(
                max_connections = n,
                fd_limit = fds,
                using = fit,
                "max_connections is above what the fd limit allows; using less"
            );
            fit
        }
        Some(n) => n as u64,
        None => fit.min(MAX_CONNECTIONS_CEILING),
    };
    cap as usize
}

/// Counts per connection: requests whose answer is not finished, and request bodies not
/// fully received. A connection where every open request is still arriving has nothing
/// worth waiting for at shutdown.
#[derive(Default)]
struct ConnState {
    active: Arc<AtomicUsize>,
    receiving: Arc<AtomicUsize>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then closes as described in the
/// module docs and returns once every connection is gone.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = connection_cap(limits.max_connections);
    tracing::info!(
        max_connections = cap,
        header_timeout_s = limits.header_timeout.as_secs_f64(),
        body_timeout_s = limits.body_timeout.as_secs_f64(),
        "listener limits"
    );
    let permits = Arc::new(Semaphore::new(cap));
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = Arc::new(limits);
    let mut conns = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = accept(&listener, &permits, cap, &mut last_full_warning) => {
                let (stream, permit) = accepted;
                let conn = connection(stream, app.clone(), limits.clone(), stop_rx.clone(), permit);
                conns.spawn(conn);
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = tokio::time::Instant::now() + limits.shutdown_grace;
    loop {
        tokio::select! {
            next = conns.join_next() => if next.is_none() { break },
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(
                    connections = conns.len(),
                    grace_s = limits.shutdown_grace.as_secs_f64(),
                    "shutdown: closing connections still busy after the grace period"
                );
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                break;
            }
        }
    }
    Ok(())
}

/// One connection, once a slot is free. Cancel-safe: both awaits are.
async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    cap: usize,
    last_warning: &mut Option<Instant>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let permit = match permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            if !last_warning.is_some_and(|t| t.elapsed() <= Duration::from_secs(10)) {
                *last_warning = Some(Instant::now());
                tracing::warn!(
                    max_connections = cap,
                    "connection limit reached: new connections wait until one closes \
                     (raise max_connections and the fd limit if this is real load)"
                );
            }
            permits
                .clone()
                .acquire_owned()
                .await
                .unwrap_or_else(|_| unreachable!("the semaphore is never closed"))
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return (stream, permit);
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the backlog holds them.
                tracing::warn!(error = %e, "accept failed; retrying shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn too_large(len: u64, limit: usize) -> Response<Body> {
    let mut resp = AppError::TooLarge(format!(
        "body: Content-Length {len} is larger than the {limit}-byte limit"
    ))
    .into_response();
    // The body is never read, so the connection cannot carry another request.
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    resp
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: Arc<ServerLimits>,
    stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(io::JsonRejections::new(stream, state.clone()));
    let svc = {
        let state = state.clone();
        let limits = limits.clone();
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = body::Active::new(&state.active);
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let early = declared
                .filter(|&n| n > limits.max_body_bytes as u64)
                .map(|n| too_large(n, limits.max_body_bytes));
            let silence = body_silence(req.uri().path(), &limits);
            let req = req.map(|b| body::timed(b, silence, &state.receiving));
            let app = app.clone();
            async move {
                let resp = match early {
                    Some(r) => r,
                    None => match app.oneshot(req).await {
                        Ok(r) => r,
                        Err(e) => match e {},
                    },
                };
                Ok::<_, std::convert::Infallible>(resp.map(|b| body::guarded(b, guard)))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper's own bound is on its read buffer, which a fast sender can overshoot.
        .max_header_size(MAX_HEADER_BYTES);
    let mut conn = pin!(builder.serve_connection(io, svc));
    let mut stop = stop;
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    // Seen twice in a row, 50 ms apart: a response that just finished gets to flush.
    let mut nothing_to_finish = 0;
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = every.tick() => {
                let active = state.active.load(Ordering::Acquire);
                let receiving = state.receiving.load(Ordering::Acquire);
                if active <= receiving {
                    nothing_to_finish += 1;
                    if nothing_to_finish >= 2 {
                        return;
                    }
                } else {
                    nothing_to_finish = 0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServerLimits {
        ServerLimits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_connections: None,
            shutdown_grace: Duration::from_secs(5),
            max_body_bytes: 1 << 20,
        }
    }

    #[test]
    fn a_token_upload_may_wait_for_a_cold_model_other_bodies_may_not() {
        let l = limits();
        let upload = pifleet_protocol::stream_path("t-1", "pi-1", 1);
        let upload = upload.split('?').next().unwrap();
        assert_eq!(body_silence(upload, &l), STREAM_UPLOAD_SILENCE);
        assert_eq!(body_silence("/api/tasks/t-1/result", &l), l.body_timeout);
        assert_eq!(body_silence("/api/tasks/submit", &l), l.body_timeout);
        assert_eq!(body_silence("/v1/chat/completions", &l), l.body_timeout);
    }
}
