//! The two contracts every backend implements: [`LocalCache`] (L1, in-process)
//! and [`RemoteStore`] (L2, shared by every instance).
//!
//! [`TwoTier`](crate::TwoTier) composes any L1 with any L2; neither side knows
//! the other. A backend implements one trait and passes the matching
//! conformance suite in [`testing`](crate::testing).

use crate::error::Result;
use async_trait::async_trait;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// Who holds a reservation: a unique id per reservation attempt.
///
/// The high half identifies the process-local provider that made the attempt
/// (random per `TwoTier`), the low half counts its attempts. A store answers
/// [`Claim::Reserved`] to a repeated `reserve` with the same owner (a retry
/// after a lost reply is not a duplicate), and only the owner can `release` or
/// `commit` its claim.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    instance: u64,
    attempt: u64,
}

impl Owner {
    /// An owner from its two halves.
    #[must_use]
    pub const fn new(instance: u64, attempt: u64) -> Self {
        Self { instance, attempt }
    }

    /// The provider instance that made the attempt.
    #[must_use]
    pub const fn instance(self) -> u64 {
        self.instance
    }

    /// The attempt number within that instance.
    #[must_use]
    pub const fn attempt(self) -> u64 {
        self.attempt
    }

    /// The owner as 16 big-endian bytes, for stores that keep opaque values.
    #[must_use]
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.instance.to_be_bytes());
        out[8..].copy_from_slice(&self.attempt.to_be_bytes());
        out
    }

    /// The inverse of [`Owner::to_bytes`].
    #[must_use]
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let (hi, lo) = bytes.split_at(8);
        let mut instance = [0u8; 8];
        let mut attempt = [0u8; 8];
        instance.copy_from_slice(hi);
        attempt.copy_from_slice(lo);
        Self {
            instance: u64::from_be_bytes(instance),
            attempt: u64::from_be_bytes(attempt),
        }
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({:016x}:{:x})", self.instance, self.attempt)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.instance, self.attempt)
    }
}

/// The answer of [`RemoteStore::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The key was free (or already held by the same owner): the caller holds it now.
    Reserved,
    /// Someone else holds the key.
    Taken {
        /// How long the existing claim still lives, where the store can tell.
        expires_in: Option<Duration>,
    },
}

impl Claim {
    /// True for [`Claim::Reserved`].
    #[must_use]
    pub const fn is_reserved(self) -> bool {
        matches!(self, Self::Reserved)
    }
}

/// The L2 contract: the shared store that is the single source of truth.
///
/// Every method is one atomic step on the store; implementations must be safe
/// to call from many tasks and many processes at once.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an L2 store: it does not implement `RemoteStore`",
    label = "not a `RemoteStore`",
    note = "the second type of `TwoTier<L1, L2>` is the shared store: `RedisStore`, `FredStore`, `MemoryStore`, or your own `impl RemoteStore`"
)]
#[async_trait]
pub trait RemoteStore: Send + Sync {
    /// Claims `key` for `owner` for `ttl` if nobody holds it, in one atomic
    /// step. Answers [`Claim::Reserved`] when the key was free or is already
    /// held by this same `owner`, [`Claim::Taken`] otherwise.
    async fn reserve(&self, key: &str, owner: Owner, ttl: Duration) -> Result<Claim>;

    /// Deletes `key` only if `owner` still holds it. Answers whether a claim
    /// was deleted; a late release never frees someone else's claim.
    async fn release(&self, key: &str, owner: Owner) -> Result<bool>;

    /// Extends `owner`'s claim on `key` to `ttl` from now. Answers false (and
    /// changes nothing) when `owner` no longer holds the key.
    async fn commit(&self, key: &str, owner: Owner, ttl: Duration) -> Result<bool>;

