//! End to end against a real PostgreSQL (outbox-postgres 0.3) and a real
//! redis-server: every duplicate is stopped before it reaches the database,
//! and through the guarded path a failing writer never loses an event.
//!
//! Needs `DATABASE_URL` (CI sets it); outside CI the test says it was skipped
//! when the variable is unset.
#![cfg(all(feature = "outbox", feature = "redis"))]

mod common;

use async_trait::async_trait;
use common::{RedisServer, shuffle, unique};
use outbox_core::{
    Event, IdempotencyStrategy, OutboxConfig, OutboxError, OutboxService, OutboxWriter,
};
use outbox_postgres::PostgresWriter;
use outbox_redis::{GuardedOutbox, RedisTokenConfig, RedisTokenProvider};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const TOKENS: usize = 500;
const COPIES: usize = 8;
const TASKS: usize = 8;

#[derive(Debug, Clone, serde::Serialize)]
struct OrderCreated {
    token: String,
}

/// A pool on a fresh schema holding outbox-postgres's tables, or `None` when
/// the test is skipped.
async fn fresh_schema(name: &str) -> Option<PgPool> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "DATABASE_URL is unset under CI=true: .ci/run must set it"
        );
        eprintln!("skipped: DATABASE_URL is unset (e.g. postgres://postgres@127.0.0.1:5432/test)");
        return None;
    };
    let schema = unique(name).replace('-', "_");
    let admin = PgPool::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::raw_sql(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    let options = PgConnectOptions::from_str(&url)
        .expect("DATABASE_URL parses")
        .options([("search_path", schema.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await
        .expect("connect with the schema");
    sqlx::raw_sql(include_str!("fixtures/outbox_postgres_init.sql"))
        .execute(&pool)
        .await
        .expect("apply outbox-postgres's migration");
    Some(pool)
}

fn requests() -> Vec<Vec<String>> {
    let mut all: Vec<String> = (0..TOKENS)
        .flat_map(|t| std::iter::repeat_n(format!("order-{t}"), COPIES))
        .collect();
    shuffle(&mut all, 2024);
    all.chunks(TOKENS * COPIES / TASKS)
        .map(<[String]>::to_vec)
        .collect()
}

async fn rows(pool: &PgPool) -> (i64, i64) {
    let row = sqlx::query(
        "SELECT count(*) AS n, count(DISTINCT idempotency_token) AS d FROM outbox_events",
    )
    .fetch_one(pool)
    .await
    .expect("count rows");
    (row.get("n"), row.get("d"))
}

fn provider_config() -> RedisTokenConfig {
    RedisTokenConfig {
        key_prefix: unique("pg"),
        operation_timeout: Duration::from_secs(5),
        lease: Duration::from_secs(30),
        ..Default::default()
    }
}

fn outbox_config() -> Arc<OutboxConfig<OrderCreated>> {
    let mut config = OutboxConfig::default();
    config.idempotency_strategy = IdempotencyStrategy::Provided;
    Arc::new(config)
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    duplicate: AtomicU64,
    database: AtomicU64,
    other: AtomicU64,
}

impl Tally {
    fn count(&self, result: &Result<(), OutboxError>) {
        let counter = match result {
            Ok(()) => &self.ok,
            Err(OutboxError::DuplicateEvent) => &self.duplicate,
            Err(OutboxError::DatabaseError(_)) => &self.database,
            Err(_) => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> [u64; 4] {
        [&self.ok, &self.duplicate, &self.database, &self.other].map(|c| c.load(Ordering::Relaxed))
    }
}

/// `PostgresWriter` that fails every tenth insert after writing the row, so the
/// caller's transaction must roll it back.
struct FlakyWriter {
    inserts: AtomicU64,
    failed: AtomicU64,
}

#[async_trait]
impl OutboxWriter<OrderCreated> for FlakyWriter {
    type Executor<'a> = &'a mut sqlx::PgConnection;

    async fn insert_event<'a>(
        &self,
        event: Event<OrderCreated>,
        executor: &'a mut sqlx::PgConnection,
    ) -> Result<(), OutboxError>
    where
        'a: 'async_trait,
    {
        OutboxWriter::insert_event(&PostgresWriter, event, &mut *executor).await?;
        if self.inserts.fetch_add(1, Ordering::Relaxed) % 10 == 9 {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return Err(OutboxError::DatabaseError(
                "injected fault: 10% of inserts fail".into(),
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_duplicate_is_stopped_before_the_database() {
    let Some(pool) = fresh_schema("dedup").await else {
        return;
    };
    let redis = RedisServer::start();
    let provider = RedisTokenProvider::new(&redis.url(), provider_config())
        .await
        .unwrap();
    let service = Arc::new(OutboxService::with_idempotency(
        Arc::new(PostgresWriter),
        outbox_config(),
        Arc::new(provider),
    ));
    let tally = Arc::new(Tally::default());
    let mut tasks = tokio::task::JoinSet::new();
    for slice in requests() {
        let (service, pool, tally) = (service.clone(), pool.clone(), tally.clone());
        tasks.spawn(async move {
            for token in slice {
                let mut tx = pool.begin().await.expect("begin");
                let payload = OrderCreated {
                    token: token.clone(),
                };
                let result = service
                    .add_event("OrderCreated", payload, Some(token), &mut *tx)
                    .await;
                if result.is_ok() {
                    tx.commit().await.expect("commit");
                }
                tally.count(&result);
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task");
    }
    let [ok, duplicate, database, other] = tally.get();
    assert_eq!(
        (ok, duplicate, database, other),
        (500, 3_500, 0, 0),
        "ok, duplicate, database, other"
    );
    assert_eq!(rows(&pool).await, (500, 500), "exactly one row per token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guarded_path_writes_every_token_once_despite_failing_inserts() {
    let Some(pool) = fresh_schema("guarded").await else {
        return;
    };
    let redis = RedisServer::start();
    let provider = RedisTokenProvider::new(&redis.url(), provider_config())
        .await
        .unwrap();
    let writer = Arc::new(FlakyWriter {
        inserts: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let outbox = Arc::new(GuardedOutbox::new(
        writer.clone(),
        outbox_config(),
        Arc::new(provider),
    ));
    let tally = Arc::new(Tally::default());
    let retries = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for slice in requests() {
        let (outbox, pool, tally, retries) =
            (outbox.clone(), pool.clone(), tally.clone(), retries.clone());
        tasks.spawn(async move {
            for token in slice {
                // The client's retry loop: a failed write is retried with the
                // same token, at most 20 times.
                for attempt in 0..20 {
                    let mut tx = pool.begin().await.expect("begin");
                    let result = outbox
                        .in_transaction(&token, async {
                            let payload = OrderCreated {
                                token: token.clone(),
                            };
                            outbox
                                .service()
                                .add_event("OrderCreated", payload, Some(token.clone()), &mut *tx)
                                .await?;
                            tx.commit()
                                .await
                                .map_err(|e| OutboxError::DatabaseError(e.to_string()))
                        })
                        .await;
                    if matches!(result, Err(OutboxError::DatabaseError(_))) {
                        assert!(attempt < 19, "token {token} kept failing");
                        retries.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    tally.count(&result);
                    break;
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task");
    }
    let [ok, duplicate, database, other] = tally.get();
    let failed = writer.failed.load(Ordering::Relaxed);
    eprintln!(
        "guarded: {ok} written, {duplicate} duplicates, {failed} injected insert failures, {} retries",
        retries.load(Ordering::Relaxed)
    );
    assert!(
        failed >= 40,
        "about 10% of ~500 inserts failed, got {failed}"
    );
    assert_eq!((ok, database, other), (500, 0, 0), "ok, database, other");
    assert_eq!(duplicate, 3_500);
    assert_eq!(
        rows(&pool).await,
        (500, 500),
        "every token ends with exactly one row"
    );
}
