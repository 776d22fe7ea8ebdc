//! Single flight: concurrent callers for the same token in one process share
//! one store call. The first caller leads; the others wait for its outcome.
//!
//! Cheap when uncontended, since every new token passes through here: the
//! token is keyed by a 128-bit keyed fingerprint (no string is copied), the
//! map is sharded, and a flight costs one small allocation.

use crate::error::Error;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::sync::Notify;

/// What a leader tells the callers waiting on it.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The token is now held (by the leader or someone else): a duplicate.
    Decided,
    /// The store failed; waiting callers get the same error.
    Failed(Error),
}

#[derive(Default)]
pub(crate) struct Flight {
    outcome: OnceLock<Outcome>,
    /// Set when the leader is gone (finished or cancelled).
    closed: AtomicBool,
    done: Notify,
}

impl Flight {
    /// Waits for the leader: its outcome, or `None` if it was cancelled
    /// before it had one.
    pub(crate) async fn wait(&self) -> Option<Outcome> {
        let notified = self.done.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.closed.load(Ordering::Acquire) {
            notified.await;
        }
        self.outcome.get().cloned()
    }
}

type Key = (u64, u64);
type Shard = Mutex<HashMap<Key, Arc<Flight>, foldhash::fast::RandomState>>;

const SHARDS: usize = 64;

pub(crate) struct Flights {
    shards: Box<[Shard]>,
    first: foldhash::fast::RandomState,
    second: foldhash::fast::RandomState,
}

pub(crate) enum Role<'a> {
    Leader(Leading<'a>),
    Follower(Arc<Flight>),
}

/// Held by the leader; leaving (finished or cancelled) removes the flight and
/// wakes its followers.
pub(crate) struct Leading<'a> {
    shard: &'a Shard,
    key: Key,
    flight: Arc<Flight>,
}

impl Leading<'_> {
    pub(crate) fn finish(self, outcome: Outcome) {
        let _ = self.flight.outcome.set(outcome);
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.flight.closed.store(true, Ordering::Release);
        self.shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        self.flight.done.notify_waiters();
    }
}

impl Flights {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            first: foldhash::fast::RandomState::default(),
            second: foldhash::fast::RandomState::default(),
        }
    }

    /// Leads the flight for `token`, or follows the one in the air.
    pub(crate) fn join(&self, token: &str) -> Role<'_> {
        let key = (self.first.hash_one(token), self.second.hash_one(token));
        // The modulo keeps the index below SHARDS.
        #[allow(clippy::cast_possible_truncation)]
        let shard = &self.shards[(key.0 % SHARDS as u64) as usize];
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = map.get(&key) {
            return Role::Follower(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::default());
        map.insert(key, Arc::clone(&flight));
        Role::Leader(Leading { shard, key, flight })
    }
}
