//! [`NoCache`]: the L1 that remembers nothing.

use crate::tier::{LocalCache, Seen, WithCapacity};
use tokio::time::Instant;

/// An L1 that remembers nothing, so every call reaches the store. Zero-sized:
/// `TwoTier<NoCache, S>` compiles the local lookups away.
///
/// ```
/// use outbox_redis::{backends::NoCache, tier::LocalCache};
/// let cache = NoCache;
/// assert_eq!(cache.entry_count(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl LocalCache for NoCache {
    #[inline]
    fn get(&self, _token: &str, _now: Instant) -> Option<Seen> {
        None
    }
    #[inline]
    fn insert(&self, _token: &str, _seen: Seen, _deadline: Instant) {}
    #[inline]
    fn remove(&self, _token: &str) {}
    fn entry_count(&self) -> u64 {
        0
    }
}

impl WithCapacity for NoCache {
    fn with_capacity(_capacity: u64) -> Self {
        Self
    }
}
