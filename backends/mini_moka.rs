//! [`MiniMokaCache`]: the L1 on `mini_moka::sync::Cache`, behind a lock-free window.

use crate::recent::{Fingerprint, MainCache, Windowed};
use crate::tier::{Seen, WithCapacity};
use mini_moka::sync::ConcurrentCacheExt;
use tokio::time::Instant;

/// The main space of [`MiniMokaCache`]: a [`mini_moka::sync::Cache`], a
/// lighter moka with fewer dependencies. It has no per-entry expiry, so the
/// deadline is stored with the entry and checked on read. Keyed by the
/// token's fingerprint, so lookups allocate nothing.
pub struct MiniMokaMain {
    // Keys are already keyed 128-bit hashes: foldhash spreads them at a
    // fraction of the default SipHash's cost, paid on every new token.
    cache: mini_moka::sync::Cache<Fingerprint, (Seen, Instant), foldhash::fast::RandomState>,
}

impl WithCapacity for MiniMokaMain {
    fn with_capacity(capacity: u64) -> Self {
        Self {
            cache: mini_moka::sync::Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }
}

impl MainCache for MiniMokaMain {
    fn get(&self, fp: Fingerprint) -> Option<(Seen, Instant)> {
        // `contains_key` does not feed the frequency sketch; `get` does, at
        // several times the cost, and most lookups here are misses.
        if !self.cache.contains_key(&fp) {
            return None;
        }
        self.cache.get(&fp)
    }

    fn insert(&self, fp: Fingerprint, seen: Seen, deadline: Instant) {
        self.cache.insert(fp, (seen, deadline));
    }

    fn remove(&self, fp: Fingerprint) {
        self.cache.invalidate(&fp);
    }

    fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    fn run_pending_tasks(&self) {
        self.cache.sync();
    }
}

/// The mini-moka L1: the same window as [`MokaCache`](crate::backends::MokaCache)
/// in front of a [`mini_moka::sync::Cache`].
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
pub type MiniMokaCache = Windowed<MiniMokaMain>;

impl Windowed<MiniMokaMain> {
    /// A cache holding at most about `capacity` tokens: half in the window,
    /// half in mini-moka.
    #[must_use]
    pub fn new(capacity: u64) -> Self {
        Self::with_main(capacity, MiniMokaMain::with_capacity)
    }
}

impl WithCapacity for Windowed<MiniMokaMain> {
    fn with_capacity(capacity: u64) -> Self {
        Self::new(capacity)
    }
}
