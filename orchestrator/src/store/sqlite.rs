//! The default store: one SQLite file in WAL mode.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use rusqlite::{params, Connection};
use serde_json::Value;

use super::{Mutation, Snapshot, Store, StoreError, TaskRow, WorkerRow};

/// How hard SQLite works to keep a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// A commit survives the death of the process (`kill -9`, a panic) but may be lost
    /// with the machine's power: WAL with `synchronous=NORMAL`.
    Normal,
    /// A commit survives power loss too: `synchronous=FULL`, one fsync per group commit.
    Full,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    assigned_to TEXT,
    attempt INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout_s REAL NOT NULL,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    assigned_at REAL,
    not_before REAL,
    seq INTEGER NOT NULL,
    settled_by TEXT,
    settled_attempt INTEGER
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    worker_type TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    registered_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    draining INTEGER NOT NULL,
    dead INTEGER NOT NULL,
    tasks_completed INTEGER NOT NULL,
    tasks_failed INTEGER NOT NULL,
    metrics TEXT
);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
";

/// 1: tasks, workers, counters. 2: the key and credential tables of [`super::keys`].
pub const SCHEMA_VERSION: i64 = 2;

pub struct SqliteStore {
    conn: Connection,
    _checkpointer: Option<Checkpointer>,
}

/// Copies the WAL back into the database from its own connection, so the fsyncs of a
/// checkpoint do not stall the thread that commits (and with it every acknowledgement).
/// SQLite's own auto-checkpoint stays on, at a higher threshold, as a bound on the WAL.
struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    join: Option<thread::JoinHandle<()>>,
}

