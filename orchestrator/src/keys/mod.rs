//! Who is calling: named client keys with a role, a priority and quotas; a credential
//! per node; and the configured tokens (`worker_token` is the join token, `client_token`
//! an admin key).
//!
//! The keys and credentials live in the orchestrator's SQLite file
//! ([`crate::store::keys`]). `pifleet-orchestrator keys ...` and `nodes forget` write that
//! file beside a running server; the server checks the file's change counter on every
//! authenticated request (a `PRAGMA data_version`, no disk read, then one row when
//! something was committed) and on every tick, so a revoke or a forget holds from the
//! next request on.

pub mod cli;
pub mod metrics;
mod nodes;
pub mod quota;
mod ring;
pub mod role;
pub mod secret;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::http::{HeaderMap, Method};

pub use ring::{Key, QuotaKind, UsageCounts, CONFIG_KEY_NAME};
pub use role::Role;

use crate::clock::Clock;
use crate::config::{Config, DbLocation};
use crate::fleet::Fleet;
use crate::store::keys::{AuthDb, AuthDbError};
use crate::store::StoreError;
use nodes::Credentials;
use ring::Ring;
use secret::{same_secret, Bearer};

/// Why a request was refused. The web layer answers 401, 403 or 429 (`Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credential, or one nobody issued: who is calling is unknown.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known caller, not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Quota { message: String, retry_after_s: u64 },
}

/// Who a worker request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Worker {
    /// The join token (or no worker token configured): may act only for node ids that
    /// have no credential.
    Join,
    /// A node's own credential: may act only as that node.
    Node(String),
}

/// The client key of a request, put in the request's extensions by the auth layer.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: Arc<Key>,
}

struct DbSide {
    db: AuthDb,
    /// The change counter the in-memory keys and credentials reflect.
    generation: Option<i64>,
}

#[derive(Default)]
struct State {
    ring: Ring,
    nodes: Credentials,
}

/// Everything that decides who may call, for one server.
pub struct Auth {
    worker_token: Option<String>,
    client_token: Option<String>,
    config_key: Arc<Key>,
    db: Option<Mutex<DbSide>>,
    state: Mutex<State>,
    fleet: Fleet,
    clock: Arc<dyn Clock>,
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the admin API's forget did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    pub had_credential: bool,
    pub was_registered: bool,
    pub requeued: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    Random(String),
    #[error(transparent)]
    Db(#[from] AuthDbError),
}

impl Auth {
    /// Opens the key and credential tables of the configured database (none for
    /// `:memory:`: then only the configured tokens count and nodes get no credential).
    pub fn open(config: &Config, fleet: Fleet, clock: Arc<dyn Clock>) -> Result<Auth, StoreError> {
        let db = match &config.db {
            DbLocation::File(path) => Some(AuthDb::open(path)?),
            DbLocation::Memory => None,
        };
        Ok(Auth::new(
            config.tokens.worker.clone(),
            config.tokens.client.clone(),
            db,
            fleet,
            clock,
        ))
    }

    pub fn new(
        worker_token: Option<String>,
        client_token: Option<String>,
        db: Option<AuthDb>,
        fleet: Fleet,
        clock: Arc<dyn Clock>,
    ) -> Auth {
        let auth = Auth {
            worker_token,
            client_token,
            config_key: Arc::new(Key::admin(CONFIG_KEY_NAME)),
            db: db.map(|db| {
                Mutex::new(DbSide {
                    db,
                    generation: None,
                })
            }),
            state: Mutex::new(State::default()),
            fleet,
            clock,
        };
        auth.sync();
        auth
    }

