//! Named client keys in memory: looked up by digest, with their usage and quota buckets.
//! Rebuilt from the database whenever its change counter moves; usage and buckets are
//! kept by name across rebuilds (a key re-added under the same name keeps neither).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use pifleet_protocol::{PRIORITY_DEFAULT, PRIORITY_MAX};

use super::quota::{Bucket, RetryAfter};
use super::role::Role;
use super::secret::{self, Digest32};
use crate::store::keys::KeyRow;

/// The name `client_token` answers to: an admin key that lives in the configuration.
pub const CONFIG_KEY_NAME: &str = "client_token";

/// A client key's settings, as the server uses them.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub role: Role,
    pub priority: Option<u8>,
    pub max_priority: Option<u8>,
    pub rate_per_min: Option<u64>,
    pub tokens_per_day: Option<u64>,
}

impl Key {
    pub fn from_row(row: &KeyRow) -> Result<(Digest32, Key), String> {
        let digest = secret::from_hex(&row.secret_sha256)
            .ok_or_else(|| format!("key \"{}\": stored digest is not 64 hex digits", row.name))?;
        let role = Role::parse(&row.role).map_err(|e| format!("key \"{}\": {e}", row.name))?;
        Ok((
            digest,
            Key {
                name: row.name.clone(),
                role,
                priority: row.priority,
                max_priority: row.max_priority,
                rate_per_min: row.rate_per_min,
                tokens_per_day: row.tokens_per_day,
            },
        ))
    }

    pub fn admin(name: &str) -> Key {
        Key {
            name: name.to_string(),
            role: Role::Admin,
            priority: None,
            max_priority: None,
            rate_per_min: None,
            tokens_per_day: None,
        }
    }

    /// The priority a request gets: its own if it names one (refused above the key's
    /// maximum), else the key's default, else the protocol's.
    pub fn priority_for(&self, asked: Option<u8>) -> Result<u8, String> {
        let max = self.max_priority.unwrap_or(PRIORITY_MAX);
        match asked {
            Some(p) if p > max => Err(format!(
                "priority: {p} is above the maximum of key \"{}\" ({max})",
                self.name
            )),
            Some(p) => Ok(p),
            None => Ok(self.priority.unwrap_or(PRIORITY_DEFAULT).min(max)),
        }
    }
}

/// What one key did since the server started, and its quota buckets.
#[derive(Debug, Default)]
pub struct Usage {
    pub requests: u64,
    pub tasks: u64,
    pub generated_tokens: u64,
    pub refused_rate: u64,
    pub refused_tokens: u64,
    pub refused_role: u64,
    pub last_used: Option<f64>,
    /// `last_used` changed since the last write to the database.
    pub dirty: bool,
    rate: Option<(u64, Bucket)>,
    daily: Option<(u64, Bucket)>,
}

/// Which quota refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    Rate,
    Tokens,
}

/// Tasks whose generated tokens are still to be charged to a key. Bounded: a task that
/// never reports (expired, failed without result) must not be remembered forever.
const OWNERS_MAX: usize = 100_000;

#[derive(Default)]
pub struct Ring {
    by_digest: HashMap<Digest32, Arc<Key>>,
    usage: HashMap<String, Usage>,
    owners: HashMap<String, String>,
    owner_order: VecDeque<String>,
}

