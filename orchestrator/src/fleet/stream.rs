//! The stream relay: the chunks an agent produces for a streaming `ollama_api` task go to
//! the one client waiting for that task, line by line, with nothing held back.
//!
//! The client side opens a [`Listener`] for its task before the task can be assigned, so
//! no chunk can arrive for a task nobody listens to yet. An agent attaches a [`Feed`] for
//! the attempt it holds; a newer attempt replaces an older one. A feed stops (and the
//! agent is told 409) when the listener goes away (the client hung up) or when the fleet
//! revokes its attempt ([`StreamHub::stop`]). The hub never looks at the fleet's state:
//! the fleet calls it, not the other way round, so the lock order is fleet, then hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

/// Lines in flight between one agent and its client. Small on purpose: a slow client
/// slows the agent's upload (and so its Ollama read) instead of filling memory.
const LINES_IN_FLIGHT: usize = 64;

/// What a listener receives.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// An agent started streaming this attempt.
    Opened { worker: String, attempt: u32 },
    /// One NDJSON line as Ollama wrote it, without the newline.
    Line(Bytes),
    /// The agent's stream body ended normally.
    Ended { attempt: u32 },
    /// The stream of this attempt broke off: the agent's connection died, or the attempt
    /// was revoked (node dead, timed out) while streaming.
    Broken { attempt: u32, reason: String },
}

struct Current {
    worker: String,
    attempt: u32,
    stop: Arc<Notify>,
    /// Set when stopped, so a feed that checks late still sees it.
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

struct Slot {
    tx: mpsc::Sender<StreamEvent>,
    /// Set when the client got the whole answer: the feed then drains its body and
    /// answers 200, so the agent reports its result as usual.
    complete: Arc<std::sync::atomic::AtomicBool>,
    current: Option<Current>,
    /// Distinguishes a reopened listener for the same task from the one it replaced.
    generation: u64,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<Arc<str>, Slot>,
    next_generation: u64,
}

/// All live streams of one orchestrator. Cheap to clone.
#[derive(Clone, Default)]
pub struct StreamHub {
    inner: Arc<Mutex<Inner>>,
}

/// The client's end: receives the events of every attempt of one task. Dropping it
/// closes the slot and stops the feed that is streaming, if any.
pub struct Listener {
    hub: StreamHub,
    task: Arc<str>,
    generation: u64,
    rx: mpsc::Receiver<StreamEvent>,
}

/// An agent's end, for one attempt.
pub struct Feed {
    hub: StreamHub,
    task: Arc<str>,
    pub attempt: u32,
    tx: mpsc::Sender<StreamEvent>,
    stop: Arc<Notify>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    complete: Arc<std::sync::atomic::AtomicBool>,
}

/// Why a feed cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedClosed {
    /// The client hung up (the listener is gone).
    ClientGone,
    /// The fleet revoked this attempt, or a newer attempt took over.
    Stopped,
}

impl StreamHub {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens the slot a client listens on. Call it before the task can be assigned.
    pub fn listen(&self, task: &str) -> Listener {
        let (tx, rx) = mpsc::channel(LINES_IN_FLIGHT);
        let task: Arc<str> = Arc::from(task);
        let mut inner = self.lock();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let old = inner.slots.insert(
            task.clone(),
            Slot {
                tx,
                complete: Arc::default(),
                current: None,
                generation,
            },
        );
        drop(inner);
        if let Some(Slot {
            current: Some(c), ..
        }) = old
        {
            stop_current(&c);
        }
        Listener {
            hub: self.clone(),
            task,
            generation,
            rx,
        }
    }

    /// Attaches an agent's stream for `attempt`, which the caller has checked is the
    /// task's current attempt on `worker`. `None` when no client listens.
    pub fn attach(&self, task: &str, worker: &str, attempt: u32) -> Option<Feed> {
        let mut inner = self.lock();
        let (key, slot) = inner.slots.get_key_value(task)?;
        if slot.tx.is_closed() {
            return None;
        }
        let key = key.clone();
        let slot = inner.slots.get_mut(task)?;
        let stop = Arc::new(Notify::new());
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let old = slot.current.replace(Current {
            worker: worker.to_string(),
            attempt,
            stop: stop.clone(),
            stopped: stopped.clone(),
        });
        let tx = slot.tx.clone();
        let complete = slot.complete.clone();
        drop(inner);
        if let Some(c) = old {
            stop_current(&c);
        }
        Some(Feed {
            hub: self.clone(),
            task: key,
            attempt,
            tx,
            stop,
            stopped,
            complete,
        })
    }

    /// Stops the feed of `attempt` (or of any attempt, with `None`): the fleet revoked it.
    pub fn stop(&self, task: &str, attempt: Option<u32>) {
        let mut inner = self.lock();
        let Some(slot) = inner.slots.get_mut(task) else {
            return;
        };
        if slot
            .current
            .as_ref()
            .is_some_and(|c| attempt.map_or(true, |a| a == c.attempt))
        {
            if let Some(c) = slot.current.take() {
                drop(inner);
                stop_current(&c);
            }
        }
    }

