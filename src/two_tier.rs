//! [`TwoTier<L1, L2>`]: the whole reservation algorithm, in one place.
//!
//! 1. validate the token;
//! 2. if L1 remembers it (deadline ahead): duplicate, no I/O;
//! 3. concurrent callers for the same token in this process share one L2 call
//!    (single flight): the first leads, the others wait for its answer and
//!    see "duplicate";
//! 4. L2 `reserve` under the config's `call_timeout()` (`operation_timeout`,
//!    plus `replica_ack_timeout` when replicas must acknowledge);
//! 5. remember the answer in L1: our reservation until its L2 expiry, someone
//!    else's for at most `local_ttl` and never past its L2 expiry;
//! 6. on an L2 failure, apply the [`FailurePolicy`].

use crate::config::{FailurePolicy, RedisTokenConfig};
use crate::error::{Error, Result};
use crate::single_flight::{Flights, Leading, Outcome, Role};
use crate::tier::{Claim, LocalCache, Owner, RemoteStore, Seen, WithCapacity};
use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// What [`TwoTier::once`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Once<T, E> {
    /// The token was already taken: the work did not run.
    Duplicate,
    /// The work ran and succeeded; the token is committed for the full `ttl`.
    Done(T),
    /// The work ran and failed; the token was released, so a retry can run it.
    Failed(E),
}

impl<T, E> Once<T, E> {
    /// True when the work ran (whether it succeeded or not).
    pub fn ran(&self) -> bool {
        !matches!(self, Self::Duplicate)
    }

    /// The work's result, or `None` for a duplicate.
    pub fn into_result(self) -> Option<std::result::Result<T, E>> {
        match self {
            Self::Duplicate => None,
            Self::Done(value) => Some(Ok(value)),
            Self::Failed(error) => Some(Err(error)),
        }
    }
}

/// Counters of what a provider did, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Tokens accepted without the store's confirmation under
    /// [`FailurePolicy::FailOpen`].
    pub failed_open: u64,
    /// Calls answered by waiting on another caller's in-flight store call
    /// for the same token instead of making their own.
    pub coalesced: u64,
}

/// How a claim attempt ended, from this caller's point of view.
enum Claimed {
    Ours(Owner),
    Duplicate,
    FailedOpen,
}

/// A random id for one provider instance, so that owners from different
/// processes (and different providers in one process) never collide.
fn random_instance() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(now);
    hasher.write_u32(std::process::id());
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// An idempotency provider: any local cache `L1` in front of any shared store
/// `L2`. Answers "is this token new?" exactly once across every instance that
/// shares the store, and stops retry storms in-process.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> outbox_redis::Result<()> {
/// use outbox_redis::{RedisTokenConfig, TwoTier};
/// use outbox_redis::backends::{MemoryStore, NoCache};
///
/// let provider: TwoTier<NoCache, MemoryStore> =
///     TwoTier::with_store(MemoryStore::new(), RedisTokenConfig::default())?;
/// assert!(provider.try_reserve("order-42").await?); // new
/// assert!(!provider.try_reserve("order-42").await?); // duplicate
/// # Ok(()) }
/// ```
pub struct TwoTier<L1: LocalCache, L2: RemoteStore> {
    l1: L1,
    l2: L2,
    config: RedisTokenConfig,
    instance: u64,
    attempts: AtomicU64,
    flights: Flights,
    failed_open: AtomicU64,
    coalesced: AtomicU64,
}

impl<L1: LocalCache, L2: RemoteStore> std::fmt::Debug for TwoTier<L1, L2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoTier")
            .field("l1", &std::any::type_name::<L1>())
            .field("l2", &std::any::type_name::<L2>())
            .field("instance", &format_args!("{:016x}", self.instance))
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<L1: LocalCache + WithCapacity, L2: RemoteStore> TwoTier<L1, L2> {
    /// A provider over `store` whose L1 is built with
    /// `config.local_cache_capacity`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the field when `config` is invalid.
    pub fn with_store(store: L2, config: RedisTokenConfig) -> Result<Self> {
        config.validate()?;
        let l1 = L1::with_capacity(config.local_cache_capacity);
        Self::from_parts(l1, store, config)
    }
}