impl Ring {
    /// Replaces the keys; returns the rows that could not be used (logged by the caller).
    pub fn replace(&mut self, rows: &[KeyRow]) -> Vec<String> {
        let mut bad = Vec::new();
        self.by_digest.clear();
        for row in rows {
            match Key::from_row(row) {
                Ok((digest, key)) => {
                    self.by_digest.insert(digest, Arc::new(key));
                }
                Err(e) => bad.push(e),
            }
        }
        bad
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn find(&self, token: &str) -> Option<Arc<Key>> {
        self.by_digest.get(&secret::digest(token)).cloned()
    }

    fn usage(&mut self, name: &str) -> &mut Usage {
        self.usage.entry(name.to_string()).or_default()
    }

    /// Counts one request of `key` at `now` and applies its quotas: the rate to every
    /// request, the daily tokens to requests that generate (`generates`).
    pub fn admit(
        &mut self,
        key: &Key,
        generates: bool,
        now: f64,
    ) -> Result<(), (QuotaKind, RetryAfter)> {
        let u = self.usage(&key.name);
        u.last_used = Some(now);
        u.dirty = true;
        if let Some(rate) = key.rate_per_min {
            let bucket = match &mut u.rate {
                Some((r, b)) if *r == rate => b,
                slot => &mut slot.insert((rate, Bucket::per_minute(rate, now))).1,
            };
            if let Err(wait) = bucket.take(1.0, now) {
                u.refused_rate += 1;
                return Err((QuotaKind::Rate, wait));
            }
        }
        if let (true, Some(per_day)) = (generates, key.tokens_per_day) {
            let bucket = match &mut u.daily {
                Some((d, b)) if *d == per_day => b,
                slot => &mut slot.insert((per_day, Bucket::per_day(per_day, now))).1,
            };
            if let Err(wait) = bucket.has_credit(now) {
                u.refused_tokens += 1;
                return Err((QuotaKind::Tokens, wait));
            }
        }
        u.requests += 1;
        Ok(())
    }

    pub fn refused_role(&mut self, key: &Key) {
        self.usage(&key.name).refused_role += 1;
    }

    /// A task submitted with `key`: its generated tokens will be charged to it.
    pub fn task_submitted(&mut self, key: &str, task_id: &str) {
        self.usage(key).tasks += 1;
        while self.owners.len() >= OWNERS_MAX {
            match self.owner_order.pop_front() {
                Some(old) => {
                    self.owners.remove(&old);
                }
                None => break,
            }
        }
        // Settled tasks leave their id in the order behind (removing it there would cost
        // a scan per result); drop those now and then.
        if self.owner_order.len() >= 2 * OWNERS_MAX {
            let owners = &self.owners;
            self.owner_order.retain(|t| owners.contains_key(t));
        }
        self.owners.insert(task_id.to_string(), key.to_string());
        self.owner_order.push_back(task_id.to_string());
    }

    /// Charges what a task generated to the key that submitted it, once.
    pub fn task_generated(&mut self, task_id: &str, tokens: u64, now: f64) {
        let Some(name) = self.owners.remove(task_id) else {
            return;
        };
        let u = self.usage(&name);
        u.generated_tokens += tokens;
        if let Some((_, b)) = &mut u.daily {
            b.charge(tokens as f64, now);
        }
    }

    /// `last_used` of every key used since the last call.
    pub fn take_dirty(&mut self) -> Vec<(String, f64)> {
        self.usage
            .iter_mut()
            .filter(|(_, u)| u.dirty)
            .filter_map(|(name, u)| {
                u.dirty = false;
                u.last_used.map(|at| (name.clone(), at))
            })
            .collect()
    }

    pub fn usage_report(&self) -> Vec<(String, UsageCounts)> {
        let mut out: Vec<_> = self
            .usage
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    UsageCounts {
                        requests: u.requests,
                        tasks: u.tasks,
                        generated_tokens: u.generated_tokens,
                        refused_rate: u.refused_rate,
                        refused_tokens: u.refused_tokens,
                        refused_role: u.refused_role,
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Counters of one key, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounts {
    pub requests: u64,
    pub tasks: u64,
    pub generated_tokens: u64,
    pub refused_rate: u64,
    pub refused_tokens: u64,
    pub refused_role: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rate: Option<u64>, per_day: Option<u64>) -> Key {
        Key {
            name: "ci".into(),
            role: Role::Submit,
            priority: Some(3),
            max_priority: Some(6),
            rate_per_min: rate,
            tokens_per_day: per_day,
        }
    }

    #[test]
    fn default_priority_applies_and_the_maximum_caps() {
        let k = key(None, None);
        assert_eq!(k.priority_for(None), Ok(3));
        assert_eq!(k.priority_for(Some(6)), Ok(6));
        assert!(k.priority_for(Some(7)).unwrap_err().contains("maximum"));
        let plain = Key::admin("x");
        assert_eq!(plain.priority_for(None), Ok(PRIORITY_DEFAULT));
        assert_eq!(plain.priority_for(Some(PRIORITY_MAX)), Ok(PRIORITY_MAX));
    }

    #[test]
    fn rate_quota_counts_every_request() {
        let mut ring = Ring::default();
        let k = key(Some(2), None);
        assert!(ring.admit(&k, false, 0.0).is_ok());
        assert!(ring.admit(&k, true, 0.0).is_ok());
        assert_eq!(
            ring.admit(&k, false, 0.0),
            Err((QuotaKind::Rate, RetryAfter(30)))
        );
        assert!(ring.admit(&k, false, 30.0).is_ok());
        let u = &ring.usage_report()[0].1;
        assert_eq!((u.requests, u.refused_rate), (3, 1));
    }

    #[test]
    fn token_quota_is_charged_by_results_and_only_gates_generating_requests() {
        let mut ring = Ring::default();
        let k = key(None, Some(864)); // 0.01 token per second
        assert!(ring.admit(&k, true, 0.0).is_ok());
        ring.task_submitted("ci", "t1");
        ring.task_generated("t1", 900, 0.0);
        ring.task_generated("t1", 900, 0.0); // charged once
        assert!(matches!(
            ring.admit(&k, true, 0.0),
            Err((QuotaKind::Tokens, RetryAfter(s))) if s > 3600
        ));
        // Reading is not generating.
        assert!(ring.admit(&k, false, 0.0).is_ok());
        let u = ring.usage_report()[0].1;
        assert_eq!((u.tasks, u.generated_tokens, u.refused_tokens), (1, 900, 1));
    }

    #[test]
    fn the_owner_map_is_bounded() {
        let mut ring = Ring::default();
        for i in 0..OWNERS_MAX + 10 {
            ring.task_submitted("ci", &format!("t{i}"));
        }
        assert_eq!(ring.owners.len(), OWNERS_MAX);
        assert!(!ring.owners.contains_key("t0"));
    }
}
