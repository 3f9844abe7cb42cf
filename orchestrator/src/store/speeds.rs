//! The `node_speeds` table: each node's measured speeds per model (one JSON document per
//! node), so placement keeps what it learned across restarts. An additive table: an
//! older orchestrator opening the file ignores it.

use rusqlite::{params, Connection, Transaction};
use serde_json::Value;

use super::StoreError;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS node_speeds (
    node_id TEXT PRIMARY KEY,
    speeds TEXT NOT NULL
);";

pub(super) fn load(conn: &Connection) -> Result<Vec<(String, Value)>, StoreError> {
    let mut stmt = conn.prepare("SELECT node_id, speeds FROM node_speeds ORDER BY node_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (id, text) = row?;
        match serde_json::from_str(&text) {
            Ok(v) => out.push((id, v)),
            // Speeds are relearnt from the next results: not a reason to refuse to start.
            Err(e) => {
                tracing::warn!(node = %id, error = %e, "stored speeds unreadable; relearning")
            }
        }
    }
    Ok(out)
}

pub(super) fn put(tx: &Transaction<'_>, node: &str, speeds: &Value) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO node_speeds (node_id, speeds) VALUES (?1, ?2)
         ON CONFLICT(node_id) DO UPDATE SET speeds = excluded.speeds",
    )?
    .execute(params![node, speeds.to_string()])?;
    Ok(())
}

pub(super) fn delete(tx: &Transaction<'_>, node: &str) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM node_speeds WHERE node_id = ?1")?
        .execute(params![node])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::store::sqlite::Durability;
    use crate::store::{Mutation, SqliteStore, Store};

    #[test]
    fn speeds_survive_a_reopen_and_leave_with_their_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let doc = json!({"pi_model": "Raspberry Pi 5 Model B", "models": {"m": {"results": 3}}});
        {
            let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
            let put = |speeds| Mutation::PutSpeeds {
                node: "pi".into(),
                speeds,
            };
            s.apply(&[put(json!({"old": true})), put(doc.clone())])
                .unwrap();
            s.apply(&[Mutation::PutSpeeds {
                node: "other".into(),
                speeds: json!({}),
            }])
            .unwrap();
        }
        let mut s = SqliteStore::open(&path, Durability::Normal).unwrap();
        let snap = s.load().unwrap();
        assert_eq!(
            snap.speeds,
            vec![("other".to_string(), json!({})), ("pi".to_string(), doc)]
        );
        s.apply(&[Mutation::DeleteWorker("pi".into())]).unwrap();
        assert_eq!(s.load().unwrap().speeds.len(), 1);
    }
}
