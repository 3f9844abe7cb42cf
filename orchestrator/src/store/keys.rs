//! The tables of who may call: client keys and node credentials, and the change counter
//! that lets a running server see what `pifleet-orchestrator keys ...` / `nodes forget`
//! changed in the same file.
//!
//! These tables are read and written on their own connection ([`AuthDb`]), not through
//! the store thread: the command-line tool writes them beside a running server, and the
//! server writes them rarely (a node's first registration, a key's last use).
//! Secrets never reach this module: only their SHA-256 digests, as hex.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;

/// Added in schema version 2. Additive: only new tables.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    priority INTEGER,
    max_priority INTEGER,
    rate_per_min INTEGER,
    tokens_per_day INTEGER,
    created_at REAL NOT NULL,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS node_credentials (
    worker_id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL UNIQUE,
    issued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS node_forgets (
    worker_id TEXT PRIMARY KEY,
    requested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS auth_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO auth_changes (id, generation) VALUES (1, 0);
";

/// A client key as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub name: String,
    pub role: String,
    pub secret_sha256: String,
    pub priority: Option<u8>,
    pub max_priority: Option<u8>,
    pub rate_per_min: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub created_at: f64,
    pub last_used: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthDbError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a key named \"{0}\" exists already (revoke it first, or pick another name)")]
    KeyExists(String),
    #[error("node \"{0}\" has a credential already")]
    CredentialExists(String),
}