    /// The longest a [`reserve`](Self::reserve) call can take before it fails
    /// with a timeout of its own, if the store guarantees one — time spent
    /// waiting for a reconnection included. When it is within the provider's
    /// `call_timeout()`, `TwoTier` adds no timer of its own to `reserve`,
    /// the call every new token makes (a tokio timer per call costs ~10% of
    /// throughput against a local Redis). The default, `None`, makes
    /// `TwoTier` bound every call itself.
    fn bounds_reserve(&self) -> Option<Duration> {
        None
    }

    /// [`reserve`](Self::reserve) for many keys, answered in order. Stores that
    /// can pipeline do it in one round trip; the default asks one key at a time.
    async fn reserve_many(
        &self,
        keys: &[String],
        owner: Owner,
        ttl: Duration,
    ) -> Result<Vec<Claim>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.reserve(key, owner, ttl).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl<S: RemoteStore + ?Sized> RemoteStore for std::sync::Arc<S> {
    async fn reserve(&self, key: &str, owner: Owner, ttl: Duration) -> Result<Claim> {
        (**self).reserve(key, owner, ttl).await
    }
    async fn release(&self, key: &str, owner: Owner) -> Result<bool> {
        (**self).release(key, owner).await
    }
    async fn commit(&self, key: &str, owner: Owner, ttl: Duration) -> Result<bool> {
        (**self).commit(key, owner, ttl).await
    }
    async fn reserve_many(
        &self,
        keys: &[String],
        owner: Owner,
        ttl: Duration,
    ) -> Result<Vec<Claim>> {
        (**self).reserve_many(keys, owner, ttl).await
    }
}

/// What the local cache remembers about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// This instance reserved it, as `Owner`.
    Ours(Owner),
    /// Someone else holds it.
    Theirs,
    /// Accepted while the store was failing (fail-open policy); not in the store.
    FailedOpen,
}

/// The L1 contract: a bounded, synchronous, never-blocking local memory of
/// tokens, each with a deadline after which it must be forgotten.
///
/// Keys are tokens (the store prefix is the provider's business). Deadlines are
/// [`tokio::time::Instant`]s, so `tokio::time::pause` drives them in tests.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an L1 cache: it does not implement `LocalCache`",
    label = "not a `LocalCache`",
    note = "the first type of `TwoTier<L1, L2>` is the local cache: `MokaCache`, `MiniMokaCache`, `NoCache`, or your own `impl LocalCache`"
)]
pub trait LocalCache: Send + Sync {
    /// What is remembered about `token`, if its deadline is after `now`.
    /// Never answers for an entry whose deadline has passed.
    fn get(&self, token: &str, now: Instant) -> Option<Seen>;

    /// Remembers `seen` for `token` until `deadline`, replacing any earlier entry.
    fn insert(&self, token: &str, seen: Seen, deadline: Instant);

    /// Forgets `token`.
    fn remove(&self, token: &str);

    /// How many entries are held (approximate for concurrent caches until
    /// [`run_pending_tasks`](Self::run_pending_tasks)).
    fn entry_count(&self) -> u64;

    /// Finishes deferred maintenance (eviction, expiry) so that
    /// [`entry_count`](Self::entry_count) is exact. A no-op by default.
    fn run_pending_tasks(&self) {}
}

/// An L1 that can be built from a capacity alone, so that providers can
/// construct it from `RedisTokenConfig::local_cache_capacity`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be built from a capacity: it does not implement `WithCapacity`",
    note = "`TwoTier::with_store` and the `new(url, config)` constructors build the L1 from `local_cache_capacity`; build it yourself and use `TwoTier::from_parts`"
)]
pub trait WithCapacity {
    /// A cache holding at most about `capacity` entries.
    fn with_capacity(capacity: u64) -> Self;
}

/// An L2 that connects from a URL, so that `TwoTier::new(url, config)` can
/// build it: the Redis backends implement it.
#[async_trait]
pub trait FromUrl: RemoteStore + Sized {
    /// Connects to the store at `url` with the timeouts of `config`.
    async fn from_url(url: &str, config: &crate::RedisTokenConfig) -> Result<Self>;
}
