//! Reading the database back at start. A row that does not parse (invalid JSON, a value
//! of the wrong type) is moved to a `quarantined_*` table with the reason, and the
//! orchestrator starts without it: one bad row must not keep the whole fleet down.

use std::sync::Arc;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, Row};
use serde_json::Value;

use pifleet_protocol::TaskState;

use crate::store::bodies::no_data;
use crate::store::{Snapshot, StoreError, Summary, TaskRow, WorkerRow};

pub(super) const TASK_COLUMNS: &str = "id, type, data, priority, state, assigned_to, attempt, \
    failures, max_attempts, timeout_s, result, error, created_at, updated_at, assigned_at, \
    not_before, seq, settled_by, settled_attempt, expires_at";

pub(super) const WORKER_COLUMNS: &str = "id, worker_type, capabilities, registered_at, \
    last_seen, draining, dead, tasks_completed, tasks_failed, metrics";

/// A row set aside: which table, its rowid, its id as far as it can be read, and why.
struct Bad {
    table: &'static str,
    rowid: i64,
    id: String,
    reason: String,
}

fn col<T: rusqlite::types::FromSql>(r: &Row, i: usize, name: &str) -> Result<T, String> {
    r.get::<_, T>(i).map_err(|e| format!("{name}: {e}"))
}

fn json(r: &Row, i: usize, name: &str) -> Result<Value, String> {
    let text: String = col(r, i, name)?;
    serde_json::from_str(&text).map_err(|e| format!("{name}: invalid JSON: {e}"))
}

fn opt_json(r: &Row, i: usize, name: &str) -> Result<Option<Value>, String> {
    match col::<Option<String>>(r, i, name)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{name}: invalid JSON: {e}")),
    }
}

/// The id column, whatever type it has, for the log line.
fn id_text(r: &Row) -> String {
    match r.get::<_, SqlValue>(1) {
        Ok(SqlValue::Text(s)) => s,
        Ok(SqlValue::Integer(i)) => i.to_string(),
        Ok(SqlValue::Real(f)) => f.to_string(),
        Ok(SqlValue::Null) => "(null)".into(),
        Ok(SqlValue::Blob(_)) => "(blob)".into(),
        Err(_) => "(unreadable)".into(),
    }
}

/// Columns from 1: column 0 is the rowid. With `slim`, a settled task's data and result
/// are parsed (a row that does not parse is still set aside) but only their [`Summary`]
/// is kept: the bodies stay on disk, one row in memory at a time.
fn task_row(r: &Row, slim: bool) -> Result<TaskRow, String> {
    let mut row = full_task_row(r)?;
    if slim && row.is_settled() {
        row.summary = Some(Box::new(Summary::of(&row.data, row.result.as_deref())));
        row.data = no_data();
        row.result = None;
    }
    Ok(row)
}

fn full_task_row(r: &Row) -> Result<TaskRow, String> {
    let id: String = col(r, 1, "id")?;
    Ok(TaskRow {
        task_type: col(r, 2, "type")?,
        data: Arc::new(json(r, 3, "data")?),
        priority: col::<i64>(r, 4, "priority")?.clamp(1, 10) as u8,
        state: {
            let word: String = col(r, 5, "state")?;
            TaskState::parse(&word).ok_or_else(|| format!("state: unknown {word:?}"))?
        },
        assigned_to: col(r, 6, "assigned_to")?,
        attempt: col::<i64>(r, 7, "attempt")?.max(0) as u32,
        failures: col::<i64>(r, 8, "failures")?.max(0) as u32,
        max_attempts: col::<i64>(r, 9, "max_attempts")?.max(1) as u32,
        timeout_s: col(r, 10, "timeout_s")?,
        result: opt_json(r, 11, "result")?.map(Arc::new),
        error: col(r, 12, "error")?,
        created_at: col(r, 13, "created_at")?,
        updated_at: col(r, 14, "updated_at")?,
        assigned_at: col(r, 15, "assigned_at")?,
        not_before: col(r, 16, "not_before")?,
        seq: col::<i64>(r, 17, "seq")?.max(0) as u64,
        settled_by: col(r, 18, "settled_by")?,
        settled_attempt: col::<Option<i64>>(r, 19, "settled_attempt")?.map(|a| a.max(0) as u32),
        expires_at: col(r, 20, "expires_at")?,
        summary: None,
        id,
    })
}

