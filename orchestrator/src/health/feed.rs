//! One renderer for every open `/api/events` stream: a change of the fleet is rendered
//! and encoded once, and the same bytes go to every stream.
//!
//! Each stream's first event is the whole page as the renderer last showed it (built
//! once per change, shared by every stream that connects meanwhile); after it, each
//! change's [`Update`](super::events::Update) as one shared frame from a broadcast channel.
//! A stream too slow to keep up (its client reads slowly) is not buffered for: when the
//! channel has moved past it, it gets the whole page afresh and carries on from there.
//! The renderer runs only while a stream is open; when the last closes, it stops and what
//! it held is freed. At most `max_streams` are open at once; past it `open` refuses, so a
//! page left open in many tabs cannot take the connections the nodes need.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::events::{Shown, Update, EVENT};
use super::FleetSnapshot;

/// Where the feed reads the fleet.
pub trait Source: Send + Sync + 'static {
    fn snapshot(&self) -> FleetSnapshot;
    /// Ticks on every change of the fleet.
    fn changes(&self) -> watch::Receiver<u64>;
    /// True once shutdown began: streams end so they do not hold the server up.
    fn stopping(&self) -> bool;
}

#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// At most one event per this gap: changes in between are coalesced.
    pub min_gap: Duration,
    /// A check runs this often even without a change.
    pub refresh: Duration,
    /// A comment line goes out after this much silence, so proxies keep the stream.
    pub keep_alive: Duration,
    pub max_streams: usize,
    /// Frames kept for streams that are behind; one further behind starts afresh.
    pub backlog: usize,
}

pub const DEFAULT_MAX_STREAMS: usize = 512;

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            min_gap: Duration::from_millis(250),
            refresh: Duration::from_secs(5),
            keep_alive: Duration::from_secs(15),
            max_streams: DEFAULT_MAX_STREAMS,
            backlog: 16,
        }
    }
}

#[derive(Clone)]
enum Frame {
    Event { seq: u64, bytes: Bytes },
    End,
}

/// What the renderer showed, shared by every stream.
#[derive(Default)]
struct Rendered {
    shown: Shown,
    /// Number of the last rendered change; a frame carries it.
    seq: u64,
    /// `shown` matches the fleet as of a recent render (false while nobody watches).
    fresh: bool,
    running: bool,
    /// The whole page as of `seq`, once a stream asked for it.
    full: Option<(u64, Bytes)>,
}

struct Inner {
    source: Box<dyn Source>,
    cfg: FeedConfig,
    tx: broadcast::Sender<Frame>,
    state: Mutex<Rendered>,
    open: AtomicUsize,
    refused: AtomicU64,
    last_warning: Mutex<Option<std::time::Instant>>,
}

/// The shared live feed; cheap to clone.
#[derive(Clone)]
pub struct Feed(Arc<Inner>);

/// `open` past the cap.
#[derive(Debug)]
pub struct Refused {
    pub max: usize,
}