    /// Picks up what another process changed in the database: keys added or revoked,
    /// nodes forgotten. Cheap when nothing changed.
    pub fn sync(&self) {
        let Some(db) = &self.db else { return };
        let forgets = {
            let mut side = relock(db);
            let generation = match side.generation {
                None => side.db.generation().map(Some),
                Some(_) => side.db.generation_if_written(),
            };
            let generation = match generation {
                Ok(Some(g)) if side.generation != Some(g) => g,
                Ok(_) => return,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the key tables; keeping the keys loaded before");
                    return;
                }
            };
            let loaded = side
                .db
                .keys()
                .and_then(|k| Ok((k, side.db.credentials()?, side.db.pending_forgets()?)));
            let (keys, creds, forgets) = match loaded {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the key tables; keeping the keys loaded before");
                    return;
                }
            };
            let mut state = relock(&self.state);
            for bad in state.ring.replace(&keys) {
                tracing::error!(problem = %bad, "key ignored");
            }
            for bad in state.nodes.replace(&creds) {
                tracing::error!(problem = %bad, "node credential ignored");
            }
            drop(state);
            side.generation = Some(generation);
            tracing::debug!(generation, keys = keys.len(), "keys loaded");
            forgets
        };
        for id in forgets {
            let outcome = self.forget_in_fleet(&id);
            tracing::info!(worker = %id, was_registered = outcome.0, requeued = outcome.1.len(), "node forgotten");
            if let Err(e) = relock(db).db.forget_done(&id) {
                tracing::warn!(worker = %id, error = %e, "cannot mark the forget done; it will be repeated");
            }
        }
    }

    fn forget_in_fleet(&self, id: &str) -> (bool, Vec<String>) {
        relock(&self.state).nodes.remove(id);
        match self.fleet.unregister(id) {
            Ok((resp, _commit)) => (true, resp.requeued.unwrap_or_default()),
            Err(_) => (false, Vec::new()),
        }
    }

    pub fn has_db(&self) -> bool {
        self.db.is_some()
    }

    /// Whether anything is guarded at all (a token configured, or keys exist).
    pub fn guarded(&self) -> bool {
        self.worker_token.is_some() || self.client_auth_required()
    }

    /// Whether client routes need a key: a client token is configured or keys exist.
    pub fn client_auth_required(&self) -> bool {
        self.client_token.is_some() || !relock(&self.state).ring.is_empty()
    }

    /// Authenticates a client request and checks its role and its quotas. `None`: no
    /// client authentication is configured at all (loopback or `--insecure`).
    pub fn client(
        &self,
        headers: &HeaderMap,
        method: &Method,
        route: &str,
    ) -> Result<Option<Caller>, Denied> {
        self.sync();
        let needed = role::needed(method, route);
        let token =
            match secret::bearer(headers) {
                Bearer::Token(t) => t,
                _ if !self.client_auth_required() => return Ok(None),
                Bearer::Missing => return Err(Denied::Unauthenticated(
                    "missing \"Authorization: Bearer <key>\" (a client key, or the client token)"
                        .into(),
                )),
                Bearer::Malformed => {
                    return Err(Denied::Unauthenticated(
                        "the Authorization header is not \"Bearer <key>\"".into(),
                    ))
                }
            };
        let key = match &self.client_token {
            Some(t) if same_secret(t.as_bytes(), token.as_bytes()) => self.config_key.clone(),
            _ => {
                let found = relock(&self.state).ring.find(token);
                match found {
                    Some(k) => k,
                    None if !self.client_auth_required() => return Ok(None),
                    None => {
                        return Err(Denied::Unauthenticated(
                            "the bearer token is not a client key of this orchestrator (revoked, or mistyped)".into(),
                        ))
                    }
                }
            }
        };
        let mut state = relock(&self.state);
        if !key.role.allows(needed) {
            state.ring.refused_role(&key);
            return Err(Denied::Forbidden(format!(
                "key \"{}\" has role {}; {method} {route} needs role {needed}",
                key.name, key.role
            )));
        }
        let now = self.clock.now();
        if let Err((kind, wait)) = state.ring.admit(&key, needed >= Role::Submit, now) {
            let what = match kind {
                QuotaKind::Rate => format!(
                    "its rate of {} requests per minute",
                    key.rate_per_min.unwrap_or(0)
                ),
                QuotaKind::Tokens => format!(
                    "its {} generated tokens per day",
                    key.tokens_per_day.unwrap_or(0)
                ),
            };
            return Err(Denied::Quota {
                message: format!(
                    "key \"{}\" has used up {what}; retry in {} s",
                    key.name, wait.0
                ),
                retry_after_s: wait.0,
            });
        }
        Ok(Some(Caller { key }))
    }

    /// Authenticates a worker request: the join token or a node's own credential.
    pub fn worker(&self, headers: &HeaderMap) -> Result<Worker, Denied> {
        self.sync();
        let token = match (secret::bearer(headers), &self.worker_token) {
            (Bearer::Token(t), _) => t,
            (_, None) => return Ok(Worker::Join),
            (Bearer::Missing, Some(_)) => {
                return Err(Denied::Unauthenticated(
                    "missing \"Authorization: Bearer <token>\" (the node's credential, or the join token to register)".into(),
                ))
            }
            (Bearer::Malformed, Some(_)) => {
                return Err(Denied::Unauthenticated(
                    "the Authorization header is not \"Bearer <token>\"".into(),
                ))
            }
        };
        if let Some(join) = &self.worker_token {
            if same_secret(join.as_bytes(), token.as_bytes()) {
                return Ok(Worker::Join);
            }
        }
        if let Some(id) = relock(&self.state).nodes.owner(token) {
            return Ok(Worker::Node(id.to_string()));
        }
        if token.starts_with(secret::NODE_PREFIX) {
            return Err(Denied::Unauthenticated(
                "this node credential is not known here: the node was forgotten \
                 (`pifleet-orchestrator nodes forget`) or the database was replaced; \
                 to join again, delete the node's credential file and restart it with the join token"
                    .into(),
            ));
        }
        match self.worker_token {
            None => Ok(Worker::Join),
            Some(_) => Err(Denied::Unauthenticated(
                "the bearer token is not the worker (join) token nor a node credential".into(),
            )),
        }
    }

    /// Whether `who` may act as node `id` (heartbeat, poll, result, register, unregister).
    pub fn may_act_as(&self, who: &Worker, id: &str) -> Result<(), Denied> {
        match who {
            Worker::Node(own) if own == id => Ok(()),
            Worker::Node(own) => Err(Denied::Forbidden(format!(
                "this credential belongs to node \"{own}\"; it cannot act as node \"{id}\""
            ))),
            Worker::Join if relock(&self.state).nodes.has(id) => Err(Denied::Forbidden(format!(
                "node \"{id}\" has its own credential; the join token cannot act for it \
                 (lost that node? `pifleet-orchestrator nodes forget {id}`, then it may join again)"
            ))),
            Worker::Join => Ok(()),
        }
    }

    /// Gives node `id` its own credential and returns it (the only time it is seen).
    /// `None` without a database: credentials would not survive a restart. Blocking
    /// (one SQLite write): call it from a blocking task.
    pub fn issue_credential(&self, id: &str) -> Result<Option<String>, IssueError> {
        let Some(db) = &self.db else { return Ok(None) };
        let secret = secret::generate(secret::NODE_PREFIX)
            .map_err(|e| IssueError::Random(format!("no random numbers: {e}")))?;
        let digest = secret::digest(&secret);
        let mut side = relock(db);
        side.db
            .add_credential(id, &secret::to_hex(&digest), self.clock.now())?;
        relock(&self.state).nodes.insert(id, digest);
        Ok(Some(secret))
    }

    /// Drops node `id` and its credential (the admin API's forget). Blocking.
    pub fn forget(&self, id: &str) -> Result<Forgotten, StoreError> {
        let had_credential = match &self.db {
            Some(db) => relock(db).db.delete_credential(id)?,
            None => false,
        };
        let had_credential = relock(&self.state).nodes.has(id) || had_credential;
        let (was_registered, requeued) = self.forget_in_fleet(id);
        Ok(Forgotten {
            had_credential,
            was_registered,
            requeued,
        })
    }

    pub fn has_credential(&self, id: &str) -> bool {
        relock(&self.state).nodes.has(id)
    }

    /// Whether the request carries any valid token (the join token, a node credential,
    /// the client token or a key): `/health` then tells more than "healthy".
    pub fn knows(&self, headers: &HeaderMap) -> bool {
        let Bearer::Token(token) = secret::bearer(headers) else {
            return false;
        };
        let config = [&self.worker_token, &self.client_token];
        if config.iter().any(|t| {
            t.as_ref()
                .is_some_and(|t| same_secret(t.as_bytes(), token.as_bytes()))
        }) {
            return true;
        }
        self.sync();
        let state = relock(&self.state);
        state.nodes.owner(token).is_some() || state.ring.find(token).is_some()
    }

    /// A task was submitted with `caller`'s key.
    pub fn task_submitted(&self, caller: &Caller, task_id: &str) {
        relock(&self.state)
            .ring
            .task_submitted(&caller.key.name, task_id);
    }

    /// A task's result came with `tokens` generated tokens.
    pub fn task_generated(&self, task_id: &str, tokens: u64) {
        let now = self.clock.now();
        relock(&self.state)
            .ring
            .task_generated(task_id, tokens, now);
    }

    /// Writes when keys were last used. Blocking.
    pub fn flush_usage(&self) {
        let Some(db) = &self.db else { return };
        let used = relock(&self.state).ring.take_dirty();
        if used.is_empty() {
            return;
        }
        if let Err(e) = relock(db).db.touch_keys(&used) {
            tracing::warn!(error = %e, "cannot record when keys were last used");
        }
    }

    /// Counters per key name, for `/metrics`.
    pub fn usage(&self) -> Vec<(String, UsageCounts)> {
        relock(&self.state).ring.usage_report()
    }
}
