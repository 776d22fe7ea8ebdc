//! Test support that ships with the crate: the conformance suites every
//! backend must pass, and [`FaultyStore`], an L2 wrapper that fails, hangs or
//! slows down on command.
//!
//! A new backend is one call in a test:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use outbox_redis::backends::{MemoryStore, NoCache};
//! use outbox_redis::testing;
//! use std::sync::Arc;
//!
//! testing::l2_conformance(Arc::new(MemoryStore::new()), "doc").await;
//! testing::l1_conformance(|_capacity| NoCache, false);
//! # }
//! ```
//!
//! The suites panic (like `assert!`) on the first broken promise, naming it.
#![allow(
    clippy::expect_used,
    reason = "the conformance suites are assertions: they panic by design"
)]

use crate::error::{Error, Result};
use crate::tier::{Claim, LocalCache, Owner, RemoteStore, Seen};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// What a [`FaultyStore`] does to each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Pass every call through.
    #[default]
    None,
    /// Fail every call with [`Error::Unavailable`], as a dropped connection would.
    Unavailable,
    /// Refuse every call with [`Error::Auth`], as an ACL that lacks a
    /// command would.
    Refuse,
    /// Never answer (until the caller's timeout gives up).
    Hang,
    /// Answer, after waiting this long.
    Delay(Duration),
}

/// How many calls of each kind a [`FaultyStore`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    /// `reserve` calls.
    pub reserve: u64,
    /// `reserve_many` calls (one per batch).
    pub reserve_many: u64,
    /// `release` calls.
    pub release: u64,
    /// `commit` calls.
    pub commit: u64,
}

#[derive(Default)]
struct Counters {
    reserve: AtomicU64,
    reserve_many: AtomicU64,
    release: AtomicU64,
    commit: AtomicU64,
}

/// An L2 wrapper that injects faults and counts calls, for testing failure
/// handling: yours and this crate's. Clones share the fault switch and the
/// counters.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use outbox_redis::{RedisTokenConfig, TwoTier};
/// use outbox_redis::backends::{MemoryStore, NoCache};
/// use outbox_redis::testing::{Fault, FaultyStore};
///
/// let store = FaultyStore::new(MemoryStore::new());
/// let provider: TwoTier<NoCache, _> =
///     TwoTier::with_store(store.clone(), RedisTokenConfig::default()).unwrap();
/// store.set_fault(Fault::Unavailable);
/// assert!(provider.try_reserve("t").await.is_err()); // fail closed
/// store.set_fault(Fault::None);
/// assert!(provider.try_reserve("t").await.unwrap());
/// assert_eq!(store.calls().reserve, 2);
/// # }
/// ```
#[derive(Clone)]
pub struct FaultyStore<S> {
    inner: S,
    fault: Arc<Mutex<Fault>>,
    counters: Arc<Counters>,
}

