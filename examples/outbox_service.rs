//! outbox-core's `OutboxService` with this crate's provider, no server needed:
//! an in-memory writer and `TwoTier<MokaCache, MemoryStore>`.
//! Run with `cargo run --example outbox_service`.

use outbox_core::{IdempotencyStrategy, OutboxConfig, OutboxError, OutboxService};
use outbox_redis::backends::{MemoryStore, MokaCache};
use outbox_redis::testing::MemoryWriter;
use outbox_redis::{GuardedOutbox, RedisTokenConfig, TwoTier};
use std::sync::Arc;

#[derive(Debug, Clone, serde::Serialize)]
enum MyEvent {
    HiOutbox(String),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = OutboxConfig::<MyEvent>::default();
    config.idempotency_strategy = IdempotencyStrategy::Provided;
    let config = Arc::new(config);
    let provider: TwoTier<MokaCache, MemoryStore> =
        TwoTier::with_store(MemoryStore::new(), RedisTokenConfig::default())?;
    let provider = Arc::new(provider);

    // 1. The drop-in: OutboxService::with_idempotency.
    let writer = Arc::new(MemoryWriter::new());
    let service = OutboxService::with_idempotency(writer.clone(), config.clone(), provider.clone());
    let first = service
        .add_event(
            "OrderCreated",
            MyEvent::HiOutbox("first".into()),
            Some("token-1".into()),
            (),
        )
        .await;
    println!("with_idempotency: first add_event(token-1)          -> {first:?}");
    let second = service
        .add_event(
            "OrderCreated",
            MyEvent::HiOutbox("again".into()),
            Some("token-1".into()),
            (),
        )
        .await;
    println!("with_idempotency: second add_event(token-1)         -> {second:?}");

    writer.fail_next(1);
    let failed = service
        .add_event(
            "OrderCreated",
            MyEvent::HiOutbox("x".into()),
            Some("token-2".into()),
            (),
        )
        .await;
    let retried = service
        .add_event(
            "OrderCreated",
            MyEvent::HiOutbox("x".into()),
            Some("token-2".into()),
            (),
        )
        .await;
    println!(
        "with_idempotency: insert fails, then the retry      -> {failed:?}, then {retried:?} (token burned)"
    );
    println!(
        "with_idempotency: events written                    -> {}",
        writer.len()
    );

    // 2. The guarded path: the token is committed only when the write succeeded.
    let writer = Arc::new(MemoryWriter::new());
    let outbox = GuardedOutbox::new(writer.clone(), config, provider);
    writer.fail_next(1);
    let failed = outbox
        .add_event("OrderCreated", MyEvent::HiOutbox("y".into()), "token-3", ())
        .await;
    let retried = outbox
        .add_event("OrderCreated", MyEvent::HiOutbox("y".into()), "token-3", ())
        .await;
    let duplicate = outbox
        .add_event("OrderCreated", MyEvent::HiOutbox("y".into()), "token-3", ())
        .await;
    println!("GuardedOutbox:    insert fails, then the retry      -> {failed:?}, then {retried:?}");
    println!("GuardedOutbox:    the same token once more          -> {duplicate:?}");
    println!(
        "GuardedOutbox:    events written                    -> {}",
        writer.len()
    );

    assert!(first.is_ok() && matches!(second, Err(OutboxError::DuplicateEvent)));
    assert!(matches!(retried, Ok(())) && matches!(duplicate, Err(OutboxError::DuplicateEvent)));
    assert_eq!(writer.len(), 1);
    Ok(())
}
