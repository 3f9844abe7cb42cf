//! Durable storage of tasks, nodes and counters.
//!
//! The in-memory state is authoritative while the process runs; the store is its
//! write-ahead copy, read back once at start. Every change is a [`Mutation`]; one
//! dedicated thread owns the [`Store`] and applies whatever mutations have queued up in
//! one transaction (group commit), then answers each sender. Handlers acknowledge a submit
//! or a result only after the answer for its mutations arrives, so an acknowledged change
//! survives a `kill -9`.

pub mod bodies;
pub mod keys;
pub mod lock;
pub mod memory;
mod speeds;
pub mod sqlite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

use pifleet_protocol::TaskState;
use serde_json::Value;
use tokio::sync::oneshot;

pub use bodies::{Bodies, BodyReader, Summary};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("open database {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(
        "database {path} has schema version {found}, newer than the {supported} this \
         orchestrator knows: run the newer pifleet-orchestrator that wrote it, or use another --db"
    )]
    SchemaVersion {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("stored row {id} is corrupt: {detail}")]
    Corrupt { id: String, detail: String },
    #[error("store thread is gone")]
    Gone,
    #[error("start a store thread: {0}")]
    Thread(std::io::Error),
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: String,
    pub task_type: String,
    pub data: Arc<Value>,
    pub priority: u8,
    /// Stored as its word (`pending`, `assigned`, `completed`, `failed`).
    pub state: TaskState,
    pub assigned_to: Option<String>,
    /// Attempts started; the fencing token of the current holder.
    pub attempt: u32,
    /// Attempts that ended in failure (timeout, dead node, retryable error).
    pub failures: u32,
    pub max_attempts: u32,
    pub timeout_s: f64,
    pub result: Option<Arc<Value>>,
    pub error: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub assigned_at: Option<f64>,
    pub not_before: Option<f64>,
    pub seq: u64,
    pub settled_by: Option<String>,
    pub settled_attempt: Option<u32>,
    /// When the task fails as expired if it is still pending (`expires_s` of its submit).
    pub expires_at: Option<f64>,
    /// Set on a settled task whose bodies are on disk only: `data` is then a stand-in,
    /// `result` is absent and `error` may be (read them with a [`BodyReader`]).
    pub summary: Option<Box<Summary>>,
}

impl TaskRow {
    pub fn is_settled(&self) -> bool {
        matches!(
            self.state,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled
        )
    }
}

/// A node as stored. Metrics are kept so a restarted orchestrator still shows the last
/// known health.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    pub id: String,
    pub worker_type: String,
    pub capabilities: Value,
    pub registered_at: f64,
    pub last_seen: f64,
    pub draining: bool,
    pub dead: bool,
    pub tasks_completed: u64,
    pub tasks_failed: u64,
    pub metrics: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    /// Insert or replace the whole task.
    PutTask(TaskRow),
    /// Same row, but the caller promises `task_type`, `data`, `priority` and `created_at`
    /// did not change, so the store may skip rewriting them.
    UpdateTask(TaskRow),
    PutWorker(WorkerRow),
    /// Only the counters of a stored worker: cheaper than rewriting its capabilities on
    /// every result.
    WorkerCounts {
        id: String,
        completed: u64,
        failed: u64,
    },
    DeleteWorker(String),
    DeleteTask(String),
    Counter(String, u64),
    /// A node's measured speeds (see `eta::speed::NodeSpeeds`), replacing the last.
    PutSpeeds {
        node: String,
        speeds: Value,
    },
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Snapshot {
    pub tasks: Vec<TaskRow>,
    pub workers: Vec<WorkerRow>,
    pub counters: Vec<(String, u64)>,
    /// Node id -> its measured speeds.
    pub speeds: Vec<(String, Value)>,
}

