//! [`MemoryStore`]: the in-process L2, a first-class test double.

use crate::error::Result;
use crate::tier::{Claim, Owner, RemoteStore};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Copy)]
struct Held {
    owner: Owner,
    deadline: Instant,
}

#[derive(Default)]
struct Keys {
    map: HashMap<String, Held>,
    /// Sweep expired keys when the map grows past this size, so memory stays
    /// proportional to the live keys.
    sweep_at: usize,
}

impl Keys {
    fn live(&self, key: &str, now: Instant) -> Option<Held> {
        self.map
            .get(key)
            .copied()
            .filter(|held| held.deadline > now)
    }

    fn reserve(&mut self, key: &str, owner: Owner, ttl: Duration, now: Instant) -> Claim {
        match self.live(key, now) {
            Some(held) if held.owner != owner => Claim::Taken {
                expires_in: Some(held.deadline - now),
            },
            // Free, or a retry by the same owner (its reply was lost): reserved,
            // with the claim kept as first made.
            Some(_) => Claim::Reserved,
            None => {
                if self.map.len() >= self.sweep_at {
                    self.map.retain(|_, held| held.deadline > now);
                    self.sweep_at = (self.map.len() * 2).max(1024);
                }
                self.map.insert(
                    key.to_owned(),
                    Held {
                        owner,
                        deadline: now + ttl,
                    },
                );
                Claim::Reserved
            }
        }
    }
}

/// An in-memory [`RemoteStore`] that honours TTLs on tokio's clock, so
/// `tokio::time::pause()` and `advance()` drive expiry in tests.
///
/// Clones share the same keys: give one clone to each of several `TwoTier`s to
/// simulate several instances of a service behind one Redis.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> outbox_redis::Result<()> {
/// use outbox_redis::backends::MemoryStore;
/// use outbox_redis::tier::{Claim, Owner, RemoteStore};
/// use std::time::Duration;
///
/// let store = MemoryStore::new();
/// let (a, b) = (Owner::new(1, 1), Owner::new(2, 1));
/// let ttl = Duration::from_secs(60);
/// assert_eq!(store.reserve("k", a, ttl).await?, Claim::Reserved);
/// assert!(matches!(store.reserve("k", b, ttl).await?, Claim::Taken { .. }));
/// assert!(!store.release("k", b).await?); // not b's to release
/// assert!(store.release("k", a).await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    keys: Arc<Mutex<Keys>>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many unexpired keys the store holds.
    #[must_use]
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock()
            .map
            .values()
            .filter(|h| h.deadline > now)
            .count()
    }

    /// True when the store holds no unexpired key.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long `key`'s claim still lives, or `None` if nobody holds it.
    #[must_use]
    pub fn ttl_of(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        self.lock().live(key, now).map(|held| held.deadline - now)
    }

    fn lock(&self) -> MutexGuard<'_, Keys> {
        // A panic while holding the lock cannot leave `Keys` half-updated
        // (every mutation is a single map operation), so poisoning is ignored.
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.len())
            .finish()
    }
}

#[async_trait]
impl RemoteStore for MemoryStore {
    async fn reserve(&self, key: &str, owner: Owner, ttl: Duration) -> Result<Claim> {
        Ok(self.lock().reserve(key, owner, ttl, Instant::now()))
    }

    async fn release(&self, key: &str, owner: Owner) -> Result<bool> {
        let now = Instant::now();
        let mut keys = self.lock();
        match keys.live(key, now) {
            Some(held) if held.owner == owner => {
                keys.map.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn commit(&self, key: &str, owner: Owner, ttl: Duration) -> Result<bool> {
        let now = Instant::now();
        let mut keys = self.lock();
        match keys.map.get_mut(key) {
            Some(held) if held.owner == owner && held.deadline > now => {
                held.deadline = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn reserve_many(
        &self,
        keys: &[String],
        owner: Owner,
        ttl: Duration,
    ) -> Result<Vec<Claim>> {
        let now = Instant::now();
        let mut map = self.lock();
        Ok(keys
            .iter()
            .map(|key| map.reserve(key, owner, ttl, now))
            .collect())
    }
}
