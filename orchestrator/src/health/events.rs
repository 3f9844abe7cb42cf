//! `GET /api/events`: the status page's live updates as server-sent events.
//!
//! Each event is `event: fleet` with an [`Update`] as JSON: the first on a connection
//! with every part of the page ([`Shown::full`]), then one after each change of the
//! orchestrator's state with only the parts and node cards that changed since the
//! previous event. [`Shown`] is what has been shown; the feed (`feed.rs`) keeps one for
//! every connection at once, renders each change once and shares the bytes. With hundreds
//! of nodes heartbeating, an event carries the few cards that changed, not the whole fleet.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::Serialize;

use pifleet_protocol::NodeDetail;

use super::page;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Card {
    pub id: String,
    pub html: String,
}

/// What one connection has shown so far.
#[derive(Debug, Default)]
pub struct Shown {
    /// Node id -> (fingerprint of what the card shows, the card).
    cards: HashMap<String, (u64, String)>,
    /// Node ids in display order, and the clock, as of the last update.
    order: Vec<String>,
    at: f64,
    summary: Option<String>,
    queue: Option<String>,
    failures: Option<String>,
    work: Option<String>,
}

fn changed(last: &mut Option<String>, now: String) -> Option<String> {
    if last.as_ref() == Some(&now) {
        None
    } else {
        *last = Some(now.clone());
        Some(now)
    }
}

/// Everything a card shows changes only with these, so an unchanged fingerprint means
/// the card need not even be rendered (a fleet of hundreds re-renders only what moved).
fn fingerprint(d: &NodeDetail) -> u64 {
    let n = &d.node;
    let mut h = DefaultHasher::new();
    n.last_seen.to_bits().hash(&mut h);
    n.registered_at.to_bits().hash(&mut h);
    n.status.as_str().hash(&mut h);
    n.draining.hash(&mut h);
    n.current_tasks.hash(&mut h);
    n.streaming.hash(&mut h);
    n.tasks_completed.hash(&mut h);
    n.tasks_failed.hash(&mut h);
    d.history.len().hash(&mut h);
    d.history.last().map(|s| s.at.to_bits()).hash(&mut h);
    h.finish()
}

impl Shown {
    /// The update that brings this connection from what it showed to `s`, or `None`
    /// when nothing changed.
    pub fn update(&mut self, s: &FleetSnapshot) -> Option<Update> {
        let sorted = page::sorted(s);
        let order: Vec<String> = sorted.iter().map(|d| d.node.worker_id.clone()).collect();
        let membership_changed =
            order.len() != self.cards.len() || order.iter().any(|id| !self.cards.contains_key(id));
        let mut nodes = Vec::new();
        for d in sorted {
            let id = &d.node.worker_id;
            let fp = fingerprint(d);
            if self.cards.get(id).is_some_and(|(f, _)| *f == fp) {
                continue;
            }
            let html = page::live_card(d, &s.thresholds);
            let same_html = self.cards.get(id).is_some_and(|(_, h)| *h == html);
            self.cards.insert(id.clone(), (fp, html.clone()));
            if !same_html {
                nodes.push(Card {
                    id: id.clone(),
                    html,
                });
            }
        }
        if self.cards.len() != order.len() {
            let keep: HashSet<&String> = order.iter().collect();
            self.cards.retain(|id, _| keep.contains(id));
        }
        let summary = changed(&mut self.summary, page::summary_html(s));
        let queue = changed(&mut self.queue, page::queue_html(s));
        let failures = changed(&mut self.failures, page::live_failures(s));
        let work = changed(&mut self.work, super::work::work_html(s, None));
        let nothing = nodes.is_empty()
            && !membership_changed
            && summary.is_none()
            && queue.is_none()
            && failures.is_none()
            && work.is_none();
        self.at = s.at;
        if nothing {
            return None;
        }
        self.order.clone_from(&order);
        Some(Update {
            at: s.at,
            order,
            nodes,
            empty: page::EMPTY_NODES_HTML,
            summary,
            queue,
            failures,
            work,
        })
    }
}

impl Shown {
    /// Everything shown, as the first update of a connection that showed nothing.
    pub fn full(&self) -> Update {
        Update {
            at: self.at,
            order: self.order.clone(),
            nodes: self
                .order
                .iter()
                .filter_map(|id| {
                    self.cards.get(id).map(|(_, html)| Card {
                        id: id.clone(),
                        html: html.clone(),
                    })
                })
                .collect(),
            empty: page::EMPTY_NODES_HTML,
            summary: self.summary.clone(),
            queue: self.queue.clone(),
            failures: self.failures.clone(),
            work: self.work.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::test_node;

    fn node(id: &str, last_seen: f64) -> NodeDetail {
        test_node(id, last_seen).into()
    }

    fn snap(at: f64, nodes: Vec<NodeDetail>) -> FleetSnapshot {
        FleetSnapshot {
            at,
            nodes,
            ..Default::default()
        }
    }

    #[test]
    fn first_update_has_everything_then_only_changes() {
        let mut shown = Shown::default();
        let first = shown
            .update(&snap(1.0, vec![node("a", 1.0), node("b", 1.0)]))
            .unwrap();
        assert_eq!(first.nodes.len(), 2);
        assert!(first.summary.is_some() && first.queue.is_some() && first.failures.is_some());

        // Time passing alone changes nothing: relative times are the script's job.
        assert_eq!(
            shown.update(&snap(9.0, vec![node("a", 1.0), node("b", 1.0)])),
            None
        );

        let mut b = node("b", 2.0);
        b.node.draining = true;
        let second = shown
            .update(&snap(10.0, vec![node("a", 1.0), b.clone()]))
            .unwrap();
        assert_eq!(second.nodes.len(), 1);
        assert_eq!(second.nodes[0].id, "b");
        assert!(second.nodes[0].html.contains("st-draining"));
        assert_eq!(second.order, ["a", "b"]);

        let gone = shown.update(&snap(11.0, vec![b.clone()])).unwrap();
        assert!(gone.nodes.is_empty());
        assert_eq!(gone.order, ["b"]);
        assert!(gone.summary.is_some(), "the node count changed");

        // A node that comes back is sent again in full.
        let back = shown.update(&snap(12.0, vec![node("a", 1.0), b])).unwrap();
        assert_eq!(back.nodes.len(), 1);
        assert_eq!(back.nodes[0].id, "a");
    }

    #[test]
    fn full_is_everything_shown_so_far() {
        let mut shown = Shown::default();
        shown.update(&snap(1.0, vec![node("a", 1.0), node("b", 1.0)]));
        let mut b = node("b", 2.0);
        b.node.draining = true;
        let delta = shown.update(&snap(2.0, vec![node("a", 1.0), b])).unwrap();
        let full = shown.full();
        assert_eq!(full.order, ["a", "b"]);
        assert_eq!(full.nodes.len(), 2, "every card, not only the changed one");
        assert_eq!(full.nodes[1], delta.nodes[0]);
        assert!(full.summary.is_some() && full.queue.is_some() && full.work.is_some());
        // A fresh connection given `full` ends up where one that saw every update is.
        let mut again = Shown::default();
        let first = again.update(&snap(
            2.0,
            vec![node("a", 1.0), {
                let mut b = node("b", 2.0);
                b.node.draining = true;
                b
            }],
        ));
        assert_eq!(first.map(|u| u.nodes), Some(full.nodes));
    }
}
