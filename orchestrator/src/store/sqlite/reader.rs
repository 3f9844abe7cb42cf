//! Reading settled tasks' bodies back while the store thread writes.

use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{Bodies, BodyReader, StoreError};

/// A read-only connection of its own: in WAL mode it reads what is committed while the
/// store thread writes.
pub(super) struct Reader {
    conn: Mutex<Connection>,
}

impl Reader {
    pub(super) fn new(conn: Connection) -> Reader {
        Reader {
            conn: Mutex::new(conn),
        }
    }
}

impl BodyReader for Reader {
    fn read(&self, id: &str) -> Result<Option<Bodies>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let row: Option<(Option<String>, Option<String>)> = conn
            .prepare_cached("SELECT result, error FROM tasks WHERE id = ?1")?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((result, error)) = row else {
            return Ok(None);
        };
        let result = match result {
            None => None,
            Some(text) => Some(
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    id: id.to_string(),
                    detail: format!("result: invalid JSON: {e}"),
                })?,
            ),
        };
        Ok(Some(Bodies { result, error }))
    }
}