/// Where the orchestrator keeps its state. A server database for several orchestrators
/// would implement this too.
pub trait Store: Send + 'static {
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Applies the batch atomically: all of it or none of it.
    fn apply(&mut self, batch: &[Mutation]) -> Result<(), StoreError>;
    /// Reads committed bodies back; without one the fleet keeps them in memory.
    fn body_reader(&self) -> Option<Arc<dyn BodyReader>> {
        None
    }
}

/// Why a batch was not committed: nothing in it was acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The store refused the batch (disk full, I/O error, corrupt database).
    #[error("{0}")]
    Failed(String),
    #[error("store thread is gone")]
    Gone,
}

pub type CommitResult = Result<(), CommitError>;

enum Command {
    Write {
        mutations: Vec<Mutation>,
        done: Option<oneshot::Sender<CommitResult>>,
        /// The state generation the mutations were computed from (see [`Recovery`]).
        generation: u64,
    },
}

/// Called with what the store holds after a commit failed, to put the in-memory state
/// back to it; returns once it has, having moved [`Recovery::generation`] on.
pub type RebuildHook = Box<dyn Fn(Snapshot) + Send + Sync>;

/// A failed commit must leave no trace: the store rolled the batch back, so the state
/// that produced it (and everything queued after it, computed from that state) is
/// discarded and rebuilt from the store before any of its senders hears of the failure.
#[derive(Default)]
struct Recovery {
    /// Bumped by the rebuild; writes tagged with an older one are refused unapplied.
    generation: AtomicU64,
    rebuild: Mutex<Option<RebuildHook>>,
    /// The error of the last commit, cleared by the next one that succeeds.
    failing: Mutex<Option<String>>,
}

/// Cheap handle to the store thread. Sending never blocks, so it may be called under the
/// state lock, which keeps the order of mutations equal to the order of changes.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Command>,
    recovery: Arc<Recovery>,
    reader: Option<Arc<dyn BodyReader>>,
    /// Tasks whose settled row has been committed since the fleet last asked: their
    /// bodies may leave memory now, the disk answers for them.
    committed_settled: Arc<Mutex<Vec<String>>>,
}

/// Largest number of commands folded into one transaction: bounds the latency of the
/// first command of a burst.
const MAX_BATCH: usize = 4096;

impl StoreHandle {
    /// Starts the store thread. It ends when every handle is dropped, after committing
    /// what was queued; join the returned handle to wait for that.
    pub fn spawn(
        mut store: Box<dyn Store>,
    ) -> std::io::Result<(StoreHandle, thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Command>();
        let recovery = Arc::new(Recovery::default());
        let shared = recovery.clone();
        let reader = store.body_reader();
        let committed_settled = Arc::new(Mutex::new(Vec::new()));
        let settled_out = reader.is_some().then(|| committed_settled.clone());
        let join = thread::Builder::new()
            .name("pifleet-store".into())
            .spawn(move || {
                let recovery = shared;
                let mut batch: Vec<Mutation> = Vec::new();
                let mut waiters: Vec<oneshot::Sender<CommitResult>> = Vec::new();
                let mut stale: Vec<oneshot::Sender<CommitResult>> = Vec::new();
                while let Ok(first) = rx.recv() {
                    let current = recovery.generation.load(Ordering::Acquire);
                    let mut next = Some(first);
                    let mut commands = 0;
                    while let Some(Command::Write {
                        mutations,
                        done,
                        generation,
                    }) = next
                    {
                        if generation < current {
                            // Computed from a state that was rolled back: never applied.
                            stale.extend(done);
                        } else {
                            batch.extend(mutations);
                            waiters.extend(done);
                        }
                        commands += 1;
                        next = if commands < MAX_BATCH { rx.try_recv().ok() } else { None };
                    }
                    for w in stale.drain(..) {
                        let _ = w.send(Err(CommitError::Failed(
                            "an earlier commit failed and the state was rebuilt from the store"
                                .into(),
                        )));
                    }
                    let outcome = if batch.is_empty() {
                        Ok(())
                    } else {
                        store.apply(&batch).map_err(|e| {
                            tracing::error!(error = %e, mutations = batch.len(), "store commit failed");
                            CommitError::Failed(e.to_string())
                        })
                    };
                    if !batch.is_empty() {
                        let mut failing = recovery.failing.lock().unwrap_or_else(|p| p.into_inner());
                        *failing = outcome.as_ref().err().map(ToString::to_string);
                    }
                    if outcome.is_err() {
                        recover(&mut *store, &recovery);
                    } else if let Some(out) = &settled_out {
                        note_settled(&batch, out);
                    }
                    for w in waiters.drain(..) {
                        let _ = w.send(outcome.clone());
                    }
                    batch.clear();
                }
                tracing::debug!("store thread finished");
            })?;
        Ok((
            StoreHandle {
                tx,
                recovery,
                reader,
                committed_settled,
            },
            join,
        ))
    }

