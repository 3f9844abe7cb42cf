//! Result delivery: the [`Outbox`] puts every result in the spool first, then posts the
//! spooled results oldest first. Redelivery of a result the orchestrator already has is
//! answered as a duplicate, so nothing is counted twice; a result it no longer wants (a
//! revoked attempt, an unknown task) is dropped, so one bad file never blocks the rest.

use std::path::Path;
use std::sync::Mutex;

use pifleet_protocol::ResultRequest;

use crate::client::Client;
use crate::error::ClientError;
use crate::spool::Spool;

/// How a delivery pass ended.
#[derive(Debug)]
pub enum Delivery {
    /// Everything spooled was taken (or dropped as unwanted); the number delivered.
    Done(usize),
    /// The orchestrator could not take a result now; keep it and back off.
    Retry(ClientError),
}

pub struct Outbox {
    spool: Spool,
    client: Client,
    /// One delivery pass at a time, so two work loops never post the same file at once.
    delivering: Mutex<()>,
}

impl Outbox {
    pub fn new(spool: Spool, client: Client) -> Outbox {
        Outbox {
            spool,
            client,
            delivering: Mutex::new(()),
        }
    }

    pub fn len(&self) -> usize {
        self.spool.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spool.is_empty()
    }

    /// The tasks whose results wait here for delivery.
    pub fn held(&self) -> Vec<String> {
        self.spool.held()
    }

    pub fn dir(&self) -> &Path {
        self.spool.dir()
    }

    /// Spools a result; from then on a crash or an outage cannot lose it. When the disk
    /// fails, posts it once directly rather than not at all.
    pub fn keep(&self, task_id: &str, req: &ResultRequest) {
        if let Err(e) = self.spool.put(task_id, req) {
            log::error!("{e}: delivering task {task_id}'s result without a spool copy");
            if let Err(e) = self.client.result(task_id, req) {
                log::error!("result for task {task_id} lost: {e}");
            }
        }
    }

    /// Delivers every spooled result, oldest first, stopping at the first one the
    /// orchestrator cannot take now.
    pub fn deliver(&self) -> Delivery {
        let _guard = self.delivering.lock().unwrap_or_else(|e| e.into_inner());
        let mut delivered = 0;
        for s in self.spool.pending() {
            let id = &s.entry.task_id;
            match self.client.result(id, &s.entry.request) {
                Ok(()) => {
                    log::info!("result for task {id} delivered");
                    delivered += 1;
                }
                Err(ClientError::Status {
                    status: 409,
                    message,
                }) => {
                    log::info!("result for task {id} dropped: attempt revoked by the orchestrator ({message})");
                }
                Err(ClientError::Status { status, message })
                    if status == 404 || status == 400 || status == 422 || status == 410 =>
                {
                    log::warn!(
                        "result for task {id} dropped: orchestrator answered {status}: {message}"
                    );
                }
                Err(e) => return Delivery::Retry(e),
            }
            self.spool.remove(&s);
        }
        Delivery::Done(delivered)
    }
}