fn worker_row(r: &Row) -> Result<WorkerRow, String> {
    Ok(WorkerRow {
        id: col(r, 1, "id")?,
        worker_type: col(r, 2, "worker_type")?,
        capabilities: json(r, 3, "capabilities")?,
        registered_at: col(r, 4, "registered_at")?,
        last_seen: col(r, 5, "last_seen")?,
        draining: col(r, 6, "draining")?,
        dead: col(r, 7, "dead")?,
        tasks_completed: col::<i64>(r, 8, "tasks_completed")?.max(0) as u64,
        tasks_failed: col::<i64>(r, 9, "tasks_failed")?.max(0) as u64,
        metrics: opt_json(r, 10, "metrics")?,
    })
}

fn read_table<T>(
    conn: &Connection,
    table: &'static str,
    columns: &str,
    order: &str,
    parse: impl Fn(&Row) -> Result<T, String>,
    out: &mut Vec<T>,
    bad: &mut Vec<Bad>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT rowid, {columns} FROM {table} ORDER BY {order}"
    ))?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        match parse(r) {
            Ok(v) => out.push(v),
            Err(reason) => bad.push(Bad {
                table,
                rowid: r.get(0)?,
                id: id_text(r),
                reason,
            }),
        }
    }
    Ok(())
}

pub(super) fn load(conn: &mut Connection, slim: bool) -> Result<Snapshot, StoreError> {
    let mut snap = Snapshot::default();
    let mut bad = Vec::new();
    read_table(
        conn,
        "tasks",
        TASK_COLUMNS,
        "seq",
        |r| task_row(r, slim),
        &mut snap.tasks,
        &mut bad,
    )?;
    read_table(
        conn,
        "workers",
        WORKER_COLUMNS,
        "id",
        worker_row,
        &mut snap.workers,
        &mut bad,
    )?;
    let mut stmt = conn.prepare("SELECT key, value FROM counters")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        match (r.get::<_, String>(0), r.get::<_, i64>(1)) {
            (Ok(k), Ok(v)) => snap.counters.push((k, v.max(0) as u64)),
            // A counter is only a statistic: starting from zero beats not starting.
            _ => tracing::warn!("a stored counter is unreadable; it starts from zero"),
        }
    }
    drop(rows);
    drop(stmt);
    snap.speeds = crate::store::speeds::load(conn)?;
    if !bad.is_empty() {
        quarantine(conn, &bad)?;
    }
    Ok(snap)
}

/// Moves the rows aside in one transaction, so a crash in the middle neither loses nor
/// duplicates one.
fn quarantine(conn: &mut Connection, bad: &[Bad]) -> Result<(), StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let tx = conn.transaction()?;
    for b in bad {
        let columns = if b.table == "tasks" {
            TASK_COLUMNS
        } else {
            WORKER_COLUMNS
        };
        tx.execute(
            &format!(
                "INSERT INTO quarantined_{table} ({columns}, reason, quarantined_at)
                 SELECT {columns}, ?2, ?3 FROM {table} WHERE rowid = ?1",
                table = b.table
            ),
            params![b.rowid, b.reason, now],
        )?;
        tx.execute(
            &format!("DELETE FROM {} WHERE rowid = ?1", b.table),
            params![b.rowid],
        )?;
        tracing::error!(
            table = b.table,
            id = %b.id,
            reason = %b.reason,
            "stored row does not parse: moved to quarantined_{}, starting without it",
            b.table
        );
    }
    tx.commit()?;
    Ok(())
}