    /// True when settled bodies can be read back, so they need not stay in memory.
    pub fn reads_bodies(&self) -> bool {
        self.reader.is_some()
    }

    /// The committed result and error of a task (blocking: a point read on disk).
    pub fn read_bodies(&self, id: &str) -> Result<Option<Bodies>, StoreError> {
        match &self.reader {
            Some(r) => r.read(id),
            None => Ok(None),
        }
    }

    /// The tasks whose settled row was committed since the last call.
    pub fn take_committed_settled(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .committed_settled
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// Registers how the in-memory state is rebuilt after a failed commit.
    pub fn on_failed_commit(&self, rebuild: RebuildHook) {
        *self
            .recovery
            .rebuild
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(rebuild);
    }

    /// Moves the generation on: called by the rebuild, under the state lock, once the
    /// state matches the store again.
    pub fn next_generation(&self) {
        self.recovery.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The error of the last commit, while commits fail.
    pub fn failing(&self) -> Option<String> {
        self.recovery
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Queues mutations; the receiver answers once they are committed.
    pub fn write(&self, mutations: Vec<Mutation>) -> oneshot::Receiver<CommitResult> {
        let (done, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Command::Write {
            done: Some(done), ..
        })) = self.tx.send(Command::Write {
            mutations,
            done: Some(done),
            generation: self.recovery.generation.load(Ordering::Acquire),
        }) {
            let _ = done.send(Err(CommitError::Gone));
        }
        rx
    }

    /// Queues mutations nobody waits for (heartbeat flushes, housekeeping).
    pub fn write_detached(&self, mutations: Vec<Mutation>) {
        if mutations.is_empty() {
            return;
        }
        if self
            .tx
            .send(Command::Write {
                mutations,
                done: None,
                generation: self.recovery.generation.load(Ordering::Acquire),
            })
            .is_err()
        {
            tracing::warn!("store thread is gone; change not persisted");
        }
    }
}

/// Settled rows are never written again (only deleted), so once one is committed the
/// disk answers for its bodies.
fn note_settled(batch: &[Mutation], out: &Mutex<Vec<String>>) {
    let mut ids = out.lock().unwrap_or_else(|p| p.into_inner());
    for m in batch {
        if let Mutation::UpdateTask(t) | Mutation::PutTask(t) = m {
            if t.is_settled() {
                ids.push(t.id.clone());
            }
        }
    }
}

/// After a failed commit: reads the store back and hands it to the rebuild hook. Without
/// a hook (a bare store in tests) there is nothing in memory to put right.
fn recover(store: &mut dyn Store, recovery: &Recovery) {
    let hook = recovery.rebuild.lock().unwrap_or_else(|p| p.into_inner());
    let Some(rebuild) = hook.as_ref() else {
        return;
    };
    match store.load() {
        Ok(snapshot) => {
            rebuild(snapshot);
            tracing::warn!("state rebuilt from the store after a failed commit");
        }
        Err(e) => {
            // Memory stays ahead of the store; the next failed commit tries again.
            tracing::error!(error = %e, "reading the store back after a failed commit failed");
        }
    }
}
