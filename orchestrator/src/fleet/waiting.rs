//! The wait index: the nodes that wait for work with a free slot, ordered by placement
//! preference, and again per loaded model, so a scheduling pass usually looks at the
//! first entries only instead of every waiting node; and what the waiting nodes can run,
//! counted by reach, so the pass asks the lane index once per kind of node.

use std::collections::{BTreeSet, HashMap};

use super::lanes::Reach;
use super::limits::Thermal;
use super::node::Node;
use super::placement::BaseKey;

/// `(placement key, the node's oldest waiter, node id)`: smallest is best.
pub(super) type WaitEntry = (BaseKey, u64, String);

#[derive(Default)]
pub(super) struct WaitIndex {
    pub all: BTreeSet<WaitEntry>,
    /// Canonical model name -> waiting nodes that have it loaded.
    pub loaded: HashMap<String, BTreeSet<WaitEntry>>,
    /// The reach of the waiting nodes that take work now -> how many have it.
    pub reach: HashMap<Reach, usize>,
}

impl WaitIndex {
    pub fn remove(&mut self, node: &mut Node) {
        let Some((key, seq)) = node.wait_entry.take() else {
            return;
        };
        let entry = (key, seq, node.id.clone());
        self.all.remove(&entry);
        if let Some(reach) = node.wait_reach.take() {
            if let Some(n) = self.reach.get_mut(&reach) {
                *n -= 1;
                if *n == 0 {
                    self.reach.remove(&reach);
                }
            }
        }
        for m in node.wait_models.drain(..) {
            if let Some(set) = self.loaded.get_mut(&m) {
                set.remove(&entry);
                if set.is_empty() {
                    self.loaded.remove(&m);
                }
            }
        }
    }

    /// Re-files a node after anything that changes its key or its waiters.
    pub fn refresh(&mut self, node: &mut Node, thermal: &Thermal) {
        self.remove(node);
        node.waiters.retain(|w| !w.tx.is_closed());
        let Some(seq) = node.waiters.front().map(|w| w.seq) else {
            return;
        };
        let facts = node.facts();
        if node.dead || !facts.has_free_slot() {
            return;
        }
        let key = facts.base_key(thermal);
        let models = facts.loaded_models();
        let reach = Reach::of(&facts, thermal);
        let entry = (key, seq, node.id.clone());
        for m in &models {
            self.loaded
                .entry(m.clone())
                .or_default()
                .insert(entry.clone());
        }
        self.all.insert(entry);
        node.wait_entry = Some((key, seq));
        node.wait_models = models;
        if let Some(reach) = reach {
            match self.reach.get_mut(&reach) {
                Some(n) => *n += 1,
                None => {
                    self.reach.insert(reach.clone(), 1);
                }
            }
            node.wait_reach = Some(reach);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::node::Waiter;
    use crate::fleet::poll::Delivery;
    use pifleet_protocol::{LoadedModel, NodeMetrics};
    use tokio::sync::oneshot;

    /// A node with one open poll; keep the receiver to keep the poll open.
    fn waiting_node(id: &str, seq: u64, temp: f32) -> (Node, oneshot::Receiver<Delivery>) {
        let mut n = Node::new(id.into(), "pifleet-agent".into(), 0.0);
        n.metrics = Some(NodeMetrics {
            temperature_c: Some(temp),
            ..Default::default()
        });
        let (tx, rx) = oneshot::channel();
        n.waiters.push_back(Waiter { seq, tx });
        (n, rx)
    }

    fn ids(index: &WaitIndex) -> Vec<&str> {
        index.all.iter().map(|e| e.2.as_str()).collect()
    }

    #[test]
    fn cooler_nodes_come_first_and_warm_ones_last() {
        let t = Thermal::default();
        let mut index = WaitIndex::default();
        let (mut warm, _w) = waiting_node("warm", 1, 82.0);
        let (mut hot_ish, _h) = waiting_node("mild", 2, 70.0);
        let (mut cool, _c) = waiting_node("cool", 3, 40.0);
        for n in [&mut warm, &mut hot_ish, &mut cool] {
            index.refresh(n, &t);
        }
        assert_eq!(ids(&index), ["cool", "mild", "warm"]);
    }

    #[test]
    fn only_a_live_node_with_an_open_poll_and_a_free_slot_is_filed() {
        let t = Thermal::default();
        let mut index = WaitIndex::default();

        let (mut closed, rx) = waiting_node("closed", 1, 40.0);
        drop(rx);
        index.refresh(&mut closed, &t);
        assert!(closed.waiters.is_empty(), "the hung-up poll is dropped");

        let (mut dead, _d) = waiting_node("dead", 2, 40.0);
        dead.dead = true;
        index.refresh(&mut dead, &t);

        let (mut full, _f) = waiting_node("full", 3, 40.0);
        full.current.push("t1".into());
        index.refresh(&mut full, &t);

        assert!(index.is_empty());
        for n in [&closed, &dead, &full] {
            assert_eq!(n.wait_entry, None, "{}", n.id);
        }
    }

    #[test]
    fn loaded_models_are_indexed_by_canonical_name_and_removed_with_the_node() {
        let t = Thermal::default();
        let mut index = WaitIndex::default();
        let (mut n, _rx) = waiting_node("pi", 1, 40.0);
        n.metrics.as_mut().unwrap().models_loaded = Some(vec![LoadedModel {
            name: "llama3:latest".into(),
            ..Default::default()
        }]);
        index.refresh(&mut n, &t);
        assert_eq!(index.loaded.keys().collect::<Vec<_>>(), ["llama3"]);
        assert_eq!(index.loaded["llama3"].len(), 1);

        index.remove(&mut n);
        assert!(index.is_empty());
        assert!(index.loaded.is_empty());
        assert_eq!(n.wait_entry, None);
        assert!(n.wait_models.is_empty());
    }

    #[test]
    fn waiting_nodes_are_counted_by_reach_and_a_hot_one_not_at_all() {
        let t = Thermal::default();
        let mut index = WaitIndex::default();
        let (mut a, _a) = waiting_node("a", 1, 40.0);
        let (mut b, _b) = waiting_node("b", 2, 50.0);
        let (mut hot, _h) = waiting_node("hot", 3, 90.0);
        for n in [&mut a, &mut b, &mut hot] {
            index.refresh(n, &t);
        }
        assert_eq!(index.all.len(), 3, "a hot node still waits");
        assert_eq!(
            index.reach.values().collect::<Vec<_>>(),
            [&2],
            "but reaches nothing"
        );
        assert_eq!(hot.wait_reach, None);
        index.remove(&mut a);
        assert_eq!(index.reach.values().collect::<Vec<_>>(), [&1]);
        index.remove(&mut b);
        assert!(index.reach.is_empty());
        assert_eq!(b.wait_reach, None);
    }

    #[test]
    fn refreshing_moves_a_node_to_its_new_place() {
        let t = Thermal::default();
        let mut index = WaitIndex::default();
        let (mut a, _a) = waiting_node("a", 1, 40.0);
        let (mut b, _b) = waiting_node("b", 2, 60.0);
        index.refresh(&mut a, &t);
        index.refresh(&mut b, &t);
        assert_eq!(ids(&index), ["a", "b"]);
        // `a` heats up past the soft limit: it is filed again, behind `b`, once.
        a.metrics.as_mut().unwrap().temperature_c = Some(81.0);
        index.refresh(&mut a, &t);
        assert_eq!(ids(&index), ["b", "a"]);
        assert_eq!(index.all.len(), 2);
    }
}
