//! The default store: one SQLite file in WAL mode.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{params, Connection, OpenFlags};
use serde_json::Value;

mod checkpoint;
mod load;
mod reader;

use checkpoint::{Checkpointer, AUTOCHECKPOINT_PAGES};
use reader::Reader;

use super::{BodyReader, Mutation, Snapshot, Store, StoreError};

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
    settled_attempt INTEGER,
    expires_at REAL
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
-- Rows that did not parse at start, kept as they were (untyped columns) with the reason.
CREATE TABLE IF NOT EXISTS quarantined_tasks (
    id, type, data, priority, state, assigned_to, attempt, failures, max_attempts, timeout_s,
    result, error, created_at, updated_at, assigned_at, not_before, seq, settled_by,
    settled_attempt, expires_at, reason TEXT, quarantined_at REAL
);
CREATE TABLE IF NOT EXISTS quarantined_workers (
    id, worker_type, capabilities, registered_at, last_seen, draining, dead, tasks_completed,
    tasks_failed, metrics, reason TEXT, quarantined_at REAL
);
";

/// 1: tasks, workers, counters. 2: the key and credential tables of [`super::keys`].
/// 3: `expires_at` of tasks (added to a version 2 file when it is opened).
pub const SCHEMA_VERSION: i64 = 3;

/// Columns added since version 1, by table: added to an older file at open.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("tasks", "expires_at", "REAL"),
    ("quarantined_tasks", "expires_at", ""),
];

fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, ty) in ADDED_COLUMNS {
        let mut stmt = conn.prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
        ))?;
        if !stmt.exists([column])? {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

pub struct SqliteStore {
    conn: Connection,
    _checkpointer: Option<Checkpointer>,
    reader: Option<Arc<Reader>>,
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
            return Err(StoreError::SchemaVersion {
                path: path.display().to_string(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        add_missing_columns(&conn).map_err(open_err)?;
        conn.execute_batch(super::keys::SCHEMA).map_err(open_err)?;
        conn.execute_batch(super::speeds::SCHEMA)
            .map_err(open_err)?;
        conn.execute_batch(&format!(
            "PRAGMA user_version={SCHEMA_VERSION}; PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES};"
        ))
        .map_err(open_err)?;
        let (checkpointer, reader) = if path.as_os_str() == ":memory:" {
            (None, None)
        } else {
            let reader = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|c| c.execute_batch("PRAGMA busy_timeout=5000;").map(|()| c))
            .map_err(open_err)?;
            (
                Some(Checkpointer::start(path)?),
                Some(Arc::new(Reader::new(reader))),
            )
        };
        Ok(SqliteStore {
            conn,
            _checkpointer: checkpointer,
            reader,
        })
    }
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        load::load(&mut self.conn, self.reader.is_some())
    }

    fn body_reader(&self) -> Option<Arc<dyn BodyReader>> {
        self.reader.clone().map(|r| r as Arc<dyn BodyReader>)
    }

    fn apply(&mut self, batch: &[Mutation]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for m in batch {
            match m {
                Mutation::PutTask(t) => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO tasks (id, type, data, priority, state, assigned_to,
                            attempt, failures, max_attempts, timeout_s, result, error, created_at,
                            updated_at, assigned_at, not_before, seq, settled_by, settled_attempt,
                            expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                            ?16, ?17, ?18, ?19, ?20)",
                    )?
                    .execute(params![
                        t.id,
                        t.task_type,
                        json_text(&t.data),
                        t.priority,
                        t.state.as_str(),
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
                        t.expires_at,
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
                            t.state.as_str(),
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
mod tests;
