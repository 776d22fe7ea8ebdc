//! outbox-core 0.6 integration with an in-memory writer: the provider inside
//! `OutboxService::with_idempotency` for each strategy, and the guarded path
//! that keeps a failed write from burning its token.
#![cfg(all(feature = "outbox", feature = "moka"))]

use outbox_core::{IdempotencyStrategy, OutboxConfig, OutboxError, OutboxService};
use outbox_redis::backends::{MemoryStore, MokaCache};
use outbox_redis::testing::{Fault, FaultyStore, MemoryWriter};
use outbox_redis::{GuardedOutbox, RedisTokenConfig, TwoTier};
use std::sync::Arc;

#[derive(Debug, Clone, serde::Serialize)]
struct OrderCreated {
    id: u32,
}

type Provider = TwoTier<MokaCache, FaultyStore<MemoryStore>>;

fn provider() -> (Arc<Provider>, FaultyStore<MemoryStore>) {
    let store = FaultyStore::new(MemoryStore::new());
    let provider = TwoTier::with_store(store.clone(), RedisTokenConfig::default()).unwrap();
    (Arc::new(provider), store)
}

fn config(strategy: IdempotencyStrategy<OrderCreated>) -> Arc<OutboxConfig<OrderCreated>> {
    let mut config = OutboxConfig::default();
    config.idempotency_strategy = strategy;
    Arc::new(config)
}

#[tokio::test]
async fn provided_strategy_rejects_the_second_event_with_the_same_token() {
    let (provider, _) = provider();
    let writer = Arc::new(MemoryWriter::new());
    let service = OutboxService::with_idempotency(
        writer.clone(),
        config(IdempotencyStrategy::Provided),
        provider,
    );
    service
        .add_event(
            "OrderCreated",
            OrderCreated { id: 1 },
            Some("tok-1".into()),
            (),
        )
        .await
        .unwrap();
    let second = service
        .add_event(
            "OrderCreated",
            OrderCreated { id: 1 },
            Some("tok-1".into()),
            (),
        )
        .await;
    assert!(
        matches!(second, Err(OutboxError::DuplicateEvent)),
        "{second:?}"
    );
    assert_eq!(writer.len(), 1);
    let stored = writer.events()[0].idempotency_token.clone().unwrap();
    assert_eq!(stored.as_str(), "tok-1");
}

#[tokio::test]
async fn strategy_none_never_asks_the_provider() {
    let (provider, store) = provider();
    let writer = Arc::new(MemoryWriter::new());
    let service = OutboxService::with_idempotency(
        writer.clone(),
        config(IdempotencyStrategy::None),
        provider,
    );
    for _ in 0..3 {
        service
            .add_event(
                "OrderCreated",
                OrderCreated { id: 2 },
                Some("same".into()),
                (),
            )
            .await
            .unwrap();
    }
    assert_eq!(writer.len(), 3);
    assert_eq!(store.calls().reserve, 0);
}

#[tokio::test]
async fn strategy_uuid_never_reports_a_duplicate() {
    let (provider, store) = provider();
    let writer = Arc::new(MemoryWriter::new());
    let service = OutboxService::with_idempotency(
        writer.clone(),
        config(IdempotencyStrategy::Uuid),
        provider,
    );
    for _ in 0..100 {
        service
            .add_event(
                "OrderCreated",
                OrderCreated { id: 3 },
                Some("ignored".into()),
                (),
            )
            .await
            .unwrap();
    }
    assert_eq!(writer.len(), 100);
    assert_eq!(
        store.calls().reserve,
        100,
        "each fresh UUID reaches the store once"
    );
}

