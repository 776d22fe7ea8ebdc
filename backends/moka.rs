//! [`MokaCache`]: the L1 on `moka::sync::Cache`, behind a lock-free window.

use crate::recent::{Fingerprint, MainCache, Windowed};
use crate::tier::{Seen, WithCapacity};
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

impl Expiry<Fingerprint, Entry> for ByDeadline {
    fn expire_after_create(
        &self,
        _: &Fingerprint,
        entry: &Entry,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.lifetime)
    }
    fn expire_after_update(
        &self,
        _: &Fingerprint,
        entry: &Entry,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.lifetime)
    }
}

/// The main space of [`MokaCache`]: a [`moka::sync::Cache`] (`TinyLFU`
/// admission, LRU eviction) with per-entry expiry, for tokens seen more than
/// once, keyed by the token's fingerprint (no string is stored).
pub struct MokaMain {
    // Keys are already keyed 128-bit hashes: foldhash spreads them at a
    // fraction of the default SipHash's cost, paid on every new token.
    cache: moka::sync::Cache<Fingerprint, Entry, foldhash::fast::RandomState>,
}

impl WithCapacity for MokaMain {
    fn with_capacity(capacity: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(ByDeadline)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }
}

impl MainCache for MokaMain {
    fn get(&self, fp: Fingerprint) -> Option<(Seen, Instant)> {
        // `contains_key` does not feed moka's frequency sketch; `get` does,
        // at several times the cost, and most lookups here are misses.
        if !self.cache.contains_key(&fp) {
            return None;
        }
        self.cache
            .get(&fp)
            .map(|entry| (entry.seen, entry.deadline))
    }

    fn insert(&self, fp: Fingerprint, seen: Seen, deadline: Instant) {
        let lifetime = deadline.saturating_duration_since(Instant::now());
        if lifetime.is_zero() {
            return;
        }
        self.cache.insert(
            fp,
            Entry {
                seen,
                deadline,
                lifetime,
            },
        );
    }

    fn remove(&self, fp: Fingerprint) {
        self.cache.invalidate(&fp);
    }

    fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

/// The moka L1: every token enters a lock-free [`RecentTable`](crate::recent::RecentTable)
/// window, and tokens that were seen again and outlive the window move into
/// a [`moka::sync::Cache`] that keeps the ones that stay hot. A new token
/// costs a few atomic stores instead of a moka insert (~2.5 µs); a duplicate
/// is answered by a few atomic loads. Per-entry deadlines are checked on
/// tokio's clock.
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
pub type MokaCache = Windowed<MokaMain>;

impl Windowed<MokaMain> {
    /// A cache holding at most about `capacity` tokens: half in the window,
    /// half in moka.
    #[must_use]
    pub fn new(capacity: u64) -> Self {
        Self::with_main(capacity, MokaMain::with_capacity)
    }
}

impl WithCapacity for Windowed<MokaMain> {
    fn with_capacity(capacity: u64) -> Self {
        Self::new(capacity)
    }
}
