//! Node credentials in memory: which node id each credential digest belongs to.

use std::collections::HashMap;

use super::secret::{self, Digest32};

#[derive(Default)]
pub struct Credentials {
    by_node: HashMap<String, Digest32>,
    by_digest: HashMap<Digest32, String>,
}

impl Credentials {
    /// Replaces every credential; returns the stored rows that could not be read.
    pub fn replace(&mut self, rows: &[(String, String)]) -> Vec<String> {
        self.by_node.clear();
        self.by_digest.clear();
        let mut bad = Vec::new();
        for (id, hex) in rows {
            match secret::from_hex(hex) {
                Some(d) => self.insert(id, d),
                None => bad.push(format!(
                    "credential of node \"{id}\": stored digest is not 64 hex digits"
                )),
            }
        }
        bad
    }

    pub fn insert(&mut self, id: &str, digest: Digest32) {
        if let Some(old) = self.by_node.insert(id.to_string(), digest) {
            self.by_digest.remove(&old);
        }
        self.by_digest.insert(digest, id.to_string());
    }

    pub fn remove(&mut self, id: &str) -> bool {
        match self.by_node.remove(id) {
            Some(d) => {
                self.by_digest.remove(&d);
                true
            }
            None => false,
        }
    }

    pub fn has(&self, id: &str) -> bool {
        self.by_node.contains_key(id)
    }

    /// The node a presented credential belongs to.
    pub fn owner(&self, token: &str) -> Option<&str> {
        self.by_digest
            .get(&secret::digest(token))
            .map(String::as_str)
    }
}
