//! `OutboxService` with outbox-postgres's `PostgresWriter` and
//! `RedisTokenProvider`, inside a real transaction, then the guarded form.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run --example outbox_postgres
//! ```
//!
//! It creates a schema of its own, applies outbox-postgres's migration there,
//! and drops the schema at the end.

use outbox_core::{IdempotencyStrategy, OutboxConfig, OutboxError, OutboxService};
use outbox_postgres::PostgresWriter;
use outbox_redis::{GuardedOutbox, RedisTokenConfig, RedisTokenProvider};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::sync::Arc;

#[derive(Debug, Clone, serde::Serialize)]
enum MyEvent {
    HiOutbox(String),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database_url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test")?;
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let run = std::process::id();
    let schema = format!("outbox_example_{run}");

    let admin = sqlx::PgPool::connect(&database_url).await?;
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    let options =
        PgConnectOptions::from_str(&database_url)?.options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await?;
    sqlx::raw_sql(include_str!("../tests/fixtures/outbox_postgres_init.sql"))
        .execute(&pool)
        .await?;
    println!("schema {schema}: outbox-postgres's migration applied");

    let redis_provider = RedisTokenProvider::new(
        &redis_url,
        RedisTokenConfig {
            key_prefix: format!("i_token_example_{run}"),
            ..Default::default()
        },
    )
    .await?;
    let provider = Arc::new(redis_provider);
    let mut config = OutboxConfig::<MyEvent>::default();
    config.idempotency_strategy = IdempotencyStrategy::Provided;
    let config = Arc::new(config);

    let service =
        OutboxService::with_idempotency(Arc::new(PostgresWriter), config.clone(), provider.clone());
    for attempt in ["first request", "duplicate request"] {
        let mut tx = pool.begin().await?;
        // ... INSERT INTO your_business_table ... .execute(&mut *tx).await? ...
        let result = service
            .add_event(
                "OrderCreated",
                MyEvent::HiOutbox(attempt.into()),
                Some("unique_token_123".into()),
                &mut *tx,
            )
            .await;
        if result.is_ok() {
            tx.commit().await?;
        } // on Err the transaction rolls back when dropped
        println!("with_idempotency, {attempt:<17} -> {result:?}");
    }

    let outbox = GuardedOutbox::new(Arc::new(PostgresWriter), config, provider);
    for attempt in ["rolled back", "retried", "duplicate"] {
        let mut tx = pool.begin().await?;
        let result = outbox
            .in_transaction("unique_token_456", async {
                outbox
                    .service()
                    .add_event(
                        "OrderCreated",
                        MyEvent::HiOutbox(attempt.into()),
                        Some("unique_token_456".into()),
                        &mut *tx,
                    )
                    .await?;
                if attempt == "rolled back" {
                    return Err(OutboxError::DatabaseError(
                        "business rule failed: transaction rolled back".into(),
                    ));
                }
                tx.commit()
                    .await
                    .map_err(|e| OutboxError::DatabaseError(e.to_string()))
            })
            .await;
        println!("GuardedOutbox,    {attempt:<17} -> {result:?}");
    }

    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT idempotency_token, payload::text FROM outbox_events ORDER BY created_at",
    )
    .fetch_all(&pool)
    .await?;
    for (token, payload) in &rows {
        println!("row: {token} {payload}");
    }
    pool.close().await;
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await?;
    println!(
        "{} rows written, one per token; schema {schema} dropped",
        rows.len()
    );
    Ok(())
}
