//! The wait index: the nodes that wait for work with a free slot, ordered by placement
//! preference, and again per loaded model, so a scheduling pass usually looks at the
//! first entries only instead of every waiting node.

use std::collections::{BTreeSet, HashMap};

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
}

impl WaitIndex {
    pub fn remove(&mut self, node: &mut Node) {
        let Some((key, seq)) = node.wait_entry.take() else {
            return;
        };
        let entry = (key, seq, node.id.clone());
        self.all.remove(&entry);
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
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}