impl<L1: LocalCache, L2: RemoteStore> TwoTier<L1, L2> {
    /// A provider over the given L1 and L2.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the field when `config` is invalid.
    pub fn from_parts(local: L1, store: L2, config: RedisTokenConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            l1: local,
            l2: store,
            config,
            instance: random_instance(),
            attempts: AtomicU64::new(0),
            flights: Flights::new(),
            failed_open: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RedisTokenConfig {
        &self.config
    }

    /// The local cache (L1).
    pub fn local(&self) -> &L1 {
        &self.l1
    }

    /// The shared store (L2).
    pub fn store(&self) -> &L2 {
        &self.l2
    }

    /// What this provider has counted so far.
    pub fn stats(&self) -> Stats {
        Stats {
            failed_open: self.failed_open.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
        }
    }

    /// Reserves `token` for `ttl`: true when this call reserved it (the
    /// request is new and may proceed), false when it was already taken
    /// (a duplicate).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidToken`] for an empty or over-long token (no store is
    /// contacted). Under [`FailurePolicy::FailClosed`], the store's error or
    /// [`Error::Timeout`]; under [`FailurePolicy::FailOpen`] store failures
    /// accept the token instead.
    pub async fn try_reserve(&self, token: &str) -> Result<bool> {
        self.config.check_token(token)?;
        Ok(match self.claim(token, self.config.ttl).await? {
            Claimed::Ours(_) | Claimed::FailedOpen => true,
            Claimed::Duplicate => false,
        })
    }

    /// [`try_reserve`](Self::try_reserve) for many tokens in one store round
    /// trip where the store can pipeline; answers in order. A token repeated
    /// within the batch is new at most once.
    ///
    /// # Errors
    ///
    /// As [`try_reserve`](Self::try_reserve); one invalid token fails the
    /// whole batch before any store is contacted.
    pub async fn try_reserve_many(&self, tokens: &[&str]) -> Result<Vec<bool>> {
        for token in tokens {
            self.config.check_token(token)?;
        }
        let started = Instant::now();
        let mut answers = vec![false; tokens.len()];
        let mut asked: Vec<usize> = Vec::with_capacity(tokens.len());
        let mut in_batch = std::collections::HashSet::with_capacity(tokens.len());
        for (i, token) in tokens.iter().enumerate() {
            if self.l1.get(token, started).is_none() && in_batch.insert(*token) {
                asked.push(i);
            }
        }
        if asked.is_empty() {
            return Ok(answers);
        }
        let keys: Vec<String> = asked.iter().map(|&i| self.config.key(tokens[i])).collect();
        let owner = self.next_owner();
        let ttl = self.config.ttl;
        let result = self
            .bounded("reserve_many", self.l2.reserve_many(&keys, owner, ttl))
            .await
            .and_then(|claims| {
                if claims.len() == keys.len() {
                    Ok(claims)
                } else {
                    Err(Error::store(format!(
                        "reserve_many answered {} claims for {} keys",
                        claims.len(),
                        keys.len()
                    )))
                }
            });
        match result {
            Ok(claims) => {
                for (&i, claim) in asked.iter().zip(claims) {
                    answers[i] = self.remember(tokens[i], claim, owner, started, ttl);
                }
            }
            Err(error) => {
                self.fail(&error)?;
                for &i in &asked {
                    self.accept_failed_open(tokens[i], started);
                    answers[i] = true;
                }
            }
        }
        Ok(answers)
    }

    /// Releases this instance's reservation of `token` so it can be reserved
    /// again (for example because the work it guarded failed). Answers whether
    /// a reservation was released.
    ///
    /// The owner of the reservation is looked up in L1, so this answers false
    /// when L1 no longer remembers it (with [`NoCache`](crate::backends::NoCache),
    /// always). Use [`once`](Self::once) to have the reservation released on
    /// failure without relying on L1.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidToken`]; the store's error or [`Error::Timeout`] (the
    /// reservation is then still held, and L1 still remembers it).
    pub async fn release(&self, token: &str) -> Result<bool> {
        self.config.check_token(token)?;
        match self.l1.get(token, Instant::now()) {
            Some(Seen::Ours(owner)) => self.release_owned(token, owner).await,
            Some(Seen::FailedOpen) => {
                self.l1.remove(token);
                Ok(true)
            }
            Some(Seen::Theirs) | None => Ok(false),
        }
    }

    /// The guarded path: reserves `token` for the short `lease`, runs `work`,
    /// then commits the reservation to the full `ttl` if the work succeeded or
    /// releases it if the work failed — so a failed attempt never burns the
    /// token and the client's retry can run it again.
    ///
    /// If the process dies during the work, the token frees itself after
    /// `lease`. Choose `lease` longer than the work can take.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> outbox_redis::Result<()> {
    /// use outbox_redis::{Once, RedisTokenConfig, TwoTier};
    /// use outbox_redis::backends::{MemoryStore, NoCache};
    ///
    /// let provider: TwoTier<NoCache, MemoryStore> =
    ///     TwoTier::with_store(MemoryStore::new(), RedisTokenConfig::default())?;
    /// let failed = provider.once("pay-7", async { Err::<(), _>("card declined") }).await?;
    /// assert_eq!(failed, Once::Failed("card declined"));
    /// let retried = provider.once("pay-7", async { Ok::<_, &str>("paid") }).await?;
    /// assert_eq!(retried, Once::Done("paid"));
    /// let again = provider.once("pay-7", async { Ok::<_, &str>("paid twice") }).await?;
    /// assert_eq!(again, Once::Duplicate);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidToken`]; a store error or [`Error::Timeout`] when
    /// reserving (fail closed; the work does not run) or when committing (the
    /// work ran, and the token frees itself after `lease`); and
    /// [`Error::LeaseLost`] when the lease expired before the work finished.
    pub async fn once<F, T, E>(&self, token: &str, work: F) -> Result<Once<T, E>>
    where
        F: Future<Output = std::result::Result<T, E>>,
    {
        self.config.check_token(token)?;
        let lease = self.config.lease.min(self.config.ttl);
        let owner = match self.claim(token, lease).await? {
            Claimed::Duplicate => return Ok(Once::Duplicate),
            Claimed::FailedOpen => {
                return Ok(match work.await {
                    Ok(value) => Once::Done(value),
                    Err(error) => {
                        self.l1.remove(token);
                        Once::Failed(error)
                    }
                });
            }
            Claimed::Ours(owner) => owner,
        };
        match work.await {
            Ok(value) => {
                let key = self.config.key(token);
                let started = Instant::now();
                let ttl = self.config.ttl;
                if self
                    .bounded("commit", self.l2.commit(&key, owner, ttl))
                    .await?
                {
                    self.l1.insert(token, Seen::Ours(owner), started + ttl);
                    Ok(Once::Done(value))
                } else {
                    self.l1.remove(token);
                    Err(Error::LeaseLost {
                        token: token.to_owned(),
                    })
                }
            }
            Err(error) => {
                if let Err(release_error) = self.release_owned(token, owner).await {
                    tracing::warn!(
                        token,
                        error = %release_error,
                        "could not release the token after the guarded work failed; it frees itself when the lease ends"
                    );
                    self.l1.remove(token);
                }
                Ok(Once::Failed(error))
            }
        }
    }

    fn next_owner(&self) -> Owner {
        Owner::new(self.instance, self.attempts.fetch_add(1, Ordering::Relaxed))
    }

    async fn bounded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let after = self.config.call_timeout();
        tokio::time::timeout(after, call)
            .await
            .unwrap_or(Err(Error::Timeout { operation, after }))
    }

