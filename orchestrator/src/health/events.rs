//! `GET /api/events`: the status page's live updates as server-sent events.
//!
//! Each event is `event: fleet` with an [`Update`] as JSON: one on connect with every
//! part of the page, then one after each change of the orchestrator's state with only
//! the parts and node cards that changed since the previous event on that connection.
//! Changes are coalesced to at most one event per `min_gap`, and a check runs every
//! `refresh` even without a change. Waiting for a change never holds the state's lock:
//! the stream only reads snapshots. With hundreds of nodes heartbeating, an event
//! carries the few cards that changed, not the whole fleet.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::page::{self, LiveParts};
use super::FleetSnapshot;

/// The event's name, as the page's script listens for it.
pub const EVENT: &str = "fleet";

/// One live update. A part that is `None` did not change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Update {
    /// The orchestrator's clock, for the page's relative times.
    pub at: f64,
    /// Every node id, in display order: a card not listed is gone.
    pub order: Vec<String>,
    /// The cards that are new or changed.
    pub nodes: Vec<Card>,
    /// What the node grid shows when there are no nodes.
    pub empty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Card {
    pub id: String,
    pub html: String,
}

/// What one connection has shown so far.
#[derive(Debug, Default)]
pub struct Shown {
    cards: HashMap<String, String>,
    summary: Option<String>,
    queue: Option<String>,
    failures: Option<String>,
}

fn changed(last: &mut Option<String>, now: String) -> Option<String> {
    if last.as_ref() == Some(&now) {
        None
    } else {
        *last = Some(now.clone());
        Some(now)
    }
}

impl Shown {
    /// The update that brings this connection from what it showed to `parts`, or `None`
    /// when nothing changed.
    pub fn update(&mut self, at: f64, parts: LiveParts) -> Option<Update> {
        let order: Vec<String> = parts.cards.iter().map(|(id, _)| id.clone()).collect();
        let same_nodes = order.len() == self.cards.len();
        let mut nodes = Vec::new();
        for (id, html) in parts.cards {
            if self.cards.get(&id) != Some(&html) {
                self.cards.insert(id.clone(), html.clone());
                nodes.push(Card { id, html });
            }
        }
        if self.cards.len() != order.len() {
            let keep: HashSet<&String> = order.iter().collect();
            self.cards.retain(|id, _| keep.contains(id));
        }
        let summary = changed(&mut self.summary, parts.summary);
        let queue = changed(&mut self.queue, parts.queue);
        let failures = changed(&mut self.failures, parts.failures);
        let nothing = nodes.is_empty()
            && same_nodes
            && summary.is_none()
            && queue.is_none()
            && failures.is_none();
        if nothing {
            return None;
        }
        Some(Update {
            at,
            order,
            nodes,
            empty: page::EMPTY_NODES_HTML,
            summary,
            queue,
            failures,
        })
    }
}

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
        shown: Shown,
        last: Option<Instant>,
        closed: bool,
    }
    let init = St {
        snapshot,
        changes,
        shown: Shown::default(),
        last: None,
        closed: false,
    };
    let events = stream::unfold(init, move |mut st| async move {
        loop {
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
            if let Some(update) = st.shown.update(snap.at, page::live_parts(&snap)) {
                let data = serde_json::to_string(&update).unwrap_or_default();
                return Some((Ok(Event::default().event(EVENT).data(data)), st));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(cards: &[(&str, &str)], summary: &str) -> LiveParts {
        LiveParts {
            summary: summary.into(),
            cards: cards
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            queue: "q".into(),
            failures: "f".into(),
        }
    }

    #[test]
    fn first_update_has_everything_then_only_changes() {
        let mut shown = Shown::default();
        let first = shown
            .update(1.0, parts(&[("a", "A1"), ("b", "B1")], "s1"))
            .unwrap();
        assert_eq!(first.nodes.len(), 2);
        assert_eq!(first.summary.as_deref(), Some("s1"));
        assert_eq!(first.queue.as_deref(), Some("q"));

        assert_eq!(
            shown.update(2.0, parts(&[("a", "A1"), ("b", "B1")], "s1")),
            None
        );

        let second = shown
            .update(3.0, parts(&[("a", "A1"), ("b", "B2")], "s1"))
            .unwrap();
        assert_eq!(
            second.nodes,
            vec![Card {
                id: "b".into(),
                html: "B2".into()
            }]
        );
        assert_eq!(second.order, ["a", "b"]);
        assert_eq!(second.summary, None);

        let gone = shown.update(4.0, parts(&[("b", "B2")], "s2")).unwrap();
        assert!(gone.nodes.is_empty());
        assert_eq!(gone.order, ["b"]);
        assert_eq!(gone.summary.as_deref(), Some("s2"));
        // A node that comes back is sent again in full.
        let back = shown
            .update(5.0, parts(&[("a", "A1"), ("b", "B2")], "s2"))
            .unwrap();
        assert_eq!(back.nodes.len(), 1);
        assert_eq!(back.nodes[0].id, "a");
    }
}
