//! The pifleet orchestrator: a durable, health-aware priority scheduler for a fleet of
//! Raspberry Pis running local LLM work.
//!
//! It speaks the seed's D8 HTTP protocol unchanged (see [`pifleet_protocol`] for every
//! endpoint and body) plus additive extensions: heartbeat metrics, long polls
//! (`GET /api/workers/{id}/tasks?wait=SECONDS`), attempts that fence late results, and
//! `404` + "register again" for unknown workers.
//!
//! Layout, by domain: [`fleet`] holds the nodes, tasks and queue and decides placement
//! (one file per concern, see its module comment); [`store`] makes every acknowledged
//! change durable (SQLite by default, one thread, group commit); [`http`] maps requests
//! to the fleet and the fleet's errors to status codes; [`health`] renders the status
//! page and `/metrics`; [`telemetry`] holds the histograms the fleet feeds; [`config`]
//! reads file, environment and flags.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! let config = pifleet_orchestrator::config::Config::default();
//! pifleet_orchestrator::run(listener, config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod clock;
pub mod config;
pub mod fleet;
pub mod gateway;
pub mod health;
pub mod http;
pub mod keys;
pub mod listener;
pub mod sim;
pub mod store;
pub mod telemetry;

pub use http::error;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

pub use fleet::Fleet;
pub use http::{app, AppState, Tokens};

use clock::{Clock, SystemClock};
use config::{Config, DbLocation};
use keys::Auth;
use store::keys::AuthDb;
use store::{MemoryStore, SqliteStore, Store, StoreError, StoreHandle};

/// How often forgets and revokes are looked for without a request, and key use written.
const KEYS_EVERY_S: f64 = 2.0;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("start the store thread: {0}")]
    Thread(std::io::Error),
    #[error("serve HTTP: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Lock(#[from] store::lock::LockError),
}

/// A loaded orchestrator, not yet serving: tests take its [`Fleet`] to drive time.
pub struct Orchestrator {
    pub state: AppState,
    tick_s: f64,
    server: listener::ServerLimits,
    /// Held until [`Orchestrator::serve`] returns: one orchestrator per database file.
    lock: Option<store::lock::DbLock>,
}

impl Orchestrator {
    /// Loads everything the store holds and starts the store thread. No key or
    /// credential tables: only the configured tokens count.
    pub fn open(
        config: &Config,
        store: Box<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RunError> {
        Orchestrator::open_with_keys(config, store, None, clock)
    }

    /// As [`Orchestrator::open`], with the key and credential tables of `keys`.
    pub fn open_with_keys(
        config: &Config,
        mut store: Box<dyn Store>,
        keys: Option<AuthDb>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RunError> {
        let snapshot = store.load()?;
        tracing::info!(
            tasks = snapshot.tasks.len(),
            workers = snapshot.workers.len(),
            "store loaded"
        );
        let (handle, _join) = StoreHandle::spawn(store).map_err(RunError::Thread)?;
        let fleet = Fleet::new(config.limits.clone(), handle, snapshot, clock.clone());
        let auth = Arc::new(Auth::new(
            config.tokens.worker.clone(),
            config.tokens.client.clone(),
            keys,
            fleet.clone(),
            clock,
        ));
        Ok(Orchestrator {
            state: AppState {
                gateway: gateway::Gateway::new(fleet.clone(), config.gateway.clone()),
                events: http::page::feed(fleet.clone(), config.max_event_streams),
                fleet,
                auth,
                tokens: Arc::new(config.tokens.clone()),
                max_body_bytes: config.max_body_bytes,
            },
            tick_s: config.tick_s,
            server: config.server.clone(),
            lock: None,
        })
    }

    /// Opens the store the configuration names; a database file is locked first, so a
    /// second orchestrator on the same file refuses to start.
    pub fn open_configured(config: &Config) -> Result<Self, RunError> {
        let (store, keys, lock): (Box<dyn Store>, _, _) = match &config.db {
            DbLocation::File(path) => {
                let lock = store::lock::DbLock::acquire(path)?;
                (
                    Box::new(SqliteStore::open(path, config.durability)?),
                    Some(AuthDb::open(path)?),
                    Some(lock),
                )
            }
            DbLocation::Memory => (Box::new(MemoryStore::new()), None, None),
        };
        let mut orchestrator =
            Orchestrator::open_with_keys(config, store, keys, Arc::new(SystemClock))?;
        orchestrator.lock = lock;
        Ok(orchestrator)
    }

    pub fn fleet(&self) -> &Fleet {
        &self.state.fleet
    }

    pub fn router(&self) -> Router {
        app(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then answers waiting polls, finishes in-flight
    /// requests and waits for the store to commit what they changed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let fleet = self.state.fleet.clone();
        let ticker = {
            let fleet = fleet.clone();
            let period = Duration::from_secs_f64(self.tick_s);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(period);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    fleet.tick();
                }
            })
        };
        // Picks up forgets and revokes even when no request comes, and writes when keys
        // were last used; both touch SQLite, so off the async threads.
        let key_keeper = {
            let auth = self.state.auth.clone();
            let period = Duration::from_secs_f64(self.tick_s.max(KEYS_EVERY_S));
            tokio::spawn(async move {
                let mut every = tokio::time::interval(period);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let auth = auth.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        auth.sync();
                        auth.flush_usage();
                    })
                    .await;
                }
            })
        };
        let auth = self.state.auth.clone();
        let on_shutdown = {
            let fleet = fleet.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: answering waiting polls");
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                fleet.shutdown();
            }
        };
        let app = self.router();
        // The lock is released only after the final flush below, when nothing writes.
        let Orchestrator {
            state,
            server,
            lock: _lock,
            ..
        } = self;
        // The optional dedicated gateway listener (`gateway_listen`, like Ollama's :11434)
        // stops with the main one, under the same listener limits.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let gateway = match state.gateway.cfg.listen {
            Some(addr) => {
                let l = TcpListener::bind(addr).await.map_err(|e| {
                    RunError::Serve(std::io::Error::new(
                        e.kind(),
                        format!("gateway_listen {addr}: {e}"),
                    ))
                })?;
                tracing::info!(%addr, "gateway listening");
                let gw_app = gateway::listener_app(state.clone());
                let mut stop = stop_rx.clone();
                let limits = server.clone();
                Some(tokio::spawn(async move {
                    let _ = listener::serve(l, gw_app, limits, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                }))
            }
            None => None,
        };
        drop(state);
        let served = listener::serve(listener, app, server, async move {
            on_shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
        if let Some(g) = gateway {
            // Bounded: the gateway's listener ends within its own grace period.
            let _ = g.await;
        }
        ticker.abort();
        key_keeper.abort();
        fleet.shutdown();
        let _ = tokio::task::spawn_blocking(move || auth.flush_usage()).await;
        // Everything acknowledged is committed already; this waits for the rest.
        if let Err(e) = fleet::committed(fleet.store_barrier()).await {
            tracing::error!(error = %e, "final store flush failed");
        }
        served.map_err(RunError::Serve)
    }
}

/// Opens the configured store, tells systemd it is ready, and serves on `listener` until
/// `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let orchestrator = Orchestrator::open_configured(&config)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, db = ?config.db, "pifleet orchestrator listening");
    }
    // Harmless outside systemd: without NOTIFY_SOCKET this does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    orchestrator.serve(listener, shutdown).await
}