impl From<rusqlite::Error> for AuthDbError {
    fn from(e: rusqlite::Error) -> Self {
        AuthDbError::Store(StoreError::Sql(e))
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

/// A connection to the orchestrator's database for the key and credential tables.
pub struct AuthDb {
    conn: Connection,
    data_version: i64,
}

impl AuthDb {
    /// Opens (creating if need be) the database at `path` and its auth tables. Refuses a
    /// database from a newer orchestrator, like the store does.
    pub fn open(path: &Path) -> Result<AuthDb, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.execute_batch("PRAGMA busy_timeout=5000;")
            .map_err(open_err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if version > super::sqlite::SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                id: path.display().to_string(),
                detail: format!(
                    "schema version {version} is newer than this orchestrator's {}",
                    super::sqlite::SCHEMA_VERSION
                ),
            });
        }
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        let data_version = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(open_err)?;
        Ok(AuthDb { conn, data_version })
    }

    /// The change counter: bumped by every change a running server must notice.
    pub fn generation(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT generation FROM auth_changes WHERE id = 1")?
            .query_row([], |r| r.get(0))?)
    }

    /// The change counter if another connection committed anything since the last call
    /// (`PRAGMA data_version` costs no disk read), `None` if nothing was committed.
    pub fn generation_if_written(&mut self) -> Result<Option<i64>, StoreError> {
        let dv: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        if dv == self.data_version {
            return Ok(None);
        }
        self.data_version = dv;
        self.generation().map(Some)
    }

    fn bump(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE auth_changes SET generation = generation + 1 WHERE id = 1",
            [],
        )
        .map(|_| ())
    }

    pub fn keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, role, secret_sha256, priority, max_priority, rate_per_min,
                    tokens_per_day, created_at, last_used
             FROM api_keys ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(KeyRow {
                name: r.get(0)?,
                role: r.get(1)?,
                secret_sha256: r.get(2)?,
                priority: r.get::<_, Option<i64>>(3)?.map(|v| v.clamp(0, 255) as u8),
                max_priority: r.get::<_, Option<i64>>(4)?.map(|v| v.clamp(0, 255) as u8),
                rate_per_min: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
                tokens_per_day: r.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
                created_at: r.get(7)?,
                last_used: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn add_key(&mut self, row: &KeyRow) -> Result<(), AuthDbError> {
        let tx = self.conn.transaction()?;
        let inserted = tx.execute(
            "INSERT INTO api_keys (name, role, secret_sha256, priority, max_priority,
                                   rate_per_min, tokens_per_day, created_at, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL)",
            params![
                row.name,
                row.role,
                row.secret_sha256,
                row.priority,
                row.max_priority,
                row.rate_per_min.map(|v| v as i64),
                row.tokens_per_day.map(|v| v as i64),
                row.created_at,
            ],
        );
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(AuthDbError::KeyExists(row.name.clone()))
            }
            other => other?,
        };
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes the key; false when there was none of that name.
    pub fn revoke_key(&mut self, name: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute("DELETE FROM api_keys WHERE name = ?1", [name])?;
        if n > 0 {
            Self::bump(&tx)?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    /// Records when keys were last used. Not a change the server must notice.
    pub fn touch_keys(&mut self, used: &[(String, f64)]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE api_keys SET last_used = MAX(COALESCE(last_used, 0), ?2) WHERE name = ?1",
            )?;
            for (name, at) in used {
                stmt.execute(params![name, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// `(worker_id, secret_sha256)` of every node that has a credential.
    pub fn credentials(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT worker_id, secret_sha256 FROM node_credentials")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn add_credential(
        &mut self,
        worker_id: &str,
        secret_sha256: &str,
        now: f64,
    ) -> Result<(), AuthDbError> {
        match self.conn.execute(
            "INSERT INTO node_credentials (worker_id, secret_sha256, issued_at) VALUES (?1, ?2, ?3)",
            params![worker_id, secret_sha256, now],
        ) {
            Err(e) if is_unique_violation(&e) => {
                Err(AuthDbError::CredentialExists(worker_id.to_string()))
            }
            other => other.map(|_| ()).map_err(Into::into),
        }
    }

    pub fn delete_credential(&mut self, worker_id: &str) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "DELETE FROM node_credentials WHERE worker_id = ?1",
            [worker_id],
        )?;
        Ok(n > 0)
    }

    pub fn has_credential(&self, worker_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM node_credentials WHERE worker_id = ?1",
                [worker_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Whether the store holds a node of that id (the server may also know it only in
    /// memory, since its last commit).
    pub fn has_worker_row(&self, worker_id: &str) -> Result<bool, StoreError> {
        // A file only this tool has written has no workers table yet.
        let has_table = self
            .conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'workers'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        Ok(has_table
            && self
                .conn
                .query_row("SELECT 1 FROM workers WHERE id = ?1", [worker_id], |_| {
                    Ok(())
                })
                .optional()?
                .is_some())
    }

    /// Drops the node's credential at once and asks the server (running now, or the next
    /// to start) to forget the node, which requeues what it held. Returns whether there
    /// was a credential.
    pub fn request_forget(&mut self, worker_id: &str, now: f64) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let had = tx.execute(
            "DELETE FROM node_credentials WHERE worker_id = ?1",
            [worker_id],
        )? > 0;
        tx.execute(
            "INSERT OR REPLACE INTO node_forgets (worker_id, requested_at) VALUES (?1, ?2)",
            params![worker_id, now],
        )?;
        Self::bump(&tx)?;
        tx.commit()?;
        Ok(had)
    }

    /// Forget requests not yet carried out.
    pub fn pending_forgets(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT worker_id FROM node_forgets ORDER BY requested_at")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn forget_done(&mut self, worker_id: &str) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM node_forgets WHERE worker_id = ?1", [worker_id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, digest: &str) -> KeyRow {
        KeyRow {
            name: name.into(),
            role: "read".into(),
            secret_sha256: digest.into(),
            priority: Some(3),
            max_priority: None,
            rate_per_min: Some(60),
            tokens_per_day: None,
            created_at: 10.0,
            last_used: None,
        }
    }

    #[test]
    fn another_connection_sees_a_change_through_the_counter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pifleet.db");
        let mut server = AuthDb::open(&path).unwrap();
        let mut cli = AuthDb::open(&path).unwrap();
        let g0 = server.generation().unwrap();
        assert_eq!(server.generation_if_written().unwrap(), None);

        cli.add_key(&key("ci", "aa")).unwrap();
        let g1 = server.generation_if_written().unwrap().unwrap();
        assert!(g1 > g0);
        assert_eq!(server.keys().unwrap(), vec![key("ci", "aa")]);
        assert_eq!(server.generation_if_written().unwrap(), None);

        assert!(matches!(
            cli.add_key(&key("ci", "bb")),
            Err(AuthDbError::KeyExists(n)) if n == "ci"
        ));
        // A server's own writes are not changes it has to pick up.
        server.touch_keys(&[("ci".into(), 20.0)]).unwrap();
        assert_eq!(server.generation_if_written().unwrap(), None);
        assert_eq!(cli.keys().unwrap()[0].last_used, Some(20.0));

        assert!(cli.revoke_key("ci").unwrap());
        assert!(!cli.revoke_key("ci").unwrap());
        assert!(server.generation_if_written().unwrap().unwrap() > g1);
        assert!(server.keys().unwrap().is_empty());
    }

    #[test]
    fn credentials_are_unique_and_a_forget_drops_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = AuthDb::open(&dir.path().join("pifleet.db")).unwrap();
        db.add_credential("w-a", "aa", 1.0).unwrap();
        assert!(matches!(
            db.add_credential("w-a", "bb", 2.0),
            Err(AuthDbError::CredentialExists(_))
        ));
        assert_eq!(db.credentials().unwrap(), vec![("w-a".into(), "aa".into())]);
        assert!(db.request_forget("w-a", 3.0).unwrap());
        assert!(db.credentials().unwrap().is_empty());
        assert_eq!(db.pending_forgets().unwrap(), vec!["w-a".to_string()]);
        db.forget_done("w-a").unwrap();
        assert!(db.pending_forgets().unwrap().is_empty());
    }
}