impl<S> FaultyStore<S> {
    /// Wraps `inner`, passing every call through until told otherwise.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            fault: Arc::default(),
            counters: Arc::default(),
        }
    }

    /// Sets what happens to the calls from now on.
    pub fn set_fault(&self, fault: Fault) {
        *self
            .fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fault;
    }

    /// The calls seen so far.
    pub fn calls(&self) -> Calls {
        Calls {
            reserve: self.counters.reserve.load(Ordering::Relaxed),
            reserve_many: self.counters.reserve_many.load(Ordering::Relaxed),
            release: self.counters.release.load(Ordering::Relaxed),
            commit: self.counters.commit.load(Ordering::Relaxed),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn inject(&self, counter: &AtomicU64) -> Result<()> {
        counter.fetch_add(1, Ordering::Relaxed);
        let fault = *self
            .fault
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match fault {
            Fault::None => Ok(()),
            Fault::Unavailable => Err(Error::unavailable("injected fault: store unavailable")),
            Fault::Refuse => Err(Error::Auth {
                message: "injected fault: NOPERM this user has no permissions to run the command"
                    .to_owned(),
            }),
            Fault::Hang => std::future::pending().await,
            Fault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl<S: RemoteStore> RemoteStore for FaultyStore<S> {
    async fn reserve(&self, key: &str, owner: Owner, ttl: Duration) -> Result<Claim> {
        self.inject(&self.counters.reserve).await?;
        self.inner.reserve(key, owner, ttl).await
    }
    async fn release(&self, key: &str, owner: Owner) -> Result<bool> {
        self.inject(&self.counters.release).await?;
        self.inner.release(key, owner).await
    }
    async fn commit(&self, key: &str, owner: Owner, ttl: Duration) -> Result<bool> {
        self.inject(&self.counters.commit).await?;
        self.inner.commit(key, owner, ttl).await
    }
    async fn reserve_many(
        &self,
        keys: &[String],
        owner: Owner,
        ttl: Duration,
    ) -> Result<Vec<Claim>> {
        self.inject(&self.counters.reserve_many).await?;
        self.inner.reserve_many(keys, owner, ttl).await
    }
}

/// The L1 conformance suite. `make(capacity)` builds a cache; `remembers`
/// says whether the cache keeps anything at all (false only for `NoCache`,
/// which passes by remembering nothing).
///
/// Checks: answers before an entry's deadline (caching L1s), never at or after
/// it, `remove` forgets, a new insert replaces, and 100,000 inserts into a
/// 10,000-entry cache leave at most 10% over capacity after
/// `run_pending_tasks`.
///
/// # Panics
///
/// On the first broken promise, naming it.
pub fn l1_conformance<C: LocalCache>(make: impl Fn(u64) -> C, remembers: bool) {
    let cache = make(1_000);
    let now = Instant::now();
    let second = Duration::from_secs(1);
    let ours = Seen::Ours(Owner::new(7, 1));

    cache.insert("a", ours, now + 60 * second);
    let expect = remembers.then_some(ours);
    assert_eq!(cache.get("a", now), expect, "answers before the deadline");
    assert_eq!(
        cache.get("a", now + 59 * second),
        expect,
        "answers until the deadline"
    );
    assert_eq!(
        cache.get("a", now + 60 * second),
        None,
        "forgets at the deadline"
    );
    assert_eq!(
        cache.get("a", now + 61 * second),
        None,
        "never answers past the deadline"
    );

    cache.insert("a", Seen::Theirs, now + 60 * second);
    assert_eq!(
        cache.get("a", now),
        remembers.then_some(Seen::Theirs),
        "an insert replaces"
    );

    cache.remove("a");
    assert_eq!(cache.get("a", now), None, "remove forgets");

    cache.insert("past", Seen::Theirs, now);
    assert_eq!(
        cache.get("past", now),
        None,
        "an entry inserted past its deadline is never answered"
    );
    assert_eq!(cache.get("missing", now), None, "unknown token");

    let bounded = make(10_000);
    for i in 0..100_000u32 {
        bounded.insert(&format!("token-{i}"), Seen::Theirs, now + 600 * second);
    }
    bounded.run_pending_tasks();
    let held = bounded.entry_count();
    assert!(
        held <= 11_000,
        "capacity bound: holds {held} entries for a capacity of 10,000"
    );
    if remembers {
        assert!(held > 0, "a caching L1 keeps some of what it was given");
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The L2 conformance suite. Keys start with `namespace`, so runs against a
/// shared server do not collide; pass something unique per run.
///
/// Checks: reserve then taken, `expires_in` reported, a repeated reserve by
/// the same owner answers `Reserved`, a second owner is `Taken`, expiry after
/// the TTL, release by the owner frees, release by anyone else frees nothing
/// (also after the owner's claim expired and someone else reserved), commit
/// extends and only for the owner, 64 concurrent reserves of one key give
/// exactly one `Reserved`, and `reserve_many` agrees with single calls. It
/// sleeps on tokio's clock (about one second in all on a real clock).
///
/// # Panics
///
/// On the first broken promise, naming it.
#[allow(clippy::too_many_lines)]
pub async fn l2_conformance<S: RemoteStore + 'static>(store: Arc<S>, namespace: &str) {
    let key = |name: &str| format!("{namespace}:conformance:{name}");
    let (a, b, c) = (Owner::new(1, 1), Owner::new(2, 1), Owner::new(1, 2));
    let long = Duration::from_secs(60);

    // Reserve, taken, expires_in, same-owner retry.
    let k = key("basic");
    assert_eq!(
        store.reserve(&k, a, long).await.expect("reserve"),
        Claim::Reserved,
        "a free key is reserved"
    );
    match store.reserve(&k, b, long).await.expect("reserve") {
        Claim::Taken {
            expires_in: Some(left),
        } => {
            assert!(
                left <= long && left > long.saturating_sub(Duration::from_secs(5)),
                "expires_in {left:?} should be close to {long:?}"
            );
        }
        other => panic!("a held key must be Taken with expires_in, got {other:?}"),
    }
    assert_eq!(
        store.reserve(&k, a, long).await.expect("reserve"),
        Claim::Reserved,
        "the same owner's retry is Reserved"
    );
    assert!(
        matches!(
            store.reserve(&k, c, long).await.expect("reserve"),
            Claim::Taken { .. }
        ),
        "another attempt of the same instance is a different owner"
    );

    // Release by owner, by non-owner.
    assert!(
        !store.release(&k, b).await.expect("release"),
        "a non-owner's release frees nothing"
    );
    assert!(
        matches!(
            store.reserve(&k, c, long).await.expect("reserve"),
            Claim::Taken { .. }
        ),
        "still held after a non-owner's release"
    );
    assert!(
        store.release(&k, a).await.expect("release"),
        "the owner's release frees"
    );
    assert!(
        !store.release(&k, a).await.expect("release"),
        "a second release frees nothing"
    );
    assert_eq!(
        store.reserve(&k, b, long).await.expect("reserve"),
        Claim::Reserved,
        "a released key is free"
    );

    // Expiry, and a late release after someone else reserved.
    let k = key("expiry");
    assert_eq!(
        store.reserve(&k, a, ms(100)).await.expect("reserve"),
        Claim::Reserved
    );
    assert!(matches!(
        store.reserve(&k, b, long).await.expect("reserve"),
        Claim::Taken { .. }
    ));
    tokio::time::sleep(ms(250)).await;
    assert_eq!(
        store.reserve(&k, b, long).await.expect("reserve"),
        Claim::Reserved,
        "a key is free after its TTL"
    );
    assert!(
        !store.release(&k, a).await.expect("release"),
        "an expired owner's late release frees nothing"
    );
    assert!(
        !store.commit(&k, a, long).await.expect("commit"),
        "an expired owner cannot commit"
    );
    assert!(
        matches!(
            store.reserve(&k, c, long).await.expect("reserve"),
            Claim::Taken { .. }
        ),
        "the new holder keeps the key"
    );

    // Commit extends, only for the owner.
    let k = key("commit");
    assert_eq!(
        store.reserve(&k, a, ms(150)).await.expect("reserve"),
        Claim::Reserved
    );
    assert!(
        !store.commit(&k, b, long).await.expect("commit"),
        "a non-owner cannot commit"
    );
    assert!(
        store.commit(&k, a, long).await.expect("commit"),
        "the owner commits"
    );
    tokio::time::sleep(ms(300)).await;
    match store.reserve(&k, b, long).await.expect("reserve") {
        Claim::Taken {
            expires_in: Some(left),
        } => {
            assert!(
                left > Duration::from_secs(50),
                "commit extended the claim, {left:?} left"
            );
        }
        other => panic!("a committed key outlives its lease, got {other:?}"),
    }
    assert_eq!(
        store.reserve(&k, a, long).await.expect("reserve"),
        Claim::Reserved,
        "the owner still holds it after commit"
    );

    // 64 concurrent reserves of one key.
    let k = key("race");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let store = Arc::clone(&store);
        let k = k.clone();
        tasks.spawn(async move { store.reserve(&k, Owner::new(100 + i, 1), long).await });
    }
    let mut reserved = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.expect("task").expect("reserve").is_reserved() {
            reserved += 1;
        }
    }
    assert_eq!(
        reserved, 1,
        "64 concurrent reserves of one key: exactly one Reserved"
    );

    // reserve_many agrees with single calls.
    let keys: Vec<String> = (0..4).map(|i| key(&format!("many-{i}"))).collect();
    assert_eq!(
        store.reserve(&keys[1], b, long).await.expect("reserve"),
        Claim::Reserved
    );
    let claims = store
        .reserve_many(&keys, a, long)
        .await
        .expect("reserve_many");
    assert_eq!(claims.len(), keys.len(), "one answer per key");
    for (i, claim) in claims.iter().enumerate() {
        if i == 1 {
            assert!(
                matches!(
                    claim,
                    Claim::Taken {
                        expires_in: Some(_)
                    }
                ),
                "reserve_many sees b's key as Taken"
            );
        } else {
            assert_eq!(
                *claim,
                Claim::Reserved,
                "reserve_many reserves free key {i}"
            );
        }
        let single = store.reserve(&keys[i], c, long).await.expect("reserve");
        assert!(
            matches!(single, Claim::Taken { .. }),
            "single calls agree that key {i} is held"
        );
    }
    let again = store
        .reserve_many(&keys, a, long)
        .await
        .expect("reserve_many");
    assert_eq!(
        again[0],
        Claim::Reserved,
        "reserve_many retried by the same owner is Reserved"
    );
    assert!(
        store
            .reserve_many(&[], a, long)
            .await
            .expect("reserve_many")
            .is_empty(),
        "an empty batch"
    );
}

/// An in-memory `outbox_core::OutboxWriter` (executor `()`) that keeps the
/// events it was given and can be told to fail its next inserts: the test
/// double for code that writes outbox events (feature `outbox`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use outbox_core::OutboxWriter;
/// use outbox_redis::testing::MemoryWriter;
///
/// let writer = MemoryWriter::<String>::new();
/// writer.fail_next(1);
/// let event = || outbox_core::Event::new(
///     outbox_core::EventType::new("t"), outbox_core::Payload::new("p".to_owned()), None);
/// assert!(writer.insert_event(event(), ()).await.is_err());
/// assert!(writer.insert_event(event(), ()).await.is_ok());
/// assert_eq!(writer.len(), 1);
/// # }
/// ```
#[cfg(feature = "outbox")]
pub struct MemoryWriter<P> {
    events: Mutex<Vec<outbox_core::Event<P>>>,
    failures_left: AtomicU64,
}

#[cfg(feature = "outbox")]
impl<P> Default for MemoryWriter<P> {
    fn default() -> Self {
        Self {
            events: Mutex::new(Vec::new()),
            failures_left: AtomicU64::new(0),
        }
    }
}

#[cfg(feature = "outbox")]
impl<P: Clone> MemoryWriter<P> {
    /// An empty writer that fails nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` inserts fail with `OutboxError::DatabaseError`.
    pub fn fail_next(&self, n: u64) {
        self.failures_left.store(n, Ordering::SeqCst);
    }

    /// How many events were written.
    pub fn len(&self) -> usize {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// True when no event was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events written so far, in order.
    pub fn events(&self) -> Vec<outbox_core::Event<P>> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(feature = "outbox")]
#[async_trait]
impl<P> outbox_core::OutboxWriter<P> for MemoryWriter<P>
where
    P: std::fmt::Debug + Clone + serde::Serialize + Send + Sync + 'static,
{
    type Executor<'a> = ();

    async fn insert_event<'a>(
        &self,
        event: outbox_core::Event<P>,
        _executor: (),
    ) -> Result<(), outbox_core::OutboxError>
    where
        'a: 'async_trait,
    {
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(outbox_core::OutboxError::DatabaseError(
                "injected fault: insert failed".to_owned(),
            ));
        }
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event);
        Ok(())
    }
}
