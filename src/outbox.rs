//! outbox-core integration (feature `outbox`): every `TwoTier` is an
//! [`IdempotencyStorageProvider`], and [`GuardedOutbox`] writes events so that
//! a failed write never burns its token.
//!
//! # Why the guarded form exists
//!
//! `OutboxService::add_event` reserves the token *before* inserting the event,
//! and nothing releases it when the insert (or the caller's transaction)
//! fails: the client's retry is then rejected as a duplicate for the whole
//! TTL and the event is never written. [`GuardedOutbox`] reserves the token
//! for a short lease, runs the write, and commits the token to the full TTL
//! only when the write (and, with [`GuardedOutbox::in_transaction`], the
//! caller's transaction) succeeded; otherwise it releases it.

use crate::error::Error;
use crate::tier::{LocalCache, RemoteStore};
use crate::two_tier::{Once, TwoTier};
use async_trait::async_trait;
use outbox_core::{
    IdempotencyStorageProvider, IdempotencyToken, NoIdempotency, OutboxConfig, OutboxError,
    OutboxService, OutboxWriter,
};
use serde::Serialize;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

impl From<Error> for OutboxError {
    /// Every provider error is infrastructure from outbox-core's point of
    /// view; the message keeps the cause and what to fix.
    fn from(error: Error) -> Self {
        OutboxError::InfrastructureError(error.to_string())
    }
}

#[async_trait]
impl<L1: LocalCache, L2: RemoteStore> IdempotencyStorageProvider for TwoTier<L1, L2> {
    /// [`TwoTier::try_reserve`] for outbox-core; errors become
    /// [`OutboxError::InfrastructureError`] with the cause's text.
    async fn try_reserve(&self, token: &IdempotencyToken) -> Result<bool, OutboxError> {
        Ok(TwoTier::try_reserve(self, token.as_str()).await?)
    }
}

fn settle<T>(outcome: Result<Once<T, OutboxError>, Error>) -> Result<T, OutboxError> {
    match outcome? {
        Once::Duplicate => Err(OutboxError::DuplicateEvent),
        Once::Done(value) => Ok(value),
        Once::Failed(error) => Err(error),
    }
}

/// An outbox writer whose tokens are committed only when the write
/// succeeded: an [`OutboxService`] without a provider inside, plus a
/// [`TwoTier`] used through its guarded path ([`TwoTier::once`]).
///
/// ```no_run
/// # use outbox_redis::{GuardedOutbox, RedisTokenProvider, RedisTokenConfig};
/// # use outbox_core::{IdempotencyStrategy, OutboxConfig, OutboxError};
/// # use outbox_postgres::PostgresWriter;
/// # use std::sync::Arc;
/// # #[derive(Debug, Clone, serde::Serialize)] struct OrderCreated { id: u64 }
/// # async fn demo(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let provider = RedisTokenProvider::new("redis://127.0.0.1:6379", RedisTokenConfig::default()).await?;
/// let mut config = OutboxConfig::<OrderCreated>::default();
/// config.idempotency_strategy = IdempotencyStrategy::Provided;
/// let outbox = GuardedOutbox::new(Arc::new(PostgresWriter), Arc::new(config), Arc::new(provider));
///
/// let mut tx = pool.begin().await?;
/// outbox
///     .in_transaction("order-42", async {
///         // ... the business write on &mut *tx ...
///         outbox
///             .service()
///             .add_event("OrderCreated", OrderCreated { id: 42 }, Some("order-42".into()), &mut *tx)
///             .await?;
///         tx.commit().await.map_err(|e| OutboxError::DatabaseError(e.to_string()))
///     })
///     .await?; // Err(DuplicateEvent) for a duplicate; on any other error the token is free again
/// # Ok(()) }
/// ```
pub struct GuardedOutbox<W, P, L1, L2>
where
    P: Debug + Clone + Serialize + Send + Sync,
    L1: LocalCache,
    L2: RemoteStore,
{
    service: OutboxService<W, NoIdempotency, P>,
    provider: Arc<TwoTier<L1, L2>>,
}

impl<W, P, L1, L2> GuardedOutbox<W, P, L1, L2>
where
    W: OutboxWriter<P> + Send + Sync + 'static,
    P: Debug + Clone + Serialize + Send + Sync,
    L1: LocalCache,
    L2: RemoteStore,
{
    /// An outbox over `writer` and `config` (use
    /// `IdempotencyStrategy::Provided` so the token is stored on the row)
    /// whose tokens `provider` guards.
    pub fn new(
        writer: Arc<W>,
        config: Arc<OutboxConfig<P>>,
        provider: Arc<TwoTier<L1, L2>>,
    ) -> Self {
        Self {
            service: OutboxService::new(writer, config),
            provider,
        }
    }

    /// The inner service, without a provider: call its `add_event` inside
    /// [`in_transaction`](Self::in_transaction).
    #[must_use]
    pub fn service(&self) -> &OutboxService<W, NoIdempotency, P> {
        &self.service
    }

    /// The provider that guards the tokens.
    #[must_use]
    pub fn provider(&self) -> &Arc<TwoTier<L1, L2>> {
        &self.provider
    }

    /// Writes one event with `token`: the token is committed for the
    /// provider's `ttl` when the write succeeded and released when it failed,
    /// so the client's retry can write it. Use this when `executor` commits by
    /// itself (a pool, an in-memory writer); inside a transaction use
    /// [`in_transaction`](Self::in_transaction).
    ///
    /// # Errors
    ///
    /// [`OutboxError::DuplicateEvent`] when the token is taken; the writer's
    /// error when the write failed (the token is then free again);
    /// [`OutboxError::InfrastructureError`] when the provider failed.
    pub async fn add_event(
        &self,
        event_type: &str,
        payload: P,
        token: &str,
        executor: W::Executor<'_>,
    ) -> Result<(), OutboxError> {
        let write = self
            .service
            .add_event(event_type, payload, Some(token.to_owned()), executor);
        settle(self.provider.once(token, write).await)
    }

    /// Runs `work` (which writes the event and commits the caller's
    /// transaction) under `token`: the token is committed only when `work`
    /// returns `Ok`, and released when it returns `Err` — so a rolled-back
    /// transaction never burns the token.
    ///
    /// # Errors
    ///
    /// [`OutboxError::DuplicateEvent`] when the token is taken (`work` does
    /// not run); `work`'s error (the token is free again);
    /// [`OutboxError::InfrastructureError`] when the provider failed.
    pub async fn in_transaction<T, F>(&self, token: &str, work: F) -> Result<T, OutboxError>
    where
        F: Future<Output = Result<T, OutboxError>>,
    {
        settle(self.provider.once(token, work).await)
    }
}
