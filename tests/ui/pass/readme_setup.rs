// The README's setup: RedisTokenProvider::new as in outbox-redis 0.1, then
// OutboxService::with_idempotency (outbox-core 0.6). Compiled, not connected.
use outbox_core::{IdempotencyStrategy, OutboxConfig, OutboxService};
use outbox_postgres::PostgresWriter;
use outbox_redis::{RedisTokenProvider, config::RedisTokenConfig};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, serde::Serialize)]
enum MyEvent {
    HiOutbox(String),
}

#[allow(dead_code)]
async fn setup(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
    let redis_config = RedisTokenConfig {
        ttl: Duration::from_secs(3600),
        ..Default::default()
    };
    let redis_provider = RedisTokenProvider::new("redis://127.0.0.1:6379", redis_config).await?;
    let mut config = OutboxConfig::<MyEvent>::default();
    config.idempotency_strategy = IdempotencyStrategy::Provided;
    let service = OutboxService::with_idempotency(Arc::new(PostgresWriter), Arc::new(config), Arc::new(redis_provider));
    let mut tx = pool.begin().await?;
    service
        .add_event("OrderCreated", MyEvent::HiOutbox("First request".into()), Some("unique_token_123".into()), &mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn main() {}