    /// `(task, worker)` of every stream in progress, for the node views.
    pub fn streaming(&self) -> Vec<(String, String)> {
        let inner = self.lock();
        inner
            .slots
            .iter()
            .filter_map(|(t, s)| {
                s.current
                    .as_ref()
                    .map(|c| (t.to_string(), c.worker.clone()))
            })
            .collect()
    }

    /// Tasks a worker is streaming now.
    pub fn streaming_on(&self, worker: &str) -> Vec<String> {
        let inner = self.lock();
        inner
            .slots
            .iter()
            .filter(|(_, s)| s.current.as_ref().is_some_and(|c| c.worker == worker))
            .map(|(t, _)| t.to_string())
            .collect()
    }

    /// Clients waiting on a stream.
    pub fn listeners(&self) -> usize {
        self.lock().slots.len()
    }

    fn detach(&self, task: &str, stopped: &Arc<std::sync::atomic::AtomicBool>) {
        let mut inner = self.lock();
        if let Some(slot) = inner.slots.get_mut(task) {
            if slot
                .current
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(&c.stopped, stopped))
            {
                slot.current = None;
            }
        }
    }
}

fn stop_current(c: &Current) {
    c.stopped.store(true, std::sync::atomic::Ordering::SeqCst);
    c.stop.notify_one();
}

impl Listener {
    pub fn task(&self) -> &str {
        &self.task
    }

    /// The next event; `None` only when the hub dropped the slot (a newer listener).
    pub async fn recv(&mut self) -> Option<StreamEvent> {
        self.rx.recv().await
    }

    /// The client has the whole answer: the feed may finish its body in peace (what it
    /// still sends is dropped) and the agent reports its result.
    pub fn finish(self) {
        let mut inner = self.hub.lock();
        if let Some(slot) = inner.slots.get(&self.task) {
            if slot.generation == self.generation {
                slot.complete
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                inner.slots.remove(&self.task);
            }
        }
    }

    /// An event already waiting, without blocking.
    pub fn try_recv(&mut self) -> Option<StreamEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        let ours = inner
            .slots
            .get(&self.task)
            .is_some_and(|s| s.generation == self.generation);
        if ours {
            if let Some(Slot {
                current: Some(c), ..
            }) = inner.slots.remove(&self.task)
            {
                drop(inner);
                stop_current(&c);
            }
        }
    }
}

impl Feed {
    fn is_complete(&self) -> bool {
        self.complete.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), FeedClosed> {
        if self.is_complete() {
            Ok(())
        } else if self.tx.is_closed() {
            Err(FeedClosed::ClientGone)
        } else if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            Err(FeedClosed::Stopped)
        } else {
            Ok(())
        }
    }

    /// Tells the client which attempt is streaming now.
    pub async fn open(&self, worker: &str) -> Result<(), FeedClosed> {
        self.send(StreamEvent::Opened {
            worker: worker.to_string(),
            attempt: self.attempt,
        })
        .await
    }

    /// Relays one line; waits while the client is slower than the agent.
    pub async fn line(&self, line: Bytes) -> Result<(), FeedClosed> {
        self.send(StreamEvent::Line(line)).await
    }

    async fn send(&self, ev: StreamEvent) -> Result<(), FeedClosed> {
        self.check()?;
        if self.is_complete() {
            return Ok(());
        }
        tokio::select! {
            sent = self.tx.send(ev) => sent.map_err(|_| FeedClosed::ClientGone),
            _ = self.stop.notified() => Err(FeedClosed::Stopped),
        }
    }

    /// Resolves when the feed must stop: the client hung up or the attempt was revoked.
    /// Used while waiting for the agent's next bytes.
    pub async fn closed(&self) -> FeedClosed {
        if self.is_complete() {
            // Nothing can stop a finished answer; the body's end is what we wait for.
            return std::future::pending().await;
        }
        if let Err(why) = self.check() {
            return why;
        }
        tokio::select! {
            _ = self.tx.closed() => {
                if self.is_complete() {
                    // The client went away because it has everything.
                    return std::future::pending().await;
                }
                FeedClosed::ClientGone
            }
            _ = self.stop.notified() => FeedClosed::Stopped,
        }
    }

    /// The body ended: tells the client, and frees the slot for the next attempt.
    pub async fn end(self) {
        let _ = self
            .send(StreamEvent::Ended {
                attempt: self.attempt,
            })
            .await;
    }

    /// The stream broke off (the agent's connection died, or the attempt was stopped):
    /// tells the client even when stopped, so it can decide how to go on.
    pub async fn broken(self, reason: String) {
        let _ = self
            .tx
            .send(StreamEvent::Broken {
                attempt: self.attempt,
                reason,
            })
            .await;
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.hub.detach(&self.task, &self.stopped);
    }
}
