//! A bounded in-memory cache of COMPLETED results, so that a warm Lambda answers a duplicate
//! without a request. INPROGRESS is never cached: a claim can be released or taken over at any
//! time.

use std::collections::{HashMap, VecDeque};

use serde::de::DeserializeOwned;

use super::record::now_ms;
use super::{Idempotency, IdempotencyError};

impl Idempotency {
    /// A cached result of `key`, or a mismatch if the cached payload hash differs from `hash`.
    pub(super) fn cached<T: DeserializeOwned, E>(
        &self,
        key: &str,
        hash: &str,
    ) -> Result<Option<T>, IdempotencyError<E>> {
        let hit = self.cache.lock().map(|mut c| c.get(key)).unwrap_or(None);
        match hit {
            None => Ok(None),
            Some((stored, _)) if !hash.is_empty() && !stored.is_empty() && stored != hash => {
                Err(IdempotencyError::PayloadMismatch {
                    key: key.to_string(),
                    stored,
                    received: hash.to_string(),
                })
            }
            Some((_, json)) => Ok(serde_json::from_str(&json).ok()),
        }
    }

    /// Cache a COMPLETED result for as long as its record lives.
    pub(super) fn remember(&self, key: &str, hash: &str, json: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(
                key,
                hash,
                json,
                now_ms() / 1000 + self.config.record_ttl.as_secs() as i64,
            );
        }
    }
}

/// A bounded cache of COMPLETED results (oldest evicted first).
pub(super) struct Cache {
    capacity: usize,
    entries: HashMap<String, CacheEntry>,
    order: VecDeque<String>,
}

struct CacheEntry {
    hash: String,
    json: String,
    expires_at: i64,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Cache {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&mut self, key: &str) -> Option<(String, String)> {
        let entry = self.entries.get(key)?;
        if entry.expires_at < now_ms() / 1000 {
            self.entries.remove(key);
            return None;
        }
        Some((entry.hash.clone(), entry.json.clone()))
    }

    fn put(&mut self, key: &str, hash: &str, json: &str, expires_at: i64) {
        if self.capacity == 0 {
            return;
        }
        let entry = CacheEntry {
            hash: hash.to_string(),
            json: json.to_string(),
            expires_at,
        };
        if self.entries.insert(key.to_string(), entry).is_none() {
            self.order.push_back(key.to_string());
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded() {
        let mut cache = Cache::new(2);
        let later = now_ms() / 1000 + 60;
        cache.put("a", "h", "1", later);
        cache.put("b", "h", "2", later);
        cache.put("c", "h", "3", later);
        assert!(cache.get("a").is_none());
        assert_eq!(cache.get("c").unwrap().1, "3");
        cache.put("d", "h", "4", now_ms() / 1000 - 1);
        assert!(cache.get("d").is_none(), "expired entries are misses");
    }
}
