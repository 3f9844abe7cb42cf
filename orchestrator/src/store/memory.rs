//! A store that keeps everything in memory: for tests and for `--db :memory:` runs where
//! durability is not wanted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Bodies, BodyReader, Mutation, Snapshot, Store, StoreError, TaskRow, WorkerRow};

type Tasks = Arc<Mutex<BTreeMap<String, TaskRow>>>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    /// Shared with the [`BodyReader`], as a file is shared by two SQLite connections.
    tasks: Tasks,
    workers: BTreeMap<String, WorkerRow>,
    counters: BTreeMap<String, u64>,
    speeds: BTreeMap<String, serde_json::Value>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn tasks(&self) -> MutexGuard<'_, BTreeMap<String, TaskRow>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Reader(Tasks);

impl BodyReader for Reader {
    fn read(&self, id: &str) -> Result<Option<Bodies>, StoreError> {
        let tasks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(tasks.get(id).map(|t| Bodies {
            result: t.result.as_deref().cloned(),
            error: t.error.clone(),
        }))
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            tasks: self.tasks().values().cloned().collect(),
            workers: self.workers.values().cloned().collect(),
            counters: self.counters.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            speeds: self
                .speeds
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    fn apply(&mut self, batch: &[Mutation]) -> Result<(), StoreError> {
        for m in batch {
            match m {
                Mutation::PutTask(t) | Mutation::UpdateTask(t) => {
                    self.tasks().insert(t.id.clone(), t.clone());
                }
                Mutation::PutWorker(w) => {
                    self.workers.insert(w.id.clone(), w.clone());
                }
                Mutation::WorkerCounts {
                    id,
                    completed,
                    failed,
                } => {
                    if let Some(w) = self.workers.get_mut(id) {
                        w.tasks_completed = *completed;
                        w.tasks_failed = *failed;
                    }
                }
                Mutation::DeleteWorker(id) => {
                    self.workers.remove(id);
                    self.speeds.remove(id);
                }
                Mutation::DeleteTask(id) => {
                    self.tasks().remove(id);
                }
                Mutation::Counter(k, v) => {
                    self.counters.insert(k.clone(), *v);
                }
                Mutation::PutSpeeds { node, speeds } => {
                    self.speeds.insert(node.clone(), speeds.clone());
                }
            }
        }
        Ok(())
    }

    fn body_reader(&self) -> Option<Arc<dyn BodyReader>> {
        Some(Arc::new(Reader(self.tasks.clone())))
    }
}
