//! `GET /api/events`: the status page's live updates as server-sent events.
//!
//! Each event is `event: fleet` with the page's HTML fragments as JSON
//! ([`super::page::Fragments`]): one on connect, then one after each change of the
//! orchestrator's state, coalesced to at most one per `min_gap`, and one every
//! `refresh` even without a change (so a node going silent shows up without a push).
//! Waiting for a change never holds the state's lock: the stream only reads a snapshot.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{page, FleetSnapshot};

/// The event's name, as the page's script listens for it.
pub const EVENT: &str = "fleet";

/// Builds the stream. `snapshot` reads the fleet; `changes` ticks on every change of the
/// orchestrator's state.
pub fn stream<S, SF, T>(
    snapshot: S,
    changes: watch::Receiver<T>,
    min_gap: Duration,
    refresh: Duration,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: FnMut() -> SF + Send + 'static,
    SF: Future<Output = FleetSnapshot> + Send,
    T: Send + Sync + 'static,
{
    struct St<S, T> {
        snapshot: S,
        changes: watch::Receiver<T>,
        last: Option<Instant>,
        closed: bool,
    }
    let init = St {
        snapshot,
        changes,
        last: None,
        closed: false,
    };
    let events = stream::unfold(init, move |mut st| async move {
        if let Some(last) = st.last {
            if st.closed {
                tokio::time::sleep(refresh).await;
            } else {
                tokio::select! {
                    open = st.changes.changed() => st.closed = open.is_err(),
                    _ = tokio::time::sleep(refresh) => {}
                }
            }
            // Coalesce bursts: changes during this pause are in the next snapshot.
            tokio::time::sleep_until(last + min_gap).await;
        }
        let snap = (st.snapshot)().await;
        st.last = Some(Instant::now());
        let data = serde_json::to_string(&page::fragments(&snap)).unwrap_or_default();
        Some((Ok(Event::default().event(EVENT).data(data)), st))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
