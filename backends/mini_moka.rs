//! [`MiniMokaCache`]: the L1 on `mini_moka::sync::Cache`.

use crate::tier::{LocalCache, Seen, WithCapacity};
use mini_moka::sync::ConcurrentCacheExt;
use tokio::time::Instant;

#[derive(Clone, Copy)]
struct Entry {
    seen: Seen,
    deadline: Instant,
}

/// An L1 on [`mini_moka::sync::Cache`], a lighter moka with fewer
/// dependencies. mini-moka has no per-entry expiry, so the deadline is stored
/// with the entry and checked on read; expired entries leave by eviction.
/// Its `get` takes `&K`, so each lookup allocates the key once.
///
/// ```
/// use outbox_redis::backends::MiniMokaCache;
/// use outbox_redis::tier::{LocalCache, Seen};
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let cache = MiniMokaCache::new(10_000);
/// let now = Instant::now();
/// cache.insert("order-1", Seen::Theirs, now + Duration::from_secs(1));
/// assert_eq!(cache.get("order-1", now), Some(Seen::Theirs));
/// assert_eq!(cache.get("order-1", now + Duration::from_secs(2)), None);
/// ```
#[derive(Clone)]
pub struct MiniMokaCache {
    cache: mini_moka::sync::Cache<Box<str>, Entry>,
}

impl MiniMokaCache {
    /// A cache holding at most about `capacity` tokens.
    #[must_use]
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: mini_moka::sync::Cache::new(capacity),
        }
    }
}

impl std::fmt::Debug for MiniMokaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniMokaCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl LocalCache for MiniMokaCache {
    fn get(&self, token: &str, now: Instant) -> Option<Seen> {
        let key: Box<str> = token.into();
        let entry = self.cache.get(&key)?;
        if entry.deadline > now {
            Some(entry.seen)
        } else {
            self.cache.invalidate(&key);
            None
        }
    }

    fn insert(&self, token: &str, seen: Seen, deadline: Instant) {
        self.cache.insert(token.into(), Entry { seen, deadline });
    }

    fn remove(&self, token: &str) {
        let key: Box<str> = token.into();
        self.cache.invalidate(&key);
    }

    fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    fn run_pending_tasks(&self) {
        self.cache.sync();
    }
}

impl WithCapacity for MiniMokaCache {
    fn with_capacity(capacity: u64) -> Self {
        Self::new(capacity)
    }
}
