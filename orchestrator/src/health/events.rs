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
use tokio::time::Instant;

use super::{page, FleetSnapshot};

/// The event's name, as the page's script listens for it.
pub const EVENT: &str = "fleet";

/// Builds the stream. `snapshot` reads the fleet; `changed` resolves on the next change
/// of the orchestrator's state and returns `false` once no more changes can come.
pub fn stream<S, SF, C, CF>(
    snapshot: S,
    changed: C,
    min_gap: Duration,
    refresh: Duration,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    S: FnMut() -> SF + Send + 'static,
    SF: Future<Output = FleetSnapshot> + Send,
    C: FnMut() -> CF + Send + 'static,
    CF: Future<Output = bool> + Send,
{
    struct St<S, C> {
        snapshot: S,
        changed: C,
        last: Option<Instant>,
        closed: bool,
    }
    let init = St {
        snapshot,
        changed,
        last: None,
        closed: false,
    };
    let events = stream::unfold(init, move |mut st| async move {
        if let Some(last) = st.last {
            if st.closed {
                tokio::time::sleep(refresh).await;
            } else {
                tokio::select! {
                    open = (st.changed)() => st.closed = !open,
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
