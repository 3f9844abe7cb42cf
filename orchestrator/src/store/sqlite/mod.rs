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
mod tests {
    use super::*;
    use crate::store::{TaskRow, WorkerRow};
    use pifleet_protocol::TaskState;
    use serde_json::json;
    use std::sync::Arc;

    fn task(id: &str, state: TaskState) -> TaskRow {
        TaskRow {
            id: id.into(),
            task_type: "agent_action".into(),
            data: Arc::new(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})),
            priority: 7,
            state,
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
            expires_at: None,
            summary: None,
        }
    }

    #[test]
    fn what_is_applied_is_loaded_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut a = task("a", TaskState::Pending);
        let mut b = task("b", TaskState::Pending);
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
            a.state = TaskState::Completed;
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
        // Settled: only the summary comes back in the snapshot, the bodies are read on demand.
        let mut slim = a.clone();
        slim.summary = Some(Box::new(crate::store::Summary::of(
            &a.data,
            a.result.as_deref(),
        )));
        slim.data = crate::store::bodies::no_data();
        slim.result = None;
        assert_eq!(snap.tasks, vec![slim]);
        let bodies = s.body_reader().unwrap().read("a").unwrap().unwrap();
        assert_eq!(bodies.result.as_ref(), a.result.as_deref());
        assert_eq!(bodies.error, a.error);
        assert!(s.body_reader().unwrap().read("b").unwrap().is_none());
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
            Mutation::PutTask(task("a", TaskState::Pending)),
            Mutation::UpdateTask(task("never-stored", TaskState::Assigned)),
        ]);
        assert!(err.is_err());
        assert!(s.load().unwrap().tasks.is_empty());
    }

    #[test]
    fn a_row_that_does_not_parse_is_quarantined_and_the_rest_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut b = task("b", TaskState::Pending);
        b.seq = 2;
        {
            let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
            s.apply(&[
                Mutation::PutTask(task("a", TaskState::Pending)),
                Mutation::PutTask(b.clone()),
            ])
            .unwrap();
            s.conn
                .execute("UPDATE tasks SET data = '{not json' WHERE id = 'a'", [])
                .unwrap();
            s.conn
                .execute(
                    "INSERT INTO workers VALUES ('pi', 'pi', 'oops', 1.0, 2.0, 0, 0, 0, 0, NULL)",
                    [],
                )
                .unwrap();
        }
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        let snap = s.load().expect("one bad row does not stop the load");
        assert_eq!(snap.tasks, vec![b.clone()]);
        assert!(snap.workers.is_empty());
        let (id, data, reason): (String, String, String) = s
            .conn
            .query_row("SELECT id, data, reason FROM quarantined_tasks", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((id.as_str(), data.as_str()), ("a", "{not json"));
        assert!(reason.starts_with("data: invalid JSON"), "{reason}");
        let reason: String = s
            .conn
            .query_row("SELECT reason FROM quarantined_workers", [], |r| r.get(0))
            .unwrap();
        assert!(reason.starts_with("capabilities:"), "{reason}");
        // Set aside once: the next start loads the good rows and quarantines nothing new.
        drop(s);
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        assert_eq!(s.load().unwrap().tasks, vec![b]);
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM quarantined_tasks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn a_task_in_an_unknown_state_is_quarantined_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
            s.apply(&[Mutation::PutTask(task("a", TaskState::Assigned))])
                .unwrap();
            s.conn
                .execute("UPDATE tasks SET state = 'finished' WHERE id = 'a'", [])
                .unwrap();
        }
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        assert!(s.load().unwrap().tasks.is_empty());
        let reason: String = s
            .conn
            .query_row("SELECT reason FROM quarantined_tasks", [], |r| r.get(0))
            .unwrap();
        assert_eq!(reason, r#"state: unknown "finished""#);
    }

    #[test]
    fn a_version_2_file_gains_the_expiry_column_and_keeps_its_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let v2 = SCHEMA.replace(",\n    expires_at REAL", "").replace(
            "settled_attempt, expires_at, reason",
            "settled_attempt, reason",
        );
        assert!(!v2.contains("expires_at"));
        let old = Connection::open(&path).unwrap();
        old.execute_batch(&v2).unwrap();
        old.execute_batch(
            "INSERT INTO tasks (id, type, data, priority, state, attempt, failures, max_attempts,
                timeout_s, created_at, updated_at, seq)
             VALUES ('old', 't', '{}', 5, 'pending', 0, 0, 3, 600, 1, 1, 1);
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(old);
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(snap.tasks.len(), 1);
        assert_eq!(snap.tasks[0].expires_at, None);
        let mut t = task("new", TaskState::Pending);
        t.expires_at = Some(99.5);
        s.apply(&[Mutation::PutTask(t)]).unwrap();
        drop(s);
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        let snap = s.load().unwrap();
        let new = snap.tasks.iter().find(|t| t.id == "new").unwrap();
        assert_eq!(new.expires_at, Some(99.5));
    }

    #[test]
    fn a_newer_schema_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 7;")
            .unwrap();
        let err = SqliteStore::open(&path, Durability::Normal)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("schema version 7"), "{err}");
        assert!(!err.contains("corrupt"), "{err}");
    }
}
