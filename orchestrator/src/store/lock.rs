//! One database, one orchestrator: an exclusive `flock` on `<db>.lock`, held for the life
//! of the process. Two orchestrators on one file would hand out the same tasks and
//! overwrite each other's results; SQLite's own locking only serialises their writes.
//!
//! `flock` locks go away with the process however it ends (`kill -9` included), so a stale
//! lock file never blocks a restart; the pid written into it is only for the message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Held while the orchestrator runs; dropping it releases the lock.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "database {db} is already in use by another orchestrator ({owner}, lock file {lock}); \
         stop that one first, or give this one another --db"
    )]
    Held {
        db: String,
        lock: String,
        owner: String,
    },
    #[error("lock file {lock} for database {db}: {source}")]
    Io {
        db: String,
        lock: String,
        source: std::io::Error,
    },
}

/// `pifleet.db` -> `pifleet.db.lock`, beside it.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DbLock {
    /// Takes the lock for `db` or says who holds it. Never waits.
    pub fn acquire(db: &Path) -> Result<DbLock, LockError> {
        let path = lock_path(db);
        let io_err = |source| LockError::Io {
            db: db.display().to_string(),
            lock: path.display().to_string(),
            source,
        };
        // Not truncated on open: the owner's pid must survive a refused second start.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let owner = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_string(),
                };
                return Err(LockError::Held {
                    db: db.display().to_string(),
                    lock: path.display().to_string(),
                    owner,
                });
            }
            Err(e) => return Err(io_err(e.into())),
        }
        file.set_len(0).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        writeln!(file, "{}", std::process::id()).map_err(io_err)?;
        file.flush().map_err(io_err)?;
        Ok(DbLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_db_is_refused_and_names_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("fleet.db");
        let first = DbLock::acquire(&db).unwrap();
        let err = DbLock::acquire(&db).unwrap_err().to_string();
        assert!(err.contains(&db.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DbLock::acquire(&db).expect("free again once the owner is gone");
    }
}