const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Pages (4 KiB) the WAL may reach before a commit checkpoints by itself.
const AUTOCHECKPOINT_PAGES: u32 = 16_384;

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch("PRAGMA busy_timeout=5000;")
            .map_err(open_err)?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let join = thread::Builder::new()
            .name("pifleet-checkpoint".into())
            .spawn(move || {
                let (lock, cv) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    let (guard, _) = cv
                        .wait_timeout(stopped, CHECKPOINT_EVERY)
                        .unwrap_or_else(|p| p.into_inner());
                    stopped = guard;
                    if *stopped {
                        break;
                    }
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "background checkpoint failed");
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        Ok(Checkpointer {
            stop,
            join: Some(join),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl SqliteStore {
    pub fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        let sync = match durability {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000;"
        ))
        .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                id: path.display().to_string(),
                detail: format!(
                    "schema version {version} is newer than this orchestrator's {SCHEMA_VERSION}"
                ),
            });
        }
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        conn.execute_batch(super::keys::SCHEMA).map_err(open_err)?;
        conn.execute_batch(super::speeds::SCHEMA).map_err(open_err)?;
        conn.execute_batch(&format!(
            "PRAGMA user_version={SCHEMA_VERSION}; PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES};"
        ))
        .map_err(open_err)?;
        let checkpointer = if path.as_os_str() == ":memory:" {
            None
        } else {
            Some(Checkpointer::start(path)?)
        };
        Ok(SqliteStore {
            conn,
            _checkpointer: checkpointer,
        })
    }
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(id: &str, column: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        detail: format!("{column}: {e}"),
    })
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let mut snap = Snapshot::default();
        let mut stmt = self.conn.prepare(
            "SELECT id, type, data, priority, state, assigned_to, attempt, failures, max_attempts,
                    timeout_s, result, error, created_at, updated_at, assigned_at, not_before, seq,
                    settled_by, settled_attempt
             FROM tasks ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, f64>(9)?,
                r.get::<_, Option<String>>(10)?,
                r.get::<_, Option<String>>(11)?,
                (
                    r.get::<_, f64>(12)?,
                    r.get::<_, f64>(13)?,
                    r.get::<_, Option<f64>>(14)?,
                    r.get::<_, Option<f64>>(15)?,
                    r.get::<_, i64>(16)?,
                    r.get::<_, Option<String>>(17)?,
                    r.get::<_, Option<i64>>(18)?,
                ),
            ))
        })?;
        for row in rows {
            let (
                id,
                task_type,
                data,
                priority,
                state,
                assigned_to,
                attempt,
                failures,
                max_attempts,
                timeout_s,
                result,
                error,
                (created_at, updated_at, assigned_at, not_before, seq, settled_by, settled_attempt),
            ) = row?;
            let data = Arc::new(parse_json(&id, "data", &data)?);
            let result = match result {
                Some(r) => Some(Arc::new(parse_json(&id, "result", &r)?)),
                None => None,
            };
            snap.tasks.push(TaskRow {
                task_type,
                data,
                priority: priority.clamp(1, 10) as u8,
                state,
                assigned_to,
                attempt: attempt.max(0) as u32,
                failures: failures.max(0) as u32,
                max_attempts: max_attempts.max(1) as u32,
                timeout_s,
                result,
                error,
                created_at,
                updated_at,
                assigned_at,
                not_before,
                seq: seq.max(0) as u64,
                settled_by,
                settled_attempt: settled_attempt.map(|a| a.max(0) as u32),
                id,
            });
        }
        drop(stmt);

        let mut stmt = self.conn.prepare(
            "SELECT id, worker_type, capabilities, registered_at, last_seen, draining, dead,
                    tasks_completed, tasks_failed, metrics FROM workers ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, f64>(4)?,
                r.get::<_, bool>(5)?,
                r.get::<_, bool>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })?;
        for row in rows {
            let (
                id,
                worker_type,
                caps,
                registered_at,
                last_seen,
                draining,
                dead,
                done,
                failed,
                metrics,
            ) = row?;
            let capabilities = parse_json(&id, "capabilities", &caps)?;
            let metrics = match metrics {
                Some(m) => Some(parse_json(&id, "metrics", &m)?),
                None => None,
            };
            snap.workers.push(WorkerRow {
                id,
                worker_type,
                capabilities,
                registered_at,
                last_seen,
                draining,
                dead,
                tasks_completed: done.max(0) as u64,
                tasks_failed: failed.max(0) as u64,
                metrics,
            });
        }
        drop(stmt);

        let mut stmt = self.conn.prepare("SELECT key, value FROM counters")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (k, v) = row?;
            snap.counters.push((k, v.max(0) as u64));
        }
        drop(stmt);
        snap.speeds = super::speeds::load(&self.conn)?;
        Ok(snap)
    }

    fn apply(&mut self, batch: &[Mutation]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for m in batch {
            match m {
                Mutation::PutTask(t) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO tasks (id, type, data, priority, state, assigned_to,
                            attempt, failures, max_attempts, timeout_s, result, error, created_at,
                            updated_at, assigned_at, not_before, seq, settled_by, settled_attempt)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                            ?16, ?17, ?18, ?19)",
                    )?
                    .execute(params![
                        t.id,
                        t.task_type,
                        json_text(&t.data),
                        t.priority,
                        t.state,
                        t.assigned_to,
                        t.attempt,
                        t.failures,
                        t.max_attempts,
                        t.timeout_s,
                        t.result.as_deref().map(json_text),
                        t.error,
                        t.created_at,
                        t.updated_at,
                        t.assigned_at,
                        t.not_before,
                        t.seq as i64,
                        t.settled_by,
                        t.settled_attempt,
                    ])?;
                }
                Mutation::UpdateTask(t) => {
                    let n = tx
                        .prepare_cached(
                            "UPDATE tasks SET state = ?2, assigned_to = ?3, attempt = ?4,
                                failures = ?5, max_attempts = ?6, timeout_s = ?7, result = ?8,
                                error = ?9, updated_at = ?10, assigned_at = ?11, not_before = ?12,
                                settled_by = ?13, settled_attempt = ?14
                             WHERE id = ?1",
                        )?
                        .execute(params![
                            t.id,
                            t.state,
                            t.assigned_to,
                            t.attempt,
                            t.failures,
                            t.max_attempts,
                            t.timeout_s,
                            t.result.as_deref().map(json_text),
                            t.error,
                            t.updated_at,
                            t.assigned_at,
                            t.not_before,
                            t.settled_by,
                            t.settled_attempt,
                        ])?;
                    if n == 0 {
                        return Err(StoreError::Corrupt {
                            id: t.id.clone(),
                            detail: "update of a task that was never stored".into(),
                        });
                    }
                }
                Mutation::PutWorker(w) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO workers (id, worker_type, capabilities,
                            registered_at, last_seen, draining, dead, tasks_completed,
                            tasks_failed, metrics)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )?
                    .execute(params![
                        w.id,
                        w.worker_type,
                        json_text(&w.capabilities),
                        w.registered_at,
                        w.last_seen,
                        w.draining,
                        w.dead,
                        w.tasks_completed as i64,
                        w.tasks_failed as i64,
                        w.metrics.as_ref().map(json_text),
                    ])?;
                }
                Mutation::WorkerCounts {
                    id,
                    completed,
                    failed,
                } => {
                    tx.prepare_cached(
                        "UPDATE workers SET tasks_completed = ?2, tasks_failed = ?3 WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        *completed as i64,
                        *failed as i64
                    ])?;
                }
                Mutation::DeleteWorker(id) => {
                    tx.prepare_cached("DELETE FROM workers WHERE id = ?1")?
                        .execute(params![id])?;
                    super::speeds::delete(&tx, id)?;
                }
                Mutation::DeleteTask(id) => {
                    tx.prepare_cached("DELETE FROM tasks WHERE id = ?1")?
                        .execute(params![id])?;
                }
                Mutation::Counter(k, v) => {
                    tx.prepare_cached(
                        "INSERT INTO counters (key, value) VALUES (?1, ?2)
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute(params![k, *v as i64])?;
                }
                Mutation::PutSpeeds { node, speeds } => super::speeds::put(&tx, node, speeds)?,
            }
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(id: &str, state: &str) -> TaskRow {
        TaskRow {
            id: id.into(),
            task_type: "agent_action".into(),
            data: Arc::new(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
            priority: 7,
            state: state.into(),
            assigned_to: None,
            attempt: 0,
            failures: 0,
            max_attempts: 3,
            timeout_s: 600.0,
            result: None,
            error: None,
            created_at: 1.5,
            updated_at: 1.5,
            assigned_at: None,
            not_before: None,
            seq: 1,
            settled_by: None,
            settled_attempt: None,
        }
    }

    #[test]
    fn what_is_applied_is_loaded_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut a = task("a", "pending");
        let mut b = task("b", "pending");
        b.seq = 2;
        let worker = WorkerRow {
            id: "pi".into(),
            worker_type: "pi".into(),
            capabilities: json!({"models": ["m"]}),
            registered_at: 1.0,
            last_seen: 2.0,
            draining: true,
            dead: false,
            tasks_completed: 0,
            tasks_failed: 0,
            metrics: Some(json!({"temperature_c": 50.0})),
        };
        {
            let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
            s.apply(&[
                Mutation::PutTask(a.clone()),
                Mutation::PutTask(b.clone()),
                Mutation::PutWorker(worker.clone()),
                Mutation::Counter("retried".into(), 4),
            ])
            .unwrap();
            a.state = "completed".into();
            a.attempt = 1;
            a.assigned_to = Some("pi".into());
            a.result = Some(Arc::new(json!({"success": true})));
            a.settled_by = Some("pi".into());
            a.settled_attempt = Some(1);
            s.apply(&[
                Mutation::UpdateTask(a.clone()),
                Mutation::WorkerCounts {
                    id: "pi".into(),
                    completed: 1,
                    failed: 0,
                },
                Mutation::DeleteTask("b".into()),
            ])
            .unwrap();
        }
        let mut s = SqliteStore::open(&path, Durability::Full).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.tasks, vec![a]);
        assert_eq!(snap.workers[0].tasks_completed, 1);
        assert!(snap.workers[0].draining);
        assert_eq!(snap.workers[0].metrics, worker.metrics);
        assert_eq!(snap.counters, vec![("retried".to_string(), 4)]);
    }

    #[test]
    fn a_failed_batch_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(&dir.path().join("t.db"), Durability::Normal).unwrap();
        let err = s.apply(&[
            Mutation::PutTask(task("a", "pending")),
            Mutation::UpdateTask(task("never-stored", "assigned")),
        ]);
        assert!(err.is_err());
        assert!(s.load().unwrap().tasks.is_empty());
    }
}