    async fn release_owned(&self, token: &str, owner: Owner) -> Result<bool> {
        let key = self.config.key(token);
        let released = self
            .bounded("release", self.l2.release(&key, owner))
            .await?;
        self.l1.remove(token);
        Ok(released)
    }

    /// Steps 2–6 of the algorithm for one token held for `ttl`.
    async fn claim(&self, token: &str, ttl: Duration) -> Result<Claimed> {
        loop {
            let now = Instant::now();
            if self.l1.get(token, now).is_some() {
                return Ok(Claimed::Duplicate);
            }
            match self.flights.join(token) {
                Role::Leader(leading) => {
                    // A leader that finished between our L1 check and our
                    // join has already filled L1 (it fills L1 before leaving
                    // the flight map): look again before asking the store.
                    if self.l1.get(token, now).is_some() {
                        leading.finish(Outcome::Decided);
                        return Ok(Claimed::Duplicate);
                    }
                    return self.lead(token, ttl, now, leading).await;
                }
                Role::Follower(flight) => {
                    let after = self.config.call_timeout();
                    let outcome =
                        tokio::time::timeout(after, flight.wait())
                            .await
                            .map_err(|_| Error::Timeout {
                                operation: "reserve",
                                after,
                            })?;
                    match outcome {
                        Some(Outcome::Decided) => {
                            self.coalesced.fetch_add(1, Ordering::Relaxed);
                            return Ok(Claimed::Duplicate);
                        }
                        Some(Outcome::Failed(error)) => {
                            self.coalesced.fetch_add(1, Ordering::Relaxed);
                            return Err(error);
                        }
                        // The leader was cancelled before it answered: try
                        // again, possibly as the new leader.
                        None => {}
                    }
                }
            }
        }
    }