/// Holds one of the `max_streams` places until the stream is dropped.
struct Slot(Arc<Inner>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn encode(update: &Update) -> Bytes {
    // serde_json escapes newlines, so the data is one `data:` line.
    let data = serde_json::to_string(update).unwrap_or_default();
    Bytes::from(format!("event: {EVENT}\ndata: {data}\n\n"))
}

const KEEP_ALIVE: &[u8] = b":\n\n";

impl Feed {
    pub fn new(source: impl Source, cfg: FeedConfig) -> Feed {
        let (tx, _) = broadcast::channel(cfg.backlog.max(1));
        Feed(Arc::new(Inner {
            source: Box::new(source),
            cfg,
            tx,
            state: Mutex::new(Rendered::default()),
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Rendered> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn open_streams(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    pub fn max_streams(&self) -> usize {
        self.0.cfg.max_streams
    }

    /// The feed's figures for `/metrics`, in the exposition format.
    pub fn metrics_text(&self) -> String {
        format!(
            "# HELP pifleet_event_streams_open Status-page event streams open now.\n\
             # TYPE pifleet_event_streams_open gauge\n\
             pifleet_event_streams_open {}\n\
             # HELP pifleet_event_streams_refused Event streams refused at max_event_streams.\n\
             # TYPE pifleet_event_streams_refused counter\n\
             pifleet_event_streams_refused_total {}\n",
            self.open_streams(),
            self.0.refused.load(Ordering::Relaxed)
        )
    }

    fn refuse(&self) -> Refused {
        let total = self.0.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .0
            .last_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // One line per 10 s: a reload storm must not flood the log.
        if !last.is_some_and(|t| t.elapsed() <= Duration::from_secs(10)) {
            *last = Some(std::time::Instant::now());
            tracing::warn!(
                max_event_streams = self.0.cfg.max_streams,
                refused_total = total,
                "event stream limit reached: GET /api/events answered 503 \
                 (raise max_event_streams if this many status pages are really open)"
            );
        }
        Refused {
            max: self.0.cfg.max_streams,
        }
    }

    /// Renders the fleet into `st` when nobody kept it current.
    fn ensure_fresh(&self, st: &mut Rendered) {
        if !st.fresh {
            st.shown = Shown::default();
            st.shown.update(&self.0.source.snapshot());
            st.seq += 1;
            st.fresh = true;
            st.full = None;
        }
    }

    /// The whole page as of the last render, and that render's number.
    fn full(&self) -> (u64, Bytes) {
        let mut st = self.lock();
        self.ensure_fresh(&mut st);
        if let Some((seq, bytes)) = &st.full {
            if *seq == st.seq {
                return (*seq, bytes.clone());
            }
        }
        let bytes = encode(&st.shown.full());
        st.full = Some((st.seq, bytes.clone()));
        (st.seq, bytes)
    }

    /// A new stream's body: the whole page, then every change. `Err` past the cap.
    pub fn open(
        &self,
    ) -> Result<impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static, Refused> {
        let inner = &self.0;
        if inner.open.fetch_add(1, Ordering::AcqRel) >= inner.cfg.max_streams {
            inner.open.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse());
        }
        let slot = Slot(inner.clone());
        // Subscribed before the page is taken: no change can fall between the two.
        let rx = inner.tx.subscribe();
        let stopping = inner.source.stopping();
        let (seq, first) = if stopping {
            (0, None)
        } else {
            let (seq, first) = self.full();
            let mut st = self.lock();
            if !st.running {
                st.running = true;
                tokio::spawn(self.clone().render());
            }
            (seq, Some(first))
        };
        let reader = Reader {
            feed: self.clone(),
            rx,
            last_seq: seq,
            first,
            done: stopping,
            _slot: slot,
        };
        Ok(stream::unfold(reader, Reader::next))
    }

    /// Renders each change once for every stream, until none is open or shutdown.
    async fn render(self) {
        let inner = &self.0;
        let mut changes = inner.source.changes();
        let mut closed = false;
        let mut last: Option<Instant> = None;
        loop {
            if let Some(last) = last {
                tokio::select! {
                    r = changes.changed(), if !closed => closed = r.is_err(),
                    _ = tokio::time::sleep(inner.cfg.refresh) => {}
                }
                tokio::time::sleep_until(last + inner.cfg.min_gap).await;
            }
            if inner.source.stopping() {
                let _ = inner.tx.send(Frame::End);
                self.idle();
                return;
            }
            if inner.tx.receiver_count() == 0 && self.stop_if_unwatched() {
                return;
            }
            let snap = inner.source.snapshot();
            last = Some(Instant::now());
            let mut st = self.lock();
            if let Some(update) = st.shown.update(&snap) {
                st.seq += 1;
                st.full = None;
                let frame = Frame::Event {
                    seq: st.seq,
                    bytes: encode(&update),
                };
                // Sent under the lock, so `full()` and the frames agree on `seq`.
                let _ = inner.tx.send(frame);
            }
        }
    }

    /// Under the lock, so a stream opening now either is counted or finds the renderer
    /// stopped and starts it again.
    fn stop_if_unwatched(&self) -> bool {
        let mut st = self.lock();
        if self.0.tx.receiver_count() > 0 {
            return false;
        }
        forget(&mut st);
        true
    }

    fn idle(&self) {
        forget(&mut self.lock());
    }

    #[cfg(test)]
    fn rendering(&self) -> bool {
        self.lock().running
    }
}

/// Drops what was shown (the memory goes) and marks the renderer stopped: the next
/// stream renders afresh.
fn forget(st: &mut Rendered) {
    let seq = st.seq;
    *st = Rendered {
        seq,
        ..Rendered::default()
    };
}

struct Reader {
    feed: Feed,
    rx: broadcast::Receiver<Frame>,
    /// The newest change this stream has shown.
    last_seq: u64,
    first: Option<Bytes>,
    done: bool,
    _slot: Slot,
}

impl Reader {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Reader)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        loop {
            if self.done {
                return None;
            }
            let keep_alive = self.feed.0.cfg.keep_alive;
            let frame = tokio::select! {
                f = self.rx.recv() => f,
                _ = tokio::time::sleep(keep_alive) => {
                    return Some((Ok(Bytes::from_static(KEEP_ALIVE)), self));
                }
            };
            match frame {
                Ok(Frame::Event { seq, bytes }) => {
                    // A frame the first page already included is skipped.
                    if seq > self.last_seq {
                        self.last_seq = seq;
                        return Some((Ok(bytes), self));
                    }
                }
                Ok(Frame::End) | Err(broadcast::error::RecvError::Closed) => return None,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if self.feed.0.source.stopping() {
                        return None;
                    }
                    let (seq, bytes) = self.feed.full();
                    self.last_seq = seq;
                    return Some((Ok(bytes), self));
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
