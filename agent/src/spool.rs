//! Results on disk before they go on the wire: a result is written (tmp + fsync + rename)
//! before its first delivery attempt and removed only once the orchestrator has taken it,
//! so a crash, a reboot or an orchestrator outage loses nothing. Disk only: sending them
//! is the job of `delivery.rs`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pifleet_protocol::ResultRequest;
use serde::{Deserialize, Serialize};

use crate::activity::lock;
use crate::error::Error;

/// One spooled result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub task_id: String,
    pub request: ResultRequest,
}

#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    pub entry: Entry,
}

pub struct Spool {
    dir: PathBuf,
    seq: AtomicU64,
    /// The task id of every spooled file, so a heartbeat can say which results the node
    /// holds without reading the files (a long outage can spool many).
    held: Mutex<BTreeMap<PathBuf, String>>,
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect()
}

impl Spool {
    pub fn open(state_dir: &Path) -> Result<Spool, Error> {
        let dir = state_dir.join("spool");
        fs::create_dir_all(&dir).map_err(|source| Error::Spool {
            path: dir.clone(),
            source,
        })?;
        // A .tmp file is a write that never reached its rename: not a result.
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "tmp") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let spool = Spool {
            dir,
            seq: AtomicU64::new(0),
            held: Mutex::new(BTreeMap::new()),
        };
        let held = spool
            .pending()
            .into_iter()
            .map(|s| (s.path, s.entry.task_id))
            .collect();
        *lock(&spool.held) = held;
        Ok(spool)
    }

    /// The tasks whose results are spooled and not yet delivered.
    pub fn held(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.held).values().cloned().collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a result durably and returns its file.
    pub fn put(&self, task_id: &str, request: &ResultRequest) -> Result<PathBuf, Error> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{ms:013}-{seq:04}-{}-{}.json",
            sanitize(task_id),
            request.attempt.unwrap_or(0)
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let entry = Entry {
            task_id: task_id.to_string(),
            request: request.clone(),
        };
        let io = |source| Error::Spool {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| io(std::io::Error::other(e)))?;
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io)?;
        // The rename itself must survive a power cut: sync the directory too.
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        // Listed before the task leaves the running list, so no heartbeat misses it.
        lock(&self.held).insert(path.clone(), task_id.to_string());
        Ok(path)
    }

    /// Spooled results, oldest first. A file that does not parse is set aside as `.bad`.
    pub fn pending(&self) -> Vec<Spooled> {
        let mut files: Vec<PathBuf> = match fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(_) => return Vec::new(),
        };
        files.sort();
        files
            .into_iter()
            .filter_map(|path| {
                let parsed = fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
                match parsed {
                    Some(entry) => Some(Spooled { path, entry }),
                    None => {
                        log::error!(
                            "spool file {} is unreadable; set aside as .bad",
                            path.display()
                        );
                        let _ = fs::rename(&path, path.with_extension("bad"));
                        lock(&self.held).remove(&path);
                        None
                    }
                }
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.pending().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a delivered (or unwanted) result off the disk.
    pub fn remove(&self, s: &Spooled) {
        if let Err(e) = fs::remove_file(&s.path) {
            log::error!(
                "cannot remove delivered spool file {}: {e}",
                s.path.display()
            );
        }
        // Taken by the orchestrator (or unwanted by it) either way: no longer held.
        lock(&self.held).remove(&s.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn put_then_pending_in_order_and_tmp_cleared() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let s = Spool::open(d).unwrap();
        for i in 0..3 {
            let req = ResultRequest {
                worker_id: "w".into(),
                result: json!({"success": true, "n": i}),
                attempt: Some(1),
            };
            s.put(&format!("task/{i}"), &req).unwrap();
        }
        fs::write(s.dir().join("x.json.tmp"), b"half").unwrap();
        fs::write(s.dir().join("broken.json"), b"{").unwrap();
        let s = Spool::open(d).unwrap();
        let p = s.pending();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].entry.task_id, "task/0");
        assert_eq!(p[2].entry.request.result["n"], 2);
        assert!(!s.dir().join("x.json.tmp").exists());
        assert!(s.dir().join("broken.bad").exists());
    }

    #[test]
    fn held_lists_the_spooled_tasks_across_a_restart_until_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Spool::open(tmp.path()).unwrap();
        let req = |a| ResultRequest {
            worker_id: "w".into(),
            result: json!({"success": true}),
            attempt: Some(a),
        };
        s.put("task/b", &req(1)).unwrap();
        s.put("task/a", &req(1)).unwrap();
        s.put("task/a", &req(2)).unwrap();
        assert_eq!(s.held(), ["task/a", "task/b"]);
        let s = Spool::open(tmp.path()).unwrap();
        assert_eq!(s.held(), ["task/a", "task/b"], "read back at start");
        for p in s.pending().iter().filter(|p| p.entry.task_id == "task/b") {
            s.remove(p);
        }
        assert_eq!(s.held(), ["task/a"]);
    }
}