    async fn lead(
        &self,
        token: &str,
        ttl: Duration,
        started: Instant,
        leading: Leading<'_>,
    ) -> Result<Claimed> {
        let key = self.config.key(token);
        let owner = self.next_owner();
        let call = self.l2.reserve(&key, owner, ttl);
        let answer = if self
            .l2
            .bounds_reserve()
            .is_some_and(|bound| bound <= self.config.call_timeout())
        {
            // The store fails the call by itself in time: no timer here.
            call.await
        } else {
            self.bounded("reserve", call).await
        };
        match answer {
            Ok(claim) => {
                let ours = self.remember(token, claim, owner, started, ttl);
                leading.finish(Outcome::Decided);
                Ok(if ours {
                    Claimed::Ours(owner)
                } else {
                    Claimed::Duplicate
                })
            }
            Err(error) => {
                if let Err(error) = self.fail(&error) {
                    leading.finish(Outcome::Failed(error.clone()));
                    return Err(error);
                }
                self.accept_failed_open(token, started);
                leading.finish(Outcome::Decided);
                Ok(Claimed::FailedOpen)
            }
        }
    }

    /// Step 5: remembers a store answer in L1; answers whether it is ours.
    fn remember(
        &self,
        token: &str,
        claim: Claim,
        owner: Owner,
        started: Instant,
        ttl: Duration,
    ) -> bool {
        match claim {
            Claim::Reserved => {
                // `started` precedes the store's own clock start, so L1 forgets
                // no later than the store does.
                self.l1.insert(token, Seen::Ours(owner), started + ttl);
                true
            }
            Claim::Taken { expires_in } => {
                let local = expires_in.map_or(self.config.local_ttl, |left| {
                    left.min(self.config.local_ttl)
                });
                if !local.is_zero() {
                    self.l1.insert(token, Seen::Theirs, started + local);
                }
                false
            }
        }
    }

    /// Step 6: under fail closed, gives the error back; under fail open, an
    /// outage (a transient error) is logged and counted and the caller
    /// accepts, while errors that need a fix (credentials, ACL, a store
    /// error) are given back: they are not an outage to ride out.
    fn fail(&self, error: &Error) -> Result<()> {
        match self.config.failure_policy {
            FailurePolicy::FailOpen if error.is_transient() => {
                self.failed_open.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "idempotency store failed; accepting the token (fail open)");
                Ok(())
            }
            FailurePolicy::FailOpen | FailurePolicy::FailClosed => Err(error.clone()),
        }
    }

    fn accept_failed_open(&self, token: &str, started: Instant) {
        self.l1
            .insert(token, Seen::FailedOpen, started + self.config.ttl);
    }
}
