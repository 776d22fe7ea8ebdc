//! [`MokaCache`]: the L1 on `moka::sync::Cache` with per-entry expiry.

use crate::tier::{LocalCache, Seen, WithCapacity};
use moka::Expiry;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Copy)]
struct Entry {
    seen: Seen,
    deadline: Instant,
    /// Time from insertion to `deadline`, so moka evicts the entry by itself.
    lifetime: Duration,
}

struct ByDeadline;

impl Expiry<Box<str>, Entry> for ByDeadline {
    fn expire_after_create(
        &self,
        _: &Box<str>,
        entry: &Entry,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.lifetime)
    }
    fn expire_after_update(
        &self,
        _: &Box<str>,
        entry: &Entry,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.lifetime)
    }
}

/// An L1 on [`moka::sync::Cache`]: bounded by capacity (`TinyLFU` admission,
/// LRU eviction) with a per-entry deadline. Lookups by `&str` allocate nothing.
///
/// The deadline is checked on every read against tokio's clock, and moka also
/// expires the entry on its own clock so memory is reclaimed.
///
/// ```
/// use outbox_redis::backends::MokaCache;
/// use outbox_redis::tier::{LocalCache, Seen};
/// use std::time::Duration;
/// use tokio::time::Instant;
///
/// let cache = MokaCache::new(10_000);
/// let now = Instant::now();
/// cache.insert("order-1", Seen::Theirs, now + Duration::from_secs(1));
/// assert_eq!(cache.get("order-1", now), Some(Seen::Theirs));
/// assert_eq!(cache.get("order-1", now + Duration::from_secs(2)), None);
/// ```
#[derive(Clone)]
pub struct MokaCache {
    cache: moka::sync::Cache<Box<str>, Entry>,
}

impl MokaCache {
    /// A cache holding at most about `capacity` tokens.
    #[must_use]
    pub fn new(capacity: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(ByDeadline)
                .build(),
        }
    }
}

impl std::fmt::Debug for MokaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MokaCache")
            .field("entries", &self.cache.entry_count())
            .finish()
    }
}

impl LocalCache for MokaCache {
    #[inline]
    fn get(&self, token: &str, now: Instant) -> Option<Seen> {
        self.cache
            .get(token)
            .filter(|entry| entry.deadline > now)
            .map(|entry| entry.seen)
    }

    fn insert(&self, token: &str, seen: Seen, deadline: Instant) {
        let lifetime = deadline.saturating_duration_since(Instant::now());
        if lifetime.is_zero() {
            self.cache.invalidate(token);
            return;
        }
        self.cache.insert(
            token.into(),
            Entry {
                seen,
                deadline,
                lifetime,
            },
        );
    }

    fn remove(&self, token: &str) {
        self.cache.invalidate(token);
    }

    fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

impl WithCapacity for MokaCache {
    fn with_capacity(capacity: u64) -> Self {
        Self::new(capacity)
    }
}