#[tokio::test]
async fn provider_errors_become_infrastructure_errors_with_the_cause() {
    let (provider, store) = provider();
    let writer = Arc::new(MemoryWriter::new());
    let service = OutboxService::with_idempotency(
        writer.clone(),
        config(IdempotencyStrategy::Provided),
        provider,
    );
    store.set_fault(Fault::Unavailable);
    match service
        .add_event("OrderCreated", OrderCreated { id: 4 }, Some("t".into()), ())
        .await
    {
        Err(OutboxError::InfrastructureError(message)) => {
            assert!(message.contains("unavailable"), "{message}");
        }
        other => panic!("expected InfrastructureError, got {other:?}"),
    }
    assert!(writer.is_empty());
}

/// The hole in plain `with_idempotency`: the token is reserved before the
/// insert and never released, so the retry of a failed insert is rejected as
/// a duplicate and the event is lost.
#[tokio::test]
async fn plain_with_idempotency_burns_the_token_of_a_failed_insert() {
    let (provider, _) = provider();
    let writer = Arc::new(MemoryWriter::new());
    let service = OutboxService::with_idempotency(
        writer.clone(),
        config(IdempotencyStrategy::Provided),
        provider,
    );
    writer.fail_next(1);
    let first = service
        .add_event(
            "OrderCreated",
            OrderCreated { id: 5 },
            Some("burned".into()),
            (),
        )
        .await;
    assert!(
        matches!(first, Err(OutboxError::DatabaseError(_))),
        "{first:?}"
    );
    let retry = service
        .add_event(
            "OrderCreated",
            OrderCreated { id: 5 },
            Some("burned".into()),
            (),
        )
        .await;
    assert!(
        matches!(retry, Err(OutboxError::DuplicateEvent)),
        "{retry:?}"
    );
    assert!(writer.is_empty(), "the event was never written");
}

#[tokio::test]
async fn the_guarded_outbox_lets_the_retry_of_a_failed_insert_through() {
    let (provider, store) = provider();
    let writer = Arc::new(MemoryWriter::new());
    let outbox = GuardedOutbox::new(
        writer.clone(),
        config(IdempotencyStrategy::Provided),
        provider,
    );
    writer.fail_next(1);
    let first = outbox
        .add_event("OrderCreated", OrderCreated { id: 6 }, "kept", ())
        .await;
    assert!(
        matches!(first, Err(OutboxError::DatabaseError(_))),
        "{first:?}"
    );
    outbox
        .add_event("OrderCreated", OrderCreated { id: 6 }, "kept", ())
        .await
        .expect("the retry is written");
    let third = outbox
        .add_event("OrderCreated", OrderCreated { id: 6 }, "kept", ())
        .await;
    assert!(
        matches!(third, Err(OutboxError::DuplicateEvent)),
        "{third:?}"
    );
    assert_eq!(writer.len(), 1, "exactly one event");
    let left = store.inner().ttl_of("i_token:kept").expect("committed");
    assert!(
        left > std::time::Duration::from_secs(86_000),
        "committed to the full ttl: {left:?}"
    );
}

#[tokio::test]
async fn in_transaction_commits_only_when_the_work_succeeds() {
    let (provider, store) = provider();
    let writer = Arc::new(MemoryWriter::new());
    let outbox = GuardedOutbox::new(
        writer.clone(),
        config(IdempotencyStrategy::Provided),
        provider,
    );
    let rolled_back: Result<(), _> = outbox
        .in_transaction("tx-1", async {
            outbox
                .service()
                .add_event(
                    "OrderCreated",
                    OrderCreated { id: 7 },
                    Some("tx-1".into()),
                    (),
                )
                .await?;
            Err(OutboxError::DatabaseError(
                "commit failed: serialization failure".into(),
            ))
        })
        .await;
    assert!(matches!(rolled_back, Err(OutboxError::DatabaseError(_))));
    assert!(store.inner().ttl_of("i_token:tx-1").is_none(), "released");
    let committed = outbox
        .in_transaction("tx-1", async { Ok::<_, OutboxError>(42) })
        .await;
    assert_eq!(committed.unwrap(), 42);
    assert!(store.inner().ttl_of("i_token:tx-1").is_some(), "committed");
}
